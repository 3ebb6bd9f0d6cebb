"""Generation, layered: a step iterator of token ids, a stream of typed events, and a
blocking call that only joins the stream."""

from __future__ import annotations

import codecs
from typing import Callable, Iterable, Iterator, Optional, Sequence

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


class StopText:
    """Stop sequences over a stream of text deltas: text that may be the start of a stop is held
    back until it is known not to be one, and nothing from the first stop on is ever shown."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ""

    def push(self, delta: str) -> str:
        """The text that can be shown now; sets :attr:`stopped` when a stop sequence is complete."""
        if not self.stops or self.stopped:
            return "" if self.stopped else delta
        text = self._held + delta
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped, self._held = True, ""
            return text[: min(found)]
        # the longest tail of the text that begins some stop sequence waits for the next delta
        hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What is still held back, at the end of the stream (it never became a stop)."""
        out, self._held = self._held, ""
        return out


def join(events: Iterable[Event]) -> Result:
    """Consume a stream and return the :class:`Result` (the blocking API)."""
    for ev in events:
        if isinstance(ev, FinishEvent):
            return Result(ev.text, ev.tokens, ev.reason, ev.timings)
    raise RuntimeError("generation stream ended without a finish event")
