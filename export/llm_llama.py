"""Our own HF -> GGUF converter for Llama-architecture language models.

Written on the ``gguf`` package (the GGUF file format library of llama.cpp).
Facts followed, from llama.cpp's converter and loader: tensor names come from
``gguf.TensorNameMap``; HF Llama checkpoints rotate q/k with "rotate_half"
(NeoX order) while llama.cpp's LLAMA graph uses interleaved RoPE, so the rows of
q_proj and k_proj are permuted per head; 1-D tensors (norms) stay f32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import gguf
import numpy as np

from edge.errors import ExportError
from edge.export.registry import LLMPart
from edge.export.tokenizer import TokenizerMeta


@dataclass(frozen=True)
class TextShape:
    """The hyper-parameters every llama.cpp text architecture here has (the rest is per architecture)."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int
    n_ctx_train: int
    rms_eps: float


@dataclass(frozen=True)
class LlamaHParams(TextShape):
    """The hyper-parameters llama.cpp's LLAMA architecture needs."""

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
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return LlamaHParams(
            **shape_hparams(cfg, head_dim, _context_with_full_attention(cfg)),
            rope_theta=float(getattr(cfg, "rope_theta", 10000.0)),
            rope_linear_factor=float(scaling["factor"]) if kind == "linear" else None,
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
        )


def shape_hparams(cfg, head_dim: int, n_ctx_train: int) -> dict:
    """The hyper-parameters every text architecture here reads alike from a transformers config
    (vocabulary, widths, layer and head counts, ``rms_eps``), as keyword arguments."""
    n_head = cfg.num_attention_heads
    return dict(
        n_vocab=cfg.vocab_size,
        n_embd=cfg.hidden_size,
        n_layer=cfg.num_hidden_layers,
        n_head=n_head,
        n_head_kv=getattr(cfg, "num_key_value_heads", None) or n_head,
        n_ff=cfg.intermediate_size,
        head_dim=head_dim,
        n_ctx_train=n_ctx_train,
        rms_eps=float(cfg.rms_norm_eps),
    )


def _context_with_full_attention(cfg) -> int:
    """The training context, capped at a Mistral config's attention window.

    Mistral is the Llama architecture plus sliding-window attention (``sliding_window``, e.g.
    4096 in Mistral-7B v0.1). llama.cpp's converter maps ``MistralForCausalLM`` to its ``llama``
    architecture and drops the window (conversion/llama.py ``LlamaModel``; the llama graph has no
    sliding window), so llama.cpp attends to the whole context: it matches transformers only up
    to ``sliding_window`` tokens, and that is the context recorded. Configs that switch the
    window off (``use_sliding_window: false``, Qwen2) keep their full context.
    """
    n_ctx = int(cfg.max_position_embeddings)
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", True) and int(window) < n_ctx:
        return int(window)
    return n_ctx


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
    # HF's rotary_emb.inv_freq buffers are dropped here, before write_gguf: they do not count as progress
    kept = ((n, a) for n, a in tensors if not n.endswith("rotary_emb.inv_freq"))
    header = partial(write_hparams, hp=hp, dtype=dtype, name=name)
    write_gguf(path, gguf.MODEL_ARCH.LLAMA, hp, kept, tok, dtype, header, convert=_permute, progress=progress)


def _permute(hf_name: str, arr: np.ndarray, hp: LlamaHParams) -> np.ndarray:
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return permute_qk(arr, hp.n_head)
    if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return permute_qk(arr, hp.n_head_kv)
    return arr


def write_gguf(
    path: Path,
    arch: gguf.MODEL_ARCH,
    hp,
    tensors: Iterable[tuple[str, np.ndarray]],
    tok: TokenizerMeta,
    dtype: str,
    header: Callable[[gguf.GGUFWriter], None],
    convert: Optional[Callable[[str, np.ndarray, Any], np.ndarray]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Write a GGUF of architecture ``arch`` from HF-named f32 tensors: ``header(writer)`` writes the
    hyper-parameters, then the tokenizer (padded to ``hp.n_vocab``), then the tensors under
    ``gguf.TensorNameMap`` names.

    ``hp`` is any hyper-parameter record here (``n_layer``, ``n_vocab``, ``tied_embeddings``);
    ``convert(hf_name, array, hp)`` rewrites an f32 array before it is stored; ``dtype`` is ``f32``
    or ``f16`` for the 2-D weights (1-D tensors stay f32). ``rotary_emb.inv_freq`` buffers and, with
    ``hp.tied_embeddings``, ``lm_head.weight`` are left out (llama.cpp reuses token_embd) and
    still counted by ``progress``.

    Raises:
        ExportError: an unsupported ``dtype`` or a tensor name with no GGUF name.
    """
    if dtype not in ("f32", "f16"):
        raise ExportError(f"unsupported LLM dtype {dtype!r} (f32 or f16)")
    names = gguf.get_tensor_name_map(arch, hp.n_layer)
    w = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    header(w)
    write_tokenizer(w, tok.padded(hp.n_vocab))
    for hf_name, arr in tensors:
        if hf_name.endswith("rotary_emb.inv_freq") or (hp.tied_embeddings and hf_name == "lm_head.weight"):
            if progress:
                progress(1)
            continue
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ExportError(f"cannot map tensor {hf_name} to a GGUF name")
        arr = np.asarray(arr, dtype=np.float32)
        if convert is not None:
            arr = convert(hf_name, arr, hp)
        if dtype == "f16" and arr.ndim == 2:
            arr = arr.astype(np.float16)
        w.add_tensor(new, np.ascontiguousarray(arr))
        if progress:
            progress(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_shape(w: gguf.GGUFWriter, hp: TextShape, dtype: str, name: str) -> None:
    """Write the keys every architecture here starts with: the file's name and type, then the
    vocabulary, context, widths and layer / head counts of ``hp``."""
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(hp.n_vocab)
    w.add_context_length(hp.n_ctx_train)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)


def write_hparams(w: gguf.GGUFWriter, hp: LlamaHParams, dtype: str, name: str) -> None:
    """Write the LLAMA hyper-parameters of ``hp`` (and the file's name and type) to ``w``."""
    write_shape(w, hp, dtype, name)
    w.add_rope_dimension_count(hp.head_dim)
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    if hp.rope_linear_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_linear_factor)


def write_tokenizer(w: gguf.GGUFWriter, tok: TokenizerMeta) -> None:
    """Write the ``tokenizer.ggml.*`` fields of ``tok`` to ``w``."""
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
    if tok.add_space_prefix is not None:
        w.add_add_space_prefix(tok.add_space_prefix)
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
