"""Generation, layered: a step iterator of token ids, a stream of typed events, and a
blocking call that only joins the stream."""

from __future__ import annotations

import codecs
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from edge.errors import InputError
from edge.events import Event, FinishEvent, Result


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
