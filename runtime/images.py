"""From an image to what the LLM sees: tiles -> vision graph -> embedding blocks + layout text.

Each preprocessing scheme (``VisionSpec.preprocess.scheme``) registers a
:class:`Scheme` here: it plans the tiles under an optional budget, makes their
pixel values, and, once the vision graph has encoded them, lays the resulting
embedding blocks out between the family's text tokens (row/column markers,
newlines, a global image). The pipeline does not know any family.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union

import numpy as np
from PIL import Image

from edge.errors import BundleError, InputError
from edge.manifest import VisionSpec
from edge.runtime.preprocess import clip_pixel_values


@dataclass(frozen=True)
class Budget:
    """Limits on one image's cost; None = the bundle's default."""

    max_tiles: Optional[int] = None
    max_image_tokens: Optional[int] = None
    # how many times an image may be enlarged along an axis (None: the scheme's own rule)
    max_upscale: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("max_tiles", "max_image_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.max_upscale is not None and not self.max_upscale > 0:
            raise InputError(f"max-upscale must be positive, got {self.max_upscale}")


@dataclass(frozen=True)
class TilePlan:
    """What a scheme decided for one image, before the vision graph runs."""

    pixel_values: np.ndarray  # [n_tiles, 3, H, W]
    state: Any  # whatever the scheme needs to lay the embeddings out
    info: dict = field(default_factory=dict)  # reported in --json (grid, tiles, budget_applied, ...)
    signature: str = ""  # distinguishes plans of the same image (part of the cache key)


# A layout is text pieces (str) and embedding blocks (int: index into blocks).
Layout = list[Union[str, int]]


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


_SCHEMES: dict[str, Callable[[VisionSpec, Path], Scheme]] = {"clip": ClipScheme}


def register_scheme(name: str, factory: Callable[[VisionSpec, Path], Scheme]) -> None:
    """Add a preprocessing scheme (one per slicing family)."""
    _SCHEMES[name] = factory


def scheme_for(spec: VisionSpec, bundle: Path) -> Scheme:
    """The scheme a bundle's manifest names, or a :class:`BundleError`."""
    import edge.runtime.image_schemes  # noqa: F401  (registers the slicing schemes)

    factory = _SCHEMES.get(spec.preprocess.scheme)
    if factory is None:
        raise BundleError(f"unknown image preprocessing scheme {spec.preprocess.scheme!r} in the manifest")
    return factory(spec, bundle)
