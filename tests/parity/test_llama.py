"""Tiny random Llama (an LLM-only bundle) against transformers."""

from __future__ import annotations

import json

import torch
from conftest import run_cli


def test_greedy_tokens_match_transformers(tiny_llama_bundle, tiny_llama_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prompt = "Once upon a time, in 1999, there was"
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1] :].tolist()
    proc = run_cli(
        "run",
        str(tiny_llama_bundle),
        "--prompt",
        prompt,
        "--no-template",
        "--max-tokens",
        "24",
        "--json",
        "--threads",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tokens"] == ref[: len(out["tokens"])]
    assert len(out["tokens"]) >= 16 or out["finish_reason"] == "stop"
