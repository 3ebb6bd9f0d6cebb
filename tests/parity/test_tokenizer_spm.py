"""SentencePiece-style tokenizers written as llama.cpp's ``llama`` vocabulary, against the HF tokenizer:
real vocabularies (Llama-2, Phi-3) from llama.cpp's sources, a trained one read from tokenizer.json
and from tokenizer.model alone, Gemma's no-prefix style, and the refusals."""

from __future__ import annotations

import json
import shutil

import pytest
from spm_support import llama_cpp_tree, tokenizer_gguf, varied_lines, vocab_cases

from edge.errors import ExportError
from edge.export import parity
from edge.export.builders.tiny_spm import llama2_tokenizer, trained_spm_tokenizer
from edge.export.tokenizer import from_hf_dir
from edge.options import LLMOptions
from edge.runtime.llama_backend import LLM

REAL_VOCABS = ["llama-spm", "phi-3"]  # Llama-2 (LLaVA-1.5, Vicuna) and Phi-3: both SentencePiece BPE


@pytest.fixture(scope="session")
def real_tokenizers(tmp_path_factory):
    """Each real vocabulary rebuilt as a HF tokenizer directory (built lazily, once)."""
    made = {}

    def get(name):
        if name not in made:
            tree = llama_cpp_tree()
            d = tmp_path_factory.mktemp(f"tok-{name}")
            llama2_tokenizer(tree / "models" / f"ggml-vocab-{name}.gguf").save_pretrained(d)
            made[name] = d
        return made[name]

    return get


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok-trained")
    trained_spm_tokenizer(d).save_pretrained(d)
    return d


def _llm_of(src, tmp_path):
    path = tokenizer_gguf(tmp_path / "tok.gguf", from_hf_dir(src))
    return LLM(path, LLMOptions(n_ctx=256, threads=2), weights_dtype="f32")


def _compare(hf, llm, lines):
    """Ids of every line, with and without BOS and with special tokens parsed; the first mismatch."""
    for line in lines:
        for add in (False, True):
            ref = hf(line, add_special_tokens=add)["input_ids"]
            ours = llm.tokenize(line, add_bos=add, special=True)
            assert ours == ref, (line, ours, ref)


def _hf(src):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(src)


@pytest.mark.parametrize("name", REAL_VOCABS)
def test_rebuilt_tokenizer_is_the_real_one(real_tokenizers, name):
    """The rebuilt HF tokenizer gives the ids the real HF tokenizer gave (llama.cpp's test cases)."""
    hf = _hf(real_tokenizers(name))
    cases = vocab_cases(llama_cpp_tree(), name)
    assert len(cases) > 40
    for text, ids in cases:
        assert hf(text, add_special_tokens=False)["input_ids"] == ids, text


@pytest.mark.parametrize("name", REAL_VOCABS)
def test_real_vocabulary_gguf_tokenizes_like_hf(real_tokenizers, name, tmp_path):
    src = real_tokenizers(name)
    hf = _hf(src)
    meta = from_hf_dir(src)
    assert meta.model == "llama" and meta.add_space_prefix is True and meta.add_bos
    assert meta.token_types[meta.unk_id] == 2 and meta.token_types[meta.bos_id] == 3
    assert sum(t == 6 for t in meta.token_types) == 256  # the <0x00>..<0xFF> byte tokens
    specials = tuple(hf.all_special_tokens)
    llm = _llm_of(src, tmp_path)
    try:
        cases = [text for text, _ in vocab_cases(llama_cpp_tree(), name)]
        _compare(hf, llm, cases + varied_lines(300, specials))
        assert parity.tokenizer_parity(hf, llm, True)["tokenizer_texts_checked"] > len(parity.PROBE_TEXTS)
    finally:
        llm.close()


def test_gemma_style_no_prefix_tokenizer(real_tokenizers, tmp_path):
    """Gemma's style: Replace(' ', '▁') only, no prefix space (add_space_prefix false)."""
    src = tmp_path / "gemma-style"
    shutil.copytree(real_tokenizers("llama-spm"), src)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tj["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    (src / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    hf = _hf(src)
    assert hf.tokenize("Hi there")[0] == "Hi"  # no "▁" in front
    assert from_hf_dir(src).add_space_prefix is False
    llm = _llm_of(src, tmp_path)
    try:
        _compare(hf, llm, varied_lines(200, tuple(hf.all_special_tokens), seed=1))
    finally:
        llm.close()


@pytest.mark.parametrize("files", ["tokenizer.json", "tokenizer.model only"])
def test_trained_tokenizer(trained_dir, files, tmp_path):
    src = tmp_path / "tok"
    shutil.copytree(trained_dir, src)
    if files == "tokenizer.model only":
        (src / "tokenizer.json").unlink()
    hf = _hf(src)
    meta = from_hf_dir(src)
    assert meta.model == "llama" and meta.add_space_prefix is True
    llm = _llm_of(src, tmp_path)
    try:
        _compare(hf, llm, varied_lines(300, tuple(hf.all_special_tokens), seed=2))
        parity.tokenizer_parity(hf, llm, True)
    finally:
        llm.close()


def test_metaspace_first_tokenizer_with_the_runtime_rule(tmp_path):
    """``legacy=False`` Llama tokenizers (Metaspace, prepend_scheme "first"): no prefix in the GGUF,
    the runtime's "first" rule in front of the prompt; identical ids, specials inside included."""
    from edge.runtime.text.space_prefix import with_space_prefix

    src = tmp_path / "first"
    trained_spm_tokenizer(src, legacy=False).save_pretrained(src)
    hf = _hf(src)
    meta = from_hf_dir(src)
    assert meta.add_space_prefix is False and meta.space_prefix_rule == "first"
    llm = _llm_of(src, tmp_path)
    try:
        for line in varied_lines(300, tuple(hf.all_special_tokens), seed=3) + ["<s>Hi", " Hi", "Hi <s> Hi"]:
            text = with_space_prefix(line, "first", lambda t, sp: llm.tokenize(t, special=sp))
            for add in (False, True):
                assert llm.tokenize(text, add_bos=add, special=True) == hf(line, add_special_tokens=add)["input_ids"]
        parity.tokenizer_parity(hf, llm, True, "first")
        with pytest.raises(ExportError):  # without the rule the first word splits differently
            parity.tokenizer_parity(hf, llm, True, "gguf")
    finally:
        llm.close()


def _edited(trained_dir, tmp_path, edit):
    src = tmp_path / "edited"
    shutil.copytree(trained_dir, src)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    edit(tj)
    (src / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    return src


def _metaspace_always(tj):
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": False}


def _metaspace_split(tj):
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}


def _drop_a_merge(tj):
    tj["model"]["merges"] = tj["model"]["merges"][1:]


def _lstrip_token(tj):
    tj["added_tokens"][1]["lstrip"] = True


def _nfkc(tj):
    tj["normalizer"] = {"type": "NFKC"}


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_metaspace_always, "prepend_scheme 'always'"),
        (_metaspace_split, "replacement/split"),
        (_drop_a_merge, "llama.cpp would merge"),
        (_lstrip_token, "lstrip=true"),
        (_nfkc, "unsupported SentencePiece normalizer"),
    ],
)
def test_unrepresentable_tokenizers_are_refused(trained_dir, tmp_path, edit, words):
    src = _edited(trained_dir, tmp_path, edit)
    with pytest.raises(ExportError) as err:
        from_hf_dir(src)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_probe_names_the_mismatch(trained_dir, tmp_path):
    """A GGUF vocabulary that splits differently (here: no prefix space) fails the export-time probe."""
    meta = from_hf_dir(trained_dir)
    meta.add_space_prefix = False
    llm = LLM(tokenizer_gguf(tmp_path / "bad.gguf", meta), LLMOptions(n_ctx=256, threads=2), weights_dtype="f32")
    try:
        with pytest.raises(ExportError, match="differently from the HF tokenizer at token"):
            parity.tokenizer_parity(_hf(trained_dir), llm, True)
    finally:
        llm.close()
