"""Idefics3 / SmolVLM image splitting, as plan then execute.

Reproduces the slow ``transformers.Idefics3ImageProcessor.preprocess`` of transformers
4.57 (``SmolVLMImageProcessor`` is the same code) with numpy and Pillow:

1. ``resize``: the longest edge becomes ``size["longest_edge"]`` (small images are
   enlarged too), the other edge ``int(long / aspect)`` rounded *up to even*
   (``_resize_output_size_rescale_to_max_len``), then capped at 4096
   (``_resize_output_size_scale_below_upper_bound``);
2. ``resize_for_vision_encoder``: both edges up to multiples of the tile size
   ``max_image_size["longest_edge"]``; the short edge is first recomputed from the new
   long edge (``int(long / aspect)``), then rounded up - a second resampling;
3. ``split_image``: if the canvas is larger than one tile, ``ceil(h/S) x ceil(w/S)``
   crops, row-major, then the *global* image: the canvas resized to ``S x S`` (a third
   resampling), last; otherwise the canvas itself is the only frame;
   without ``do_image_splitting`` the step-1 image is resized to ``S x S`` instead;
4. ``rescale`` / ``normalize`` as every HF image processor (float64 multiply, float32
   normalise); ``pad`` only matters for batches (:func:`pad_idefics3_batch`).

``do_convert_rgb`` runs *after* resizing in HF and composites alpha on white; here the
image is made RGB first (``convert("RGB")``, as ``load_image`` does), so a PIL image
with transparency passed straight to HF's processor can differ.

The prompt: :func:`idefics3_layout` follows ``processing_idefics3._prompt_split_image``
and ``_prompt_single_image``. The budget lowers ``longest_edge`` in steps of the tile
size (2048 -> 1536 -> 1024 -> 512 for SmolVLM) until the plan fits: the same plan HF
makes with that ``size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from edge.checks import check_int
from edge.errors import InputError
from edge.preprocess import Idefics3Slicing

from . import slice_common as common
from .slice_common import Box, Layout

__all__ = [
    "Idefics3Slicing",
    "Idefics3Plan",
    "plan_idefics3",
    "apply_idefics3",
    "idefics3_layout",
    "idefics3_pixel_attention_mask",
    "pad_idefics3_batch",
]

MAX_IMAGE_SIZE = 4096  # image_processing_idefics3.MAX_IMAGE_SIZE: absolute cap after step 1


@dataclass(frozen=True)
class Idefics3Plan:
    """Geometry of one image. Sizes ``(w, h)``; ``grid`` ``(rows, cols)``, ``(0, 0)``
    when the image is not split (one frame).

    ``resized`` is the image after step 1 (the source size when ``do_resize`` is off),
    ``canvas`` the image the tiles are cut from (``tile_boxes``, row-major), and the
    global frame is the canvas resized to ``global_size`` (the canvas itself when it is
    already that size). ``longest_edge`` is the step-1 target actually used and
    ``upscale`` its enlargement, ``longest_edge / max(source)`` (the snap to whole tiles
    in step 2 is not counted).
    """

    source: tuple[int, int]
    resized: tuple[int, int]
    canvas: tuple[int, int]
    grid: tuple[int, int]
    tile_boxes: tuple[Box, ...]
    global_size: tuple[int, int]
    longest_edge: int
    upscale: float
    tiles: int
    image_tokens: int
    budget_applied: bool
    reason: str


def plan_idefics3(
    width: int,
    height: int,
    params: Idefics3Slicing,
    *,
    max_tiles: Optional[int] = None,
    max_image_tokens: Optional[int] = None,
    max_upscale: Optional[float] = None,
) -> Idefics3Plan:
    """Plan the splitting of a ``width`` x ``height`` image.

    Under a budget, ``longest_edge`` goes down in steps of ``tile_size`` until the plan
    has at most ``max_tiles`` frames, ``max_image_tokens`` tokens, and an ``upscale`` of
    at most ``max_upscale`` (a single-frame plan is always allowed: the one frame is the
    model's fixed input size).

    Raises:
        InputError: a size below 1x1, a bad limit, or ``max_image_tokens`` below one frame.
    """
    check_int("image width", width)
    check_int("image height", height)
    common.check_limits(max_tiles, max_image_tokens, max_upscale)
    common.check_minimum(params.tokens_per_tile, max_image_tokens, "the global image alone")
    source = (int(width), int(height))
    first = _plan(source, params, params.longest_edge if params.do_resize else None)
    limits = (max_tiles, max_image_tokens, max_upscale)
    if _fits(first, limits):
        return first
    default_edge = params.longest_edge if params.do_resize else max(source)
    steps = [e for e in _edge_steps(params.longest_edge, params.tile_size) if e < default_edge]
    plan = first
    for edge in steps or [params.tile_size]:
        plan = _plan(source, params, edge)
        if _fits(plan, limits):
            break  # the last step (one frame: within every valid limit) always ends here
    reason = (
        f"{common.limits_text(*limits)}: longest edge {default_edge} -> {plan.longest_edge}, "
        f"grid {first.grid[0]}x{first.grid[1]} -> {plan.grid[0]}x{plan.grid[1]}"
    )
    return replace(plan, budget_applied=True, reason=reason)


def apply_idefics3(image: Image.Image, plan: Idefics3Plan, params: Idefics3Slicing) -> np.ndarray:
    """Run ``plan``: float32 ``pixel_values`` ``[tiles, 3, S, S]``, tiles row-major then
    the global image, as ``Idefics3ImageProcessor`` orders them.

    Raises:
        InputError: ``image`` is not the size the plan was made for.
    """
    rgb = common.rgb_for(image, plan.source)
    if plan.resized != plan.source:  # (HF always resizes: Pillow copies at the same size)
        rgb = common.resize(rgb, plan.resized, params.resample)
    canvas = common.resize(rgb, plan.canvas, params.resample)
    arr = np.asarray(canvas)
    frames = [arr[top:bottom, left:right] for left, top, right, bottom in plan.tile_boxes]
    if plan.tile_boxes and plan.canvas != plan.global_size:
        frames.append(np.asarray(common.resize(canvas, plan.global_size, params.resample)))
    else:
        frames.append(arr)
    return common.pixel_values(
        np.stack(frames),
        do_rescale=params.do_rescale,
        rescale_factor=params.rescale_factor,
        do_normalize=params.do_normalize,
        mean=params.mean,
        std=params.std,
    )


def idefics3_layout(plan: Idefics3Plan, params: Idefics3Slicing) -> Layout:
    """The prompt text around each frame's embeddings, as ``Idefics3Processor`` writes it.

    ``int`` items are frame indices into :func:`apply_idefics3`'s output; each stands for
    ``tokens_per_tile`` image tokens. Split: per row, ``<fake_token_around_image>
    <row_r_col_c>`` + tile for each column, then ``"\\n"``; then ``"\\n<fake_token_around_image>
    <global-img>"`` + global + ``<fake_token_around_image>``. Not split: the last part only.
    """
    fake, glob = params.fake_image_token, params.global_image_token
    rows, cols = plan.grid
    pieces: list = []
    for r in range(rows):
        for c in range(cols):
            pieces += [f"{fake}<row_{r + 1}_col_{c + 1}>", r * cols + c]
        pieces.append("\n")
    pieces += ["\n" if rows else "", f"{fake}{glob}", rows * cols, fake]
    return common.merge_text(pieces)


def idefics3_pixel_attention_mask(plan: Idefics3Plan) -> np.ndarray:
    """HF's ``pixel_attention_mask`` for one image: int64 ones ``[tiles, S, S]`` (every
    frame is ``S x S``; zeros appear only in batch padding, see :func:`pad_idefics3_batch`)."""
    w, h = plan.global_size
    return np.ones((plan.tiles, h, w), np.int64)


def pad_idefics3_batch(samples: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """HF's ``do_pad`` over a batch: each sample's frames ``[n_i, 3, H, W]`` (the frames of
    all its images, concatenated) padded with zero frames to the largest ``n_i``, and
    bottom/right with zeros to the largest ``H, W``.

    Returns:
        ``pixel_values`` float32 ``[B, N, 3, H, W]`` and ``pixel_attention_mask`` int64
        ``[B, N, H, W]`` (1 on real pixels).

    Raises:
        InputError: no samples, or arrays that are not ``[n, 3, H, W]``.
    """
    if not samples or any(s.ndim != 4 or s.shape[1] != 3 for s in samples):
        raise InputError("pad_idefics3_batch needs one [n, 3, H, W] array per sample")
    n = max(s.shape[0] for s in samples)
    h = max(s.shape[2] for s in samples)
    w = max(s.shape[3] for s in samples)
    values = np.zeros((len(samples), n, 3, h, w), np.float32)
    mask = np.zeros((len(samples), n, h, w), np.int64)
    for i, s in enumerate(samples):
        values[i, : s.shape[0], :, : s.shape[2], : s.shape[3]] = s
        mask[i, : s.shape[0], : s.shape[2], : s.shape[3]] = 1
    return values, mask


# ---- geometry --------------------------------------------------------------------


def _longest_edge_size(w: int, h: int, max_len: int) -> tuple[int, int]:
    """``get_resize_output_image_size`` of image_processing_idefics3 (float arithmetic kept)."""
    aspect = w / h
    if w >= h:
        w = max_len
        h = int(w / aspect)
        h += h % 2  # rounded up to even
    else:
        h = max_len
        w = int(h * aspect)
        w += w % 2
    h, w = max(h, 1), max(w, 1)
    aspect = w / h
    if w >= h and w > MAX_IMAGE_SIZE:
        w = MAX_IMAGE_SIZE
        h = int(w / aspect)
    elif h > w and h > MAX_IMAGE_SIZE:
        h = MAX_IMAGE_SIZE
        w = int(h * aspect)
    return max(w, 1), max(h, 1)


def _tile_multiple_size(w: int, h: int, tile: int) -> tuple[int, int]:
    """``resize_for_vision_encoder``: the short edge is recomputed from the *new* long edge."""
    aspect = w / h
    if w >= h:
        w = math.ceil(w / tile) * tile
        h = int(w / aspect)
        h = math.ceil(h / tile) * tile
    else:
        h = math.ceil(h / tile) * tile
        w = int(h * aspect)
        w = math.ceil(w / tile) * tile
    return w, h


def _plan(source: tuple[int, int], params: Idefics3Slicing, edge: Optional[int]) -> Idefics3Plan:
    tile = params.tile_size
    resized = _longest_edge_size(*source, edge) if edge is not None else source
    boxes: list[Box] = []
    rows = cols = 0
    if not params.do_image_splitting:
        canvas = (tile, tile)
    else:
        canvas = _tile_multiple_size(*resized, tile)
        cw, ch = canvas
        if ch > tile or cw > tile:  # split_image
            rows, cols = math.ceil(ch / tile), math.ceil(cw / tile)
            opt_h, opt_w = math.ceil(ch / rows), math.ceil(cw / cols)
            for r in range(rows):
                for c in range(cols):
                    x, y = c * opt_w, r * opt_h
                    boxes.append((x, y, min(x + opt_w, cw), min(y + opt_h, ch)))
    tiles = len(boxes) + 1
    return Idefics3Plan(
        source=source,
        resized=resized,
        canvas=canvas,
        grid=(rows, cols),
        tile_boxes=tuple(boxes),
        global_size=(tile, tile),
        longest_edge=edge if edge is not None else max(source),
        upscale=edge / max(source) if edge is not None else 1.0,
        tiles=tiles,
        image_tokens=tiles * params.tokens_per_tile,
        budget_applied=False,
        reason="",
    )


def _fits(plan: Idefics3Plan, limits: tuple) -> bool:
    upscale = plan.upscale if plan.tile_boxes else 0.0  # one frame: always allowed
    return common.within(plan.tiles, plan.image_tokens, upscale, *limits)


def _edge_steps(longest_edge: int, tile: int) -> list[int]:
    """``longest_edge``, then down in steps of ``tile``, ending at one tile."""
    steps = list(range(longest_edge, tile, -tile))
    return steps + [tile]
