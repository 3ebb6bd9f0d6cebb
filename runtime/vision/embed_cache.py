"""A bounded cache of encoded images keyed by image content, budget and bundle."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Optional

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
