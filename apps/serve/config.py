"""What one ``edge serve`` process allows: where it listens, who may call it, and its limits."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edge.errors import InputError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Limits:
    """Per-request limits. Sizes are bytes, images are counted per request (history included)."""

    max_body_bytes: int = 32 << 20
    max_image_pixels: int = 25_000_000
    max_images: int = 8
    max_audio_seconds: float = 120.0
    max_tokens: int = 4096  # the largest max_tokens a request may ask for (and the default)
    max_stop: int = 4  # stop sequences per request, as OpenAI
    body_timeout_s: float = 30.0  # a client must send its whole body within this (slow clients: 408)
    request_timeout_s: float = 600.0  # queue wait plus generation

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_pixels", "max_tokens", "max_stop"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        if self.max_images < 0 or self.max_audio_seconds < 0:
            raise InputError("the image and audio limits must be 0 or more")
        if self.body_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise InputError("timeouts must be positive")


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings, built once from the command line.

    ``api_key``: when set, every ``/v1`` request needs ``Authorization: Bearer KEY``; a bind to
    anything but loopback requires one. ``allow_paths``: directories whose files a request may
    name as images (``file://`` URLs or plain paths); none by default. ``queue_size``: requests
    that may wait while one runs (beyond: 429). ``no_cache``: forget the KV and embedding caches
    before every request (for measuring what the caches save).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: Optional[str] = None
    allow_paths: tuple[Path, ...] = ()
    queue_size: int = 8
    limits: Limits = field(default_factory=Limits)
    no_cache: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be between 0 and 65535, got {self.port}")
        if self.queue_size < 0:
            raise InputError(f"queue size must be 0 or more, got {self.queue_size}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise InputError("the API key must be at least 8 characters")
        if not is_loopback(self.host) and not self.api_key:
            raise InputError(
                f"binding {self.host} exposes the model to the network; pass --api-key KEY (or set EDGE_API_KEY)"
            )
        dirs = []
        for p in self.allow_paths:
            real = Path(os.path.realpath(p))
            if not real.is_dir():
                raise InputError(f"--allow-path {p} is not a directory")
            dirs.append(real)
        object.__setattr__(self, "allow_paths", tuple(dirs))
