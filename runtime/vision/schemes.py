"""From an image to what the LLM sees: tiles -> vision graph -> embedding blocks + layout text.

Each preprocessing scheme (``VisionSpec.preprocess.scheme``) is a
:class:`Scheme` listed in :data:`SCHEMES`: it plans the tiles under an optional budget, makes their
pixel values, and, once the vision graph has encoded them, lays the resulting
embedding blocks out between the family's text tokens (row/column markers,
newlines, a global image). The pipeline does not know any family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from PIL import Image

from edge.errors import BundleError, InputError
from edge.manifest import VisionSpec
from edge.options import Budget
from edge.preprocess import AnyresSlicing, Idefics3Slicing
from edge.runtime.vision.clip import clip_pixel_values
from edge.runtime.vision.slice_anyres import apply_anyres, pack_anyres_features, plan_anyres
from edge.runtime.vision.slice_common import Layout, plan_to_dict
from edge.runtime.vision.slice_idefics3 import apply_idefics3, idefics3_layout, plan_idefics3


@dataclass(frozen=True)
class TilePlan:
    """What a scheme decided for one image, before the vision graph runs."""

    pixel_values: np.ndarray  # [n_tiles, 3, H, W]
    state: Any  # whatever the scheme needs to lay the embeddings out
    info: dict = field(default_factory=dict)  # reported in --json (grid, tiles, budget_applied, ...)
    signature: str = ""  # distinguishes plans of the same image (part of the cache key)


class Scheme(Protocol):
    """One preprocessing family."""

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan: ...

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]: ...


class ClipScheme:
    """LLaVA-1.5: one centre-cropped tile, its embeddings in place of the marker."""

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.spec = spec

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        if budget.max_image_tokens is not None and budget.max_image_tokens < self.spec.tokens_per_image:
            raise InputError(
                f"max-image-tokens {budget.max_image_tokens} is below the {self.spec.tokens_per_image} "
                "tokens this model always uses per image"
            )
        px = clip_pixel_values([image], self.spec.preprocess)
        return TilePlan(px, None, {"tiles": 1, "grid": [1, 1], "budget_applied": False})

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return [0], [embeds[0]]


def _params(spec: VisionSpec, cls: type) -> Any:
    """The scheme's parameters: ``spec.preprocess`` itself (the manifest's tagged union)."""
    if not isinstance(spec.preprocess, cls):
        raise BundleError(f"the manifest's vision.preprocess is not {cls.__name__} parameters")
    return spec.preprocess


def _limits(budget: Budget) -> dict:
    return {
        "max_tiles": budget.max_tiles,
        "max_image_tokens": budget.max_image_tokens,
        "max_upscale": budget.max_upscale,
    }


class Idefics3Scheme:
    """Tiles row-major then the global image; each tile's rows stand between its
    ``<fake_token_around_image><row_r_col_c>`` tokens, as ``Idefics3Processor`` writes."""

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = _params(spec, Idefics3Slicing)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_idefics3(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_idefics3(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return idefics3_layout(plan.state, self.params), list(embeds)


class AnyresScheme:
    """Base image then grid tiles through the tower; the features are unpadded and get the
    learned newline row appended per row (``pack_image_features``), one block per image."""

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = _params(spec, AnyresSlicing)
        name = spec.extras.get("image_newline")
        if name is None:
            raise BundleError("an anyres bundle needs the image_newline extra in its manifest")
        self.newline = np.load(bundle / name).astype(np.float32)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_anyres(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_anyres(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return [0], [pack_anyres_features(embeds, plan.state, self.params, self.newline)]


# The schemes by the name a manifest gives (``VisionSpec.preprocess.scheme``); filled here,
# explicitly, so that looking one up never depends on what else was imported.
SCHEMES: dict[str, Callable[[VisionSpec, Path], Scheme]] = {
    "clip": ClipScheme,
    "idefics3": Idefics3Scheme,
    "anyres": AnyresScheme,
}


def scheme_for(spec: VisionSpec, bundle: Path) -> Scheme:
    """The scheme a bundle's manifest names, or a :class:`BundleError`."""
    factory = SCHEMES.get(spec.preprocess.scheme)
    if factory is None:
        raise BundleError(f"unknown image preprocessing scheme {spec.preprocess.scheme!r} in the manifest")
    return factory(spec, bundle)
