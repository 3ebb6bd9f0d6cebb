"""The phone NPU path on QNN's HTP emulator (onnxruntime-qnn, the `npu` extra): for every
registered VLM family, the tiny bundle quantized with `npu-int8` runs with every vision node on
QNN (`--device npu --fallback error`), its embeddings are close to the CPU run of the same QDQ
graph, its greedy answer is the CPU's, and `edge compile` makes a context bundle that loads and
answers the same (and is refused, in one line, for another SoC).

The family list comes from the registry: a family added later is tested too. Its graph may not
be HTP-complete yet; the manifest must then say so (provenance.npu) and the refusal must name
the operators, which this test checks instead of skipping it.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import THREADS, export_bundle, run_cli

from edge.export.builders import TINY_BUILDERS
from edge.export.registry import families
from edge.options import PROBE_BUDGET

pytestmark = pytest.mark.slow
pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn (the npu extra) runs on Linux x86-64 / Windows ARM64")

VLM_FAMILIES = sorted(name for name, spec in families().items() if spec.vision is not None)
# checked HTP-complete with onnxruntime-qnn 2.7.0 (docs/devices.md); a regression here fails
HTP_COMPLETE = {"gemma3", "idefics3", "llava", "llava_next", "smolvlm"}
QNN = "QNNExecutionProvider"


@pytest.fixture(scope="session")
def npu_bundles(tmp_path_factory):
    """family -> (npu-int8 bundle or None, the quantize process), built once per family."""
    made: dict = {}

    def get(family: str):
        if family not in made:
            work = tmp_path_factory.mktemp(f"npu-{family}")
            src = export_bundle(TINY_BUILDERS[family](work / "src"), work / "f32")
            out = work / "npu"
            proc = run_cli("quantize", str(src), "-o", str(out), "-r", "npu-int8", "-t", THREADS, "--json")
            made[family] = (out if proc.returncode == 0 else None, proc)
        return made[family]

    return get


def _run(bundle: Path, image: Path, *flags: str):
    return run_cli("run", str(bundle), "-p", "Describe the image.", "-i", str(image), "-n", "8",
                   "-t", THREADS, "--json", *flags)  # fmt: skip


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_npu_int8_runs_whole_on_the_htp(family, npu_bundles, photo, tmp_path):
    bundle, proc = npu_bundles(family)
    if bundle is None:  # the recipe does not apply (e.g. variable-size images): said in one line
        assert proc.returncode == 2 and "does not apply" in proc.stderr, proc.stderr
        assert family not in HTP_COMPLETE, proc.stderr
        warnings.warn(f"{family}: npu-int8 does not apply: {proc.stderr.strip().splitlines()[-1]}")
        return
    npu = json.loads((bundle / "manifest.json").read_text())["provenance"]["npu"]
    assert npu["checked"] and npu["target"] == "qnn-htp"
    strict = _run(bundle, photo, "--device", "npu", "--fallback", "error")
    if not npu["complete"]:  # honest record: the manifest and the runtime agree, naming the operators
        assert family not in HTP_COMPLETE, npu["why"]
        assert strict.returncode == 2 and "cannot run whole on QNNExecutionProvider" in strict.stderr
        warnings.warn(f"{family}: npu-int8 is not HTP-complete: {npu['why']}")
        return
    assert strict.returncode == 0, strict.stderr
    out = json.loads(strict.stdout)
    vision = out["placement"]["vision"]
    assert vision["nodes"] and set(vision["nodes"]) == {QNN} and not vision["fallback"], vision
    assert vision["device"] == "npu" and out["placement"]["llm"]["device"] == "cpu"
    cpu = _run(bundle, photo)
    assert cpu.returncode == 0, cpu.stderr
    assert json.loads(cpu.stdout)["placement"]["vision"]["nodes"].keys() == {"CPUExecutionProvider"}
    # the recorded figures: the HTP against the CPU run of the same graph and the f32 graph
    assert npu["vs_qdq_cpu"]["cosine_min"] > 0.999 and npu["vs_f32_cpu"]["cosine_min"] > 0.99
    _greedy_tokens_as_recorded(bundle, npu["greedy"])
    _embeddings_close(bundle, photo)
    _compiled_bundle_answers_the_same(bundle, photo, tmp_path, out["tokens"], every_case=family == VLM_FAMILIES[0])


def _greedy_tokens_as_recorded(bundle: Path, greedy: dict) -> None:
    """The recorded greedy answers (vision on the HTP, and on the CPU) are what the runtime gives.

    Tiny random models have near-tied logits, so the NPU and CPU answers to an arbitrary image may
    part after a few tokens; the agreement is measured once, by `edge quantize`, and recorded.
    """
    import edge
    from edge.options import GenerateOptions, OnnxOptions, RuntimeOptions
    from edge.quantize.npu import ANSWER_TOKENS, PROMPT
    from edge.quantize.probes import probe_images

    image = probe_images()[0]
    options = GenerateOptions(max_tokens=ANSWER_TOKENS, budget=PROBE_BUDGET)
    for key, vision in (
        ("npu_tokens", OnnxOptions(threads=2, device="npu", fallback="error")),
        ("cpu_tokens", OnnxOptions(threads=2)),
    ):
        pipe = edge.load(bundle, dataclasses.replace(RuntimeOptions.simple(threads=2), vision=vision))
        try:
            assert list(pipe.generate(PROMPT, [image], options).tokens) == greedy[key], key
        finally:
            pipe.close()
    assert greedy["identical"] == (greedy["npu_tokens"] == greedy["cpu_tokens"])


def _embeddings_close(bundle: Path, photo: Path) -> None:
    from edge.bundle import load_manifest
    from edge.options import OnnxOptions
    from edge.quantize.fidelity import pixel_values
    from edge.runtime.vision.encoder import VisionEncoder
    from edge.runtime.vision.image_io import load_image

    root, m = load_manifest(bundle)
    (x,) = list(pixel_values([load_image(str(photo))], m.vision, root))
    htp = VisionEncoder(root, m.vision, OnnxOptions(threads=2, device="npu", fallback="error"))(x)
    cpu = VisionEncoder(root, m.vision, OnnxOptions(threads=2))(x)
    a, b = htp.reshape(len(x), -1), cpu.reshape(len(x), -1)
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() > 0.999, cos
    assert np.abs(htp - cpu).max() <= 0.05 * np.abs(cpu).max() + 1e-3


def _compiled_bundle_answers_the_same(bundle: Path, photo: Path, tmp_path: Path, tokens: list, every_case: bool):
    out = tmp_path / "htp"
    proc = run_cli("compile", str(bundle), "-o", str(out), "--target", "qnn-htp", "--soc", "60", "--json")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)
    assert entry["soc_model"] == "60" and (out / entry["file"]).is_file()
    assert entry["session_ms"]["context"] > 0 and entry["session_ms"]["qdq_graph"] > 0
    ran = _run(out, photo, "--provider", "qnn:soc_model=60", "--fallback", "error")
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout)
    assert got["placement"]["vision"]["context"] == entry["file"] and got["tokens"] == tokens
    other = _run(out, photo, "--provider", "qnn:soc_model=69", "--fallback", "error")
    assert other.returncode == 3, other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith("error: ") and "compiled for SoC 60" in other.stderr
    assert "Traceback" not in other.stderr
    if not every_case:  # the cases below do not depend on the family (one family is enough)
        return
    plain = _run(out, photo, "--device", "npu", "--fallback", "error")  # no SoC given: the context is used
    assert plain.returncode == 0 and json.loads(plain.stdout)["placement"]["vision"]["context"] == entry["file"]
    relaxed = _run(out, photo, "--provider", "qnn:soc_model=69")  # fallback cpu: the QDQ graph, with a warning
    assert relaxed.returncode == 0 and "compiled for SoC 60" in relaxed.stderr
    assert json.loads(relaxed.stdout)["placement"]["vision"]["context"] == ""
