"""The items a request lays out in the LLM's context, and the media facts this runtime executes.

A request becomes a list of items: token ids (``int``) and :class:`MediaBlock`s (the embedding
rows of an image or one of its tiles). The pipeline compares that list with what the KV cache
holds to reuse the longest common prefix; the functions here say how many positions an item
takes and when two items are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import BundleError, RuntimeFailure
from edge.manifest import LLMSpec


@dataclass(frozen=True)
class MediaBlock:
    """One embedding block in the sequence (an image, or one tile of it), keyed by its content."""

    key: str
    embeds: np.ndarray


# What this runtime executes of the manifest's media facts (LLMSpec.media_attention / media_positions):
# llama.cpp evaluates a batch of embedding rows under the same causal mask as tokens, one position a row.
SUPPORTED_MEDIA_ATTENTION = ("causal",)
SUPPORTED_MEDIA_POSITIONS = ("linear",)


def check_media_facts(spec: LLMSpec) -> None:
    """Refuse a bundle whose LLM sees media rows in a way this runtime cannot execute (checked for
    bundles with media; a text-only bundle has no media rows to get wrong).

    Raises:
        BundleError: non-causal attention over media rows, or multi-axis positions (M-RoPE).
    """
    if spec.media_attention not in SUPPORTED_MEDIA_ATTENTION:
        raise BundleError(
            f"the bundle's LLM attends to image rows with {spec.media_attention} attention; this "
            f"runtime runs {', '.join(SUPPORTED_MEDIA_ATTENTION)} attention only (upgrade edge)"
        )
    if spec.media_positions not in SUPPORTED_MEDIA_POSITIONS:
        raise BundleError(
            f"the bundle's LLM gives image rows {spec.media_positions!r} (multi-axis) positions; this "
            f"runtime gives {', '.join(SUPPORTED_MEDIA_POSITIONS)} positions only (upgrade edge)"
        )


def width(item, positions: str) -> int:
    """The KV-cache positions an item takes: one per token; under "linear" media positions (the
    bundle's ``media_positions``, checked at load) one per embedding row of a media block."""
    if not isinstance(item, MediaBlock):
        return 1
    if positions == "linear":
        return item.embeds.shape[0]
    raise RuntimeFailure(f"media positions {positions!r} are not supported by this runtime")


def same(a, b) -> bool:
    """Whether two items are the same for KV reuse (media blocks compare by content key)."""
    if isinstance(a, MediaBlock) or isinstance(b, MediaBlock):
        return isinstance(a, MediaBlock) and isinstance(b, MediaBlock) and a.key == b.key
    return a == b
