"""High-resolution image slicing: one planner and one executor per scheme.

Plan, then execute (``shared/DESIGN.md``): a planner is pure geometry on the image
size and returns a frozen plan; the executor takes the image and the plan and makes
``pixel_values`` in the order the family's vision tower expects. Schemes:

=========  ================================  ==========================================
scheme     params / plan                     reference
=========  ================================  ==========================================
idefics3   :class:`Idefics3Slicing` /        ``Idefics3ImageProcessor`` (= SmolVLM's),
           :class:`Idefics3Plan`             ``Idefics3Processor`` prompt layout
anyres     :class:`AnyresSlicing` /          ``LlavaNextImageProcessor``; model-side
           :class:`AnyresPlan`               ``pack_image_features`` / ``unpad_image``
uhd        :class:`UhdSlicing` /             LLaVA-UHD as MiniCPM-V's image processor;
           :class:`UhdPlan`                  llama.cpp ``mtmd`` ``llava_uhd`` compared
=========  ================================  ==========================================

Every planner takes ``max_tiles``, ``max_image_tokens`` and ``max_upscale`` (all
optional) and reports ``tiles``, ``image_tokens``, ``grid`` (rows, cols),
``budget_applied`` and ``reason``. Parameters are the contract's JSON-plain frozen
dataclasses (:mod:`edge.preprocess`, ``VisionSpec.preprocess`` of the manifest) with
``from_processor_config`` (HF config dict), ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import numpy as np
from PIL import Image

from edge.errors import InputError

from .slice_anyres import (
    AnyresPlan,
    AnyresSlicing,
    anyres_feature_window,
    apply_anyres,
    pack_anyres_features,
    plan_anyres,
    select_best_resolution,
)
from .slice_common import Box, Layout, plan_to_dict
from .slice_idefics3 import (
    Idefics3Plan,
    Idefics3Slicing,
    apply_idefics3,
    idefics3_layout,
    idefics3_pixel_attention_mask,
    pad_idefics3_batch,
    plan_idefics3,
)
from .slice_uhd import UhdPlan, UhdSlicing, apply_uhd, plan_uhd, uhd_layout, uhd_patchify

__all__ = [
    "Box",
    "Layout",
    "SlicingParams",
    "SlicePlan",
    "SLICERS",
    "slicing_from_dict",
    "plan_slices",
    "apply_slices",
    "plan_to_dict",
    "Idefics3Slicing",
    "Idefics3Plan",
    "plan_idefics3",
    "apply_idefics3",
    "idefics3_layout",
    "idefics3_pixel_attention_mask",
    "pad_idefics3_batch",
    "AnyresSlicing",
    "AnyresPlan",
    "plan_anyres",
    "apply_anyres",
    "anyres_feature_window",
    "pack_anyres_features",
    "select_best_resolution",
    "UhdSlicing",
    "UhdPlan",
    "plan_uhd",
    "apply_uhd",
    "uhd_layout",
    "uhd_patchify",
]

SlicingParams = Union[Idefics3Slicing, AnyresSlicing, UhdSlicing]
SlicePlan = Union[Idefics3Plan, AnyresPlan, UhdPlan]


class Slicer(NamedTuple):
    """One slicing scheme: its parameter class, planner and executor."""

    params: type
    plan: Callable[..., Any]
    apply: Callable[..., Any]


SLICERS: dict[str, Slicer] = {
    "idefics3": Slicer(Idefics3Slicing, plan_idefics3, apply_idefics3),
    "anyres": Slicer(AnyresSlicing, plan_anyres, apply_anyres),
    "uhd": Slicer(UhdSlicing, plan_uhd, apply_uhd),
}


def slicing_from_dict(d: dict) -> SlicingParams:
    """Parameters from their ``to_dict()`` form (``d["scheme"]`` picks the class).

    Raises:
        InputError: an unknown scheme or bad parameters.
    """
    scheme = SLICERS.get(d.get("scheme")) if isinstance(d, dict) else None
    if scheme is None:
        name = d.get("scheme") if isinstance(d, dict) else d
        raise InputError(f"unknown slicing scheme {name!r}; known: {', '.join(SLICERS)}")
    return scheme.params.from_dict(d)


def plan_slices(
    width: int,
    height: int,
    params: SlicingParams,
    *,
    max_tiles: Optional[int] = None,
    max_image_tokens: Optional[int] = None,
    max_upscale: Optional[float] = None,
) -> SlicePlan:
    """Plan with the scheme ``params`` belongs to (see the per-scheme planners)."""
    return SLICERS[params.scheme].plan(
        width, height, params, max_tiles=max_tiles, max_image_tokens=max_image_tokens, max_upscale=max_upscale
    )


def apply_slices(image: Image.Image, plan: SlicePlan, params: SlicingParams) -> Union[np.ndarray, list]:
    """Execute ``plan``: ``[tiles, 3, S, S]`` for idefics3 / anyres, a list of
    ``[3, h, w]`` frames for uhd (their sizes differ)."""
    return SLICERS[params.scheme].apply(image, plan, params)
