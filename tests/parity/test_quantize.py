"""Quantizing tiny bundles: smaller files, a computed fidelity report, bundles that still run,
and clear behaviour on bad input, existing or unwritable outputs and interrupts."""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli

from edge.bundle import load_manifest
from edge.errors import BundleError, InputError
from edge.options import PROBE_BUDGET, QuantizeOptions, RuntimeOptions
from edge.quantize import fidelity
from edge.quantize.api import quantize_bundle
from edge.quantize.probes import probe_images

THREADS = 1  # llama.cpp spins its threads: on a busy 2-core machine one thread is far faster
RECIPES = ("q8", "q4-int4vision", "npu-int8")


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def quantized(tiny_llava_bundle, tmp_path_factory):
    before = _digest(tiny_llava_bundle)
    root = tmp_path_factory.mktemp("quantized")
    out = {r: quantize_bundle(tiny_llava_bundle, root / r, r, QuantizeOptions(threads=THREADS)) for r in RECIPES}
    assert _digest(tiny_llava_bundle) == before, "the source bundle was modified"
    return {r: (root / r, m) for r, m in out.items()}


def _error_line(proc) -> str:
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[-1]


def test_recipes_produce_smaller_files(tiny_llava_bundle, quantized):
    _, src = load_manifest(tiny_llava_bundle)
    for recipe, (path, m) in quantized.items():
        assert m.files["llm.gguf"].bytes < 0.35 * src.files["llm.gguf"].bytes, recipe
        assert sum(f.bytes for f in m.files.values()) < sum(f.bytes for f in src.files.values())
    for recipe in ("q8", "q4-int4vision"):
        assert quantized[recipe][1].files["vision.onnx"].bytes < src.files["vision.onnx"].bytes, recipe
    # On this tiny tower the QDQ graph's extra nodes outweigh the smaller weights (not so
    # on real towers, see docs/quantization.md): check the weights' types instead. Weights
    # are uint8; a table read as data (the position embedding) is an activation: uint16.
    graph = onnx.load(str(quantized["npu-int8"][0] / "vision.onnx")).graph
    big = {i.name: i.data_type for i in graph.initializer if np.prod(i.dims) >= 256}
    assert set(big.values()) <= {onnx.TensorProto.UINT8, onnx.TensorProto.UINT16}
    weights = [t for name, t in big.items() if "MatMul" in name or "patch_embedding" in name]
    assert len(weights) == 15 and set(weights) == {onnx.TensorProto.UINT8}


def test_quantized_bundles_validate_against_the_shipped_schema(quantized):
    import jsonschema

    from edge.schema import shipped_schema_path

    validator = jsonschema.Draft202012Validator(json.loads(shipped_schema_path().read_text(encoding="utf-8")))
    for recipe, (path, _) in quantized.items():
        data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:200] for e in validator.iter_errors(data)]
        assert not errors, (recipe, errors)


def test_manifest_records_precision_recipe_and_report(quantized):
    expected = {"q8": ("q8_0", "int8"), "q4-int4vision": ("q4_k_m", "int4"), "npu-int8": ("q4_0", "qdq-int8")}
    for recipe, (path, m) in quantized.items():
        assert (m.llm.dtype, m.vision.dtype) == expected[recipe]
        assert m.provenance["quantization"]["recipe"] == recipe
        assert m.provenance["parity"], "the export's parity figures are kept"
        report = m.provenance["fidelity"]
        for part in ("llm", "vision"):
            assert report[part]["bytes_after"] == m.files[f"{'llm.gguf' if part == 'llm' else 'vision.onnx'}"].bytes
            assert report[part]["bytes_before"] > 0
        assert 0.0 < report["llm"]["top1_agreement"] <= 1.0 and report["llm"]["kl"] > 0.0
        assert report["llm"]["perplexity_before"] > 1.0 and report["llm"]["perplexity_after"] > 1.0
        assert 0.9 < report["vision"]["cosine_mean"] < 1.0 and report["vision"]["max_abs_diff"] > 0.0
        assert report["end_to_end"]["with_images"] and report["end_to_end"]["prompts"] == 8
        _, on_disk = load_manifest(path, verify=True)
        assert on_disk == m
    assert quantized["npu-int8"][1].vision.input.shape == [1, 3, 30, 30]
    # int8 keeps the tower closer to f32 than int4 does
    assert (
        quantized["q8"][1].provenance["fidelity"]["vision"]["cosine_mean"]
        > quantized["q4-int4vision"][1].provenance["fidelity"]["vision"]["cosine_mean"]
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_quantized_llava_runs_end_to_end(quantized, recipe, photo, photo2):
    proc = run_cli(
        "run",
        str(quantized[recipe][0]),
        "--image",
        str(photo),
        "--image",
        str(photo2),
        "--prompt",
        "USER: <image><image>\nWhat is shown? ASSISTANT:",
        "--no-template",
        "--max-tokens",
        "8",
        "--json",
        "--threads",
        str(THREADS),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["timings"]["images"] == 2 and out["tokens"]


def test_figures_are_measured_and_follow_the_input(tiny_llava_bundle, quantized, photo):
    """Against itself a bundle is perfect; against its quantized copy the figures move, and
    they change when the probes change."""
    root, ref_m = load_manifest(tiny_llava_bundle)
    qroot, q_m = load_manifest(quantized["q4-int4vision"][0])
    probes = fidelity.Probes(
        images=probe_images(3), texts=fidelity.PROBE_TEXTS[:3], prompts=fidelity.GREEDY_PROMPTS[:2]
    )
    ref = fidelity.observe(root, ref_m, probes, RuntimeOptions.simple(threads=THREADS))
    same = fidelity.observe(root, ref_m, probes, RuntimeOptions.simple(threads=THREADS), reference=ref)
    assert fidelity.llm_figures(ref, same)["top1_agreement"] == 1.0
    assert fidelity.llm_figures(ref, same)["kl"] < 1e-6
    assert fidelity.embedding_figures(ref.vision, same.vision)["cosine_min"] == pytest.approx(1.0)
    assert fidelity.answer_figures(ref, same, probes.answer_tokens)["identical_answers"] == 1.0
    ours = fidelity.observe(qroot, q_m, probes, RuntimeOptions.simple(threads=THREADS), reference=ref)
    vision = fidelity.embedding_figures(ref.vision, ours.vision)
    llm = fidelity.llm_figures(ref, ours)
    assert vision["cosine_mean"] < 0.9999 and llm["kl"] > 1e-4
    # other probes, other figures
    from edge.runtime.vision.image_io import load_image

    probes2 = fidelity.Probes(
        images=[load_image(photo)] + probe_images(2, seed=5),
        texts=fidelity.PROBE_TEXTS[3:6],
        prompts=fidelity.GREEDY_PROMPTS[:2],
    )
    ref2 = fidelity.observe(root, ref_m, probes2, RuntimeOptions.simple(threads=THREADS))
    ours2 = fidelity.observe(qroot, q_m, probes2, RuntimeOptions.simple(threads=THREADS), reference=ref2)
    vision2, llm2 = fidelity.embedding_figures(ref2.vision, ours2.vision), fidelity.llm_figures(ref2, ours2)
    assert vision2["cosine_mean"] != vision["cosine_mean"] and vision2["max_abs_diff"] != vision["max_abs_diff"]
    assert llm2["kl"] != llm["kl"] and llm2["positions"] != llm["positions"]


def test_cli_quantize_prints_the_report_as_json(tiny_llava_bundle, tmp_path, photo):
    out = tmp_path / "q4"
    proc = run_cli(
        "quantize",
        str(tiny_llava_bundle),
        "-o",
        str(out),
        "--recipe",
        "q4",
        "--image",
        str(photo),
        "--json",
        "--threads",
        str(THREADS),
        "--fidelity",
        "full",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["probes"]["user_images"] == 1 and report["vision"]["images"] == 13
    assert report["probes"]["fidelity"] == "full" and report["vision"]["budget"]["max_tiles"] is None
    assert report["llm"]["dtype_after"] == "q4_k_m" and report["vision"]["dtype_after"] == "int8"
    assert json.loads((out / "manifest.json").read_text())["provenance"]["fidelity"] == report


def test_text_only_bundle_quantizes_only_the_llm(tiny_llama_bundle, tmp_path):
    proc = run_cli(
        "quantize", str(tiny_llama_bundle), "-o", str(tmp_path / "q8"), "--recipe", "q8", "--threads", str(THREADS)
    )
    assert proc.returncode == 0, proc.stderr
    assert "vision  skipped: the bundle has no vision graph" in proc.stdout
    m = json.loads((tmp_path / "q8" / "manifest.json").read_text())
    assert m["llm"]["dtype"] == "q8_0" and m["vision"] is None
    assert m["provenance"]["fidelity"]["vision"] == {"skipped": "the bundle has no vision graph"}


def test_export_with_quant_writes_only_the_quantized_bundle(tiny_llava_dir, tmp_path):
    """--dtype f16 stores graph weights as f16 + Cast: they must still be quantized."""
    out = tmp_path / "llava-q8"
    proc = run_cli(
        "export",
        str(tiny_llava_dir),
        "-o",
        str(out),
        "--dtype",
        "f16",
        "--quant",
        "q8",
        "--json",
        "--threads",
        str(THREADS),
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert (m["llm"]["dtype"], m["vision"]["dtype"]) == ("q8_0", "int8")
    assert m["provenance"]["fidelity"]["vision"]["dtype_before"] == "f16"
    assert m["provenance"]["fidelity"]["vision"]["cosine_min"] > 0.99
    ops = {n.op_type for n in onnx.load(str(out / "vision.onnx")).graph.node}
    assert "MatMulInteger" in ops
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llava-q8"], "the unquantized export was left behind"


# --- bad input and failures ---------------------------------------------------------------


def test_bad_recipe_name(tiny_llava_bundle, tmp_path):
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(tmp_path / "x"), "--recipe", "q5")
    assert proc.returncode == 2
    assert "unknown recipe 'q5'" in _error_line(proc) and "npu-int8" in _error_line(proc)
    proc = run_cli("export", "./nowhere", "-o", str(tmp_path / "y"), "--quant", "int2")
    assert proc.returncode == 2 and "unknown recipe" in _error_line(proc)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_existing_output_needs_force(tiny_llava_bundle, quantized, tmp_path):
    out = tmp_path / "existing"
    shutil.copytree(quantized["q8"][0], out)
    before = _digest(out)
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(out), "--recipe", "q4")
    assert proc.returncode == 3 and "--force" in _error_line(proc)
    assert _digest(out) == before


def test_unwritable_output(tiny_llava_bundle, tmp_path):
    # Tests run as root, for whom chmod does not block writes: the output's parent is a file.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(blocker / "out"), "--recipe", "q8")
    assert proc.returncode == 3 and "cannot write" in _error_line(proc)
    assert blocker.read_text() == "not a directory"


def test_output_must_not_be_the_source(tiny_llava_bundle):
    before = _digest(tiny_llava_bundle)
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(tiny_llava_bundle), "--recipe", "q8", "--force")
    assert proc.returncode == 2 and "never modified" in _error_line(proc)
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(tiny_llava_bundle / "inner"), "--recipe", "q8")
    assert proc.returncode == 2
    assert _digest(tiny_llava_bundle) == before


def test_already_quantized_source_is_refused(quantized, tmp_path):
    proc = run_cli("quantize", str(quantized["q8"][0]), "-o", str(tmp_path / "again"), "--recipe", "q4")
    assert proc.returncode == 2 and "already quantized (q8_0)" in _error_line(proc)


def test_static_recipe_refuses_a_variable_size_graph(tiny_llava_bundle, tmp_path):
    """A family whose tower takes images of any size cannot become a fixed-shape NPU graph."""
    src = tmp_path / "dynamic"
    shutil.copytree(tiny_llava_bundle, src)
    m = json.loads((src / "manifest.json").read_text())
    m["vision"]["input"]["shape"] = [-1, 3, -1, -1]
    (src / "manifest.json").write_text(json.dumps(m))
    proc = run_cli("quantize", str(src), "-o", str(tmp_path / "npu"), "--recipe", "npu-int8")
    assert proc.returncode == 2
    assert "npu-int8 does not apply to the llava family" in _error_line(proc)
    assert not (tmp_path / "npu").exists()


class _Interrupting:
    """A progress reporter that raises KeyboardInterrupt (as Ctrl-C would) at one point."""

    def __init__(self, when: str, after: int = 1) -> None:
        self.when, self.after, self.calls = when, after, 0

    def stage(self, text: str) -> None:
        if self.when in text:
            raise KeyboardInterrupt

    @contextmanager
    def bar(self, total: int, desc: str):
        def advance(n: int = 1) -> None:
            if self.when in desc:
                self.calls += 1
                if self.calls >= self.after:
                    raise KeyboardInterrupt

        yield advance


@pytest.mark.parametrize(
    "recipe, when",
    [
        ("q8", "LLM -> Q8_0"),  # inside llama.cpp's quantizer (a C call in a thread)
        ("npu-int8", "calibrating"),  # inside onnxruntime's calibration
        ("q4", "texts (quantized)"),  # while measuring the new bundle
    ],
)
def test_interrupted_run_leaves_nothing_behind(tiny_llava_bundle, tmp_path, recipe, when):
    before = _digest(tiny_llava_bundle)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        quantize_bundle(tiny_llava_bundle, out, recipe, QuantizeOptions(threads=THREADS), _Interrupting(when))
    assert list(tmp_path.iterdir()) == [], "a partial bundle was left behind"
    assert _digest(tiny_llava_bundle) == before


def test_interrupted_run_keeps_an_existing_output(tiny_llava_bundle, quantized, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(quantized["q8"][0], out)
    before = _digest(out)
    with pytest.raises(KeyboardInterrupt):
        quantize_bundle(
            tiny_llava_bundle, out, "q4", QuantizeOptions(threads=THREADS, force=True), _Interrupting("vision graph")
        )
    assert _digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_library_errors_are_typed(tiny_llava_bundle, tmp_path):
    with pytest.raises(InputError):
        quantize_bundle(tiny_llava_bundle, tmp_path / "x", "nope")
    with pytest.raises(BundleError):
        quantize_bundle(tmp_path / "missing", tmp_path / "y", "q8")
    with pytest.raises(InputError):
        QuantizeOptions(threads=-1)


def test_whisper_bundle_quantizes_its_speech_graphs(tiny_whisper_bundle, tmp_path):
    import wave

    from edge.quantize.probes import probe_audio

    before = _digest(tiny_whisper_bundle)
    _, src = load_manifest(tiny_whisper_bundle)
    m = quantize_bundle(tiny_whisper_bundle, tmp_path / "w-q8", "q8", QuantizeOptions(threads=THREADS))
    assert _digest(tiny_whisper_bundle) == before
    report = m.provenance["fidelity"]
    assert m.audio.dtype == "int8" and m.llm is None and m.vision is None
    assert report["llm"] == {"skipped": "the bundle has no language model"}
    assert report["end_to_end"] == {"skipped": "the bundle has no language model"}
    audio = report["audio"]
    assert audio["dtype_before"] == "f32" and audio["bytes_after"] < audio["bytes_before"]
    for f in (m.audio.encoder, m.audio.decoder):
        assert m.files[f].bytes < src.files[f].bytes, f
    assert audio["clips"] == 4 and 0.99 < audio["cosine_mean"] < 1.0 and audio["max_abs_diff"] > 0
    assert audio["transcripts"]["clips"] == 4 and 0.0 <= audio["transcripts"]["identical_transcripts"] <= 1.0
    decoder = onnx.load(str(tmp_path / "w-q8" / m.audio.decoder)).graph
    ops = [n.op_type for n in decoder.node]
    # the tied logits projection has its own int8 copy (one scale per vocabulary row); the embedding
    # Gather reads the table as f16 (edge.quantize.speech_int8)
    assert "MatMulInteger" in ops and "Gemm" not in ops
    inits = {i.name: i for i in decoder.initializer}
    logits = next(n for n in decoder.node if n.op_type == "MatMulInteger" and inits.get(n.input[1], None) is not None
                  and inits[n.input[1]].dims[-1] == m.audio.vocab_size)  # fmt: skip
    assert list(inits[logits.input[3]].dims) == [m.audio.vocab_size]
    gathers = [n for n in decoder.node if n.op_type == "Gather" and n.input[0] in inits]
    assert any(inits[n.input[0]].data_type == onnx.TensorProto.FLOAT16 for n in gathers)
    wav = tmp_path / "clip.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((probe_audio()[2] * 32767).astype("<i2").tobytes())
    proc = run_cli("transcribe", str(tmp_path / "w-q8"), str(wav), "--json", "--threads", str(THREADS))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("quantize", str(tiny_whisper_bundle), "-o", str(tmp_path / "npu"), "--recipe", "npu-int8")
    assert proc.returncode == 2 and "does not apply" in _error_line(proc)


@pytest.mark.parametrize("family, recipe", [("idefics3", "npu-int8"), ("llava_next", "q8")])
def test_sliced_families_are_calibrated_and_measured_on_the_runtime_tiles(request, family, recipe, tmp_path):
    """Calibration and fidelity see the tiles the runtime's own scheme makes (under the probe
    budget), not a whole-image resize; the report says how many and under which budget."""
    from edge.runtime.vision.schemes import scheme_for

    bundle = request.getfixturevalue(f"tiny_{family}_bundle")
    root, m = load_manifest(bundle)
    images = probe_images(3)
    scheme = scheme_for(m.vision, root)
    tiles = list(fidelity.pixel_values(images, m.vision, root))
    for image, px in zip(images, tiles):
        np.testing.assert_array_equal(px, scheme.plan(image, PROBE_BUDGET).pixel_values)
    counts = [len(px) for px in tiles]
    assert sum(counts) > len(images) and max(counts) <= PROBE_BUDGET.max_tiles
    q = quantize_bundle(bundle, tmp_path / recipe, recipe, QuantizeOptions(threads=THREADS, generated_images=3))
    vision = q.provenance["fidelity"]["vision"]
    assert vision["images"] == 3 and vision["tiles"] == sum(counts)
    assert vision["budget"] == {"max_tiles": PROBE_BUDGET.max_tiles, "max_image_tokens": None, "max_upscale": None}
    assert vision.get("calibration_tiles") == (sum(counts) if recipe == "npu-int8" else None)
    assert 0.9 < vision["cosine_mean"] <= 1.0 and vision["image_cosine_min"] > 0.9
