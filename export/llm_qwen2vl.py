"""Qwen2 text weights as llama.cpp's ``qwen2vl`` architecture (M-RoPE), on the ``gguf`` package.

Facts followed, from llama.cpp (the vendored copy of llama-cpp-python 0.3.36):
``conversion/qwenvl.py`` (``Qwen2VLModel``: the text part of Qwen2-VL / Qwen2.5-VL is written as
``MODEL_ARCH.QWEN2VL``; ``conversion/base.py`` pads ``mrope_section`` to four entries as
``qwen2vl.rope.dimension_sections``), ``src/models/qwen2vl.cpp`` (q/k/v with biases, tied output
when ``output.weight`` is absent, ``ggml_rope_multi`` with the four sections) and
``llama_model_rope_type`` (``LLAMA_ROPE_TYPE_MROPE``, a NeoX-style rotation: HF's half-split q/k
rows are kept as they are, unlike the Llama writer's permutation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import gguf
import numpy as np

from edge.errors import ExportError
from edge.export.llm_llama import LlamaHParams, shape_hparams, write_gguf, write_hparams
from edge.export.registry import LLMPart
from edge.export.tokenizer import TokenizerMeta

ARCH = gguf.MODEL_ARCH.QWEN2VL


@dataclass(frozen=True)
class Qwen2VLHParams(LlamaHParams):
    """The Llama hyper-parameters plus the M-RoPE sections (rotary pairs per t, h, w axis, then 0)."""

    rope_sections: tuple[int, int, int, int] = (0, 0, 0, 0)

    @staticmethod
    def from_hf(cfg) -> "Qwen2VLHParams":
        """Read a transformers ``Qwen2_5_VLTextConfig`` / ``Qwen2VLTextConfig``.

        Raises:
            ExportError: no ``mrope_section``, sections that do not cover head_dim / 2, or
                sliding-window attention (llama.cpp's qwen2vl graph has none).
        """
        scaling = dict(getattr(cfg, "rope_scaling", None) or {})
        section = scaling.get("mrope_section")
        if not section or len(section) != 3:
            raise ExportError("the text config has no 3-axis rope_scaling.mrope_section (not an M-RoPE model)")
        n_head = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
        if 2 * sum(section) != head_dim:
            raise ExportError(f"mrope_section {section} does not cover head_dim {head_dim} (2 * sum must equal it)")
        if getattr(cfg, "use_sliding_window", False):
            raise ExportError("Qwen2 sliding-window attention is not supported by llama.cpp's qwen2vl graph")
        return Qwen2VLHParams(
            **shape_hparams(cfg, head_dim, cfg.max_position_embeddings),
            rope_theta=float(getattr(cfg, "rope_theta", 1000000.0)),
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
            rope_sections=(int(section[0]), int(section[1]), int(section[2]), 0),
        )


def write_qwen2vl_gguf(
    path: Path,
    hp: Qwen2VLHParams,
    tensors: Iterable[tuple[str, np.ndarray]],
    tok: TokenizerMeta,
    dtype: str,
    name: str,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Write a ``qwen2vl`` GGUF from HF ``Qwen2ForCausalLM``-named f32 tensors (``model.layers.N...``,
    ``lm_head.weight``); ``dtype`` f32 or f16 for 2-D weights, 1-D tensors (norms, biases) f32."""

    def header(w: gguf.GGUFWriter) -> None:
        write_hparams(w, hp, dtype, name)
        w.add_rope_dimension_sections(list(hp.rope_sections))

    write_gguf(path, ARCH, hp, tensors, tok, dtype, header, progress=progress)


# Qwen2-VL / Qwen2.5-VL's language model: causal attention, (t, h, w) positions for media rows.
QWEN2VL = LLMPart(
    arch=gguf.MODEL_ARCH_NAMES[ARCH],
    hparams=Qwen2VLHParams.from_hf,
    write_gguf=write_qwen2vl_gguf,
    media_attention="causal",
    media_positions="mrope",
)
