"""``edge bench --native`` works end to end on the tiny LLaVA bundle (not a benchmark: no figure is
compared with a bound): the native example, ``edge run`` and llama.cpp's libmtmd path each run in
fresh processes, alternated, with medians, spread and ratios; a bad build folder is one error line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import THREADS, run_cli  # noqa: E402
from native_support import native_build  # noqa: E402,F401

pytestmark = pytest.mark.slow


def test_edge_bench_native_json(native_build, tiny_llava_bundle, photo):  # noqa: F811
    proc = run_cli(
        "bench", str(tiny_llava_bundle), "--native", "--native-build", str(native_build), "--json",
        "--repeats", "2", "--quick", "--image", str(photo), "--threads", THREADS, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert set(r["sides"]) == {"native", "python", "llama.cpp"}
    for name, side in r["sides"].items():
        assert "not_available" not in side, (name, side)
        assert len(side["runs"]) == 2
        med = side["median"]
        assert med["ttft_ms"] > 0 and med["decode_tok_s"] > 0 and med["peak_rss_mb"] > 0, (name, med)
        assert med["encode_ms"] > 0 and side["max"]["ttft_ms"] >= med["ttft_ms"] >= side["min"]["ttft_ms"]
    for name in ("native", "python"):
        assert r["sides"][name]["runs"][0]["tiles"] == 1 and r["sides"][name]["median"]["encode_ms_per_tile"] > 0
    assert set(r["ratios"]) == {"native_vs_python", "native_vs_llama.cpp"}
    assert r["ratios"]["native_vs_python"]["ttft_ms"] > 0


def test_edge_bench_native_without_a_build_is_one_error_line(tiny_llava_bundle, tmp_path):
    for args in ([], ["--native-build", str(tmp_path / "missing")], ["--native-build", str(tmp_path)]):
        proc = run_cli("bench", str(tiny_llava_bundle), "--native", *args, timeout=120)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "native" in lines[0], proc.stderr
