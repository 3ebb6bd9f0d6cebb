"""Next-token sampling on the host: greedy, or temperature / top-k / top-p with a seed."""

from __future__ import annotations

import numpy as np

from edge.options import SamplingOptions


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
