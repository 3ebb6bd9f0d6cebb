"""The items a request lays out in the LLM's context, and the media facts this runtime executes.

A request becomes a list of items: token ids (``int``) and :class:`MediaBlock`s (the embedding
rows of an image or one of its tiles). The pipeline compares that list with what the KV cache
holds to reuse the longest common prefix; the functions here say how many positions an item
takes and when two items are the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge.errors import BundleError, RuntimeFailure
from edge.manifest import LLMSpec, Manifest
from edge.options import LLMOptions


@dataclass(frozen=True)
class MediaBlock:
    """One embedding block in the sequence (an image, or one tile of it), keyed by its content."""

    key: str
    embeds: np.ndarray
    # "mrope" bundles: [3, rows] (t, h, w) positions of the rows relative to the block's first
    # position (None under "linear": one position per row)
    positions: Optional[np.ndarray] = None


# What this runtime executes of the manifest's media facts (LLMSpec.media_attention / media_positions):
# llama.cpp evaluates a batch of embedding rows under the same causal mask as tokens, one position a row.
# "bidirectional": each media block is decoded in one ubatch with llama.cpp's causal attention off
# (LLM.eval_embeddings(causal=False)), so its rows see each other, as Gemma 3's image blocks.
SUPPORTED_MEDIA_ATTENTION = ("causal", "bidirectional")
SUPPORTED_MEDIA_POSITIONS = ("linear",)
# Positions run only when the bundle's image scheme gives each row its ids (``Scheme.positions``):
# "mrope", the (t, h, w) ids of Qwen2-VL's M-RoPE; a block then takes as many positions as its
# largest relative position + 1, which is fewer than its rows.
SCHEME_MEDIA_POSITIONS = ("mrope",)


def check_media_facts(spec: LLMSpec, scheme=None) -> None:
    """Refuse a bundle whose LLM sees media rows in a way this runtime cannot execute (checked for
    bundles with media; a text-only bundle has no media rows to get wrong). ``scheme`` is the
    bundle's image scheme: positions of :data:`SCHEME_MEDIA_POSITIONS` run when it gives them.

    Raises:
        BundleError: non-causal attention over media rows, or multi-axis positions (M-RoPE).
    """
    if spec.media_attention not in SUPPORTED_MEDIA_ATTENTION:
        raise BundleError(
            f"the bundle's LLM attends to image rows with {spec.media_attention} attention; this "
            f"runtime runs {', '.join(SUPPORTED_MEDIA_ATTENTION)} attention only (upgrade edge)"
        )
    gives_ids = callable(getattr(scheme, "positions", None))
    if gives_ids and spec.media_positions not in SCHEME_MEDIA_POSITIONS:
        raise BundleError(
            f"the bundle's image scheme gives image rows (t, h, w) positions but its llm.media_positions is "
            f"{spec.media_positions!r}: the manifest lacks the position facts (re-export the bundle)"
        )
    if gives_ids:
        return
    if spec.media_positions not in SUPPORTED_MEDIA_POSITIONS:
        raise BundleError(
            f"the bundle's LLM gives image rows {spec.media_positions!r} (multi-axis) positions; this "
            f"runtime gives {', '.join(SUPPORTED_MEDIA_POSITIONS)} positions only (upgrade edge)"
        )


def media_batch(manifest: Manifest, options: LLMOptions) -> LLMOptions:
    """``options`` with a batch that holds one whole media block when the bundle's blocks attend to
    themselves both ways (a block must be one ubatch; llama.cpp's libmtmd needs the same): the
    batch is raised to the vision graph's rows per frame, never lowered."""
    if manifest.vision is None or manifest.llm is None or manifest.llm.media_attention == "causal":
        return options
    n = manifest.vision.tokens_per_image
    return options if options.n_batch >= n else dataclasses.replace(options, n_batch=n)


def width(item, positions: str) -> int:
    """The positions an item takes: one per token; under "linear" media positions (the bundle's
    ``media_positions``, checked at load) one per embedding row of a media block, under "mrope" the
    span of its rows' positions."""
    if not isinstance(item, MediaBlock):
        return 1
    if positions == "linear":
        return item.embeds.shape[0]
    if positions == "mrope":
        if item.positions is None:
            raise RuntimeFailure("mrope positions are not supported for an image block without its (t, h, w) ids")
        return int(item.positions.max()) + 1
    raise RuntimeFailure(f"media positions {positions!r} are not supported by this runtime")


def rows(item) -> int:
    """The KV-cache cells an item fills: one per token, one per embedding row of a media block."""
    return item.embeds.shape[0] if isinstance(item, MediaBlock) else 1


def same(a, b) -> bool:
    """Whether two items are the same for KV reuse (media blocks compare by content key)."""
    if isinstance(a, MediaBlock) or isinstance(b, MediaBlock):
        return isinstance(a, MediaBlock) and isinstance(b, MediaBlock) and a.key == b.key
    return a == b
