"""The parts of the live loop (:mod:`edge.runtime.live_loop`): options, events, the scene-change
measure, the newest-frame slot and the trigger mailbox with its on-busy policy.

Everything a live loop holds is bounded: one newest frame, at most one waiting trigger (with
its frame), the embedding caches by bytes. Nothing grows with the length of the stream.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import numpy as np

from edge.errors import InputError
from edge.options import GenerateOptions

ON_BUSY = ("skip", "cancel", "queue")
TRIGGERS = ("every", "change", "speech", "typed")


@dataclass(frozen=True)
class LiveOptions:
    """When the live loop answers, about what, and what it does when it is busy.

    ``every_s``: narrate every that many seconds of stream time. ``on_change``: answer when the
    scene changed by more than ``change_threshold`` (:func:`scene_distance`, 0-255 levels)
    since the last such answer. Spoken questions and typed lines always trigger. With none of
    ``every_s``/``on_change`` and no audio, the loop narrates every 5 s.
    ``max_fps``: frames taken from the source per second of stream time at most (None: all).
    ``reuse_threshold``: the tile reuse distance (0 = exact reuse; docs/live.md).
    ``on_busy``: a trigger during an answer is dropped (``skip``), stops the answer and is
    answered instead (``cancel``), or waits, one at most, newest kept (``queue``).
    ``lag_warn_s``: frame-to-first-token latency above this is warned about.
    """

    prompt: str = "Describe what you see in one sentence."
    every_s: Optional[float] = None
    on_change: bool = False
    change_threshold: float = 12.0
    max_fps: Optional[float] = None
    reuse_threshold: float = 0.0
    on_busy: str = "skip"
    lag_warn_s: float = 2.0
    generate: GenerateOptions = field(default_factory=lambda: GenerateOptions(max_tokens=64))

    def __post_init__(self) -> None:
        def positive(name: str, value: Optional[float]) -> None:
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a positive number, got {value}")

        positive("--every", self.every_s)
        positive("--max-fps", self.max_fps)
        positive("lag warning", self.lag_warn_s)
        for name, value in (("--change-threshold", self.change_threshold), ("--reuse-threshold", self.reuse_threshold)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 255):
                raise InputError(f"{name} is a distance in 0-255 levels, got {value}")
        if self.on_busy not in ON_BUSY:
            raise InputError(f"--on-busy must be one of {', '.join(ON_BUSY)}, got {self.on_busy!r}")
        if not self.prompt.strip():
            raise InputError("the live prompt is empty")


@dataclass(frozen=True)
class LiveFrame:
    """A frame as the loop holds it: RGB pixels, stream time (s), index, and the
    ``time.perf_counter()`` at which it was captured (the start of its latency)."""

    rgb: np.ndarray
    t: float
    index: int
    captured: float


@dataclass(frozen=True)
class Trigger:
    """A reason to answer: ``kind`` (one of :data:`TRIGGERS`), the question (None for speech until
    transcribed), the frame current when it fired, and the speech samples (16 kHz) if spoken."""

    kind: str
    frame: LiveFrame
    question: Optional[str] = None
    audio: Optional[np.ndarray] = None


@dataclass(frozen=True)
class LiveToken:
    """A piece of the answer ``answer`` (its number) as it streams."""

    answer: int
    text: str


@dataclass(frozen=True)
class LiveAnswer:
    """One finished (or cancelled) answer and what it cost."""

    answer: int
    t: float  # stream time of the frame it is about (s)
    trigger: str
    question: str
    text: str
    finish_reason: str  # stop | length | context | cancelled
    tiles: int  # tiles of the frame
    tiles_encoded: int  # ... that went through the vision graph
    tiles_reused: int  # ... whose embedding came from the caches
    latency_ms: float  # frame capture -> first token (0 when no token came)
    vision_ms: float
    prefill_ms: float
    reused_tokens: int  # KV positions kept from the previous answer
    prompt_tokens: int

    def as_dict(self) -> dict:
        """Rounded figures for a JSON line."""
        d = asdict(self)
        return {"type": "answer", **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}}


@dataclass(frozen=True)
class LiveWarning:
    """Something the user should know (lag, dropped triggers, a source that broke off)."""

    t: float
    message: str

    def as_dict(self) -> dict:
        return {"type": "warning", "t": round(self.t, 3), "message": self.message}


@dataclass(frozen=True)
class LiveSummary:
    """The last event of a live run."""

    ended: str  # "end of stream" | "source stopped" | "stopped"
    duration_s: float  # stream time covered
    frames: int  # frames read from the source
    frames_used: int  # frames taken after --max-fps
    triggers: int
    answers: int
    skipped: int  # triggers dropped by the on-busy policy (or replaced while waiting)
    cancelled: int
    tiles: int
    tiles_encoded: int
    tiles_reused: int
    latency_p50_ms: float
    latency_p95_ms: float
    lag_warnings: int

    def as_dict(self) -> dict:
        d = asdict(self)
        return {"type": "summary", **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}}


LiveEvent = Union[LiveToken, LiveAnswer, LiveWarning, LiveSummary]


def scene_thumb(rgb: np.ndarray, side: int = 32) -> np.ndarray:
    """A ``side x side`` grey thumbnail (block means, 0-255) for the scene-change measure."""
    h, w = rgb.shape[:2]
    bh, bw = max(1, h // side), max(1, w // side)
    gh, gw = h // bh, w // bw
    grey = rgb[: gh * bh, : gw * bw].astype(np.float32).mean(axis=2)
    return grey.reshape(gh, bh, gw, bw).mean(axis=(1, 3))


def scene_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Scene change between two thumbnails: mean absolute difference in 0-255 grey levels
    (a cut to another scene gives tens; noise and a small moving object a few at most)."""
    if a.shape != b.shape:
        return 255.0
    return float(np.abs(a - b).mean())


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0 for no values)."""
    return float(np.percentile(values, q)) if values else 0.0


class NewestFrame:
    """A one-frame slot: writing replaces what is there, so a slow reader sees the newest frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Optional[LiveFrame] = None

    def put(self, frame: LiveFrame) -> None:
        with self._lock:
            self._frame = frame

    def get(self) -> Optional[LiveFrame]:
        with self._lock:
            return self._frame


class Mailbox:
    """Triggers from the capture side to the answering side, under the on-busy policy.

    At most one trigger waits. While an answer runs: ``skip`` drops a new trigger, ``queue``
    keeps it (a newer one replaces it), ``cancel`` keeps it and asks the answer to stop.
    """

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._cond = threading.Condition()
        self._pending: Optional[Trigger] = None
        self._busy = False
        self._cancel = False
        self._closed = False
        self.posted = 0
        self.dropped = 0

    def post(self, trigger: Trigger) -> None:
        with self._cond:
            self.posted += 1
            if self._busy and self.policy == "skip":
                self.dropped += 1
                return
            if self._pending is not None:
                self.dropped += 1  # the older waiting trigger gives way to the newer one
            self._pending = trigger
            if self._busy and self.policy == "cancel":
                self._cancel = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Optional[Trigger]:
        """The waiting trigger (marking the loop busy), or None after ``timeout`` or when closed."""
        with self._cond:
            if self._pending is None and not self._closed:
                self._cond.wait(timeout)
            trigger, self._pending = self._pending, None
            if trigger is not None:
                self._busy, self._cancel = True, False
            return trigger

    def done(self) -> None:
        """The running answer finished."""
        with self._cond:
            self._busy = False

    @property
    def cancel_requested(self) -> bool:
        return self._cancel

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return int(self._pending is not None)

    @property
    def busy(self) -> bool:
        """Whether an answer runs (between :meth:`take` and :meth:`done`)."""
        return self._busy
