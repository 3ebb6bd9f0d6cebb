"""Value checks shared by the contract's parameter dataclasses (their ``__post_init__``).

They raise :class:`edge.errors.InputError` with a message that starts with the field's
name; :meth:`edge.manifest.Manifest.from_json` turns that into a :class:`BundleError`
naming the JSON path. The resampling filters are known here by *name* only (the
manifest's vocabulary); the runtime maps the names to Pillow filters
(``edge.runtime.vision.clip.RESAMPLE_FILTERS``).
"""

from __future__ import annotations

import math
from typing import Any

from edge.errors import InputError

__all__ = [
    "RESAMPLE_NAMES",
    "HF_RESAMPLE_CODES",
    "resample_name",
    "check_resample",
    "check_int",
    "check_bool",
    "check_str",
    "check_float",
    "check_mean_std",
    "float_list",
    "check_pixel_range",
]

# The resampling filters a manifest may name (the runtime has one Pillow filter for each).
RESAMPLE_NAMES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
# HF processor configs store ``PILImageResampling`` ints (Pillow's own numbering).
HF_RESAMPLE_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def resample_name(value: Any) -> str:
    """A resampling filter as its manifest name: HF stores ``PILImageResampling`` ints.

    Raises:
        InputError: not a known filter.
    """
    if isinstance(value, bool):
        raise InputError(f"resample must be a filter name or PIL filter number, got {value!r}")
    if isinstance(value, int) and value in HF_RESAMPLE_CODES:
        return HF_RESAMPLE_CODES[int(value)]
    if isinstance(value, str) and value.lower() in RESAMPLE_NAMES:
        return value.lower()
    raise InputError(f"unknown resample filter {value!r}; use one of {', '.join(RESAMPLE_NAMES)}")


def check_resample(value: Any) -> None:
    """A parameter field holds a filter *name* (lower case), never HF's int."""
    if not isinstance(value, str) or value not in RESAMPLE_NAMES:
        raise InputError(f"resample must be one of {', '.join(RESAMPLE_NAMES)}, got {value!r}")


def check_int(name: str, value: Any, minimum: int = 1) -> None:
    """``value`` is an ``int`` (not a bool) of at least ``minimum``, else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """``value`` is ``True`` or ``False``, else :class:`InputError`."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")


def check_str(name: str, value: Any) -> None:
    """``value`` is a string, else :class:`InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {value!r}")


def check_float(name: str, value: Any, positive: bool = True) -> None:
    """``value`` is a finite number (``> 0`` when ``positive``), else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{name} must be > 0, got {value!r}")


def check_mean_std(mean: Any, std: Any) -> None:
    """Three finite means and three finite non-zero standard deviations."""
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or len(values) != 3:
            raise InputError(f"{name} must be a list of 3 numbers, got {values!r}")
        for v in values:
            check_float(name, v, positive=False)
    if any(v == 0 for v in std):
        raise InputError(f"std must be non-zero, got {std!r}")


def float_list(values: Any, name: str) -> list[float]:
    """HF configs hold mean/std as a list or a single float: always 3 floats here."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return [float(values)] * 3
    if isinstance(values, (list, tuple)):
        return [float(v) for v in values]
    raise InputError(f"{name} must be a number or a list of numbers, got {values!r}")


def check_pixel_range(min_pixels: int, max_pixels: int, factor: int) -> None:
    """A resize range that holds at least one ``factor x factor`` block and is ordered.

    Raises:
        InputError: ``max_pixels`` below one block or below ``min_pixels``.
    """
    if max_pixels < factor * factor:
        raise InputError(f"max_pixels {max_pixels} is below one {factor}x{factor} merged patch")
    if max_pixels < min_pixels:
        raise InputError(f"max_pixels {max_pixels} is below min_pixels {min_pixels}")
