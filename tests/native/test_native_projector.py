"""The native projector (edge/native/src/projector: llama.cpp's clip on edge's own tiles) against the
bundle's ONNX vision graph, on the same pixel values.

For tiny f32 bundles of each family the exporter wrote a projector GGUF for (``vision.projector_gguf``,
edge.export.mmproj), the Python runtime's pixel values for an image go (a) through the ONNX graph with
the runtime's own onnxruntime session (``VisionEncoder``) and (b) through ``edge-projector-encode`` (a
small C++ tool on ``edge::projector::Projector::encode``); the rows must agree to f32 rounding.
``edge-projector-errors`` (ctest ``projector_errors``) checks that bad files give errors, not aborts, in
the Release and in the sanitizer (ASan + leak check + UBSan) build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.bundle import load_manifest
from edge.options import Budget, OnnxOptions
from edge.runtime.vision.encoder import VisionEncoder
from edge.runtime.vision.schemes import scheme_for

sys.path.insert(0, str(Path(__file__).parent))
from native_support import SANITIZER_ENV, built, native_asan_build, native_build  # noqa: E402,F401

pytestmark = pytest.mark.slow

# family -> the conftest fixture of its tiny f32 bundle
FAMILIES = {
    "llava": "tiny_llava_bundle",
    "llava_next": "tiny_llava_next_bundle",
    "idefics3": "tiny_idefics3_bundle",
    "smolvlm": "tiny_smolvlm_bundle",
    "gemma3": "tiny_gemma3_bundle",
    "qwen2_5_vl": "tiny_qwen2_5_vl_w112_bundle",  # clip runs 112-px windows only
}
# Both sides run f32 weights in f32, except that ggml's CPU GELU and quick-GELU read a table of f16 values
# (GGML_GELU_FP16 in ggml-cpu/vec.h): an activation is off by up to one f16 rounding, 2**-11 ~ 4.9e-4 of
# its size. Measured (tiny f32 bundles, max |diff| / max |ref row value|): llava 5.0e-4, llava_next 5.5e-4,
# gemma3 1.1e-4, idefics3/smolvlm 4.9e-4, qwen2_5_vl 4.5e-4; cosine >= 0.9999997 everywhere. The bound is two
# f16 roundings of the largest value; a wrong layout, position or row order gives 1e-2 .. 1 (cosine < 0.999).
REL_TOL = 1e-3
MIN_COSINE = 0.99999


def encode_native(tool: Path, gguf: Path, pixels: np.ndarray, work: Path) -> tuple[np.ndarray, dict]:
    """Runs ``edge-projector-encode`` on ``pixels``; returns ``[n, tokens, dim]`` and its JSON line."""
    src, dst = work / "pixels.bin", work / "rows.bin"
    np.ascontiguousarray(pixels, dtype=np.float32).tofile(src)
    proc = subprocess.run(
        [str(tool), str(gguf), str(src), *map(str, pixels.shape), str(dst), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = np.fromfile(dst, dtype=np.float32).reshape(info["n"], info["tokens"], info["dim"])
    return rows, info


def aligned(native: np.ndarray, onnx: np.ndarray, alignment: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows that stand for the same thing on both sides. ``cls_last``: clip's LLaVA graph returns
    HF's patch rows 1..n-1 and then the class row (the manifest's projector note), so its first n-1 rows
    are compared with the graph's rows 1..n-1 and neither side's other row has a partner."""
    if alignment == "cls_last":
        return native[:, :-1], onnx[:, 1:]
    return native, onnx


def figures(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max abs diff and the smallest per-row cosine of two row sets."""
    x, y = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    cos = (x * y).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-30)
    return float(np.abs(x - y).max()), float(cos.min())


@pytest.fixture(scope="module")
def projector_tools(native_build) -> dict[str, Path]:  # noqa: F811 (the fixture)
    return {n: built(native_build, n) for n in ("edge-projector-encode", "edge-projector-errors")}


def test_bad_projector_files_give_errors(projector_tools, tmp_path):
    proc = subprocess.run(
        [str(projector_tools["edge-projector-errors"]), str(tmp_path / "work")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all projector error cases give an error" in proc.stdout


def test_bad_projector_files_under_sanitizers(native_asan_build, tmp_path):  # noqa: F811
    """The same cases with ASan (leaks fail, exit 23) and UBSan (stops at the first report)."""
    tool = built(native_asan_build, "edge-projector-errors")
    proc = subprocess.run(
        [str(tool), str(tmp_path / "work")], capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "all projector error cases give an error" in proc.stdout


def test_libedge_exports_no_clip_symbols(native_build):  # noqa: F811
    """clip.cpp is compiled into libedge with hidden visibility: none of its functions is exported, so they
    neither clash with nor bind to libmtmd's own copy (which exports clip_* with default visibility)."""
    lib = built(native_build, "libedge.so")
    proc = subprocess.run(["nm", "-D", "--defined-only", "-C", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    leaked = [line for line in proc.stdout.splitlines() if "clip_" in line or "edge::projector" in line]
    assert not leaked, leaked[:10]
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    assert "libmtmd" not in needed


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_projector_matches_onnx(family, request, projector_tools, photo, tmp_path):
    bundle = request.getfixturevalue(FAMILIES[family])
    root, manifest = load_manifest(bundle)
    spec = manifest.vision
    assert spec.projector_gguf, f"{family}: the exporter wrote no projector GGUF ({spec.projector_gguf_note})"
    gguf = root / manifest.files[spec.projector_gguf].path
    image = Image.open(photo).convert("RGB")
    plan = scheme_for(spec, root).plan(image, Budget())
    onnx = VisionEncoder(root, spec, OnnxOptions(threads=2))(plan.pixel_values)
    native, info = encode_native(projector_tools["edge-projector-encode"], gguf, plan.pixel_values, tmp_path)
    assert info["projector_type"] == spec.projector_gguf_type
    assert info["n_embd"] == spec.embed_dim
    assert native.shape[0] == onnx.shape[0], (native.shape, onnx.shape)
    alignment = manifest.provenance.get("parity", {}).get("mmproj_row_alignment", "same")
    ours, ref = aligned(native, onnx, alignment)
    assert ours.shape == ref.shape, (native.shape, onnx.shape, alignment)
    diff, cos = figures(ours, ref)
    print(
        f"\n{family}: projector {info['projector_type']} tiles {onnx.shape[0]} rows {onnx.shape[1]} "
        f"dim {onnx.shape[2]} "
        f"alignment {alignment}: max_abs_diff {diff:.3g} (ref max {np.abs(ref).max():.3g}) cosine_min {cos:.8f}"
    )
    assert diff <= REL_TOL * float(np.abs(ref).max()) and cos >= MIN_COSINE, (family, diff, cos)


def test_projector_refuses_wrong_tiles(request, projector_tools, tmp_path):
    """A tile of another size is an error with a message, not an abort inside ggml."""
    bundle = request.getfixturevalue(FAMILIES["llava"])
    root, manifest = load_manifest(bundle)
    assert manifest.vision.projector_gguf, manifest.vision.projector_gguf_note
    gguf = root / manifest.files[manifest.vision.projector_gguf].path
    tool = projector_tools["edge-projector-encode"]
    bad = np.zeros((1, 3, 7, 9), np.float32)
    bad.tofile(tmp_path / "bad.bin")
    proc = subprocess.run(
        [str(tool), str(gguf), str(tmp_path / "bad.bin"), "1", "3", "7", "9", str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "takes" in proc.stderr, proc.stderr
    short = [str(tool), str(gguf), str(tmp_path / "bad.bin"), "2", "3", "7", "9", str(tmp_path / "out.bin")]
    proc = subprocess.run(short, capture_output=True, text=True)
    assert proc.returncode == 1 and "does not match" in proc.stderr, proc.stderr
