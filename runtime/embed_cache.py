"""A bounded cache of image embeddings keyed by image content and bundle."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Optional

import numpy as np
from PIL import Image


def image_key(image: Image.Image, bundle_id: str) -> str:
    """Content key: the decoded RGB pixels and size, plus the bundle they are encoded for."""
    h = hashlib.sha256()
    h.update(bundle_id.encode())
    h.update(f"{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """LRU of embeddings, bounded by total bytes; counts hits and misses."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Optional[np.ndarray]:
        """The cached embeddings, or None (counted as a miss)."""
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        """Store, evicting the least recently used entries beyond the byte bound."""
        if key in self._items:
            return
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
