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
from edge.preprocess import AnyresSlicing, Gemma3Preprocess, Idefics3Slicing, Qwen2VLPreprocess
from edge.runtime.vision.clip import clip_pixel_values
from edge.runtime.vision.slice_anyres import apply_anyres, pack_anyres_features, plan_anyres
from edge.runtime.vision.slice_common import Layout, plan_to_dict
from edge.runtime.vision.slice_gemma3 import apply_gemma3, gemma3_layout, plan_gemma3
from edge.runtime.vision.slice_idefics3 import apply_idefics3, idefics3_layout, plan_idefics3
from edge.runtime.vision.slice_qwen2vl import apply_qwen2vl, mrope_positions, plan_qwen2vl


@dataclass(frozen=True)
class TilePlan:
    """What a scheme decided for one image, before the vision graph runs."""

    pixel_values: np.ndarray  # [n_tiles, 3, H, W]
    state: Any  # whatever the scheme needs to lay the embeddings out
    info: dict = field(default_factory=dict)  # reported in --json (grid, tiles, budget_applied, ...)
    signature: str = ""  # distinguishes plans of the same image (part of the cache key)


class Scheme(Protocol):
    """One preprocessing family.

    ``tiles_independent``: each tile of a plan goes through the vision graph on its own, so a
    tile's embedding rows depend on its pixels only and can be cached and reused per tile
    (:class:`~edge.runtime.vision.images.ImageStage`). A scheme whose graph encodes the whole
    image in one call (attention across tiles) sets it False and is cached per whole image.
    The image stage reads it with ``False`` as the default, so a scheme that does not say is
    never reused per tile.
    """

    tiles_independent: bool

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan: ...

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]: ...


class ClipScheme:
    """LLaVA-1.5: one centre-cropped tile, its embeddings in place of the marker."""

    tiles_independent = True  # one tile per vision-graph run

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

    tiles_independent = True  # one tile per vision-graph run

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = _params(spec, Idefics3Slicing)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_idefics3(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_idefics3(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return idefics3_layout(plan.state, self.params), list(embeds)

    def frame_layout(self, index: int) -> Layout:
        """The video hook: one video frame shown as an unsplit image (its block ``index``), as
        ``processing_smolvlm._prompt_single_image`` writes it (see :mod:`edge.runtime.vision.videos`)."""
        fake = self.params.fake_image_token
        return [f"{fake}{self.params.global_image_token}", index, fake]


class AnyresScheme:
    """Base image then grid tiles through the tower; the features are unpadded and get the
    learned newline row appended per row (``pack_image_features``), one block per image."""

    tiles_independent = True  # one tile per vision-graph run

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


class Gemma3Scheme:
    """Gemma 3: the whole image, then its pan-and-scan crops (when the bundle enables them), one
    block per frame between ``<start_of_image>``/``<end_of_image>`` text, as ``Gemma3Processor``
    expands the image marker."""

    tiles_independent = True  # one frame per vision-graph run
    # the layout's text ("\n\n<start_of_image>" ...) is joined to the prompt text around the marker before
    # tokenizing (text.prompt.splice_prompt), as Gemma3Processor expands the marker into the prompt text
    inline_text = True

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = _params(spec, Gemma3Preprocess)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_gemma3(image.width, image.height, self.params, **_limits(budget))
        return TilePlan(apply_gemma3(image, plan, self.params), plan, plan_to_dict(plan))

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return gemma3_layout(plan.state, self.params), list(embeds)


# The schemes by the name a manifest gives (``VisionSpec.preprocess.scheme``); filled here,
# explicitly, so that looking one up never depends on what else was imported.
class Qwen2VLScheme:
    """Qwen2-VL / Qwen2.5-VL: the image resized to multiples of 28 pixels under ``max_pixels`` (the
    token budget lowers it), encoded whole, its merged rows one block between ``<|vision_start|>``
    and ``<|vision_end|>``; the rows carry (t, h, w) M-RoPE positions (:meth:`positions`)."""

    tiles_independent = False  # the whole image in one graph call: its patches attend to each other

    def __init__(self, spec: VisionSpec, bundle: Path) -> None:
        self.params = _params(spec, Qwen2VLPreprocess)

    def plan(self, image: Image.Image, budget: Budget) -> TilePlan:
        plan = plan_qwen2vl(image.width, image.height, self.params, budget.max_image_tokens)
        info = {**plan_to_dict(plan), "tiles": plan.grid[0]}
        # one frame per image: tile and upscale limits have nothing to act on (reported, not hidden)
        unused = [n for n in ("max_tiles", "max_upscale") if getattr(budget, n) is not None]
        if unused:
            info["budget_not_applicable"] = unused
        return TilePlan(apply_qwen2vl([image], plan, self.params), plan, info)

    def layout(self, embeds: np.ndarray, plan: TilePlan) -> tuple[Layout, list[np.ndarray]]:
        return [0], [embeds.reshape(-1, embeds.shape[-1])]

    def positions(self, info: dict, index: int) -> np.ndarray:
        """``[3, rows]`` (t, h, w) positions of block ``index`` relative to its first row (the
        plan's ``grid`` in ``info``), as ``get_rope_index`` gives image rows."""
        return mrope_positions(tuple(info["grid"]), self.params.merge_size)


SCHEMES: dict[str, Callable[[VisionSpec, Path], Scheme]] = {
    "clip": ClipScheme,
    "idefics3": Idefics3Scheme,
    "anyres": AnyresScheme,
    "gemma3": Gemma3Scheme,
    "qwen2vl": Qwen2VLScheme,
}


def scheme_for(spec: VisionSpec, bundle: Path) -> Scheme:
    """The scheme a bundle's manifest names, or a :class:`BundleError`."""
    factory = SCHEMES.get(spec.preprocess.scheme)
    if factory is None:
        raise BundleError(f"unknown image preprocessing scheme {spec.preprocess.scheme!r} in the manifest")
    return factory(spec, bundle)
