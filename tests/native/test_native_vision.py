"""The native image schemes (edge/native/src/vision) against the Python runtime's, on golden vectors.

A session fixture writes the golden vectors (:mod:`golden_vectors`: plans, pixel arrays, feeds and
layouts of every scheme for many image sizes and budgets, the resamplers on every filter, the image
errors) with the Python runtime; ``edge-vision-golden`` recomputes them in C++ and compares plans and
layouts exactly and pixel values bit for bit; ``edge-vision-unit`` (ctest ``edge_vision_unit``) checks the
edge cases (0x0 and enormous images, budgets below the smallest plan, bad manifests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import native_support  # noqa: E402  (native-core's session builds)
from golden_vectors import write_golden  # noqa: E402

built = native_support.built
native_build = native_support.native_build  # the session fixture: the Release build of edge/native

pytestmark = pytest.mark.slow

SCHEMES = ("clip", "idefics3", "anyres", "gemma3", "qwen2vl", "uhd")


@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vision-golden")
    write_golden(root)
    return root


def _run(tool: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    return proc, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def test_native_schemes_reproduce_the_golden_vectors(native_build, golden_dir):
    proc, summary = _run(built(native_build, "edge-vision-golden"), str(golden_dir))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    groups = summary["groups"]
    for name in SCHEMES:
        g = groups[name]
        # every plan, layout, pixel array and error of the scheme equal (pixels bit for bit)
        assert g["plans"] >= 30 and g["plans_same"] == g["plans"], (name, g)
        assert g["layouts_same"] == g["layouts"] == g["plans"], (name, g)
        assert g["pixel_arrays"] >= 20 and g["pixel_arrays_same"] == g["pixel_arrays"], (name, g)
        assert g["errors"] >= 3 and g["errors_same"] == g["errors"], (name, g)
    assert groups["qwen2vl"]["feeds_same"] == groups["qwen2vl"]["feeds"] == groups["qwen2vl"]["plans"]
    for engine in ("pil_resize", "torch_resize"):
        assert groups[engine]["arrays"] >= 16 and groups[engine]["arrays_same"] == groups[engine]["arrays"]
    assert groups["image_errors"]["errors_same"] == groups["image_errors"]["errors"] == 3


def test_golden_checker_catches_differences(native_build, golden_dir, tmp_path):
    """The checker is not vacuous: a changed text piece, plan value, pixel and digest each fail."""
    index = json.loads((golden_dir / "index.json").read_text())
    picked = {}
    for c in index["cases"]:
        scheme = c.get("vision", {}).get("preprocess", {}).get("scheme")
        px = c.get("pixels")
        if c["kind"] == "scheme" and px and "digest" not in px and "raw" not in picked:
            picked["raw"] = c
        elif c["kind"] == "scheme" and px and "digest" in px and "digest" not in picked:
            picked["digest"] = c
        elif scheme == "idefics3" and "layout" in c and "text" not in picked:
            picked["text"] = c
        elif scheme == "anyres" and "info" in c and "info" not in picked:
            picked["info"] = c
    assert len(picked) == 4
    picked["digest"]["pixels"]["digest"] = str(int(picked["digest"]["pixels"]["digest"]) ^ 1)
    picked["text"]["layout"][0]["text"] += "x"
    picked["info"]["info"]["upscale"] += 1e-12
    blob = bytearray((golden_dir / "arrays.bin").read_bytes())
    blob[picked["raw"]["pixels"]["offset"] + 4 * 3] ^= 1  # one bit of one float
    for name in os.listdir(golden_dir):
        if name.endswith((".rgb", ".npy")):
            (tmp_path / name).symlink_to(golden_dir / name)
    (tmp_path / "arrays.bin").write_bytes(bytes(blob))
    (tmp_path / "index.json").write_text(json.dumps({**index, "cases": list(picked.values())}))
    proc, summary = _run(built(native_build, "edge-vision-golden"), str(tmp_path))
    assert proc.returncode == 1 and summary["failures"] == 4, proc.stdout


def test_native_vision_edge_cases(native_build):
    proc = subprocess.run([str(built(native_build, "edge-vision-unit"))], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
