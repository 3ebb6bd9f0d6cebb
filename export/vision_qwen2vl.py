"""The Qwen2.5-VL vision tower + patch merger as one ONNX graph with a dynamic number of patches.

``Qwen2_5_VisionTransformerPretrainedModel.forward`` (transformers 4.57,
``models/qwen2_5_vl/modeling_qwen2_5_vl.py``) computes its rotary table and window permutation
with Python loops over ``grid_thw`` and runs each attention window as a separate ``split``
chunk; a tracer would freeze all of that to the example grid. This module re-states the same
computation with those facts as graph inputs, computed by the runtime
(:func:`edge.runtime.vision.slice_qwen2vl.vision_inputs`, golden-tested against HF's
``rot_pos_emb``/``get_window_index``):

* ``rope_pos`` (row, column per patch, window order) -> ``pos * inv_freq`` in the graph, the
  same float32 products as HF's ``outer(arange, inv_freq)[pos]``;
* ``window_index`` / ``reverse_index``: HF's permutation of merged units and its argsort;
* windowed layers gather the patches into ``[windows, window_patches]`` slots
  (``window_gather``), attend under a key mask of the padded slots (``window_mask``; HF's
  per-window split attention, batched), and put them back (``window_scatter``);
* full-attention layers (``fullatt_block_indexes``) attend over the whole group.

One run is one temporal group of one image (HF's ``cu_seqlens`` never lets attention cross
groups), so full attention needs no mask and one graph serves every grid size.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edge.errors import ExportError
from edge.preprocess import Qwen2VLPreprocess
from edge.runtime.vision.slice_qwen2vl import vision_inputs

OPSET = 17
PIXELS, OUTPUT = "pixel_values", "image_embeds"


class Qwen25VisionGraph(torch.nn.Module):
    """One temporal group's patches + precomputed inputs -> merged rows ``[1, rows, out_dim]``."""

    def __init__(self, visual, pp: Qwen2VLPreprocess) -> None:
        super().__init__()
        self.visual = visual
        cfg = visual.config
        self.full = set(cfg.fullatt_block_indexes)
        self.heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.unit = cfg.spatial_merge_size**2
        self.slots = pp.window_patches
        self.register_buffer("inv_freq", visual.rotary_pos_emb.inv_freq.detach().clone(), persistent=False)

    def forward(self, pixel_values, rope_pos, window_index, reverse_index, window_gather, window_scatter, window_mask):
        v = self.visual
        x = v.patch_embed(pixel_values)
        d = x.shape[-1]
        x = torch.index_select(x.reshape(-1, self.unit, d), 0, window_index).reshape(-1, d)
        freqs = (rope_pos.float().unsqueeze(-1) * self.inv_freq).reshape(-1, self.head_dim // 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        for i, blk in enumerate(v.blocks):
            h = blk.norm1(x)
            if i in self.full:
                h = self._attention(blk.attn, h, cos, sin)
            else:
                h = self._attention(blk.attn, h, cos, sin, window_gather, window_scatter, window_mask)
            x = x + h
            x = x + blk.mlp(blk.norm2(x))
        y = torch.index_select(v.merger(x), 0, reverse_index)
        return y.unsqueeze(0)

    def _attention(self, attn, h, cos, sin, gather=None, scatter=None, mask=None):
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

        q, k, v = attn.qkv(h).reshape(-1, 3, self.heads, self.head_dim).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)  # [patches, heads, head_dim]
        if gather is None:
            q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, patches, head_dim]
            scores = torch.matmul(q, k.transpose(1, 2)) * attn.scaling
            out = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32), v)
            out = out.transpose(0, 1).reshape(-1, self.heads * self.head_dim)
        else:
            q, k, v = (
                torch.index_select(t, 0, gather).reshape(-1, self.slots, self.heads, self.head_dim).transpose(1, 2)
                for t in (q, k, v)
            )  # [windows, heads, slots, head_dim]
            scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling + mask[:, None, None, :]
            out = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32), v)
            out = out.transpose(1, 2).reshape(-1, self.heads * self.head_dim)
            out = torch.index_select(out, 0, scatter)
        return attn.proj(out)


def example_inputs(pp: Qwen2VLPreprocess, grid_h: int, grid_w: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random patches of one ``grid_h x grid_w`` group with their precomputed inputs (graph order)."""
    rng = np.random.default_rng(seed)
    width = 3 * pp.temporal_patch_size * pp.patch_size**2
    feeds = {PIXELS: rng.standard_normal((grid_h * grid_w, width)).astype(np.float32)}
    feeds.update(vision_inputs(grid_h, grid_w, pp))
    return feeds


def export_qwen2vl_onnx(module: Qwen25VisionGraph, path: Path, pp: Qwen2VLPreprocess, grid: tuple[int, int]) -> None:
    """Trace ``module`` on an example grid into ``path`` with every patch/window axis dynamic."""
    feeds = example_inputs(pp, *grid)
    names = list(feeds)
    axes = {
        PIXELS: {0: "patches"},
        pp.rope_input: {0: "patches"},
        pp.window_index_input: {0: "units"},
        pp.reverse_index_input: {0: "units"},
        pp.window_gather_input: {0: "slots"},
        pp.window_scatter_input: {0: "patches"},
        pp.window_mask_input: {0: "windows"},
        OUTPUT: {1: "rows"},
    }
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    module.eval()
    # a tower over 2 GB (Qwen2.5-VL's is 670 M parameters, 2.7 GB at f32) is written with external
    # data, one file per tensor: export into a folder of its own, then keep one data file next to it
    stage = path.parent / f".{path.stem}-export"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(stage / path.name),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many kinds; report one line
            shutil.rmtree(stage, ignore_errors=True)
            raise ExportError(f"ONNX export of the Qwen2.5-VL vision tower failed: {exc}") from None
    consolidate(stage / path.name, path)
    shutil.rmtree(stage, ignore_errors=True)


def consolidate(src: Path, dst: Path) -> None:
    """Move the graph ``src`` to ``dst``; external data written beside it (a graph over 2 GB) is
    gathered into one ``<name>.data`` file, which the bundle lists like any other file."""
    if not any(p.name != src.name for p in src.parent.iterdir()):
        shutil.move(str(src), str(dst))
        return
    model = onnx.load(str(src))  # reads the external tensors from src's folder
    onnx.save_model(
        model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=dst.name + ".data"
    )
