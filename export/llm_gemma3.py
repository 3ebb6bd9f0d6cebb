"""Our own HF -> GGUF converter for Gemma 3 text models (llama.cpp's ``gemma3`` architecture).

Facts followed, from llama.cpp's converter (``conversion/gemma.py``, ``Gemma3Model``) and its
graph (``src/models/gemma3.cpp``):

* every RMSNorm weight is written as ``1 + w``: ``Gemma3RMSNorm`` scales by ``1 + weight``,
  llama.cpp's RMS norm by the weight itself (q/k norms and the final norm included);
* llama.cpp scales *token* embeddings by ``sqrt(n_embd)`` (``Gemma3TextScaledWordEmbedding``)
  and leaves raw embedding rows (images) unscaled, as HF's ``masked_scatter`` of the
  projector's output into the scaled text embeddings does;
* RoPE is NeoX-ordered (``LLAMA_ROPE_TYPE_NEOX``), HF's own half-split layout: no q/k
  permutation; global layers use ``rope_theta`` (and the linear ``rope_scaling``), local
  (sliding) layers ``rope_local_base_freq`` unscaled (``rope.freq_base_swa``);
* sliding-window layers: ``attention.sliding_window`` and, per layer, the pattern of HF's
  ``layer_types`` (``attention.sliding_window_pattern`` as one bool per layer);
* the query scale is ``1/sqrt(head_dim)`` (``1/sqrt(n_embd/n_head)`` for the 62-layer 27B),
  so ``query_pre_attn_scalar`` must equal that; the GELU (tanh) MLP; a tied output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Optional

import gguf
import numpy as np

from edge.errors import ExportError
from edge.export.llm_llama import TextShape, shape_hparams, write_gguf, write_shape
from edge.export.registry import LLMPart
from edge.export.tokenizer import TokenizerMeta

ARCH = gguf.MODEL_ARCH.GEMMA3


@dataclass(frozen=True)
class Gemma3HParams(TextShape):
    """The hyper-parameters llama.cpp's GEMMA3 architecture reads."""

    rope_theta: float  # global (full-attention) layers
    rope_local_theta: float  # sliding-window layers
    sliding_window: int
    swa_layers: tuple[bool, ...]  # per layer: sliding-window attention
    rope_linear_factor: Optional[float] = None  # global layers only
    final_logit_softcap: Optional[float] = None
    tied_embeddings: bool = True

    @staticmethod
    def from_hf(cfg) -> "Gemma3HParams":
        """Read a transformers ``Gemma3TextConfig``.

        Raises:
            ExportError: a setting llama.cpp's gemma3 graph cannot reproduce.
        """
        if getattr(cfg, "use_bidirectional_attention", False):
            raise ExportError("Gemma 3 text models with bidirectional attention (embedding models) are not supported")
        if getattr(cfg, "attn_logit_softcapping", None):
            raise ExportError("attention logit soft-capping is not run by llama.cpp's gemma3 graph")
        if getattr(cfg, "attention_bias", False):
            raise ExportError("Gemma 3 models with attention biases are not supported")
        scaling = getattr(cfg, "rope_scaling", None) or {}
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in (None, "default", "linear"):
            raise ExportError(f"RoPE scaling {kind!r} is not supported for Gemma 3 yet")
        n_head = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
        # llama.cpp hard-codes the query scale by model size (src/models/gemma3.cpp)
        expected = cfg.hidden_size // n_head if cfg.num_hidden_layers == 62 else head_dim
        if float(cfg.query_pre_attn_scalar) != float(expected):
            raise ExportError(
                f"query_pre_attn_scalar {cfg.query_pre_attn_scalar} is not {expected}, the query scale "
                "llama.cpp's gemma3 graph uses for this model size"
            )
        types = list(getattr(cfg, "layer_types", None) or [])
        if len(types) != cfg.num_hidden_layers or set(types) - {"sliding_attention", "full_attention"}:
            raise ExportError(f"layer_types must name sliding_attention or full_attention per layer, got {types}")
        return Gemma3HParams(
            **shape_hparams(cfg, head_dim, cfg.max_position_embeddings),
            rope_theta=float(cfg.rope_theta),
            rope_local_theta=float(cfg.rope_local_base_freq),
            sliding_window=int(cfg.sliding_window),
            swa_layers=tuple(t == "sliding_attention" for t in types),
            rope_linear_factor=float(scaling["factor"]) if kind == "linear" else None,
            final_logit_softcap=getattr(cfg, "final_logit_softcapping", None) or None,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", True)),
        )


def write_gemma3_gguf(
    path: Path,
    hp: Gemma3HParams,
    tensors: Iterable[tuple[str, np.ndarray]],
    tok: TokenizerMeta,
    dtype: str,
    name: str,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Write a ``gemma3`` GGUF from HF ``Gemma3ForCausalLM``-named f32 tensors
    (``model.layers.N.self_attn.q_proj.weight``, ``model.norm.weight``, ``lm_head.weight``).

    ``dtype`` (``f32``/``f16``) applies to 2-D weights; norms stay f32. A tied ``lm_head`` is
    left out (llama.cpp reuses ``token_embd``).
    """
    header = partial(_write_hparams, hp=hp, dtype=dtype, name=name)
    write_gguf(path, ARCH, hp, tensors, tok, dtype, header, convert=_norm_plus_one, progress=progress)


def _norm_plus_one(hf_name: str, arr: np.ndarray, hp: Gemma3HParams) -> np.ndarray:
    if hf_name.endswith("norm.weight"):
        return arr + np.float32(1.0)  # Gemma3RMSNorm: x * (1 + w)
    return arr


def _write_hparams(w: gguf.GGUFWriter, hp: Gemma3HParams, dtype: str, name: str) -> None:
    write_shape(w, hp, dtype, name)
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    w.add_rope_dimension_count(hp.head_dim)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_rope_freq_base_swa(hp.rope_local_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    if any(hp.swa_layers):
        w.add_sliding_window(hp.sliding_window)
        w.add_sliding_window_pattern(list(hp.swa_layers))
    if hp.rope_linear_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_linear_factor)
    if hp.final_logit_softcap:
        w.add_final_logit_softcapping(float(hp.final_logit_softcap))


# Gemma 3's text model as families name it: the rows of one image attend to each other
# (Gemma 3 is trained with a bidirectional mask inside each image, token_type_ids_mask_function).
GEMMA3 = LLMPart(
    arch=gguf.MODEL_ARCH_NAMES[ARCH],
    hparams=Gemma3HParams.from_hf,
    write_gguf=write_gemma3_gguf,
    media_attention="bidirectional",
    media_positions="linear",
)
