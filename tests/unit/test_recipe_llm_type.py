"""A user can name the LLM's GGUF type instead of a recipe's default (``edge quantize --llm-type``),
and the harness pieces that B3's spread and the CPU description rest on."""

from __future__ import annotations

import pytest
from conftest import run_cli

from edge.errors import InputError
from edge.quantize.recipes import get_recipe, recipe_with_llm_type


def test_llm_type_replaces_only_the_llm():
    q4 = get_recipe("q4")
    chosen = recipe_with_llm_type("q4", "q5_k_m")
    assert chosen.llm == "Q5_K_M" and (chosen.vision, chosen.audio, chosen.name) == (q4.vision, q4.audio, "q4")
    assert recipe_with_llm_type("q4") is q4
    assert chosen.describe()["llm"] == "Q5_K_M"


def test_unknown_llm_type_is_a_one_line_input_error():
    with pytest.raises(InputError, match="unknown GGUF type 'Q3_X'"):
        recipe_with_llm_type("q8", "q3_x")
    with pytest.raises(InputError, match="unknown recipe"):
        recipe_with_llm_type("q9", "Q4_0")


def test_cli_quantize_rejects_an_unknown_llm_type(tmp_path):
    proc = run_cli("quantize", str(tmp_path), "-o", str(tmp_path / "out"), "--recipe", "q4", "--llm-type", "Q3_X")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: recipe q4: unknown GGUF type 'Q3_X' (known: Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_0, Q4_K_M, Q4_K_S, "
        "Q4_0, Q3_K_M, Q2_K)"
    )


def test_spread_and_paired_ratios():
    from edge.benchmarks.common import spread
    from edge.benchmarks.runner import _paired

    assert spread([3.0, 1.0, 2.0]) == [1.0, 3.0] and spread([]) is None
    res = {
        "edge": {
            "samples": [{"prefill_tok_s": 100.0, "decode_tok_s": 10.0}, {"prefill_tok_s": 50.0, "decode_tok_s": 5.0}]
        },
        "llama.cpp": {
            "samples": [{"prefill_tok_s": 50.0, "decode_tok_s": 10.0}, {"prefill_tok_s": 50.0, "decode_tok_s": 10.0}]
        },
    }
    p = _paired(res)["llama.cpp"]
    assert p["prefill_tok_s"] == {"median": 1.5, "min": 1.0, "max": 2.0, "n": 2}
    assert p["decode_tok_s"]["median"] == 0.75
