"""Smoke tests of the TTFT-breakdown, memory and overlap benchmarks, and of the one-shot release.

Not benchmarks: no figure is compared with a bound; the tiny Idefics3 bundle keeps them fast.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import edge
from edge.options import RuntimeOptions


def _bench(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"edge.benchmarks.{module}", *args], capture_output=True, text=True, timeout=timeout
    )


def test_ttft_breakdown_edge_only(tiny_idefics3_bundle, photo, tmp_path):
    out = tmp_path / "ttft.json"
    proc = _bench(
        "ttft_breakdown",
        "--bundle", f"a={tiny_idefics3_bundle}",
        "--variant", 'os={"one_shot": true}',
        "--peers", "none", "--rounds", "2", "--warmup", "0", "--image", str(photo),
        "--work", str(tmp_path), "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert set(r["sides"]) == {"edge[a]", "edge[a:os]"}
    for side in r["sides"].values():
        assert side["ttft_ms"]["n"] == 2 and side["ttft_ms"]["min"] <= side["ttft_ms"]["median"]
        for s in side["samples"]:
            assert s["ttft_ms"] >= s["encode_ms"] > 0 and s["prefill_ms"] > 0
            assert s["image_load_ms"] > 0 and s["slice_ms"] > 0
            assert s["preprocess_ms"] >= s["image_load_ms"] + s["slice_ms"] - 1e-6
    assert "| edge[a] |" in proc.stdout


def test_ttft_breakdown_rejects_bad_arguments(tmp_path):
    proc = _bench("ttft_breakdown", "--peers", "none", "--work", str(tmp_path))
    assert proc.returncode == 2 and "give at least one --bundle" in proc.stderr
    proc = _bench("ttft_breakdown", "--bundle", "x", "--work", str(tmp_path))
    assert proc.returncode == 2 and "NAME=VALUE" in proc.stderr


def test_memory_edge_only(tiny_idefics3_bundle, photo, tmp_path):
    out = tmp_path / "mem.json"
    proc = _bench(
        "memory",
        "--bundle", f"a={tiny_idefics3_bundle}", "--variant", 'long={"one_shot": false}',
        "--peers", "none", "--rounds", "1", "--image", str(photo), "--work", str(tmp_path), "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert set(r["sides"]) == {"edge[a]", "edge[a:long]"}
    assert r["sides"]["edge[a]"]["peak_rss"]["median"] > 0  # `edge run` itself: the peak only
    long = r["sides"]["edge[a:long]"]
    assert long["peak_rss"]["median"] >= long["loaded_rss"]["median"] > 0


def test_overlap_modes(tiny_idefics3_bundle, photo, tmp_path):
    out = tmp_path / "overlap.json"
    proc = _bench(
        "overlap", str(tiny_idefics3_bundle), "--tiles", "2", "--rounds", "1", "--image", str(photo),
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["modes"]["sequential"]["ratio"]["median"] == 1.0
    assert {"split 1+1", "shared 2+2"} <= set(r["modes"])


def test_one_shot_releases_the_vision_session(tiny_idefics3_bundle, photo):
    """A one-shot pipeline frees the vision session after encoding and gives the same tokens;
    a second request reopens it."""
    opts = RuntimeOptions.simple(threads=2)
    with_release = edge.load(tiny_idefics3_bundle, dataclasses.replace(opts, one_shot=True))
    kept = edge.load(tiny_idefics3_bundle, opts)
    try:
        a = with_release.generate("Describe.", [str(photo)], edge.GenerateOptions(max_tokens=8))
        assert with_release.vision.released
        b = kept.generate("Describe.", [str(photo)], edge.GenerateOptions(max_tokens=8))
        assert not kept.vision.released
        assert a.tokens == b.tokens
        assert with_release.placement["vision"].as_dict() == kept.placement["vision"].as_dict()
        with_release.reset()
        c = with_release.generate("Describe.", [str(photo)], edge.GenerateOptions(max_tokens=8))
        assert c.tokens == a.tokens
    finally:
        with_release.close()
        kept.close()


def test_edge_bench_ttft_memory(tiny_idefics3_bundle, photo, tmp_path):
    from conftest import run_cli

    proc = run_cli(
        "bench", str(tiny_idefics3_bundle), "--ttft-memory", "--peers", "none", "--repeats", "1",
        "--image", str(photo), "--threads", "2", "--work", str(tmp_path), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["ttft"]["sides"]["edge[bundle]"]["ttft_ms"]["n"] == 1
    assert r["memory"]["sides"]["edge[bundle]"]["peak_rss"]["median"] > 0
