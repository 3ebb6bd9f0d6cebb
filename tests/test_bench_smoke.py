"""The benchmark harness works end to end (not a benchmark: no figure is compared with a bound).

``edge bench`` on the tiny LLaVA bundle with llama.cpp as the only peer: without the
HF source llama.cpp can only run B3 on the bundle's own GGUF, which exercises the
alternating schedule with two worker processes and the "not measured" path.
"""

from __future__ import annotations

import json

from conftest import run_cli


def test_edge_bench_quick_json(tiny_llava_bundle, photo, tmp_path):
    report = tmp_path / "report.md"
    proc = run_cli(
        "bench",
        str(tiny_llava_bundle),
        "--quick",
        "--json",
        "--peers",
        "llama.cpp",
        "--repeats",
        "1",
        "--image",
        str(photo),
        "--threads",
        "2",
        "--work",
        str(tmp_path / "work"),
        "--report",
        str(report),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert set(r["sides"]) == {"edge", "llama.cpp"}
    assert "llama.cpp (multimodal)" in r["not_measured"]

    b1 = r["b1"][0]
    assert b1["budget"] is None and b1["edge"]["tiles"] == 1
    assert b1["edge"]["image_ms"] > 0 and b1["edge"]["image_tokens"] > 0
    warm = r["b2_warm"]["edge"]
    assert warm["ttft_ms"] >= warm["encode_ms"] > 0 and warm["prefill_ms"] > 0
    assert r["b2_cold"]["edge"]["cold_ms"] > r["b2_cold"]["edge"]["first_ttft_ms"] > 0

    depths = [row["depth"] for row in r["b3"]]
    assert depths == [0, b1["edge"]["image_tokens"]]
    for row in r["b3"]:
        for side in ("edge", "llama.cpp"):
            assert row[side]["decode_tok_s"] > 0 and row[side]["prefill_tok_s"] > 0
            assert row[side]["generated"] == 128
            assert row[side]["prefill_tok_s_spread"][0] <= row[side]["prefill_tok_s"]
        assert row["paired"]["llama.cpp"]["prefill_tok_s"]["n"] == row["rounds"] == 1
    # the same depths over embedding rows (an image's way into the LLM), edge and llama.cpp only
    assert [row["depth"] for row in r["b3_embd"]] == depths
    for row in r["b3_embd"]:
        assert set(row) >= {"edge", "llama.cpp", "paired"} and "transformers" not in row
        assert row["edge"]["prefill_tok_s"] > 0 and row["llama.cpp"]["prefill_tok_s"] > 0
    assert r["b4"]["edge"]["peak_rss"] > 0 and r["b4"]["edge"]["disk_bytes"] > 0
    assert "not_available" in r["b5"]
    roof = r["roofline"]
    assert roof["bandwidth_bytes_s"] > 0 and roof["depths"][0]["roofline_tok_s"] > 0

    text = report.read_text()
    assert "| LLM decode, depth 0 (tok/s) |" in text
    assert "| LLM prefill of embedding rows, depth of one image (rows/s) |" in text
    assert report.with_suffix(".png").stat().st_size > 0


def test_edge_bench_rejects_bad_options(tiny_llava_bundle, tmp_path):
    proc = run_cli("bench", str(tiny_llava_bundle), "--peers", "vllm", "--work", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown peer 'vllm'")
    proc = run_cli("bench", str(tiny_llava_bundle), "--source", str(tmp_path), "--work", str(tmp_path))
    assert proc.returncode == 2 and "not a Hugging Face checkpoint" in proc.stderr
    proc = run_cli("bench", str(tmp_path / "missing"), "--work", str(tmp_path))
    assert proc.returncode == 3, proc.stderr


def test_edge_bench_speech_bundle(tiny_whisper_bundle, speech_fixtures, tmp_path):
    audio = sorted(speech_fixtures)[0]
    proc = run_cli(
        "bench",
        str(tiny_whisper_bundle),
        "--json",
        "--peers",
        "none",
        "--repeats",
        "1",
        "--audio",
        audio,
        "--threads",
        "2",
        "--work",
        str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    b5 = r["b5"]["edge"]
    assert b5["rtf"] > 0 and b5["audio_s"] > 1 and b5["wall_ms"] > 0
    assert "b3" not in r and r["llm_dtype"] is None
