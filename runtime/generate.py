"""Generation, layered: a step iterator of token ids, a stream of typed events, and a
blocking call that only joins the stream."""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np

from edge.errors import InputError


@dataclass
class Timings:
    """Where the time of one request went (milliseconds unless named otherwise)."""

    preprocess_ms: float = 0.0
    image_encode_ms: float = 0.0
    prefill_ms: float = 0.0
    ttft_ms: float = 0.0
    decode_ms: float = 0.0
    decode_tokens_per_s: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    images: int = 0
    tiles: int = 0  # tiles encoded by the vision graph in this request (cache hits encode none)
    image_tokens: int = 0  # embedding positions the images take in the prompt
    encode_ms_per_tile: float = 0.0
    cache_hits: int = 0  # image-embedding cache counters of the pipeline
    cache_misses: int = 0
    image_plans: list = field(default_factory=list)  # per image: what the planner chose

    def as_dict(self) -> dict:
        """Rounded figures for JSON output."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TokenEvent:
    """One generated token and the text it completes (may be empty mid-UTF-8 sequence)."""

    id: int
    text: str


@dataclass(frozen=True)
class FinishEvent:
    """The end of a generation: why it stopped, everything it produced, and timings."""

    reason: str  # "stop" (an end-of-sequence token), "length" (max tokens), "context" (context full)
    text: str
    tokens: list[int]
    timings: Timings


Event = Union[TokenEvent, FinishEvent]


@dataclass(frozen=True)
class Result:
    """What :func:`join` returns: the whole answer."""

    text: str
    tokens: list[int]
    finish_reason: str
    timings: Timings = field(default_factory=Timings)


def steps(
    first_logits: np.ndarray,
    sample: Callable[[np.ndarray], int],
    feed: Callable[[int], np.ndarray],
    max_tokens: int,
    room: int,
    stop_ids: Iterable[int],
) -> Iterator[tuple[int, Optional[str]]]:
    """Yield ``(token, None)`` for each new token, then ``(-1, reason)``.

    ``feed(token)`` evaluates a token and returns the next logits; ``room`` is how
    many more tokens the context can take. A stop token is not yielded.
    """
    if max_tokens < 1:
        raise InputError(f"max tokens must be at least 1, got {max_tokens}")
    stops = set(stop_ids)
    logits = first_logits
    for i in range(max_tokens):
        token = sample(logits)
        if token in stops:
            yield -1, "stop"
            return
        yield token, None
        if i == max_tokens - 1:
            break
        if i >= room - 1:
            yield -1, "context"
            return
        logits = feed(token)
    yield -1, "length"


class TextDecoder:
    """Token bytes -> text deltas, holding back incomplete UTF-8 sequences."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token: int) -> str:
        return self._dec.decode(self._piece(token))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


def join(events: Iterable[Event]) -> Result:
    """Consume a stream and return the :class:`Result` (the blocking API)."""
    for ev in events:
        if isinstance(ev, FinishEvent):
            return Result(ev.text, ev.tokens, ev.reason, ev.timings)
    raise RuntimeError("generation stream ended without a finish event")
