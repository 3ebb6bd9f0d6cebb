"""The slicing schemes behind :mod:`edge.runtime.images`: Idefics3 splitting and
LLaVA-NeXT anyres, wired to the planners and executors of :mod:`edge.runtime.slicing`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge.errors import BundleError
from edge.manifest import VisionSpec
from edge.runtime.images import Budget, Layout, TilePlan, register_scheme
from edge.runtime.slicing import (AnyresSlicing, Idefics3Slicing, apply_anyres, apply_idefics3,
                                  idefics3_layout, pack_anyres_features, plan_anyres, plan_idefics3,
                                  plan_to_dict)


def _limits(budget: Budget) -> dict:
    return {"max_tiles": budget.max_tiles, "max_image_tokens": budget.max_image_tokens,
            "max_upscale": budget.max_upscale}


class Idefics3Scheme:
    """Tiles row-major then the global image; each tile's rows stand between its
    ``<fake_token_around_image><row_r_col_c>`` tokens, as ``Idefics3Processor`` writes."""

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = Idefics3Slicing.from_dict(spec.slicing)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_idefics3(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_idefics3(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return idefics3_layout(plan.state, self.params), list(embeds)


class AnyresScheme:
    """Base image then grid tiles through the tower; the features are unpadded and get the
    learned newline row appended per row (``pack_image_features``), one block per image."""

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = AnyresSlicing.from_dict(spec.slicing)
        name = spec.extras.get("image_newline")
        if name is None:
            raise BundleError("an anyres bundle needs the image_newline extra in its manifest")
        self.newline = np.load(bundle / name).astype(np.float32)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_anyres(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_anyres(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return [0], [pack_anyres_features(embeds, plan.state, self.params, self.newline)]


register_scheme("idefics3", Idefics3Scheme)
register_scheme("anyres", AnyresScheme)
