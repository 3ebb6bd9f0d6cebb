"""LLaVA-UHD / MiniCPM-V slicing, as plan then execute.

Follows the LLaVA-UHD paper (arXiv 2403.11703, section 3.1) as MiniCPM-V's image
processor implements it (``MiniCPMVImageProcessor.slice_image``, remote code; the
defaults ``max_slice_nums=9``, ``scale_resolution=448``, ``patch_size=14``):

* ``ratio = w*h / S^2``, ``multiple = min(ceil(ratio), max_slice_nums)``; with
  ``multiple <= 1`` the image is not sliced and the overview is the image resized to
  about ``S^2`` pixels, aspect kept (enlarged if small), each side rounded to the patch
  (``find_best_resize(allow_upscale=True)``);
* otherwise the grid is, among the factorisations ``cols x rows`` of
  ``multiple - 1``, ``multiple``, ``multiple + 1`` (never 1, never above the bound),
  the one whose ``log(cols/rows)`` is closest to ``log(w/h)`` (first wins ties; the
  paper's score); the overview is the image shrunk to about ``S^2`` pixels, and the
  slices are cut from the image resized to the *refine size*: each slice about ``S^2``
  pixels, sides multiples of the patch (``get_refine_size``);
* every resize is Pillow bicubic; pixels are ``float32(x) / 255``, normalised; frames
  keep their own sizes (overview first, then slices row-major).

Rounding is Python's ``round`` (half to even) in double precision, as the reference.
llama.cpp's ``mtmd_image_preprocessor_llava_uhd`` (tools/mtmd/mtmd-image.cpp) has the
same grid search and refine arithmetic but differs in three details: it rounds
halves away from zero in float32 (``std::round``), slices whenever a side exceeds
``S`` (not the area), and stretches unsliced images to ``S x S``. The golden test
(tests/unit/test_slicing_uhd.py) says how the two were compared.

Under a budget ``max_slice_nums`` is lowered until the plan fits (1: overview only).
MiniCPM-V's resampler gives a fixed ``tokens_per_slice`` (``image_feature_size``,
the query count) per frame, whatever its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from PIL import Image

from edge.checks import check_int
from edge.errors import InputError
from edge.preprocess import UhdSlicing

from . import slice_common as common
from .slice_common import Box, Layout

__all__ = ["UhdSlicing", "UhdPlan", "plan_uhd", "apply_uhd", "uhd_layout", "uhd_patchify"]


@dataclass(frozen=True)
class UhdPlan:
    """Geometry of one image. Sizes ``(w, h)``, grid ``(rows, cols)`` (``(0, 0)``: overview only).

    The overview is the source resized to ``overview``; the slices are ``slice_boxes``
    (row-major) of the source resized to ``refine`` (``(0, 0)`` when not sliced).
    ``max_slice_nums`` is the bound the grid search used; ``upscale`` the enlargement of
    the refine image (the overview when not sliced) along its more enlarged axis, before
    the sides are rounded to the patch.
    """

    source: tuple[int, int]
    overview: tuple[int, int]
    refine: tuple[int, int]
    grid: tuple[int, int]
    slice_boxes: tuple[Box, ...]
    max_slice_nums: int
    upscale: float
    tiles: int
    image_tokens: int
    budget_applied: bool
    reason: str


def plan_uhd(
    width: int,
    height: int,
    params: UhdSlicing,
    *,
    max_tiles: Optional[int] = None,
    max_image_tokens: Optional[int] = None,
    max_upscale: Optional[float] = None,
) -> UhdPlan:
    """Plan the slicing of a ``width`` x ``height`` image.

    Under a budget, ``max_slice_nums`` goes down until the plan has at most
    ``max_tiles`` frames, ``max_image_tokens`` tokens and a refine image enlarged at most
    ``max_upscale`` times; an overview that would be enlarged past ``max_upscale`` keeps
    the source size (rounded to the patch).

    Raises:
        InputError: a size below 1x1, a bad limit, or ``max_image_tokens`` below the
            overview alone.
    """
    check_int("image width", width)
    check_int("image height", height)
    common.check_limits(max_tiles, max_image_tokens, max_upscale)
    common.check_minimum(params.tokens_per_slice, max_image_tokens, "the overview alone")
    source = (int(width), int(height))
    limits = (max_tiles, max_image_tokens, max_upscale)
    natural = _plan(source, params, params.max_slice_nums, None)
    plan = natural
    for bound in range(params.max_slice_nums, 0, -1):
        plan = _plan(source, params, bound, max_upscale)
        if _fits(plan, limits):
            break  # bound 1 (the overview alone, never enlarged past the limit) always fits
    if plan == natural:
        return natural
    reason = (
        f"{common.limits_text(*limits)}: max_slice_nums {params.max_slice_nums} -> {plan.max_slice_nums}, "
        f"grid {natural.grid[0]}x{natural.grid[1]} -> {plan.grid[0]}x{plan.grid[1]}"
    )
    if plan.overview != natural.overview and not plan.slice_boxes:
        reason += f", overview {natural.overview[0]}x{natural.overview[1]} -> {plan.overview[0]}x{plan.overview[1]}"
    return replace(plan, budget_applied=True, reason=reason)


def apply_uhd(image: Image.Image, plan: UhdPlan, params: UhdSlicing) -> list[np.ndarray]:
    """Run ``plan``: float32 frames ``[3, h, w]``, the overview first, then the slices
    row-major (their sizes differ from the overview's).

    Raises:
        InputError: ``image`` is not the size the plan was made for.
    """
    rgb = common.rgb_for(image, plan.source)
    frames = [np.asarray(common.resize(rgb, plan.overview, params.resample) if params.slice_mode else rgb)]
    if plan.slice_boxes:
        refine = np.asarray(common.resize(rgb, plan.refine, params.resample))
        frames += [refine[t:b, l:r] for l, t, r, b in plan.slice_boxes]
    mean, std = np.asarray(params.mean, np.float32), np.asarray(params.std, np.float32)
    # MiniCPM-V: to_numpy_array(image).astype(np.float32) / 255, then HF normalize.
    return [np.ascontiguousarray(((f.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)) for f in frames]


def uhd_layout(plan: UhdPlan, params: UhdSlicing, image_index: int = 0) -> Layout:
    """The prompt around each frame (MiniCPM-V 2.6, ``get_slice_image_placeholder``):
    ``[<image_id>i</image_id>]<image>`` overview ``</image>``, then per row
    ``<slice>`` slice ``</slice>`` for each column, rows joined by ``"\\n"``. ``int``
    items are frame indices; each stands for ``tokens_per_slice`` tokens."""
    pieces: list = []
    if params.use_image_id:
        pieces.append(f"{params.im_id_start}{image_index}{params.im_id_end}")
    pieces += [params.im_start, 0, params.im_end]
    rows, cols = plan.grid
    for r in range(rows):
        if r:
            pieces.append("\n")
        for c in range(cols):
            pieces += [params.slice_start, 1 + r * cols + c, params.slice_end]
    return common.merge_text(pieces)


def uhd_patchify(frame: np.ndarray, patch_size: int) -> np.ndarray:
    """MiniCPM-V's ``reshape_by_patch``: ``[3, H, W]`` -> ``[3, patch, H*W/patch]``, the
    ``patch x patch`` blocks in row-major order laid side by side (what its vision
    tower takes, with ``tgt_size = (H/patch, W/patch)``).

    Raises:
        InputError: ``H`` or ``W`` is not a multiple of ``patch_size``.
    """
    c, h, w = frame.shape
    if h % patch_size or w % patch_size:
        raise InputError(f"a {w}x{h} frame is not a whole number of {patch_size}-pixel patches")
    blocks = frame.reshape(c, h // patch_size, patch_size, w // patch_size, patch_size)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3, 4).reshape(c, patch_size, -1))


# ---- geometry (MiniCPMVImageProcessor) ----------------------------------------------


def _ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)  # Python round: half to even


def _best_resize(w: float, h: float, params: UhdSlicing, allow_upscale: bool) -> tuple[tuple[int, int], float]:
    """``find_best_resize``: about ``S^2`` pixels, aspect kept, sides rounded to the patch.

    Also returns the enlargement before that rounding (for ``max_upscale``)."""
    s = params.scale_resolution
    w0, h0 = w, h
    if w * h > s * s or allow_upscale:
        r = w / h
        h = int(s / math.sqrt(r))
        w = int(h * r)
    size = (_ensure_divide(w, params.patch_size), _ensure_divide(h, params.patch_size))
    return size, max(w / w0, h / h0)


def _best_grid(w: int, h: int, params: UhdSlicing, bound: int) -> Optional[tuple[int, int]]:
    """``get_sliced_grid``: ``(cols, rows)``, or None when the image is not sliced."""
    log_ratio = math.log(w / h)
    multiple = min(math.ceil(w * h / (params.scale_resolution * params.scale_resolution)), bound)
    if multiple <= 1:
        return None
    best, best_error = (1, 1), float("inf")
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > bound:
            continue
        for cols in range(1, n + 1):
            if n % cols == 0:
                error = abs(log_ratio - math.log(cols / (n // cols)))
                if error < best_error:
                    best, best_error = (cols, n // cols), error
    return best


def _plan(source: tuple[int, int], params: UhdSlicing, bound: int, max_upscale: Optional[float]) -> UhdPlan:
    w, h = source
    if not params.slice_mode:
        return _make(source, params, source, (0, 0), None, bound, 1.0)
    grid = _best_grid(w, h, params, bound)
    if grid is None:
        overview, upscale = _best_resize(w, h, params, allow_upscale=True)
        if max_upscale is not None and upscale > max_upscale + 1e-9:
            overview, upscale = _best_resize(w, h, params, allow_upscale=False)
        return _make(source, params, overview, (0, 0), None, bound, upscale)
    cols, rows = grid
    overview, _ = _best_resize(w, h, params, allow_upscale=False)
    # get_refine_size: the image divided evenly by the grid, each cell resized like an image
    cell_w = _ensure_divide(w, cols) / cols
    cell_h = _ensure_divide(h, rows) / rows
    (bw, bh), cell_scale = _best_resize(cell_w, cell_h, params, allow_upscale=True)
    upscale = cell_scale * max(cell_w * cols / w, cell_h * rows / h)
    return _make(source, params, overview, (bw * cols, bh * rows), (rows, cols), bound, upscale)


def _make(source, params, overview, refine, grid, bound, upscale) -> UhdPlan:
    boxes: list[Box] = []
    if grid is not None:
        rows, cols = grid
        sw, sh = refine[0] // cols, refine[1] // rows  # split_to_patches: int(width / cols)
        boxes = [(c * sw, r * sh, (c + 1) * sw, (r + 1) * sh) for r in range(rows) for c in range(cols)]
    tiles = 1 + len(boxes)
    return UhdPlan(
        source=source,
        overview=tuple(overview),
        refine=tuple(refine),
        grid=grid or (0, 0),
        slice_boxes=tuple(boxes),
        max_slice_nums=bound,
        upscale=upscale,
        tiles=tiles,
        image_tokens=tiles * params.tokens_per_slice,
        budget_applied=False,
        reason="",
    )


def _fits(plan: UhdPlan, limits: tuple) -> bool:
    # An overview past max_upscale was already replaced by an unenlarged one in _plan.
    upscale = plan.upscale if plan.slice_boxes else 0.0
    return common.within(plan.tiles, plan.image_tokens, upscale, *limits)
