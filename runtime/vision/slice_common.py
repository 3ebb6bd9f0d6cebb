"""What the slicing schemes share: parameter checks, the token budget, pixel arithmetic.

The schemes themselves live in ``slice_idefics3``, ``slice_anyres`` and
``slice_uhd`` (their parameter dataclasses and the value checks are the contract's:
:mod:`edge.preprocess`, :mod:`edge.checks`); :mod:`edge.runtime.vision.slicing` is the
public face. Conventions used by all of them:

* sizes are ``(width, height)``, grids are ``(rows, cols)``, boxes are
  ``(left, top, right, bottom)`` (PIL's crop box) in the image they are cut from;
* a plan's ``tiles`` counts every frame the vision encoder sees (the global image /
  overview / base image included) and ``image_tokens`` the embedding positions the
  image takes in the LLM prompt (layout text such as ``<row_1_col_1>`` or newlines
  *between* embeddings is not counted; LLaVA-NeXT's ``image_newline`` rows are
  embeddings and are counted);
* a **layout** is a list of text pieces (``str``) and frame indices (``int``): where
  the embeddings of frame *i* go between the family's layout text.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Optional, Sequence, Union

import numpy as np
from PIL import Image

from edge.errors import InputError

from .clip import RESAMPLE_FILTERS

__all__ = ["Box", "Layout", "check_limits", "merge_text", "plan_to_dict"]

Box = tuple[int, int, int, int]
Layout = list[Union[str, int]]


def check_limits(max_tiles: Optional[int], max_image_tokens: Optional[int], max_upscale: Optional[float]) -> None:
    """Validate a budget: positive integers, and an upscale limit of at least 1.0.

    Raises:
        InputError: a limit is zero, negative, or of the wrong type.
    """
    for name, value in (("max_tiles", max_tiles), ("max_image_tokens", max_image_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if max_upscale is not None:
        if (
            isinstance(max_upscale, bool)
            or not isinstance(max_upscale, (int, float))
            or not math.isfinite(max_upscale)
            or max_upscale < 1.0
        ):
            raise InputError(f"max_upscale must be a number >= 1.0 (1.0: never enlarge), got {max_upscale!r}")


def within(
    tiles: int,
    tokens: int,
    upscale: float,
    max_tiles: Optional[int],
    max_image_tokens: Optional[int],
    max_upscale: Optional[float],
) -> bool:
    """Whether a candidate plan respects every limit that is set."""
    return (
        (max_tiles is None or tiles <= max_tiles)
        and (max_image_tokens is None or tokens <= max_image_tokens)
        and (max_upscale is None or upscale <= max_upscale + 1e-9)
    )


def limits_text(max_tiles: Optional[int], max_image_tokens: Optional[int], max_upscale: Optional[float]) -> str:
    """``"max_tiles=5, max_upscale=1.0"``: the limits that are set, for messages."""
    named = (("max_tiles", max_tiles), ("max_image_tokens", max_image_tokens), ("max_upscale", max_upscale))
    parts = [f"{name}={value}" for name, value in named if value is not None]
    return ", ".join(parts)


def check_minimum(min_tokens: int, max_image_tokens: Optional[int], what: str) -> None:
    """The cheapest plan of a scheme (one frame) must fit the token limit."""
    if max_image_tokens is not None and max_image_tokens < min_tokens:
        raise InputError(
            f"max_image_tokens={max_image_tokens} is below the {min_tokens} tokens of the smallest "
            f"possible plan ({what})"
        )


def rgb_for(image: Image.Image, source: tuple[int, int]) -> Image.Image:
    """``image`` in RGB, after checking it is the size the plan was made for.

    A non-RGB image is converted with ``convert("RGB")``, as
    ``transformers.image_utils.load_image`` and ``image_transforms.convert_to_rgb`` do.

    Raises:
        InputError: the image is not a PIL image of ``source`` size.
    """
    if not isinstance(image, Image.Image):
        raise InputError(f"expected a PIL image, got {type(image).__name__}")
    if tuple(image.size) != tuple(source):
        raise InputError(f"image is {image.width}x{image.height} but the plan was made for {source[0]}x{source[1]}")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize(image: Image.Image, size: tuple[int, int], resample: str) -> Image.Image:
    """Pillow resize on uint8 RGB, as ``transformers.image_transforms.resize`` does it.

    Pillow returns a copy when the size does not change, so calling this for a no-op
    resize gives the same bytes as HF, which always calls it.
    """
    return image.resize(size, resample=RESAMPLE_FILTERS[resample])


def pixel_values(
    frames: np.ndarray,
    *,
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` with HF's arithmetic.

    ``image_transforms.rescale``: float64 multiply, then cast to float32;
    ``image_transforms.normalize``: float32 ``(x - mean) / std`` with float32 mean/std.
    """
    if do_rescale:
        values = (frames.astype(np.float64) * rescale_factor).astype(np.float32)
    else:
        values = frames.astype(np.float32)
    if do_normalize:
        values = (values - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(values, -1, -3))


def merge_text(pieces: Sequence[Union[str, int]]) -> Layout:
    """Join adjacent text pieces of a layout and drop empty ones."""
    out: Layout = []
    for piece in pieces:
        if isinstance(piece, str):
            if not piece:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + piece
                continue
        out.append(piece)
    return out


def plan_to_dict(plan: Any) -> dict:
    """A plan (any scheme) as plain JSON types, tuples as lists: for ``--json`` and goldens."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(plan))
