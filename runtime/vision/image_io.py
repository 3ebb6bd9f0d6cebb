"""Safe image loading: any accepted source becomes one fully decoded RGB ``PIL.Image``.

Behaviour follows ``transformers.image_utils.load_image`` (4.57): EXIF orientation is
applied with ``PIL.ImageOps.exif_transpose`` and the mode is converted with
``Image.convert("RGB")``, which is also all ``transformers.image_transforms.convert_to_rgb``
does (alpha is dropped, not composited on a background). What HF does not do and this
module adds: every failure is an :class:`~edge.errors.ImageError` with a one-line
message, the canvas size is checked against ``max_pixels`` before any pixel is
decoded, and the image is decoded completely so that a truncated file fails here and
not later. No global PIL state is changed (``ImageFile.LOAD_TRUNCATED_IMAGES`` and
``Image.MAX_IMAGE_PIXELS`` are only read).
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

from edge.errors import ImageError, InputError

__all__ = ["load_image", "ImageSource", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 64_000_000

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray]


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load ``source`` as a fully decoded RGB image.

    Args:
        source: a path (``str`` or ``os.PathLike``), the encoded bytes of an image file,
            a ``PIL.Image.Image`` (any mode), or a ``uint8`` numpy array shaped
            ``(H, W, 3)`` (RGB) or ``(H, W)`` (grey).
        max_pixels: the largest ``width * height`` accepted. For files and bytes it is
            checked against the header, before decoding (decompression-bomb guard).
            PIL's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``) still applies on top.

    Returns:
        A new ``PIL.Image.Image`` in mode ``RGB``, EXIF orientation applied.

    Raises:
        ImageError: the source is missing, a directory, empty, not an image, truncated or
            corrupt, zero-sized, larger than ``max_pixels``, or of an unsupported type.
        InputError: ``max_pixels`` is not a positive integer.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if isinstance(source, Image.Image):
        return _finish(source, "the image", max_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("the image bytes are empty (0 bytes)")
        return _decode(io.BytesIO(data), "the image bytes", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source, max_pixels)
    raise ImageError(
        f"unsupported image source of type {type(source).__name__}; pass a file path, "
        "the file's bytes, a PIL image or a uint8 numpy array"
    )


def _from_path(source: Union[str, "os.PathLike[str]"], max_pixels: int) -> Image.Image:
    path = os.fspath(source)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    name = f"image file {path!r}"
    if not os.path.exists(path):
        raise ImageError(f"{name} not found")
    if os.path.isdir(path):
        raise ImageError(f"{name} is a directory, not an image file")
    try:
        size = os.path.getsize(path)
        handle = open(path, "rb")
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror or exc}") from None
    with handle:
        if size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
        return _decode(handle, name, max_pixels)


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageError(
            f"image array has dtype {array.dtype}; expected uint8 values 0..255 "
            "(convert with np.clip(a, 0, 255).astype(np.uint8))"
        )
    if array.ndim == 2:
        mode = "L"
    elif array.ndim == 3 and array.shape[2] == 3:
        mode = "RGB"
    else:
        raise ImageError(f"image array has shape {tuple(array.shape)}; expected (H, W, 3) RGB or (H, W) grey")
    height, width = int(array.shape[0]), int(array.shape[1])
    _check_size(width, height, "the image array", max_pixels)
    image = Image.fromarray(np.ascontiguousarray(array), mode=mode)
    return image.convert("RGB")


def _decode(stream: Any, name: str, max_pixels: int) -> Image.Image:
    """Open, size-check, fully decode and orient an encoded image from ``stream``."""
    with warnings.catch_warnings():
        # Our max_pixels check replaces PIL's warning; PIL's hard error is still caught.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name} is too large to decode safely: {exc}") from None
        except Image.UnidentifiedImageError:
            raise ImageError(f"{name} is not an image file (no installed decoder recognises its contents)") from None
        except Exception as exc:  # PIL plugins raise assorted types for corrupt headers
            raise ImageError(f"{name} has a corrupt image header: {_reason(exc)}") from None
        with image:
            # Check the header's canvas before decoding a single pixel.
            _check_size(image.width, image.height, name, max_pixels)
            return _finish(image, name, max_pixels)


def _finish(image: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """Decode fully, apply EXIF orientation, convert to RGB (as HF's ``load_image``)."""
    _check_size(image.width, image.height, name, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow warns that a palette image with transparency "should be converted to
        # RGBA"; dropping the transparency is exactly what HF's convert("RGB") does.
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        try:
            image.load()  # truncated data raises here (LOAD_TRUNCATED_IMAGES is False)
            rgb = ImageOps.exif_transpose(image).convert("RGB")
        except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, zlib.error...
            raise ImageError(f"{name} is truncated or corrupt: {_reason(exc)}") from None
    # A plugin may change the size while loading (e.g. ICO, JPEG draft); re-check.
    _check_size(rgb.width, rgb.height, name, max_pixels)
    return rgb


def _check_size(width: int, height: int, name: str, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{name} has no pixels (size {width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height} pixels), more than the limit of "
            f"{max_pixels} pixels; downscale it or raise max_pixels"
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
