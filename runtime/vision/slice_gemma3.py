"""Gemma 3 images, as plan then execute: the whole image, plus pan-and-scan crops.

Reproduces ``transformers.Gemma3ImageProcessor.preprocess`` (4.57) with numpy and Pillow:

1. ``pan_and_scan`` (only with ``do_pan_and_scan``): a landscape image whose ``w / h`` is at
   least ``min_ratio_to_activate`` gets ``floor(w / h + 0.5)`` crops side by side, at most
   ``floor(w / min_crop_size)``, then clamped into ``[2, max_num_crops]``; each crop is
   ``ceil(w / n)`` wide and the full height (the last one cut at the edge); a portrait image
   likewise top to bottom; no crops when a crop would be narrower than ``min_crop_size``.
   Crops are cut from the RGB source, before any resize;
2. every frame, the original first and then its crops, is resized to ``image_size`` squared
   (``resize``, Pillow on uint8), then rescaled and normalised as every HF image processor.

The prompt (:func:`gemma3_layout`) follows ``Gemma3Processor.__call__``: with crops, the
image's marker becomes ``"Here is the original image <boi> and here are some crops to help
you see better <boi> <boi>..."``; then every ``<boi>`` becomes ``"\\n\\n<boi>"`` + the
frame's rows + ``"<eoi>\\n\\n"`` (``full_image_sequence``).

A budget (``max_tiles``, ``max_image_tokens``) lowers the number of crops (HF's plan with a
smaller ``pan_and_scan_max_num_crops``) and drops them when fewer than two would fit (pan-and-scan
never makes one crop); ``max_upscale`` does not apply: every frame is resized to the tower's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from PIL import Image

from edge.checks import check_int
from edge.preprocess_gemma3 import Gemma3Preprocess

from . import slice_common as common
from .slice_common import Box, Layout

__all__ = ["Gemma3Plan", "plan_gemma3", "apply_gemma3", "gemma3_layout", "pan_and_scan_boxes"]

# Gemma3Processor's text for an image with pan-and-scan crops (the marker is its first <boi>)
ORIGINAL_TEXT = "Here is the original image "
CROPS_TEXT = " and here are some crops to help you see better "


@dataclass(frozen=True)
class Gemma3Plan:
    """Geometry of one image. Sizes ``(w, h)``; ``grid`` ``(rows, cols)`` of the crops,
    ``(0, 0)`` without any; ``crop_boxes`` in the source image, row-major. ``tiles`` counts the
    original and its crops, ``image_tokens`` their embedding rows."""

    source: tuple[int, int]
    grid: tuple[int, int]
    crop_boxes: tuple[Box, ...]
    frame_size: tuple[int, int]
    tiles: int
    image_tokens: int
    budget_applied: bool
    reason: str


def pan_and_scan_boxes(width: int, height: int, min_crop: int, max_crops: int, min_ratio: float) -> list[Box]:
    """The crop boxes of ``Gemma3ImageProcessor.pan_and_scan`` for a ``width`` x ``height`` image
    (float arithmetic kept as HF's); empty when pan-and-scan does not activate."""
    if width >= height:
        if width / height < min_ratio:
            return []
        n_w = int(math.floor(width / height + 0.5))  # half rounds up
        n_w = min(max(2, min(int(math.floor(width / min_crop)), n_w)), max_crops)
        n_h = 1
    else:
        if height / width < min_ratio:
            return []
        n_h = int(math.floor(height / width + 0.5))
        n_h = min(max(2, min(int(math.floor(height / min_crop)), n_h)), max_crops)
        n_w = 1
    crop_w, crop_h = int(math.ceil(width / n_w)), int(math.ceil(height / n_h))
    if min(crop_w, crop_h) < min_crop:
        return []
    # numpy slicing stops at the edge: the last crop is cut there (PIL's crop would pad instead)
    return [
        (left, top, min(left + crop_w, width), min(top + crop_h, height))
        for top in (crop_h * i for i in range(n_h))
        for left in (crop_w * j for j in range(n_w))
    ]


def plan_gemma3(
    width: int,
    height: int,
    params: Gemma3Preprocess,
    *,
    max_tiles: Optional[int] = None,
    max_image_tokens: Optional[int] = None,
    max_upscale: Optional[float] = None,
) -> Gemma3Plan:
    """Plan the frames of a ``width`` x ``height`` image.

    Raises:
        InputError: a size below 1x1, a bad limit, or ``max_image_tokens`` below one frame.
    """
    check_int("image width", width)
    check_int("image height", height)
    common.check_limits(max_tiles, max_image_tokens, max_upscale)
    common.check_minimum(params.tokens_per_image, max_image_tokens, "the image without crops")
    first = _plan((int(width), int(height)), params, params.pan_and_scan_max_num_crops)
    limits = (max_tiles, max_image_tokens, None)
    if common.within(first.tiles, first.image_tokens, 1.0, *limits):
        return first
    plan = first
    for crops in range(params.pan_and_scan_max_num_crops - 1, -1, -1):
        plan = _plan(first.source, params, crops)
        if common.within(plan.tiles, plan.image_tokens, 1.0, *limits):
            break  # crops=0 (the original alone) fits every valid limit
    reason = f"{common.limits_text(*limits)}: crops {first.tiles - 1} -> {plan.tiles - 1}"
    return replace(plan, budget_applied=True, reason=reason)


def _plan(source: tuple[int, int], params: Gemma3Preprocess, max_crops: int) -> Gemma3Plan:
    boxes: list[Box] = []
    if params.do_pan_and_scan and max_crops >= 2:
        boxes = pan_and_scan_boxes(
            *source,
            params.pan_and_scan_min_crop_size,
            max_crops,
            params.pan_and_scan_min_ratio_to_activate,
        )
    rows = len({b[1] for b in boxes}) if boxes else 0
    cols = len({b[0] for b in boxes}) if boxes else 0
    tiles = 1 + len(boxes)
    return Gemma3Plan(
        source=source,
        grid=(rows, cols),
        crop_boxes=tuple(boxes),
        frame_size=(params.image_size, params.image_size),
        tiles=tiles,
        image_tokens=tiles * params.tokens_per_image,
        budget_applied=False,
        reason="",
    )


def apply_gemma3(image: Image.Image, plan: Gemma3Plan, params: Gemma3Preprocess) -> np.ndarray:
    """Run ``plan``: float32 ``pixel_values`` ``[tiles, 3, S, S]``, the original then its crops.

    Raises:
        InputError: ``image`` is not the size the plan was made for.
    """
    rgb = common.rgb_for(image, plan.source)
    sources = [rgb] + [rgb.crop(box) for box in plan.crop_boxes]
    frames = np.stack([np.asarray(common.resize(s, plan.frame_size, params.resample)) for s in sources])
    return common.pixel_values(
        frames,
        do_rescale=params.do_rescale,
        rescale_factor=params.rescale_factor,
        do_normalize=params.do_normalize,
        mean=params.mean,
        std=params.std,
    )


def gemma3_layout(plan: Gemma3Plan, params: Gemma3Preprocess) -> Layout:
    """The prompt text around each frame's rows, as ``Gemma3Processor`` expands the marker.

    ``int`` items are frame indices into :func:`apply_gemma3`'s output (0: the original).
    The text is meant to be joined to the prompt text around the marker before tokenizing,
    as the processor expands the prompt text and then tokenizes it.
    """
    boi, eoi = params.boi_token, params.eoi_token
    n = plan.tiles - 1
    marker_text = boi if n == 0 else ORIGINAL_TEXT + boi + CROPS_TEXT + " ".join([boi] * n)
    pieces: list = []
    for i, text in enumerate(marker_text.split(boi)):
        if i:
            pieces += ["\n\n" + boi, i - 1, eoi + "\n\n"]
        pieces.append(text)
    return common.merge_text(pieces)
