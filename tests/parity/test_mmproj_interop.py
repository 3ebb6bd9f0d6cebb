"""The bundle's mmproj GGUF (edge.export.mmproj) with llama.cpp's own tools.

- every tiny f32 bundle of a family llama.cpp knows carries ``mmproj.gguf``, listed in ``files``, with its
  parity figures against transformers (libmtmd's rows on a probe image whose pixels agree);
- llama-cpp-python's mtmd path (libmtmd + clip, :class:`edge.runtime.mtmd_backend.MtmdSession`) loads the
  bundle's LLM GGUF and mmproj GGUF, evaluates an image + prompt and answers with greedy tokens. They are
  not compared with ``edge run``'s: libmtmd lays images out with its own tokens and preprocessing (see
  docs/native.md, "Running an edge bundle with llama.cpp's tools"), so the prompts differ;
- the writer agrees with llama.cpp's own converter (``convert_hf_to_gguf.py --mmproj``; for LLaVA with a
  CLIP tower, the legacy ``convert_image_encoder_to_gguf.py``): tensor names and shapes, and the ``clip.*``
  key set and values where they are deterministic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from tests.fetch_llama_sources import DEFAULT_DEST

BUNDLES = {
    "llava": "tiny_llava_bundle",
    "llava_next": "tiny_llava_next_bundle",
    "idefics3": "tiny_idefics3_bundle",
    "smolvlm": "tiny_smolvlm_bundle",
    "gemma3": "tiny_gemma3_bundle",
    "qwen2_5_vl": "tiny_qwen2_5_vl_w112_bundle",  # clip runs 112-px windows only
}
SOURCES = {name: fixture.replace("_bundle", "_dir") for name, fixture in BUNDLES.items()}
# families whose clip graph gives transformers' rows on the probe (all: Idefics3's position table is written in
# the order transformers 4.57 numbers a tile's patches, see export/mmproj_maps.py)
WITHIN = set(BUNDLES)
PROMPT_MARKER = "USER: {marker}\nWhat is in the picture? ASSISTANT:"


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


@pytest.mark.parametrize("family", sorted(BUNDLES))
def test_bundle_carries_the_projector_gguf_with_parity_figures(family, request):
    bundle = request.getfixturevalue(BUNDLES[family])
    m = _manifest(bundle)
    vision = m["vision"]
    assert vision["projector_gguf"] == "mmproj.gguf"
    assert vision["projector_gguf_dtype"] == "f32"
    assert vision["projector_gguf"] in m["files"]
    assert m["files"]["mmproj.gguf"]["bytes"] == (bundle / "mmproj.gguf").stat().st_size
    figures = m["provenance"]["parity"]
    assert figures["mmproj_tiles_compared"] >= 1
    if family in WITHIN:
        assert figures["mmproj_within_tolerance"] is True
        assert figures["mmproj_cosine_min"] > 0.9999
        assert figures["mmproj_max_abs_diff"] < 1e-2 * max(1.0, figures["mmproj_ref_max_abs"])


@pytest.mark.parametrize("family", sorted(BUNDLES))
def test_llama_cpp_mtmd_answers_with_the_bundle_files(family, request):
    from edge.runtime.mtmd_backend import MtmdSession

    bundle = request.getfixturevalue(BUNDLES[family])
    side = _manifest(bundle)["provenance"]["parity"]["mmproj_probe_image"]
    rgb = (np.random.default_rng(3).random((side[1], side[0], 3)) * 255).astype(np.uint8)
    with MtmdSession(bundle / "llm.gguf", bundle / "mmproj.gguf", threads=2) as mm:
        rows = mm.encode(rgb)
        assert rows and all(r.shape[1] == mm.n_embd and np.isfinite(r).all() for r in rows)
        first = mm.generate(PROMPT_MARKER.format(marker=mm.marker), rgb, max_tokens=8)
        again = mm.generate(PROMPT_MARKER.format(marker=mm.marker), rgb, max_tokens=8)
    assert first == again  # greedy and deterministic: the same answer twice from a cleared context
    n_vocab = _manifest(bundle)["llm"]["n_vocab"]
    assert all(0 <= t < n_vocab for t in first)


def test_no_mmproj_skips_the_file(tiny_llava_dir, tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "b"
    proc = run_cli("export", str(tiny_llava_dir), "-o", str(out), "--dtype", "f32", "--threads", "2", "--no-mmproj")
    assert proc.returncode == 0, proc.stderr
    vision = _manifest(out)["vision"]
    assert vision["projector_gguf"] is None and "--no-mmproj" in vision["projector_gguf_note"]
    assert not (out / "mmproj.gguf").exists()


# --- against llama.cpp's own converters ------------------------------------------------------------------


def _tree() -> Path:
    tree = DEFAULT_DEST / f"llama_cpp_python-{version('llama-cpp-python')}" / "vendor" / "llama.cpp"
    if not (tree / "convert_hf_to_gguf.py").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"llama.cpp's sources are missing at {tree} (python tests/fetch_llama_sources.py)")
        pytest.skip(f"llama.cpp's sources are not at {tree} (python tests/fetch_llama_sources.py)")
    return tree


def _read(path: Path) -> tuple[dict, dict]:
    import gguf

    r = gguf.GGUFReader(str(path))
    keys = {k: v.contents() for k, v in r.fields.items() if k.startswith("clip.")}
    tensors = {t.name: tuple(int(x) for x in t.shape) for t in r.tensors}
    return keys, tensors


def _converted(family: str, src: Path, dst: Path) -> Path:
    tree = _tree()
    if family == "llava":
        from edge.benchmarks.convert import _mmproj_llava_legacy

        _mmproj_llava_legacy(src, dst, tree)
        return dst
    src = _with_architectures(src, dst.parent / "src")
    env = dict(os.environ, PYTHONPATH=str(tree / "gguf-py"))
    args = [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(src), "--mmproj", "--outtype", "f32"]
    proc = subprocess.run([*args, "--outfile", str(dst)], cwd=tree, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dst


def _with_architectures(src: Path, work: Path) -> Path:
    """``src``, or a linked copy whose config names its transformers class (the converter finds the model
    by ``architectures``, which some tiny builders' configs leave out)."""
    config = json.loads((src / "config.json").read_text())
    if config.get("architectures"):
        return src
    from edge.export.registry import spec_for

    work.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            (work / f.name).symlink_to(f)
    config["architectures"] = [spec_for(config["model_type"]).model_class]
    (work / "config.json").write_text(json.dumps(config))
    return work


# keys only one side writes: the legacy converter's two-tower flags and its explicit "no GELU"
_ONLY_LEGACY = {"clip.has_text_encoder", "clip.use_gelu"}
# keys only we write: Qwen2.5-VL's merge size (clip reads it, defaulting to 2; the converter leaves it out)
_ONLY_OURS = {"clip.vision.spatial_merge_size"}
# values that differ on purpose: the legacy converter writes CLIP's own projection_dim (clip reads the
# LLM width from the projector), the modern one Qwen's text rms_norm_eps for the tower (HF's vision
# RMSNorm uses 1e-6, which we write)
_VALUES_DIFFER = {"llava": {"clip.vision.projection_dim"}, "qwen2_5_vl": {"clip.vision.attention.layer_norm_epsilon"}}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "idefics3", "smolvlm", "gemma3", "qwen2_5_vl"])
def test_writer_matches_llama_cpp_converter(family, request, tmp_path):
    bundle = request.getfixturevalue(BUNDLES[family])
    src = request.getfixturevalue(SOURCES[family])
    ref_keys, ref_tensors = _read(_converted(family, src, tmp_path / "ref.gguf"))
    keys, tensors = _read(bundle / "mmproj.gguf")
    if family == "llava":  # the legacy converter names fc1 ffn_down (clip swaps such files back on load)
        swap = {"ffn_up": "ffn_down", "ffn_down": "ffn_up"}
        ref_tensors = {_swap(n, swap): s for n, s in ref_tensors.items()}
        ref_keys = {k: v for k, v in ref_keys.items() if k not in _ONLY_LEGACY}
    assert set(tensors) == set(ref_tensors)
    assert {n: s for n, s in tensors.items()} == ref_tensors
    assert set(keys) - _ONLY_OURS == set(ref_keys)
    for k in set(keys) - _ONLY_OURS:
        if k in _VALUES_DIFFER.get(family, ()):
            continue
        a, b = keys[k], ref_keys[k]
        if isinstance(a, list) and a and isinstance(a[0], float):
            assert np.allclose(a, b), k
        elif isinstance(a, float):
            assert a == pytest.approx(b), k
        else:
            assert a == b, k


def _swap(name: str, swap: dict) -> str:
    for a, b in swap.items():
        if f".{a}." in name:
            return name.replace(f".{a}.", f".{b}.")
    return name


def test_a_qwen_tower_with_other_windows_gets_no_projector(tiny_qwen2_5_vl_bundle):
    vision = _manifest(tiny_qwen2_5_vl_bundle)["vision"]
    assert vision["projector_gguf"] is None
    assert "112-px windows" in vision["projector_gguf_note"]
    assert "mmproj.gguf" not in _manifest(tiny_qwen2_5_vl_bundle)["files"]
