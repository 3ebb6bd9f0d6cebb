"""Helpers shared by the slicing tests (not a test module)."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from edge.export.builders.smollm2 import IDEFICS3_TOKENS, smollm2_tokenizer


@functools.lru_cache(maxsize=1)
def tokenizer():
    """SmolLM2's real tokenizer (offline) with SmolVLM's image tokens as special tokens.

    Built once per test session (reading the GGUF vocabulary takes seconds)."""
    return smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)


def random_image(width: int, height: int) -> Image.Image:
    """Seeded random RGB content, different for every size."""
    rng = np.random.default_rng(width * 100_003 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def expand(layout, tokens_per_frame, image_token: str = "<image>") -> str:
    """A layout as the prompt text HF writes: each frame slot -> ``image_token`` repeated."""
    count = tokens_per_frame if callable(tokens_per_frame) else (lambda i: tokens_per_frame)
    return "".join(p if isinstance(p, str) else image_token * count(p) for p in layout)


def size_id(size) -> str:
    return f"{size[0]}x{size[1]}"
