"""The image stage of a request: load, slice by the bundle's scheme, encode, cache.

Each image becomes an :class:`Encoded`: its layout (layout tokens and block indices, see
:data:`~edge.runtime.vision.schemes.Layout`) and its embedding blocks, cached by content so a
repeated image costs no vision work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edge.events import Timings
from edge.manifest import VisionSpec
from edge.options import Budget, OnnxOptions
from edge.runtime.vision.embed_cache import EmbeddingCache, image_key
from edge.runtime.vision.encoder import VisionEncoder
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.schemes import Layout, scheme_for


@dataclass(frozen=True)
class Encoded:
    """An image after the vision graph: its content key, layout, embedding blocks and plan info."""

    key: str
    layout: Layout
    blocks: list
    info: dict

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)


class ImageStage:
    """Images -> :class:`Encoded` for one bundle's vision graph. Not thread-safe."""

    def __init__(self, root: Path, spec: VisionSpec, vision_id: str, options: OnnxOptions) -> None:
        self.encoder = VisionEncoder(root, spec, options)
        self.scheme = scheme_for(spec, root)
        self.cache = EmbeddingCache()
        self._vision_id = vision_id  # embeddings are valid for this exact vision graph only

    def reset(self) -> None:
        """Forget every cached embedding."""
        self.cache = EmbeddingCache(self.cache.max_bytes)

    def encode(self, images: list, budget: Budget, timings: Timings) -> list[Encoded]:
        """Encode ``images`` (paths, bytes or PIL images), adding to ``timings``."""
        out = []
        for src in images:
            t = time.perf_counter()
            img = load_image(src)
            key = image_key(img, self._vision_id, repr(budget))
            enc = self.cache.get(key)
            if enc is None:
                plan = self.scheme.plan(img, budget)
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
                t = time.perf_counter()
                embeds = self.encoder(plan.pixel_values)
                timings.image_encode_ms += (time.perf_counter() - t) * 1000
                timings.tiles += plan.pixel_values.shape[0]
                layout, blocks = self.scheme.layout(embeds, plan)
                enc = Encoded(key, layout, blocks, plan.info)
                self.cache.put(key, enc)
            else:
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
            timings.image_tokens += sum(b.shape[0] for b in enc.blocks)
            timings.image_plans.append(enc.info)
            out.append(enc)
        timings.cache_hits, timings.cache_misses = self.cache.hits, self.cache.misses
        if timings.tiles:
            timings.encode_ms_per_tile = timings.image_encode_ms / timings.tiles
        return out
