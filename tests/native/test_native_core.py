"""The native library's core (edge/native: manifest, LLM session, C ABI) against the Python runtime.

* ctest passes in the Release build and in the ASan + UBSan build (leaks fail);
* parity: for the tiny f32 bundle of every registered VLM family, libedge's greedy tokens with an image
  (driven through ctypes, the encoder callback running the bundle's ONNX vision graph with the Python
  runtime's own onnxruntime session on the pixels libedge hands it) equal ``edge run --json``'s, up to a
  near-tie of the reference; ``edge-native-run`` gives the same tokens from the same embeddings;
* a second chat turn reuses the KV cache and answers as the Python ChatSession does;
* robustness under the sanitizers: missing files, a truncated GGUF, hostile manifests, 0x0 and
  enormous images, a callback that fails: an error code and a one-line message each, no crash, no leak.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import native_support  # noqa: E402
from conftest import THREADS, run_cli  # noqa: E402
from native_support import SANITIZER_ENV, Libedge, NativeError, NativeSession, built  # noqa: E402

from edge.export.registry import families  # noqa: E402

pytestmark = pytest.mark.slow
# the session builds of edge/native (tests/native/native_support.py)
native_build = native_support.native_build
native_asan_build = native_support.native_asan_build

VLM_FAMILIES = sorted(name for name, spec in families().items() if spec.vision is not None)
PROMPT = "Describe the image."
N_TOKENS = 12
NEAR_TIE = 0.01  # top-2 logit gap of the reference at a step where the answers may part (tests/real/test_smollm2)
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")


def _ctest(build: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure", "-j1"],
                          capture_output=True, text=True, timeout=1800, env=env)  # fmt: skip


def test_ctest_release(native_build):
    proc = _ctest(native_build, ENV)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "edge-core" in proc.stdout


def test_ctest_sanitized(native_asan_build):
    proc = _ctest(native_asan_build, dict(os.environ, **SANITIZER_ENV))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_only_the_c_api_is_exported(native_build):
    """libedge exports the edge_* functions of edge.h and nothing else (clip, nlohmann, the core stay hidden)."""
    lib = built(native_build, "libedge.so")
    proc = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
    header = (Path(__file__).resolve().parents[2] / "edge/native/include/edge.h").read_text()
    assert names and all(n.startswith("edge_") and n in header for n in names), sorted(names)[:20]


@pytest.fixture(scope="session")
def libedge(native_build) -> Libedge:
    return Libedge(built(native_build, "libedge.so"))


def _onnx_encoder(bundle: Path):
    """The bundle's vision graph through the Python runtime's session code (VisionEncoder)."""
    from edge.bundle import load_manifest
    from edge.options import OnnxOptions
    from edge.runtime.vision.encoder import VisionEncoder

    root, m = load_manifest(bundle)
    return VisionEncoder(root, m.vision, OnnxOptions(threads=int(THREADS)))


def _has_affixes(bundle: Path) -> bool:
    return json.loads((bundle / "manifest.json").read_text())["llm"].get("chat_affixes") is not None


def _reference_gap(bundle: Path, photo: Path, prompt: str, template: bool, tokens: list, k: int) -> float:
    """The Python runtime's top-2 logit gap at answer step ``k`` (its tokens before ``k`` are ``tokens[:k]``)."""
    import edge
    from edge.options import GenerateOptions

    pipe = edge.load(bundle, threads=int(THREADS))
    try:
        pipe.generate(prompt, [str(photo)], GenerateOptions(max_tokens=max(k, 1), template=template))
        if k == 0:  # the prompt's logits: evaluate its last token again
            last = pipe._seq[-1]
            pipe.llm.rewind(pipe.llm.n_past - 1)
            logits = pipe.llm.eval_tokens([last])
        else:  # the last answer token was sampled but not fed
            logits = pipe.llm.eval_tokens([tokens[k - 1]])
    finally:
        pipe.close()
    top2 = np.sort(logits)[-2:]
    return float(top2[1] - top2[0])


def _same_up_to_near_tie(ours: list, ref: list, gap_at) -> None:
    diverge = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    if diverge is None:
        assert ours == ref
        return
    gap = gap_at(diverge)
    assert gap < NEAR_TIE, f"tokens differ at {diverge} without a near-tie (reference gap {gap:.4g}): {ours} vs {ref}"


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_callback_parity_with_edge_run(family, request, libedge, native_build, photo, tmp_path):
    _check_callback_parity(request.getfixturevalue(f"tiny_{family}_bundle"), libedge, native_build, photo, tmp_path)


@pytest.mark.parametrize("recipe", ["q8", "q4"])
def test_quantized_bundle_parity_with_edge_run(recipe, tiny_llava_bundle, libedge, native_build, photo, tmp_path):
    """A quantized LLM (Q8_0, Q4_K_M) and int8 vision graph: the same tokens as ``edge run`` on that bundle. On
    CPUs with AMX, ggml's extra buffer types crash on quantized weights; libedge must load them without,
    as the Python runtime does."""
    out = tmp_path / recipe
    proc = run_cli("quantize", str(tiny_llava_bundle), "-o", str(out), "--recipe", recipe, "--threads", THREADS)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["llm"]["dtype"] != "f32"
    _check_callback_parity(out, libedge, native_build, photo, tmp_path)


def _check_callback_parity(bundle: Path, libedge, native_build: Path, photo: Path, tmp_path: Path) -> None:
    template = _has_affixes(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    prompt = PROMPT if template else manifest["prompt"]["image_marker"] + "\n" + PROMPT
    flags = [] if template else ["--no-template"]
    ref = run_cli("run", str(bundle), "--image", str(photo), "--prompt", prompt, "--json", "-n", str(N_TOKENS),
                  "-t", THREADS, *flags)  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    ref_tokens = json.loads(ref.stdout)["tokens"]

    encoder = _onnx_encoder(bundle)
    session = NativeSession(libedge, bundle, encode=encoder)
    try:
        session.add_image(np.asarray(Image.open(photo).convert("RGB")))
        if template:
            session.add_message("user", prompt)
        else:
            session.add_text(prompt)
        out = session.generate(max_tokens=N_TOKENS)
    finally:
        session.close()
    assert not session.errors, session.errors
    assert out["vision_path"] == "callback" and out["timings"]["tiles"] >= 1
    assert out["timings"]["images"] == 1 and out["timings"]["image_tokens"] > 0
    assert [t for t, _ in session.streamed if t >= 0] == out["tokens"]
    _same_up_to_near_tie(
        out["tokens"], ref_tokens, lambda k: _reference_gap(bundle, photo, prompt, template, ref_tokens, k)
    )

    # the example program, fed the same embeddings from a file, decodes the PNG itself and answers the same
    emb = tmp_path / "embeddings.f32"
    np.concatenate([e.reshape(-1) for e in session.returned]).astype("<f4").tofile(emb)
    tool = built(native_build, "edge-native-run")
    cmd = [str(tool), str(bundle), "--image", str(photo), "--prompt", prompt, "--json", "--max-tokens", str(N_TOKENS),
           "--threads", THREADS, "--vision", "callback-file", "--embeddings", str(emb), *flags]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tokens"] == out["tokens"]


# The projector fixtures: the 32-px-window Qwen tower gets no projector GGUF (clip runs 112-px windows only).
PROJECTOR_BUNDLES = {f: f"tiny_{f}_bundle" for f in VLM_FAMILIES} | {"qwen2_5_vl": "tiny_qwen2_5_vl_w112_bundle"}


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_projector_parity_with_edge_run(family, request, libedge, photo):
    """The projector path (the bundle's mmproj GGUF through llama.cpp's clip, edge/native/src/projector):
    greedy tokens equal ``edge run``'s up to a near-tie of the reference. Where llama.cpp's graph cannot give
    transformers' rows (LLaVA's clip appends the class row and drops patch 0: ``mmproj_row_alignment``
    "cls_last", one row per tile) the path must still run and answer; the projector test measures the rest."""
    from native_support import VISION_PROJECTOR

    bundle = request.getfixturevalue(PROJECTOR_BUNDLES[family])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["vision"].get("projector_gguf"), manifest["vision"].get("projector_gguf_note")
    rows = manifest["provenance"]["parity"]["mmproj_row_alignment"]
    template = _has_affixes(bundle)
    prompt = PROMPT if template else manifest["prompt"]["image_marker"] + "\n" + PROMPT
    flags = [] if template else ["--no-template"]
    ref = run_cli("run", str(bundle), "--image", str(photo), "--prompt", prompt, "--json", "-n", str(N_TOKENS),
                  "-t", THREADS, *flags)  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    ref_tokens = json.loads(ref.stdout)["tokens"]
    session = NativeSession(libedge, bundle, vision=VISION_PROJECTOR)
    try:
        session.add_image(np.asarray(Image.open(photo).convert("RGB")))
        session.add_message("user", prompt) if template else session.add_text(prompt)
        out = session.generate(max_tokens=N_TOKENS)
    finally:
        session.close()
    assert out["vision_path"] == "projector" and out["timings"]["tiles"] >= 1
    if rows == "cls_last":
        assert len(out["tokens"]) >= 1 and out["finish_reason"] in ("length", "stop")
        return
    assert rows == "same"
    _same_up_to_near_tie(
        out["tokens"], ref_tokens, lambda k: _reference_gap(bundle, photo, prompt, template, ref_tokens, k)
    )


def test_second_turn_reuses_the_cache_like_chat_session(libedge, tiny_llava_bundle, photo):
    """Two chat turns: the second evaluates only what is new and answers as runtime/chat.py ChatSession."""
    import edge
    from edge.options import GenerateOptions

    if not _has_affixes(tiny_llava_bundle):
        pytest.fail("the tiny llava bundle has no chat affixes (llm.chat_affixes)")
    opts = GenerateOptions(max_tokens=6)
    pipe = edge.load(tiny_llava_bundle, threads=int(THREADS))
    try:
        chat = pipe.chat()
        first = [ev for ev in chat.send(PROMPT, [str(photo)], opts)][-1]
        second = [ev for ev in chat.send("And the colours?", (), opts)][-1]
    finally:
        pipe.close()
    session = NativeSession(libedge, tiny_llava_bundle, encode=_onnx_encoder(tiny_llava_bundle))
    try:
        session.add_image(np.asarray(Image.open(photo).convert("RGB")))
        session.add_message("user", PROMPT)
        one = session.generate(max_tokens=6)
        session.add_message("user", "And the colours?")
        two = session.generate(max_tokens=6)
    finally:
        session.close()
    assert one["tokens"] == first.tokens
    assert two["tokens"] == second.tokens
    assert two["timings"]["reused_tokens"] > 0 and two["timings"]["reused_tokens"] == second.timings.reused_tokens
    assert len(session.returned) == 1  # the image was encoded once, for both turns


def test_callback_error_and_bad_images_through_ctypes(libedge, tiny_llava_bundle):
    def broken(px):
        raise RuntimeError("no NPU today")

    session = NativeSession(libedge, tiny_llava_bundle, encode=broken)
    try:
        for rgb in (np.zeros((0, 0, 3), np.uint8), np.zeros((1, 0, 3), np.uint8)):
            with pytest.raises(NativeError) as err:
                session.add_image(rgb)
            assert err.value.status == "EDGE_ERR_IMAGE" and "no pixels" in err.value.message
        session.add_image(np.zeros((20, 30, 3), np.uint8))
        session.add_text("<image>\nWhat is it?")
        with pytest.raises(NativeError) as err:
            session.generate()
        assert err.value.status == "EDGE_ERR_VISION" and "callback returned" in err.value.message
        assert len(session.errors) == 1
    finally:
        session.close()


def _asan_run(tool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **SANITIZER_ENV))  # fmt: skip


def _assert_clean(proc: subprocess.CompletedProcess) -> None:
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation", "terminate called"):
        assert bad not in proc.stderr, proc.stderr[-3000:]


def test_robustness_under_sanitizers(native_asan_build, tiny_llava_bundle):
    """0x0 and enormous images, a short buffer, a failing callback, a cancel from another thread."""
    proc = _asan_run(built(native_asan_build, "edge-core-robust"), str(tiny_llava_bundle))
    _assert_clean(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "0 failure(s)" in proc.stdout and "ok callback error: EDGE_ERR_VISION" in proc.stdout


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    text = edit(path.read_text())
    path.write_text(text)


HOSTILE_MANIFESTS = {
    "wrong type": (lambda t: t.replace('"n_embd": 64', '"n_embd": "64"', 1), "manifest.llm.n_embd"),
    "huge number": (lambda t: t.replace('"n_embd": 64', '"n_embd": 123456789012345678901234567890', 1), "n_embd"),
    "deep nesting": (
        lambda t: t.replace('"provenance": {', '"provenance": {"x": ' + "[" * 5000 + "]" * 5000 + ",", 1),
        "nesting",
    ),  # fmt: skip
    "not json": (lambda t: t[: len(t) // 2], "not valid JSON"),
    "unknown schema": (lambda t: t.replace('"schema_version": 2', '"schema_version": 99', 1), "schema_version"),
    "path escape": (lambda t: t.replace('"path": "llm.gguf"', '"path": "../llm.gguf"', 1), "leaves the bundle"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifests_under_sanitizers(case, native_asan_build, tiny_llava_bundle, photo, tmp_path):
    bundle = _copy(tiny_llava_bundle, tmp_path / "b")
    edit, words = HOSTILE_MANIFESTS[case]
    before = (bundle / "manifest.json").read_text()
    _edit_manifest(bundle, edit)
    assert (bundle / "manifest.json").read_text() != before, "the edit did not apply"
    proc = _asan_run(built(native_asan_build, "edge-native-run"), str(bundle), "--image", str(photo), "--prompt", "x")
    _assert_clean(proc)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "EDGE_ERR_BUNDLE" in lines[0], proc.stderr
    assert words in lines[0]


def test_missing_and_truncated_files_under_sanitizers(native_asan_build, tiny_llava_bundle, photo, tmp_path):
    tool = built(native_asan_build, "edge-native-run")
    missing = _copy(tiny_llava_bundle, tmp_path / "missing")
    (missing / "llm.gguf").unlink()
    cases = {"missing": (missing, "EDGE_ERR_IO", "is missing")}
    # a truncated GGUF whose manifest still has the full size: the size check names it
    short = _copy(tiny_llava_bundle, tmp_path / "short")
    data = (short / "llm.gguf").read_bytes()
    (short / "llm.gguf").write_bytes(data[: len(data) // 3])
    cases["truncated"] = (short, "EDGE_ERR_BUNDLE", "truncated")
    # a truncated GGUF whose manifest was edited to match: llama.cpp's loader must refuse it, not crash
    edited = _copy(short, tmp_path / "edited")
    _edit_manifest(edited, lambda t: t.replace(f'"bytes": {len(data)}', f'"bytes": {len(data) // 3}', 1))
    cases["truncated, manifest edited"] = (edited, "EDGE_ERR_BACKEND", "cannot load")
    for name, (bundle, status, words) in cases.items():
        proc = _asan_run(tool, str(bundle), "--image", str(photo), "--prompt", "x", "--no-template")
        _assert_clean(proc)
        assert proc.returncode == 2, (name, proc.stderr)
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and status in line and words in line, (name, proc.stderr)
