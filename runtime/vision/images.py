"""The image stage of a request: load, slice by the bundle's scheme, encode, cache.

Each image becomes an :class:`Encoded`: its layout (layout tokens and block indices, see
:data:`~edge.runtime.vision.schemes.Layout`) and its embedding blocks. Two caches keep vision
work from being done twice:

* whole images, by decoded content + budget + vision graph: a repeated image costs nothing
  (``cache.hits`` / ``cache.misses`` count these, one per image);
* single tiles, by preprocessed pixels + vision graph, for schemes whose tiles go through the
  graph one by one (``Scheme.tiles_independent``): a camera frame whose tiles did not change
  costs no vision work for them, and with ``reuse_threshold > 0`` a tile whose block means
  moved less than the threshold (:func:`~edge.runtime.vision.embed_cache.tile_distance`) reuses
  the embedding of the tile it is compared with.

The key of each embedding block follows the tiles it came from, so the pipeline's KV prefix
comparison keeps everything up to the first block that changed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import InputError
from edge.events import Timings
from edge.manifest import VisionSpec
from edge.options import Budget, OnnxOptions
from edge.runtime.vision.embed_cache import EmbeddingCache, TileCache, image_key, tile_key, tile_thumb
from edge.runtime.vision.encoder import VisionEncoder
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.schemes import Layout, TilePlan, scheme_for


@dataclass(frozen=True)
class Encoded:
    """An image after the vision graph: its content key, layout, embedding blocks and plan info.

    ``block_keys`` name each block by the content it came from (the tiles' keys); ``tiles`` is
    how many tiles the image has.
    """

    key: str
    layout: Layout
    blocks: list
    info: dict
    block_keys: tuple = ()
    tiles: int = 0

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)

    def block_key(self, index: int) -> str:
        """The content key of block ``index`` (the MediaBlock key the pipeline compares)."""
        return self.block_keys[index] if self.block_keys else f"{self.key}:{index}"


def _levels(spec: VisionSpec) -> np.ndarray:
    """Per channel: how many 0-255 input levels one unit of a preprocessed pixel is."""
    p = spec.preprocess
    std = np.asarray(getattr(p, "std", [1.0, 1.0, 1.0]) if getattr(p, "do_normalize", True) else [1.0] * 3)
    rescale = float(getattr(p, "rescale_factor", 1.0 / 255.0)) if getattr(p, "do_rescale", True) else 1.0
    return (std / rescale).astype(np.float32)


class ImageStage:
    """Images -> :class:`Encoded` for one bundle's vision graph. Not thread-safe.

    ``reuse_threshold`` (0 = exact reuse only) is the largest
    :func:`~edge.runtime.vision.embed_cache.tile_distance`, in 0-255 levels, at which a tile
    reuses the embedding of the tile last encoded at its position (same plan geometry).
    """

    def __init__(self, root: Path, spec: VisionSpec, vision_id: str, options: OnnxOptions) -> None:
        self.encoder = VisionEncoder(root, spec, options)
        self.scheme = scheme_for(spec, root)
        self.cache = EmbeddingCache()
        self.tile_cache = TileCache()
        self.reuse_threshold = 0.0
        self._levels = _levels(spec)
        self._vision_id = vision_id  # embeddings are valid for this exact vision graph only

    @property
    def per_tile(self) -> bool:
        """Whether this bundle's tiles are cached and reused one by one."""
        return bool(getattr(self.scheme, "tiles_independent", False))

    def set_reuse_threshold(self, threshold: float) -> None:
        """Set :attr:`reuse_threshold` (0 <= threshold <= 255)."""
        if not (0.0 <= float(threshold) <= 255.0):
            raise InputError(f"the reuse threshold is a distance in 0-255 levels, got {threshold}")
        self.reuse_threshold = float(threshold)

    def reset(self) -> None:
        """Forget every cached embedding."""
        self.cache = EmbeddingCache(self.cache.max_bytes)
        self.tile_cache = TileCache(self.tile_cache.rows.max_bytes)

    def encode(self, images: list, budget: Budget, timings: Timings) -> list[Encoded]:
        """Encode ``images`` (paths, bytes or PIL images), adding to ``timings``."""
        out = []
        for src in images:
            t = time.perf_counter()
            img = load_image(src)
            timings.image_load_ms += (time.perf_counter() - t) * 1000
            key = image_key(img, self._vision_id, repr(budget))
            enc = self.cache.get(key)
            if enc is None:
                t_plan = time.perf_counter()
                plan = self.scheme.plan(img, budget)
                timings.slice_ms += (time.perf_counter() - t_plan) * 1000
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
                approx = False
                if self.per_tile:
                    embeds, tile_keys, approx = self._tiles(plan, timings)
                else:
                    t = time.perf_counter()
                    embeds, tile_keys = self.encoder(plan.pixel_values), ()
                    timings.image_encode_ms += (time.perf_counter() - t) * 1000
                    timings.tiles += plan.pixel_values.shape[0]
                    timings.tiles_encoded += plan.pixel_values.shape[0]
                layout, blocks = self.scheme.layout(embeds, plan)
                enc = Encoded(key, layout, blocks, plan.info, _block_keys(plan, tile_keys, len(blocks)), len(embeds))
                if not approx:  # an approximate encoding must not answer for these exact pixels later
                    self.cache.put(key, enc)
            else:
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
                timings.tiles_reused += enc.tiles
            timings.image_tokens += sum(b.shape[0] for b in enc.blocks)
            timings.image_plans.append(enc.info)
            out.append(enc)
        timings.cache_hits, timings.cache_misses = self.cache.hits, self.cache.misses
        if timings.tiles:
            timings.encode_ms_per_tile = timings.image_encode_ms / timings.tiles
        return out

    def _tiles(self, plan: TilePlan, timings: Timings) -> tuple[np.ndarray, tuple[str, ...], bool]:
        """Embedding rows of each tile of ``plan``: from the tile cache when the tile (or, under
        the threshold, its position's reference tile) is known, else from the vision graph; and
        whether any tile reused an approximate (under-threshold) embedding."""
        t = time.perf_counter()
        px = plan.pixel_values
        geometry = _geometry(plan)
        rows: list = [None] * px.shape[0]
        keys: list[str] = [""] * px.shape[0]
        todo = []
        approx = False
        for i in range(px.shape[0]):
            k = tile_key(px[i], self._vision_id)
            thumb = tile_thumb(px[i], self._levels)
            ref = self.tile_cache.reference((geometry, i))
            hit = self.tile_cache.get(k)
            if hit is None and ref is not None and self.reuse_threshold > 0:
                if float(np.abs(ref[0] - thumb).max()) <= self.reuse_threshold:
                    hit = self.tile_cache.get(ref[1])
                    if hit is not None:  # the embedding used is the reference's, and so is the key
                        k, approx = ref[1], True
            if hit is None:
                todo.append(i)
            else:
                rows[i] = hit
            keys[i] = k
            if ref is None or ref[1] != k:  # a reused tile keeps its reference: drift cannot creep
                self.tile_cache.set_reference((geometry, i), thumb, k)
        timings.preprocess_ms += (time.perf_counter() - t) * 1000
        if todo:
            t = time.perf_counter()
            fresh = self.encoder(px[todo])
            timings.image_encode_ms += (time.perf_counter() - t) * 1000
            for j, i in enumerate(todo):
                rows[i] = np.ascontiguousarray(fresh[j])
                self.tile_cache.put(keys[i], rows[i])
        timings.tiles += len(todo)
        timings.tiles_encoded += len(todo)
        timings.tiles_reused += px.shape[0] - len(todo)
        if not rows:
            return self.encoder(px), (), False
        return np.stack(rows), tuple(keys), approx


def _geometry(plan: TilePlan) -> str:
    """What makes tile positions of two plans comparable: the pixel shape and the plan info."""
    return f"{plan.pixel_values.shape}|{plan.signature}|{sorted(plan.info.items())!r}"


def _block_keys(plan: TilePlan, tile_keys: tuple, n_blocks: int) -> tuple:
    """Per embedding block, a key that follows the content of the tiles it is made of.

    One block per tile (clip, idefics3): the block is that tile's rows. Otherwise (anyres packs
    every tile into one block) a block depends on all tiles. The plan geometry is part of each
    key: the same tile in another layout stands at other positions.
    """
    if not tile_keys:
        return ()
    g = hashlib.sha256(_geometry(plan).encode()).hexdigest()[:16]
    if n_blocks == len(tile_keys):
        return tuple(f"t:{g}:{k}" for k in tile_keys)
    whole = hashlib.sha256("".join(tile_keys).encode()).hexdigest()
    return tuple(f"b:{g}:{whole}:{i}" for i in range(n_blocks))
