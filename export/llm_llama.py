"""Our own HF -> GGUF converter for Llama-architecture language models.

Written on the ``gguf`` package (the GGUF file format library of llama.cpp).
Facts followed, from llama.cpp's converter and loader: tensor names come from
``gguf.TensorNameMap``; HF Llama checkpoints rotate q/k with "rotate_half"
(NeoX order) while llama.cpp's LLAMA graph uses interleaved RoPE, so the rows of
q_proj and k_proj are permuted per head; 1-D tensors (norms) stay f32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import gguf
import numpy as np

from edge.errors import ExportError
from edge.export.registry import LLMPart
from edge.export.tokenizer import TokenizerMeta


@dataclass(frozen=True)
class LlamaHParams:
    """The hyper-parameters llama.cpp's LLAMA architecture needs."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int
    n_ctx_train: int
    rms_eps: float
    rope_theta: float
    rope_linear_factor: Optional[float] = None
    # the output projection is the token embedding: no output tensor is written (llama.cpp reuses token_embd)
    tied_embeddings: bool = False

    @staticmethod
    def from_hf(cfg) -> "LlamaHParams":
        """Read a transformers ``LlamaConfig`` (or a text_config of the same shape)."""
        if getattr(cfg, "mlp_bias", False):
            raise ExportError("Llama models with MLP biases are not supported")
        scaling = getattr(cfg, "rope_scaling", None) or {}
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in (None, "default", "linear"):
            raise ExportError(f"RoPE scaling {kind!r} is not supported by this exporter yet")
        n_head = cfg.num_attention_heads
        return LlamaHParams(
            n_vocab=cfg.vocab_size,
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_hidden_layers,
            n_head=n_head,
            n_head_kv=getattr(cfg, "num_key_value_heads", None) or n_head,
            n_ff=cfg.intermediate_size,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head,
            n_ctx_train=cfg.max_position_embeddings,
            rms_eps=float(cfg.rms_norm_eps),
            rope_theta=float(getattr(cfg, "rope_theta", 10000.0)),
            rope_linear_factor=float(scaling["factor"]) if kind == "linear" else None,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
        )


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's half-split RoPE layout to llama.cpp's interleaved one."""
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(
    path: Path,
    hp: LlamaHParams,
    tensors: Iterable[tuple[str, np.ndarray]],
    tok: TokenizerMeta,
    dtype: str,
    name: str,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Write a GGUF for llama.cpp from HF ``LlamaForCausalLM``-named f32 tensors.

    ``tensors`` yields ``(hf_name, array)`` with names like ``model.layers.0.self_attn.q_proj.weight``;
    ``dtype`` is ``f32`` or ``f16`` for the 2-D weights. With ``hp.tied_embeddings`` the
    ``lm_head.weight`` given is left out (llama.cpp reuses token_embd when there is no output tensor).
    """
    if dtype not in ("f32", "f16"):
        raise ExportError(f"unsupported LLM dtype {dtype!r} (f32 or f16)")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp.n_layer)
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    w = gguf.GGUFWriter(path, arch)
    _write_hparams(w, hp, dtype, name)
    _write_tokenizer(w, tok.padded(hp.n_vocab))
    for hf_name, arr in tensors:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hp.tied_embeddings and hf_name == "lm_head.weight":
            if progress:
                progress(1)
            continue
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ExportError(f"cannot map tensor {hf_name} to a GGUF name")
        arr = np.asarray(arr, dtype=np.float32)
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            arr = permute_qk(arr, hp.n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            arr = permute_qk(arr, hp.n_head_kv)
        if dtype == "f16" and arr.ndim == 2:
            arr = arr.astype(np.float16)
        w.add_tensor(new, np.ascontiguousarray(arr))
        if progress:
            progress(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_hparams(w: gguf.GGUFWriter, hp: LlamaHParams, dtype: str, name: str) -> None:
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(hp.n_vocab)
    w.add_context_length(hp.n_ctx_train)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_rope_dimension_count(hp.head_dim)
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    if hp.rope_linear_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_linear_factor)


def _write_tokenizer(w: gguf.GGUFWriter, tok: TokenizerMeta) -> None:
    w.add_tokenizer_model(tok.model)
    if tok.pre:
        w.add_tokenizer_pre(tok.pre)
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.token_types)
    if tok.scores is not None:
        w.add_token_scores(tok.scores)
    if tok.merges:
        w.add_token_merges(tok.merges)
    for setter, value in (
        (w.add_bos_token_id, tok.bos_id),
        (w.add_eos_token_id, tok.eos_id),
        (w.add_unk_token_id, tok.unk_id),
        (w.add_pad_token_id, tok.pad_id),
    ):
        if value is not None:
            setter(int(value))
    w.add_add_bos_token(tok.add_bos)
    w.add_add_eos_token(tok.add_eos)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)


# The Llama architecture as families name it (LLaVA, LLaVA-NeXT, Idefics3 and plain Llama LMs):
# causal attention and one position per embedding row, as for text.
LLAMA = LLMPart(
    arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA],
    hparams=LlamaHParams.from_hf,
    write_gguf=write_llama_gguf,
    media_attention="causal",
    media_positions="linear",
)
