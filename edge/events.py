"""What the runtime gives back: the events of a token stream, results and timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Union


@dataclass
class Timings:
    """Where the time of one request went (milliseconds unless named otherwise)."""

    preprocess_ms: float = 0.0  # image_load_ms + slice_ms + the tile cache's hashing
    image_load_ms: float = 0.0  # decoding the image files (or converting the arrays given)
    slice_ms: float = 0.0  # the scheme's plan: slicing, resizing and normalising into tiles
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
    tiles_encoded: int = 0  # the same count, named for live answers (tiles_encoded + tiles_reused = all tiles)
    tiles_reused: int = 0  # tiles whose embedding came from the image or tile cache (no vision work)
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

    reason: str  # "stop" (end-of-sequence token or stop sequence), "length" (max tokens), "context" (context full)
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


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its text and times (seconds from the start of the audio)."""

    start: float
    end: float
    text: str
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float


@dataclass
class Transcript:
    """The result of :meth:`Transcriber.transcribe`."""

    text: str
    segments: list[Segment]
    language: str
    duration: float
    elapsed_s: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio (below 1 is faster than real time)."""
        return self.elapsed_s / self.duration if self.duration > 0 else 0.0

    def as_dict(self) -> dict:
        """Plain JSON-able form (for ``--json``)."""
        return {
            "text": self.text,
            "language": self.language,
            "duration": round(self.duration, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "rtf": round(self.rtf, 4),
            "segments": [{k: v for k, v in asdict(s).items()} for s in self.segments],
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


@dataclass(frozen=True)
class Placement:
    """Where one ONNX graph runs: the execution providers asked for, the ones onnxruntime
    registered for the session, and how many graph nodes each provider got.

    ``nodes`` is empty when onnxruntime did not report the assignment. Any difference between
    what was asked and what runs is a fallback: :attr:`reasons` says what it is, and the
    runtime logs it as a warning (``edge.onnxruntime``); it is never silent.
    """

    graph: str
    requested: tuple[str, ...]
    providers: tuple[str, ...]
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        """What differs from the request, one sentence each (empty: it runs as asked)."""
        out = [
            f"{p} was asked for but onnxruntime did not register it" for p in self.requested if p not in self.providers
        ]
        counts = dict(self.nodes)
        preferred = self.requested[0] if self.requested else None
        total = sum(counts.values())
        moved = {p: n for p, n in counts.items() if p != preferred and n}
        if preferred is not None and moved:
            where = ", ".join(f"{n} on {p}" for p, n in moved.items())
            out.append(f"{sum(moved.values())} of {total} nodes do not run on {preferred}, asked for first ({where})")
        return tuple(out)

    @property
    def fallback(self) -> bool:
        """Whether anything runs elsewhere than asked."""
        return bool(self.reasons)

    def as_dict(self) -> dict:
        """Plain JSON-able form (for ``--json``)."""
        return {
            "graph": self.graph,
            "requested": list(self.requested),
            "providers": list(self.providers),
            "nodes": dict(self.nodes),
            "fallback": self.fallback,
            "reasons": list(self.reasons),
        }
