"""Next-token sampling on the host: greedy, or temperature / top-k / top-p with a seed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge.errors import InputError


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick each next token. ``temperature == 0`` means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.temperature <= 100.0) or self.temperature != self.temperature:
            raise InputError(f"temperature must be between 0 and 100, got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top-k must be 0 (off) or positive, got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise InputError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not (0 <= self.seed < 2**63):
            raise InputError(f"seed must be a non-negative integer, got {self.seed}")


class Sampler:
    """Stateful sampler: one random stream per generation, so a seed reproduces it."""

    def __init__(self, options: SamplingOptions) -> None:
        self.options = options
        self._rng = np.random.default_rng(options.seed)

    def __call__(self, logits: np.ndarray) -> int:
        """Pick a token id from a 1-D array of logits."""
        o = self.options
        if o.temperature == 0.0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / o.temperature
        order = np.argsort(-scaled, kind="stable")
        if o.top_k:
            order = order[: o.top_k]
        chosen = scaled[order]
        probs = np.exp(chosen - chosen.max())
        probs /= probs.sum()
        if o.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = int(np.searchsorted(np.cumsum(probs), o.top_p) + 1)
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self._rng.choice(len(order), p=probs)])
