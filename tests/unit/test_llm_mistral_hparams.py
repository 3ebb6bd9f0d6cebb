"""Mistral text configs map to llama.cpp's ``llama`` architecture as llama.cpp's converter maps them."""

from __future__ import annotations

import pytest

from edge.export.llm_llama import LlamaHParams


def test_mistral_window_caps_the_recorded_context():
    from transformers import MistralConfig

    hp = LlamaHParams.from_hf(MistralConfig(sliding_window=4096, max_position_embeddings=32768, head_dim=128))
    assert hp.n_ctx_train == 4096  # llama.cpp attends fully: parity with transformers holds up to the window
    assert hp.head_dim == 128 and hp.n_head_kv == 8


@pytest.mark.parametrize("window", [None, 65536])
def test_no_window_or_a_wide_one_keeps_the_context(window):
    from transformers import MistralConfig

    assert (
        LlamaHParams.from_hf(MistralConfig(sliding_window=window, max_position_embeddings=32768)).n_ctx_train == 32768
    )


def test_a_switched_off_window_keeps_the_context():
    from transformers import Qwen2Config

    cfg = Qwen2Config(use_sliding_window=False, sliding_window=4096, max_position_embeddings=32768)
    assert LlamaHParams.from_hf(cfg).n_ctx_train == 32768
