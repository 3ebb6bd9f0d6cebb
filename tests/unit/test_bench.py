"""The benchmark harness's pure parts: FLOPs, roofline bytes, medians, ratios and verdicts."""

from __future__ import annotations

import pytest

from edge.benchmarks import procs, report, roofline, suite

SMOLVLM = {
    "model_type": "idefics3",
    "scale_factor": 4,
    "text_config": {"hidden_size": 576},
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "patch_size": 16,
        "image_size": 512,
    },
}


def test_vision_flops_idefics3_tile():
    n, h, i, d = 1024, 768, 3072, 576
    layer = 2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h
    expected = 2 * n * 3 * 16 * 16 * h + 12 * layer + 2 * (n // 16) * (h * 16) * d
    assert roofline.vision_flops_per_tile(SMOLVLM) == expected
    assert 214e9 < expected < 215e9


def test_vision_flops_llava_skips_layers_after_the_feature_layer():
    cfg = {
        "model_type": "llava",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "text_config": {"hidden_size": 576},
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "patch_size": 16,
            "image_size": 336,
        },
    }
    n, h = 442, 768  # 21 x 21 patches + the class token
    layer = 2 * n * (4 * h * h + 2 * h * 3072) + 4 * n * n * h
    expected = 2 * n * 3 * 256 * h + 11 * layer + 2 * 441 * (h * 576 + 576 * 576)
    assert roofline.vision_flops_per_tile(cfg) == expected
    assert roofline.vision_flops_per_tile({"model_type": "qwen2_vl", "vision_config": {}}) is None


def test_bytes_per_token_counts_a_tied_embedding_and_the_kv_cache():
    facts = {
        "weights_bytes": 1000,
        "token_embd_bytes": 300,
        "tied_output": True,
        "n_layer": 2,
        "n_head_kv": 3,
        "head_dim": 4,
    }
    assert roofline.bytes_per_token(facts, 0) == 1000
    assert roofline.bytes_per_token(facts, 10) == 1000 + 2 * 2 * 3 * 4 * 10 * 2
    assert roofline.bytes_per_token(dict(facts, tied_output=False), 0) == 700


def test_medians_are_fieldwise_and_keep_other_fields():
    out = procs.medians([{"a": 1.0, "n": 3, "s": "x"}, {"a": 5.0, "n": 1, "s": "y"}, {"a": 2.0, "n": 2, "s": "z"}])
    assert out == {"a": 2.0, "n": 2, "s": "x"}


def _results(**over):
    r = {
        "model": "m",
        "family": "llava",
        "llm_dtype": "f16",
        "vision_dtype": "f16",
        "b2_warm": {"edge": {"ttft_ms": 100.0}, "transformers": {"ttft_ms": 400.0}, "llama.cpp": {"ttft_ms": 110.0}},
        "b1": [{"image": "512x512", "budget": None, "edge": {"tile_ms": 50.0}, "llama.cpp": {"tile_ms": 100.0}}],
        "b3": [
            {
                "depth": 0,
                "edge": {"decode_tok_s": 30.0},
                "transformers": {"decode_tok_s": 12.0},
                "llama.cpp": {"decode_tok_s": 30.0},
            }
        ],
        "b4": {"edge": {"peak_rss": 2 << 20}, "llama.cpp": {"peak_rss": 1 << 20}},
        "roofline": {"depths": [{"depth": 0, "edge_fraction": 0.5}]},
    }
    r.update(over)
    return r


def test_ratio_rows_verdicts():
    rows = {row["key"]: row for row in report.ratio_rows(_results())}
    ttft = rows["ttft"]
    assert ttft["ratio_transformers"] == pytest.approx(0.25) and ttft["ratio_llama.cpp"] == pytest.approx(100 / 110)
    assert [t["met"] for t in ttft["targets"]] == [True, False]
    decode = rows["decode0"]
    assert [t["met"] for t in decode["targets"]] == [False, True]  # 2.5x transformers < 3x; 1.0x llama.cpp
    assert rows["decode1"]["targets"][0]["met"] is None  # no second depth measured
    assert rows["tile"]["ratio_llama.cpp"] == pytest.approx(0.5)
    assert rows["tile"]["targets"][0]["met"] is None  # the target is for int8 vision
    assert rows["rss"]["targets"][0]["met"] is False
    assert rows["roofline"]["targets"][0]["met"] is True
    int8 = {row["key"]: row for row in report.ratio_rows(_results(vision_dtype="int8"))}
    assert int8["tile"]["targets"][0]["met"] is True


def test_text_summary_and_markdown_name_every_metric():
    text = report.text_summary(_results(not_measured={"transformers": "needs --source"}))
    assert "NOT met" in text and "not measured: transformers: needs --source" in text
    md = report.markdown_section(_results())
    assert md.count("\n| ") >= len(report.METRICS) + 2


def test_quantized_pass_reads_against_the_fp32_reference_of_the_same_run():
    first = _results(
        model="m (f16)",
        sides={"edge": {}, "transformers": {"load_ms": 1.0}, "llama.cpp": {}},
        b2_cold={"transformers": {"cold_ms": 900.0}},
    )
    q8 = _results(model="m (q8)", vision_dtype="int8", sides={"edge": {}, "llama.cpp": {}}, b2_cold={})
    for res in (q8["b2_warm"], q8["b3"][0]):
        res.pop("transformers")
    q8["b3"].append({"depth": 441, "edge": {"decode_tok_s": 20.0}})  # no reference at this depth
    assert report.ratio_rows(q8)[0]["ratio_transformers"] is None
    suite.link_references([first, q8])
    rows = {row["key"]: row for row in report.ratio_rows(q8)}
    assert rows["ttft"]["transformers"] == 400.0 and rows["ttft"]["targets"][0]["met"] is True
    assert rows["decode0"]["ratio_transformers"] == pytest.approx(2.5)
    assert rows["decode1"]["transformers"] is None
    assert q8["b2_cold"]["transformers"] == {"cold_ms": 900.0}
    assert "m (f16)" in q8["borrowed"] and q8["borrowed"] in report.markdown_section({**q8, "sides": {}})
    again = dict(q8)
    suite.borrow_reference(again, first, "transformers")  # a measured side is never overwritten
    assert again["sides"]["transformers"] is first["sides"]["transformers"]


def test_targets_table_and_kept_notes(tmp_path):
    table = report.targets_table([_results(), {"model": "speech", "llm_dtype": None}])
    assert table[0].startswith("| bundle |") and len(table) == 2 + 13  # 13 targets; the speech-only bundle has none
    assert any("**not met**" in line for line in table) and any("| met |" in line for line in table)
    doc = tmp_path / "benchmarks.md"
    assert suite.kept_notes(doc) == f"{suite.NOTES_START}\n{suite.NOTES_END}"
    doc.write_text(f"# old\n{suite.NOTES_START}\nTTFT is prefill-bound.\n{suite.NOTES_END}\n## Results\n")
    assert "TTFT is prefill-bound." in suite.kept_notes(doc)
