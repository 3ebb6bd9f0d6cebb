"""Bounded caches of vision work: encoded images keyed by image content, budget and bundle, and
the embedding rows of single tiles keyed by tile content (tile-level reuse across frames)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
from PIL import Image


def image_key(image: Image.Image, bundle_id: str, extra: str = "") -> str:
    """Content key: the decoded RGB pixels and size, the vision graph they are encoded
    for, and ``extra`` (the budget, which changes the tiles)."""
    h = hashlib.sha256()
    h.update(bundle_id.encode())
    h.update(extra.encode())
    h.update(f"{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """LRU of encoded images, bounded by their total bytes; counts hits and misses.

    Values must have an ``nbytes`` attribute (the size they hold in memory).
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Optional[Any]:
        """The cached value, or None (counted as a miss)."""
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        """Store, evicting the least recently used entries beyond the byte bound."""
        if key in self._items:
            return
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


def tile_key(pixels: np.ndarray, vision_id: str) -> str:
    """Content key of one preprocessed tile: its float pixel values (shape included) and the
    vision graph that encodes it. Two tiles with this key give the same embedding rows."""
    x = np.ascontiguousarray(pixels, dtype=np.float32)
    h = hashlib.sha256()
    h.update(vision_id.encode())
    h.update(repr(x.shape).encode())
    h.update(x.tobytes())
    return h.hexdigest()


# Before two tiles are compared they are averaged over blocks of 1/THUMB of the tile side,
# and at least MIN_BLOCK pixels (so that small test tiles average noise too).
THUMB = 16
MIN_BLOCK = 8


def tile_thumb(pixels: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """A tile's block means ``[C, h/b, w/b]`` in 0-255 input levels, ``b = max(side/16, 8)`` pixels.

    ``pixels`` is one preprocessed tile ``[C, H, W]``; ``levels`` (``[C]``) converts its values
    back to input levels (``std / rescale_factor`` for a normalised tile). Averaging over blocks
    makes sensor noise vanish (a block of a 512-pixel tile averages 1024 pixels) while a change
    that covers a block shows at full strength.
    """
    c, h, w = pixels.shape
    bh, bw = min(h, max(MIN_BLOCK, h // THUMB)), min(w, max(MIN_BLOCK, w // THUMB))
    gh, gw = h // bh, w // bw
    x = np.asarray(pixels[:, : gh * bh, : gw * bw], np.float32).reshape(c, gh, bh, gw, bw)
    return x.mean(axis=(2, 4)) * levels.reshape(c, 1, 1).astype(np.float32)


def tile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The documented reuse distance (docs/live.md): the largest change of any block mean of
    :func:`tile_thumb`, in 0-255 levels. 0 for identical tiles; a hand moving into one block
    of the tile gives tens of levels; sensor noise of a few levels gives well under 1."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max())


class TileCache:
    """The tile-level embedding cache: embedding rows per :func:`tile_key` (an LRU bounded by
    bytes), and, per tile position of a plan geometry, the reference tile whose embedding that
    position last used (its thumb and key), for reuse under a distance threshold.

    The reference is the tile that was *encoded*, not the previous frame, so a slow drift
    cannot creep past the threshold one small step at a time.
    """

    def __init__(self, max_bytes: int = 256 << 20, max_refs: int = 4096) -> None:
        self.rows = EmbeddingCache(max_bytes)
        self._refs: OrderedDict[tuple, tuple[np.ndarray, str]] = OrderedDict()
        self._max_refs = max_refs

    def get(self, key: str) -> Optional[np.ndarray]:
        """The embedding rows of a tile, or None."""
        return self.rows.get(key)

    def put(self, key: str, rows: np.ndarray) -> None:
        """Store a tile's embedding rows."""
        self.rows.put(key, rows)

    def reference(self, where: tuple) -> Optional[tuple[np.ndarray, str]]:
        """``(thumb, key)`` of the tile position ``where`` (geometry, index), or None."""
        return self._refs.get(where)

    def set_reference(self, where: tuple, thumb: np.ndarray, key: str) -> None:
        """Make ``key`` (with ``thumb``) the reference of position ``where``."""
        self._refs[where] = (thumb, key)
        self._refs.move_to_end(where)
        while len(self._refs) > self._max_refs:
            self._refs.popitem(last=False)
