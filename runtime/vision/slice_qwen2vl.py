"""Qwen2-VL / Qwen2.5-VL dynamic resolution: plan (smart_resize), patchify, the vision graph's
precomputed inputs, and the M-RoPE positions of the merged rows.

Ports, from transformers 4.57: ``models/qwen2_vl/image_processing_qwen2_vl.py`` (``smart_resize``
and the patch layout of ``Qwen2VLImageProcessor._preprocess``), and from
``models/qwen2_5_vl/modeling_qwen2_5_vl.py`` ``Qwen2_5_VisionTransformerPretrainedModel``'s
``rot_pos_emb`` (2-D patch positions) and ``get_window_index`` (the window permutation and
``cu_window_seqlens``), and ``Qwen2_5_VLModel.get_rope_index`` (the (t, h, w) position ids of
image rows). The graph runs one temporal group of one image per call (vision attention never
crosses temporal groups: HF's ``cu_seqlens`` has one segment per group), so the inputs here
describe a single ``(grid_h, grid_w)`` group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from edge.errors import InputError
from edge.preprocess import Qwen2VLPreprocess
from edge.runtime.vision.slice_common import pixel_values, resize, rgb_for

# HF refuses images whose sides differ more than this (smart_resize's ValueError)
MAX_ASPECT = 200
# additive key mask of padded window slots (finite: softmax of an all-finite row is never NaN)
MASKED = -1e30


@dataclass(frozen=True)
class Qwen2VLPlan:
    """What ``Qwen2VLImageProcessor`` makes of one image (sizes are ``(width, height)``)."""

    source: tuple[int, int]  # the image's size
    resized: tuple[int, int]  # after smart_resize, multiples of patch_size * merge_size
    grid: tuple[int, int, int]  # image_grid_thw: temporal groups, patch rows, patch columns
    image_tokens: int  # merged rows the LLM gets (grid_t * grid_h * grid_w / merge_size ** 2)
    max_pixels: int  # the pixel limit used (the bundle's, or a smaller one from the budget)
    budget_applied: bool  # the budget lowered max_pixels below the bundle's


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """``(height, width)`` after HF's ``smart_resize``: multiples of ``factor`` with about the
    same aspect ratio and a pixel count in ``[min_pixels, max_pixels]`` (Python's ``round``,
    half to even, as HF).

    Raises:
        InputError: an aspect ratio above 200 (HF raises ValueError there).
    """
    if height < 1 or width < 1:
        raise InputError(f"an image must be at least 1x1 pixels, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise InputError(
            f"the image is {width}x{height}: Qwen2-VL takes aspect ratios up to {MAX_ASPECT}:1 "
            f"(its sides cannot both reach the {factor}-pixel minimum)"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def budget_max_pixels(pp: Qwen2VLPreprocess, max_image_tokens: Optional[int]) -> int:
    """``max_pixels`` under a token budget: each LLM row is one ``factor x factor`` block.

    Raises:
        InputError: a budget below the rows of the smallest image the processor makes
            (``min_pixels`` worth of blocks).
    """
    if max_image_tokens is None:
        return pp.max_pixels
    least = -(-pp.min_pixels // (pp.factor * pp.factor))
    if max_image_tokens < least:
        raise InputError(
            f"max_image_tokens={max_image_tokens} is below the {least} rows of the smallest image this "
            f"model makes (min_pixels={pp.min_pixels}, one row per {pp.factor}x{pp.factor} pixels)"
        )
    return min(pp.max_pixels, max_image_tokens * pp.factor * pp.factor)


def plan_qwen2vl(
    width: int, height: int, pp: Qwen2VLPreprocess, max_image_tokens: Optional[int] = None, frames: int = 1
) -> Qwen2VLPlan:
    """The processor's geometry for an image (or ``frames`` video frames) of ``width x height``."""
    max_pixels = budget_max_pixels(pp, max_image_tokens)
    if pp.do_resize:
        h, w = smart_resize(height, width, pp.factor, pp.min_pixels, max_pixels)
    else:
        if height % pp.factor or width % pp.factor:
            raise InputError(f"with do_resize off, image sides must be multiples of {pp.factor}, got {width}x{height}")
        h, w = height, width
    grid_t = -(-frames // pp.temporal_patch_size)
    grid = (grid_t, h // pp.patch_size, w // pp.patch_size)
    tokens = grid_t * grid[1] * grid[2] // (pp.merge_size**2)
    return Qwen2VLPlan((width, height), (w, h), grid, tokens, max_pixels, max_pixels < pp.max_pixels)


def apply_qwen2vl(images: Sequence[Image.Image], plan: Qwen2VLPlan, pp: Qwen2VLPreprocess) -> np.ndarray:
    """Pixel work of the plan: resize, rescale, normalise each frame (one image = one frame),
    repeat the last frame to fill the temporal patch, and patchify.

    Returns ``[grid_t, grid_h / m, grid_w / m, m * m, 3 * T * P * P]`` float32: reshaped to
    ``[-1, 3 * T * P * P]`` it is HF's ``pixel_values``; the leading axes keep the grid.
    """
    frames = []
    for image in images:
        rgb = rgb_for(image, plan.source)
        if tuple(rgb.size) != plan.resized or pp.do_resize:
            rgb = resize(rgb, plan.resized, pp.resample)
        frames.append(np.asarray(rgb))
    values = pixel_values(
        np.stack(frames),
        do_rescale=pp.do_rescale,
        rescale_factor=pp.rescale_factor,
        do_normalize=pp.do_normalize,
        mean=pp.mean,
        std=pp.std,
    )
    return patchify(values, pp)


def patchify(frames: np.ndarray, pp: Qwen2VLPreprocess) -> np.ndarray:
    """``[F, 3, H, W]`` -> ``[grid_t, gh / m, gw / m, m * m, 3 * T * P * P]`` in HF's patch order
    (``Qwen2VLImageProcessor._preprocess``: the last frame repeated to a multiple of T)."""
    t_size, p, m = pp.temporal_patch_size, pp.patch_size, pp.merge_size
    if frames.shape[0] % t_size:
        extra = np.repeat(frames[-1:], t_size - frames.shape[0] % t_size, axis=0)
        frames = np.concatenate([frames, extra])
    n, c, h, w = frames.shape
    gt, gh, gw = n // t_size, h // p, w // p
    x = frames.reshape(gt, t_size, c, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt, gh // m, gw // m, m * m, c * t_size * p * p))


def patch_positions(grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """``[grid_h * grid_w, 2]`` (row, column) of each patch in HF's patch order (``rot_pos_emb``)."""
    rows = np.broadcast_to(np.arange(grid_h)[:, None], (grid_h, grid_w))
    cols = np.broadcast_to(np.arange(grid_w)[None, :], (grid_h, grid_w))
    order = [
        a.reshape(grid_h // merge, merge, grid_w // merge, merge).transpose(0, 2, 1, 3).ravel() for a in (rows, cols)
    ]
    return np.stack(order, axis=-1).astype(np.int64)


def window_index(grid_h: int, grid_w: int, merge: int, units: int) -> tuple[np.ndarray, np.ndarray]:
    """``get_window_index`` for one temporal group: the window order of the merged units and the
    number of units in each window (windows of ``units x units`` merged units; empty ones dropped,
    as ``unique_consecutive`` drops them from ``cu_window_seqlens``)."""
    lh, lw = grid_h // merge, grid_w // merge
    pad_h, pad_w = units - lh % units, units - lw % units
    index = np.full((lh + pad_h, lw + pad_w), -100, np.int64)
    index[:lh, :lw] = np.arange(lh * lw).reshape(lh, lw)
    nh, nw = (lh + pad_h) // units, (lw + pad_w) // units
    windows = index.reshape(nh, units, nw, units).transpose(0, 2, 1, 3).reshape(nh * nw, units * units)
    lengths = (windows != -100).sum(axis=1)
    order = windows.ravel()
    return order[order != -100], lengths[lengths > 0]


def vision_inputs(grid_h: int, grid_w: int, pp: Qwen2VLPreprocess) -> dict[str, np.ndarray]:
    """The precomputed inputs of one graph run (one temporal group of ``grid_h x grid_w``
    patches), by the manifest's input names; see ``docs/qwen2_5_vl.md``."""
    m, unit = pp.merge_size, pp.merge_size**2
    order, lengths = window_index(grid_h, grid_w, m, pp.window_units)
    n = grid_h * grid_w
    pos = patch_positions(grid_h, grid_w, m).reshape(-1, unit, 2)[order].reshape(n, 2)
    sizes = lengths * unit  # patches per window
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slots = pp.window_patches
    offsets = np.arange(slots)[None, :]
    valid = offsets < sizes[:, None]
    gather = np.where(valid, starts[:, None] + offsets, 0).astype(np.int64).ravel()
    window_of = np.repeat(np.arange(len(sizes)), sizes)
    scatter = (window_of * slots + (np.arange(n) - starts[window_of])).astype(np.int64)
    return {
        pp.rope_input: np.ascontiguousarray(pos),
        pp.window_index_input: order.astype(np.int64),
        pp.reverse_index_input: np.argsort(order, kind="stable").astype(np.int64),
        pp.window_gather_input: gather,
        pp.window_scatter_input: scatter,
        pp.window_mask_input: np.where(valid, 0.0, MASKED).astype(np.float32),
    }


def mrope_positions(grid: tuple[int, int, int], merge: int, t_step: float = 0.0) -> np.ndarray:
    """``[3, rows]`` (t, h, w) positions of an image's merged rows relative to the position of its
    first row, as ``get_rope_index`` makes them: ``t = int(group * t_step)`` (0 for images, whose
    ``second_per_grid_t`` is 0), ``h``/``w`` the merged row/column."""
    gt, lh, lw = grid[0], grid[1] // merge, grid[2] // merge
    t = (np.arange(gt, dtype=np.float64) * t_step).astype(np.int64)
    tt = np.broadcast_to(t[:, None, None], (gt, lh, lw)).ravel()
    hh = np.broadcast_to(np.arange(lh)[None, :, None], (gt, lh, lw)).ravel()
    ww = np.broadcast_to(np.arange(lw)[None, None, :], (gt, lh, lw)).ravel()
    return np.stack([tt, hh, ww]).astype(np.int64)


def graph_feeds(pp: Qwen2VLPreprocess, group: np.ndarray, input_name: str) -> tuple[dict[str, np.ndarray], int]:
    """The vision graph's feeds for one temporal group ``[gh / m, gw / m, m * m, width]`` (an
    element of :func:`apply_qwen2vl`'s result) and the rows it returns."""
    if group.ndim != 4:
        raise InputError(f"qwen2vl patches must be [rows, cols, merge**2, width] per group, got {group.shape}")
    lh, lw = group.shape[0], group.shape[1]
    feeds = {input_name: np.ascontiguousarray(group.reshape(-1, group.shape[-1]), dtype=np.float32)}
    feeds.update(vision_inputs(lh * pp.merge_size, lw * pp.merge_size, pp))
    return feeds, lh * lw
