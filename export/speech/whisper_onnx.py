"""Whisper (``WhisperForConditionalGeneration``) -> an ONNX encoder and a KV-cached ONNX decoder.

Two graphs, laid out for a small runtime (and a C one later):

* **encoder**: ``input_features [B, n_mels, 3000]`` -> ``encoder_hidden_states [B, 1500, D]``
  and the cross-attention keys/values of every decoder layer, ``cross_k.{i}`` /
  ``cross_v.{i}`` ``[B, H, 1500, Dh]``. They are computed once per 30 s window, here
  rather than in the decoder's first step (as whisper.cpp and sherpa-onnx do).
* **decoder**: ``input_ids [B, T]``, the self-attention cache ``self_k.{i}`` /
  ``self_v.{i}`` ``[B, H, P, Dh]`` (``P`` may be 0) and the cross K/V -> ``logits [B, V]``
  of the last position and ``new_self_k.{i}`` / ``new_self_v.{i}`` ``[B, H, P + T, Dh]``.
  One graph does both the prompt and each decoded token; positions start at ``P``.
  One tensor per layer: a stacked cache would be split (copied) by the graph at every
  step, which cost a third of a tiny.en decoder step.

The decoder restates ``WhisperDecoder.forward`` (transformers' modeling_whisper.py) over
the model's own submodules, with the cache as plain tensors so the TorchScript tracer
sees no Python cache objects; parity with transformers is checked at export.

We export with ``torch.onnx`` rather than optimum-onnx's Whisper config: optimum's
layout is three graphs (or two decoders merged under an ``If``) with the cross K/V
computed in the decoder, and optimum-onnx 0.1 caps transformers below 4.58.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from edge.errors import ExportError
from edge.manifest import KVCacheLayout, TensorSpec

OPSET = 17
ENCODER_FILE = "audio_encoder.onnx"
DECODER_FILE = "audio_decoder.onnx"
VOCAB_FILE = "audio_vocab.json"

# role -> (graph tensor name, dtype); "{layer}" names stand for one tensor per decoder layer
ENCODER_IO = {
    "input_features": ("input_features", "float32"),
    "hidden_states": ("encoder_hidden_states", "float32"),
    "cross_k": ("cross_k.{layer}", "float32"),
    "cross_v": ("cross_v.{layer}", "float32"),
}
DECODER_IO = {
    "input_ids": ("input_ids", "int64"),
    "self_k": ("self_k.{layer}", "float32"),
    "self_v": ("self_v.{layer}", "float32"),
    "cross_k": ("cross_k.{layer}", "float32"),
    "cross_v": ("cross_v.{layer}", "float32"),
    "logits": ("logits", "float32"),
    "new_self_k": ("new_self_k.{layer}", "float32"),
    "new_self_v": ("new_self_v.{layer}", "float32"),
}
DECODER_INPUTS = ("input_ids", "self_k", "self_v", "cross_k", "cross_v")
DECODER_OUTPUTS = ("logits", "new_self_k", "new_self_v")


def kv_layout(config) -> KVCacheLayout:
    """The cache layout of a Whisper config."""
    heads = int(config.decoder_attention_heads)
    return KVCacheLayout(
        layers=int(config.decoder_layers),
        heads=heads,
        head_dim=int(config.d_model) // heads,
        max_positions=int(config.max_target_positions),
        encoder_positions=int(config.max_source_positions),
    )


def io_specs(config) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """Graph tensors by role, with -1 for dynamic axes (batch, tokens, cache positions)."""
    kv = kv_layout(config)
    frames = 2 * kv.encoder_positions  # conv2 has stride 2
    enc_kv = [-1, kv.heads, kv.encoder_positions, kv.head_dim]
    self_kv = [-1, kv.heads, -1, kv.head_dim]
    shapes_enc = {
        "input_features": [-1, int(config.num_mel_bins), frames],
        "hidden_states": [-1, kv.encoder_positions, int(config.d_model)],
        "cross_k": enc_kv,
        "cross_v": enc_kv,
    }
    shapes_dec = {
        "input_ids": [-1, -1],
        "self_k": self_kv,
        "self_v": self_kv,
        "cross_k": enc_kv,
        "cross_v": enc_kv,
        "logits": [-1, int(config.vocab_size)],
        "new_self_k": self_kv,
        "new_self_v": self_kv,
    }
    enc = {role: TensorSpec(n, dt, shapes_enc[role]) for role, (n, dt) in ENCODER_IO.items()}
    dec = {role: TensorSpec(n, dt, shapes_dec[role]) for role, (n, dt) in DECODER_IO.items()}
    return enc, dec


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


class EncoderGraph(nn.Module):
    """input_features -> (hidden_states, cross_k.0.., cross_v.0..), the encoder run once per window."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.model.encoder
        self.layers = model.model.decoder.layers
        self.heads = model.config.decoder_attention_heads

    def forward(self, input_features: torch.Tensor):
        h = self.encoder(input_features).last_hidden_state
        ks = [_heads(layer.encoder_attn.k_proj(h), self.heads) for layer in self.layers]
        vs = [_heads(layer.encoder_attn.v_proj(h), self.heads) for layer in self.layers]
        return (h, *ks, *vs)


class DecoderGraph(nn.Module):
    """One decoder pass over ``T`` new tokens after ``P`` cached positions.

    Inputs: ``input_ids``, then per layer ``self_k``, per layer ``self_v``, per layer
    ``cross_k``, per layer ``cross_v``. Outputs: logits, per layer new ``self_k``, per
    layer new ``self_v``.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.heads = model.config.decoder_attention_heads
        self.n = len(self.decoder.layers)
        self.scaling = (model.config.d_model // self.heads) ** -0.5

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
        # transformers scales the query before q @ k^T (the original implementation's order)
        w = torch.matmul(q * self.scaling, k.transpose(2, 3))
        if mask is not None:
            w = w + mask
        out = torch.matmul(torch.softmax(w, dim=-1), v)
        b, h, t, dh = out.shape
        return out.transpose(1, 2).reshape(b, t, h * dh)

    def forward(self, input_ids, *cache):
        n = self.n
        self_k, self_v, cross_k, cross_v = (cache[i * n : (i + 1) * n] for i in range(4))
        dec = self.decoder
        past = self_k[0].shape[2]
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device) + past
        x = dec.embed_tokens(input_ids) + dec.embed_positions.weight[positions]
        # query i (absolute position past + i) sees keys 0 .. past + i
        keys = torch.arange(t + past, device=input_ids.device)
        mask = torch.where(keys[None, :] <= positions[:, None], 0.0, float("-inf")).to(x.dtype)
        new_k, new_v = [], []
        for i, layer in enumerate(dec.layers):
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            k = torch.cat([self_k[i], _heads(attn.k_proj(h), self.heads)], dim=2)
            v = torch.cat([self_v[i], _heads(attn.v_proj(h), self.heads)], dim=2)
            new_k.append(k)
            new_v.append(v)
            x = x + attn.out_proj(self._attend(_heads(attn.q_proj(h), self.heads), k, v, mask))
            cross = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            x = x + cross.out_proj(self._attend(_heads(cross.q_proj(h), self.heads), cross_k[i], cross_v[i]))
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        x = dec.layer_norm(x[:, -1])
        return (self.proj_out(x), *new_k, *new_v)


def example_inputs(config, past: int = 3, tokens: int = 2, batch: int = 1):
    """Seeded example tensors for tracing (any values: the graphs are shape-generic)."""
    kv = kv_layout(config)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, int(config.num_mel_bins), 2 * kv.encoder_positions, generator=g)
    ids = torch.randint(0, int(config.vocab_size), (batch, tokens), generator=g)
    self_kv = [torch.randn(batch, kv.heads, past, kv.head_dim, generator=g) for _ in range(2 * kv.layers)]
    cross = [torch.randn(batch, kv.heads, kv.encoder_positions, kv.head_dim, generator=g) for _ in range(2 * kv.layers)]
    return feats, ids, self_kv, cross


def _names(kv: KVCacheLayout, io: dict, roles) -> list[str]:
    out = []
    for role in roles:
        name = io[role][0]
        out += kv.names(name) if "{layer}" in name else [name]
    return out


def export_graphs(model, out_dir: Path) -> None:
    """Trace the encoder and decoder of ``model`` into ``out_dir`` (f32 weights)."""
    config = model.config
    kv = kv_layout(config)
    feats, ids, self_kv, cross = example_inputs(config)
    enc_out = _names(kv, ENCODER_IO, ("hidden_states", "cross_k", "cross_v"))
    enc_in = ENCODER_IO["input_features"][0]
    enc_axes = {enc_in: {0: "batch"}, **{name: {0: "batch"} for name in enc_out}}
    _trace(EncoderGraph(model), (feats,), out_dir / ENCODER_FILE, [enc_in], enc_out, enc_axes)
    dec_in = _names(kv, DECODER_IO, DECODER_INPUTS)
    dec_out = _names(kv, DECODER_IO, DECODER_OUTPUTS)
    axes: dict = {dec_in[0]: {0: "batch", 1: "tokens"}, dec_out[0]: {0: "batch"}}
    for name in dec_in[1 : 1 + 2 * kv.layers]:
        axes[name] = {0: "batch", 2: "past"}
    for name in dec_in[1 + 2 * kv.layers :]:
        axes[name] = {0: "batch"}
    for name in dec_out[1:]:
        axes[name] = {0: "batch", 2: "positions"}
    _trace(DecoderGraph(model), (ids, *self_kv, *cross), out_dir / DECODER_FILE, dec_in, dec_out, axes)
    untie_transposed_copies(out_dir / DECODER_FILE)


def untie_transposed_copies(path: Path) -> int:
    """Make ``MatMul(x, W^T)`` use ``W`` itself through ``Gemm(transB=1)``; returns the count.

    Constant folding stores the output projection, tied to the token embedding, a
    second time as its transpose (80 MB more for tiny.en). ``Gemm`` reads the
    embedding transposed, so one copy serves both the ``Gather`` and the logits.
    """
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(inferred.value_info) + list(inferred.input)}
    by_shape: dict[tuple, list] = {}
    for init in graph.initializer:
        if len(init.dims) == 2:
            by_shape.setdefault(tuple(init.dims), []).append(init)
    replaced = 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or ranks.get(node.input[0]) != 2:
            continue
        b = inits[node.input[1]]
        if len(b.dims) != 2:
            continue
        b_arr = numpy_helper.to_array(b)
        for cand in by_shape.get((b.dims[1], b.dims[0]), []):
            if cand.name != b.name and np.array_equal(numpy_helper.to_array(cand).T, b_arr):
                gemm = helper.make_node("Gemm", [node.input[0], cand.name], list(node.output), name=node.name, transB=1)
                node.CopyFrom(gemm)
                replaced += 1
                break
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(path))
    return replaced


def _trace(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many kinds; report one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"ONNX export of {path.name} failed: {first}") from None
