"""SentencePiece-tokenizer variants of the tiny LLaVA builders, and the SPM tokenizers they use.

* :func:`llama2_tokenizer`: a real SentencePiece vocabulary (e.g. Llama-2's, from llama.cpp's
  ``models/ggml-vocab-llama-spm.gguf``) rebuilt as the HF fast tokenizer Llama-2 checkpoints
  ship: legacy ``Prepend("▁")`` + ``Replace(" ", "▁")`` normaliser, byte-fallback BPE whose
  merges are ordered by the merged piece's score as transformers' ``generate_merges``
  (convert_slow_tokenizer.py) orders them, BOS added by a template post-processor.
  transformers' own GGUF loader is not used: it drops byte fallback and the normaliser.
* :func:`trained_spm_tokenizer`: a small BPE SentencePiece model with byte fallback trained
  here on generated text (no download), saved with ``tokenizer.model``.
* :func:`tiny_llava_spm` (LLaVA-1.5: Llama text model) and :func:`tiny_llava_next_mistral`
  (LLaVA-NeXT: Mistral text model) with such a tokenizer.
"""

from __future__ import annotations

import io
from pathlib import Path

from edge.export.builders.smollm2 import IMAGE_TOKEN
from edge.export.builders.tiny_parts import save_llava, save_llava_next, text_kwargs

PAD_TOKEN = "<pad>"
_CONTROL, _USER_DEFINED = 3, 4


def llama2_tokenizer(gguf_path: Path, gemma: bool = False):
    """The HF ``LlamaTokenizerFast`` of a SentencePiece (``llama``) GGUF vocabulary.

    ``gemma``: Gemma's style instead of Llama-2's (transformers' ``GemmaConverter``): the
    normaliser only replaces spaces (no prefix), then a ``Split(" ")`` pre-tokenizer.
    """
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import LlamaTokenizerFast

    reader = gguf.GGUFReader(str(gguf_path))
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    scores = [float(x) for x in reader.fields["tokenizer.ggml.scores"].contents()]
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())

    def field(key, default=None):
        return reader.fields[key].contents() if key in reader.fields else default

    bos, eos, unk = (int(field(f"tokenizer.ggml.{k}_token_id")) for k in ("bos", "eos", "unknown"))
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = spm_merges(vocab, scores)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=tokens[unk], byte_fallback=True, fuse_unk=True))
    if gemma:
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    strip = [] if gemma else [decoders.Strip(content=" ", left=1, right=0)]
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), *strip])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A {tokens[bos]} $B", special_tokens=[(tokens[bos], bos)]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL]
        + [AddedToken(tokens[unk], special=True, normalized=False)]
    )
    tok.add_tokens([AddedToken(t, normalized=False) for t, ty in zip(tokens, types) if ty == _USER_DEFINED])
    pad = field("tokenizer.ggml.padding_token_id")
    return LlamaTokenizerFast(
        tokenizer_object=tok,
        bos_token=tokens[bos],
        eos_token=tokens[eos],
        unk_token=tokens[unk],
        pad_token=tokens[int(pad)] if pad is not None else None,
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
    )


def spm_merges(vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges of a SentencePiece vocabulary: every split of a piece into two pieces,
    ordered by the piece's score (highest first), then by the lengths of the two halves."""
    merges = []
    for piece, idx in vocab.items():
        local = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend((scores[idx], m) for m in local)
    merges.sort(key=lambda x: (-x[0], len(x[1][0]), len(x[1][1])))
    return [m for _, m in merges]


def _corpus(n_lines: int = 3000) -> list[str]:
    import random

    rng = random.Random(0)
    words = (
        "the picture shows a cat dog house tree street car person image camera light colour blue red "
        "green small large left right describe what is in this and of to on with over under near "
        "USER ASSISTANT question answer one two three 2024 42 3.14 hello world model vision token"
    ).split()
    lines = []
    for _ in range(n_lines):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
        lines.append(line.capitalize() + rng.choice([".", "?", "!", ":", ","]))
    return lines


def trained_spm_tokenizer(dst: Path, vocab_size: int = 600, legacy: bool = True):
    """Train a BPE SentencePiece model with byte fallback into ``dst/tokenizer.model`` and
    return its HF fast tokenizer (converted from the slow one, as transformers does).

    ``legacy``: transformers' legacy Llama conversion (``Prepend`` + ``Replace`` normaliser);
    False gives the ``Metaspace(prepend_scheme="first")`` pre-tokenizer of ``legacy=False``.
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast

    dst.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    path = dst / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return LlamaTokenizerFast(
        vocab_file=str(path), from_slow=True, legacy=legacy, add_bos_token=True, add_prefix_space=True
    )


def _with_vlm_tokens(tok):
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN], "pad_token": PAD_TOKEN})
    return tok


def tiny_llava_spm(dst: Path, tokenizer, seed: int = 0, image_size: int = 30, patch_size: int = 6) -> Path:
    """A random LLaVA-1.5 (CLIP tower, MLP projector, 2-layer Llama) with a SentencePiece tokenizer
    (``<image>`` and ``<pad>`` added after the base vocabulary, as llava-1.5-hf has them)."""
    from transformers import LlamaConfig

    tok = _with_vlm_tokens(tokenizer)
    return save_llava(dst, tok, LlamaConfig(**text_kwargs(tok, 1024, kv_heads=4)), seed, image_size, patch_size)


def tiny_llava_next_mistral(dst: Path, tokenizer, seed: int = 0, tile: int = 24, patch: int = 6) -> Path:
    """A random LLaVA-NeXT whose text model is Mistral (as llava-v1.6-mistral-7b-hf), with anyres
    pinpoints at a tiny scale and a SentencePiece tokenizer."""
    from transformers import MistralConfig

    tok = _with_vlm_tokens(tokenizer)
    text = MistralConfig(**text_kwargs(tok, 2048, sliding_window=None, rope_theta=1000000.0))
    return save_llava_next(dst, tok, text, seed, tile, patch)
