"""Images and audio of a request, decoded under the server's limits. Nothing is ever fetched.

An ``image_url`` is a ``data:`` URL with base64 bytes, or (only under ``--allow-path DIR``) a
local file inside one of the allowed directories. Image bytes go through the runtime's own
:func:`~edge.runtime.vision.image_io.load_image` (pixel limit checked on the header, before
decoding: decompression bombs fail there). Audio is decoded by soundfile from memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from edge.apps.serve.openai_schema import ApiError
from edge.errors import AudioError, ImageError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)
AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")


def b64decode(data: str, param: str) -> bytes:
    """Strict base64 (whitespace allowed), or a 400 naming ``param``."""
    if not isinstance(data, str):
        raise ApiError(f"{param} must be a base64 string", param=param)
    try:
        out = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(f"{param} is not valid base64", param=param) from None
    if not out:
        raise ApiError(f"{param} is empty", param=param)
    return out


def image_bytes(url: str, param: str, allow_paths: Sequence[Path]) -> bytes:
    """The encoded bytes an ``image_url`` names: a base64 ``data:`` URL, or an allowed local file."""
    if not isinstance(url, str) or not url:
        raise ApiError(f"{param} must be a non-empty string", param=param)
    match = _DATA_URL.match(url[:256])
    if match:
        if not match.group("b64"):
            raise ApiError(f"{param} must be a base64 data URL (data:image/png;base64,...)", param=param)
        return b64decode(url[match.end() :], param)
    scheme = urlparse(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https", "ftp"):
        raise ApiError(
            f"{param}: this server never fetches remote URLs; send the image as a data URL "
            "(data:image/jpeg;base64,...)",
            param=param,
            code="remote_url_not_allowed",
        )
    if scheme not in ("", "file"):
        raise ApiError(f"{param}: unsupported URL scheme {scheme!r}; send a data URL", param=param)
    path = unquote(urlparse(url).path) if scheme == "file" else url
    return _local_file(path, param, allow_paths)


def _local_file(path: str, param: str, allow_paths: Sequence[Path]) -> bytes:
    if not allow_paths:
        raise ApiError(
            f"{param}: local files are not allowed (start the server with --allow-path DIR); send a data URL",
            param=param,
            code="path_not_allowed",
        )
    # resolve links and '..' first, then require the result to lie inside an allowed directory
    for root in allow_paths:
        real = Path(os.path.realpath(root / path))
        if real == root or root in real.parents:
            if real.is_file():
                return real.read_bytes()
            raise ApiError(f"{param}: no such file under the allowed directories", param=param)
    raise ApiError(f"{param}: the path is outside the allowed directories", param=param, code="path_not_allowed")


def decode_image(data: bytes, param: str, max_pixels: int):
    """A fully decoded RGB ``PIL.Image``, or a 400 (not an image, corrupt, too many pixels)."""
    from edge.runtime.vision.image_io import load_image

    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise ApiError(f"{param}: {exc}", param=param, code="invalid_image") from None


def decode_audio(data: bytes, fmt: str, param: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` of WAV/MP3/FLAC/OGG bytes (mixed to mono), at most ``max_seconds`` long."""
    import soundfile as sf

    if fmt not in AUDIO_FORMATS:
        raise ApiError(f"{param}: audio format must be one of {', '.join(AUDIO_FORMATS)}, got {fmt!r}", param=param)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0 or f.frames <= 0:
                raise AudioError("no samples")
            seconds = f.frames / f.samplerate
            if seconds > max_seconds:
                raise ApiError(
                    f"{param}: the audio is {seconds:.1f} s long, more than the limit of {max_seconds:g} s",
                    param=param,
                )
            samples = f.read(dtype="float32", always_2d=True)
            rate = int(f.samplerate)
    except ApiError:
        raise
    except Exception as exc:  # libsndfile's errors: not audio, unknown format, corrupt data
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ApiError(f"{param}: cannot decode the audio: {msg}", param=param, code="invalid_audio") from None
    return samples.mean(axis=1).astype(np.float32), rate
