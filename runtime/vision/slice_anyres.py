"""LLaVA-NeXT "anyres" slicing, as plan then execute, and the feature packing after the
vision tower.

Pixels reproduce the slow ``transformers.LlavaNextImageProcessor.preprocess`` (4.57):

1. ``select_best_resolution`` (``image_processing_utils``) picks the pinpoint
   ``(h, w)`` that keeps the most source pixels (``min(int(w*s) * int(h*s), w*h)``
   with ``s = min(W/w, H/h)``), ties broken by the least waste, first wins;
2. ``_resize_for_patching``: ``get_patch_output_size`` fits the image in it, aspect
   kept (the long side exact, the other ``min(ceil(x * scale), target)``);
3. ``_pad_for_patching``: centred zero padding, the odd pixel at the bottom/right;
4. ``divide_to_patches``: crops of the crop size, row-major; the **base image** (the
   whole source resized to ``shortest_edge x shortest_edge``, aspect *not* kept) comes
   first;
5. every frame then goes through CLIP's ``_preprocess`` (shortest-edge resize, centre
   crop, rescale, normalise): :func:`edge.runtime.vision.clip.apply_clip`.

The model side (``modeling_llava_next``): ``get_anyres_image_grid_shape`` gives the
patch grid, ``pack_image_features`` lays the grid features out as one
``(rows*side) x (cols*side)`` map, ``unpad_image`` removes the rows or columns that
came from padding, and an ``image_newline`` embedding ends every row; the base
features go first. :func:`anyres_feature_window` is that geometry and
:func:`pack_anyres_features` does it in numpy. The count equals
``LlavaNextProcessor._get_number_of_features`` (minus the CLS for ``default``).

Under a budget the pinpoints are restricted to those whose plan fits, and the best of
them is selected as above; when none fits, the plan is the base image alone (the
model's single-patch branch: base features then one newline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from PIL import Image

from edge.checks import check_int
from edge.errors import InputError
from edge.preprocess import AnyresSlicing, ImagePreprocess

from . import slice_common as common
from .clip import apply_clip, plan_clip
from .slice_common import Box

__all__ = [
    "AnyresSlicing",
    "AnyresPlan",
    "plan_anyres",
    "apply_anyres",
    "anyres_feature_window",
    "pack_anyres_features",
    "select_best_resolution",
]


@dataclass(frozen=True)
class AnyresPlan:
    """Geometry of one image. Sizes ``(w, h)``, grid ``(rows, cols)`` (``(0, 0)``: base only).

    ``canvas`` is the chosen pinpoint as ``(w, h)``; the source is resized to
    ``resized`` and pasted at ``paste`` (left, top) on a zero canvas; ``patch_boxes``
    are cut from it, row-major, after the base frame of ``base_size``. ``upscale`` is
    the resize factor into the pinpoint (``min(W/w, H/h)``; 0 for base only).
    """

    source: tuple[int, int]
    canvas: tuple[int, int]
    resized: tuple[int, int]
    paste: tuple[int, int]
    grid: tuple[int, int]
    patch_boxes: tuple[Box, ...]
    base_size: tuple[int, int]
    upscale: float
    tiles: int
    image_tokens: int
    budget_applied: bool
    reason: str


def select_best_resolution(height: int, width: int, pinpoints: list) -> tuple[int, int]:
    """``image_processing_utils.select_best_resolution``: the best ``(h, w)`` pinpoint."""
    best, best_effective, best_waste = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        down_w, down_h = int(width * scale), int(height * scale)
        effective = min(down_w * down_h, width * height)
        waste = w * h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (h, w), effective, waste
    return best


def plan_anyres(
    width: int,
    height: int,
    params: AnyresSlicing,
    *,
    max_tiles: Optional[int] = None,
    max_image_tokens: Optional[int] = None,
    max_upscale: Optional[float] = None,
) -> AnyresPlan:
    """Plan the anyres slicing of a ``width`` x ``height`` image.

    Under a budget only the pinpoints whose plan has at most ``max_tiles`` frames
    (base included), ``max_image_tokens`` features (newlines included) and an
    enlargement of at most ``max_upscale`` compete; with none left, the base image alone.

    Raises:
        InputError: a size below 1x1, a bad limit, or ``max_image_tokens`` below the
            base image's features plus its newline.
    """
    check_int("image width", width)
    check_int("image height", height)
    common.check_limits(max_tiles, max_image_tokens, max_upscale)
    common.check_minimum(params.tokens_per_tile + 1, max_image_tokens, "the base image alone")
    source = (int(width), int(height))
    first = _plan(source, params, select_best_resolution(height, width, params.grid_pinpoints))
    limits = (max_tiles, max_image_tokens, max_upscale)
    if _fits(first, limits):
        return first
    allowed = [p for p in params.grid_pinpoints if _fits(_plan(source, params, tuple(p)), limits)]
    plan = _plan(source, params, select_best_resolution(height, width, allowed) if allowed else None)
    reason = f"{common.limits_text(*limits)}: grid {first.grid[0]}x{first.grid[1]} -> {plan.grid[0]}x{plan.grid[1]}" + (
        "" if allowed else " (base image only)"
    )
    return replace(plan, budget_applied=True, reason=reason)


def apply_anyres(image: Image.Image, plan: AnyresPlan, params: AnyresSlicing) -> np.ndarray:
    """Run ``plan``: float32 ``pixel_values`` ``[tiles, 3, crop, crop]``, the base image
    first, then the patches row-major (``LlavaNextImageProcessor``'s order).

    Raises:
        InputError: ``image`` is not the size the plan was made for.
    """
    rgb = common.rgb_for(image, plan.source)
    frames = [common.resize(rgb, plan.base_size, params.resample)]
    if plan.patch_boxes:
        resized = np.asarray(common.resize(rgb, plan.resized, params.resample))
        canvas = np.zeros((plan.canvas[1], plan.canvas[0], 3), np.uint8)
        x, y = plan.paste
        canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
        frames += [Image.fromarray(canvas[t:b, l:r]) for l, t, r, b in plan.patch_boxes]
    pp = _clip_params(params)
    return np.stack([apply_clip(f, plan_clip(f.width, f.height, pp), pp) for f in frames])


def anyres_feature_window(plan: AnyresPlan, params: AnyresSlicing) -> tuple[int, int, int, int]:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` that ``unpad_image`` keeps of the
    ``(rows*side) x (cols*side)`` feature map (``modeling_llava_next.unpad_image``:
    the same float arithmetic, ``round(x, 7)`` included). ``(0, 0, 0, 0)`` for base only."""
    rows, cols = plan.grid
    if rows == 0:
        return (0, 0, 0, 0)
    side = params.crop_size // params.patch_size
    cur_h, cur_w = rows * side, cols * side
    orig_w, orig_h = plan.source
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(round(orig_h * (cur_w / orig_w), 7))
        pad = (cur_h - new_h) // 2
        return (pad, cur_h - pad, 0, cur_w)
    new_w = int(round(orig_w * (cur_h / orig_h), 7))
    pad = (cur_w - new_w) // 2
    return (0, cur_h, pad, cur_w - pad)


def pack_anyres_features(
    features: np.ndarray, plan: AnyresPlan, params: AnyresSlicing, newline: np.ndarray
) -> np.ndarray:
    """``LlavaNextModel.pack_image_features`` for one image, in numpy.

    Args:
        features: ``[tiles, side*side, D]``, the projector's output for the frames of
            :func:`apply_anyres` (base first).
        newline: ``[D]``, the model's ``image_newline``.

    Returns:
        ``[plan.image_tokens, D]``: base features, then the unpadded feature map row by
        row, each row followed by ``newline`` (base only: base features, one newline).

    Raises:
        InputError: shapes that do not match the plan.
    """
    side = params.crop_size // params.patch_size
    dim = newline.shape[-1] if newline.ndim == 1 else -1
    if features.ndim != 3 or features.shape[0] != plan.tiles or features.shape[1] != side * side:
        raise InputError(
            f"features of shape {features.shape} do not match the plan: expected [{plan.tiles}, {side * side}, D]"
        )
    if dim != features.shape[2]:
        raise InputError(f"newline must be a vector of {features.shape[2]} values, got {newline.shape}")
    newline = newline.astype(features.dtype, copy=False)
    rows, cols = plan.grid
    if rows == 0:
        return np.concatenate([features[0], newline[None]], axis=0)
    grid = features[1:].reshape(rows, cols, side, side, dim)
    grid = grid.transpose(0, 2, 1, 3, 4).reshape(rows * side, cols * side, dim)
    r0, r1, c0, c1 = anyres_feature_window(plan, params)
    grid = grid[r0:r1, c0:c1]
    ends = np.broadcast_to(newline, (grid.shape[0], 1, dim))
    grid = np.concatenate([grid, ends], axis=1).reshape(-1, dim)
    return np.concatenate([features[0], grid], axis=0)


# ---- geometry --------------------------------------------------------------------


def _plan(source: tuple[int, int], params: AnyresSlicing, pinpoint: Optional[tuple]) -> AnyresPlan:
    base = (params.shortest_edge, params.shortest_edge)
    if pinpoint is None:
        return AnyresPlan(
            source=source,
            canvas=(0, 0),
            resized=(0, 0),
            paste=(0, 0),
            grid=(0, 0),
            patch_boxes=(),
            base_size=base,
            upscale=0.0,
            tiles=1,
            image_tokens=params.tokens_per_tile + 1,
            budget_applied=False,
            reason="",
        )
    target_h, target_w = pinpoint
    w, h = source
    # get_patch_output_size
    scale_w, scale_h = target_w / w, target_h / h
    if scale_w < scale_h:
        new_w, new_h = target_w, min(math.ceil(h * scale_w), target_h)
    else:
        new_h, new_w = target_h, min(math.ceil(w * scale_h), target_w)
    # _get_padding_size: the odd pixel goes after
    paste = ((target_w - new_w) // 2, (target_h - new_h) // 2)
    crop = params.crop_size
    rows, cols = target_h // crop, target_w // crop
    boxes = tuple((c * crop, r * crop, (c + 1) * crop, (r + 1) * crop) for r in range(rows) for c in range(cols))
    plan = AnyresPlan(
        source=source,
        canvas=(target_w, target_h),
        resized=(new_w, new_h),
        paste=paste,
        grid=(rows, cols),
        patch_boxes=boxes,
        base_size=base,
        upscale=min(scale_w, scale_h),
        tiles=1 + len(boxes),
        image_tokens=0,
        budget_applied=False,
        reason="",
    )
    r0, r1, c0, c1 = anyres_feature_window(plan, params)
    tokens = params.tokens_per_tile + (r1 - r0) * (c1 - c0 + 1)
    return replace(plan, image_tokens=tokens)


def _fits(plan: AnyresPlan, limits: tuple) -> bool:
    return common.within(plan.tiles, plan.image_tokens, plan.upscale, *limits)


def _clip_params(params: AnyresSlicing) -> ImagePreprocess:
    """CLIP's ``_preprocess`` step for each frame, as the manifest's ImagePreprocess."""
    return ImagePreprocess(
        scheme="clip",
        image_size=params.crop_size,
        shortest_edge=params.shortest_edge,
        crop_height=params.crop_size,
        crop_width=params.crop_size,
        do_resize=params.do_resize,
        do_center_crop=params.do_center_crop,
        do_rescale=params.do_rescale,
        do_normalize=params.do_normalize,
        resample=params.resample,
        rescale_factor=params.rescale_factor,
        mean=list(params.mean),
        std=list(params.std),
    )
