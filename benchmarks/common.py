"""Small shared pieces of the harness: figures, medians, memory, not-available results."""

from __future__ import annotations

import statistics
from typing import Iterable, Optional


class NotAvailable(Exception):
    """A side cannot run a measurement (no such component, no such option); the report says why."""


def llm_figures(
    n_prompt: int, prefill_s: float, stamps: list[float], prefill_cpu_s: Optional[float] = None, cpu_stamps=()
) -> dict:
    """Prefill tokens/s, and decode tokens/s between the first and the last generated token
    (``stamps`` are the times each generated token became available).

    ``prefill_cpu_s`` / ``cpu_stamps``: the same on the process's CPU clock (``time.process_time``,
    every thread of the side): tokens per CPU-second, which other processes on a shared machine
    barely stretch (with one thread exactly the work done; with more, ggml's barrier waits count too)."""
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    out = {"prefill_tok_s": n_prompt / max(prefill_s, 1e-9), "decode_tok_s": decode, "generated": len(stamps)}
    if prefill_cpu_s is not None:
        out["prefill_cpu_tok_s"] = n_prompt / max(prefill_cpu_s, 1e-9)
    if len(cpu_stamps) > 1:
        out["decode_cpu_tok_s"] = (len(cpu_stamps) - 1) / max(cpu_stamps[-1] - cpu_stamps[0], 1e-9)
    return out


def embedding_rows(n: int, n_embd: int, seed: int = 0):
    """``n`` seeded float32 rows ``[n, n_embd]`` standing in for an image's embeddings (identical for
    every side; speed does not depend on the values, only on there being no inf/nan)."""
    import numpy as np

    return (np.random.default_rng(seed).standard_normal((n, n_embd)) * 0.05).astype(np.float32)


def spread(values: Iterable[float]) -> Optional[list]:
    """``[min, max]`` of the values (the spread the report prints next to a median), None for none."""
    vals = [float(v) for v in values if v is not None]
    return [min(vals), max(vals)] if vals else None


def median(values: Iterable[float]) -> Optional[float]:
    """The median, or None for no values."""
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM`` of /proc/self/status; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def token_ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    """``n`` seeded token ids of ordinary (non-control) vocabulary entries, identical for every side."""
    import numpy as np

    lo = min(1000, vocab // 4)
    return np.random.default_rng(seed).integers(lo, max(lo + 1, min(vocab, 40000)), n).tolist()
