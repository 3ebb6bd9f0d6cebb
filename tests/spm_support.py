"""Helpers for the SentencePiece tokenizer tests: llama.cpp's sources (for its real vocabularies),
a tiny GGUF that carries a tokenizer, and a few hundred varied probe lines."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

SOURCES_CACHE = Path.home() / ".cache" / "edge" / "sources"
# where an unpacked llama-cpp-python sdist may already be (a developer machine), after the cache
_OTHER_PLACES = (Path("/tmp/sdist"),)


def find_llama_cpp() -> Optional[Path]:
    """The llama.cpp tree of an unpacked llama-cpp-python sdist (tests/fetch_llama_sources.py
    puts one in ~/.cache/edge/sources), or None."""
    for base in (SOURCES_CACHE, *_OTHER_PLACES):
        for sdist in sorted(base.glob("llama_cpp_python-*"), reverse=True):
            tree = sdist / "vendor" / "llama.cpp"
            if (tree / "models" / "ggml-vocab-llama-spm.gguf").is_file():
                return tree
    return None


def llama_cpp_tree() -> Path:
    """The llama.cpp tree, or skip (fail on CI, where the install step must have fetched it)."""
    tree = find_llama_cpp()
    if tree is None:
        msg = "llama.cpp sources missing: run python tests/fetch_llama_sources.py"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return tree


def vocab_cases(tree: Path, name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test cases of ``ggml-vocab-<name>.gguf``: (text, ids the real HF
    tokenizer gives without special tokens), from the .inp/.out files next to it."""
    models = tree / "models"
    texts = (models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outs = (models / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    texts[-1] = texts[-1].removesuffix("\n__ggml_vocab_test__\n")
    return [(t, [int(x) for x in o.split()]) for t, o in zip(texts, outs)]


def tokenizer_gguf(path: Path, meta) -> Path:
    """A 1-layer random Llama GGUF whose only purpose is to carry ``meta`` (llama.cpp needs a model)."""
    from edge.export.llm_llama import LlamaHParams, write_llama_gguf

    n_vocab, d, ff = len(meta.tokens), 16, 32
    hp = LlamaHParams(
        n_vocab=n_vocab, n_embd=d, n_layer=1, n_head=2, n_head_kv=2, n_ff=ff, head_dim=8,
        n_ctx_train=4096, rms_eps=1e-5, rope_theta=10000.0, tied_embeddings=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (n_vocab, d),
        "model.layers.0.input_layernorm.weight": (d,),
        "model.layers.0.self_attn.q_proj.weight": (d, d),
        "model.layers.0.self_attn.k_proj.weight": (d, d),
        "model.layers.0.self_attn.v_proj.weight": (d, d),
        "model.layers.0.self_attn.o_proj.weight": (d, d),
        "model.layers.0.post_attention_layernorm.weight": (d,),
        "model.layers.0.mlp.gate_proj.weight": (ff, d),
        "model.layers.0.mlp.up_proj.weight": (ff, d),
        "model.layers.0.mlp.down_proj.weight": (d, ff),
        "model.norm.weight": (d,),
    }
    tensors = [(k, rng.standard_normal(s).astype(np.float32)) for k, s in shapes.items()]
    write_llama_gguf(path, hp, tensors, meta, "f32", "tokenizer-probe")
    return path


_WORDS = (
    "the a picture of cat dog Hello hello HELLO world World's don't it's can't we'll "
    "naïve café Äpfel größer Ελληνικά русский язык 日本語 中文 한국어 عربي हिन्दी தமிழ் "
    "🦙 🙂 👍🏽 ⌘ ∑ ∫ → ½ ¾ © ™ 𝔘𝔫𝔦 ꙮ ᚠᛇᚻ ✓ "
    "def return print(x) x**2 {} [] () <> <tag> </div> http://example.com/a?b=c "
    "0 1 12 123 1234 12345 3.14 -7 1e10 2024-01-31 10:30 $5 100% #1 @user"
).split()
_SEPARATORS = (" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "", ", ", ". ")


def varied_lines(n: int = 300, specials: tuple[str, ...] = (), seed: int = 0) -> list[str]:
    """``n`` seeded lines mixing words of many scripts, emoji, code, digits, runs of spaces,
    tabs and newlines, leading/trailing whitespace and (when given) special tokens."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(_WORDS))
            parts.append(rng.choice(_SEPARATORS))
            if specials and rng.random() < 0.08:
                parts.append(rng.choice(specials))
        line = "".join(parts)
        if i % 7 == 0:
            line = " " + line
        if i % 11 == 0:
            line = "  " + line + "\n"
        lines.append(line)
    return lines
