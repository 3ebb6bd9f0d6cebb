"""The speech option types (Whisper decoding, live audio); :mod:`edge.options` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edge.errors import InputError


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode: language/task, timestamps, limits and the silence rules."""

    language: Optional[str] = None
    task: str = "transcribe"
    timestamps: bool = True
    # tokens decoded per 30 s window at most (0: half the decoder's context, as Whisper)
    max_tokens: int = 0
    # a window is silent when P(no speech) > this and its average log-prob < logprob_threshold
    no_speech_threshold: Optional[float] = 0.6
    logprob_threshold: float = -1.0
    # windows quieter than this RMS level (dBFS) are skipped without running the model
    silence_db: Optional[float] = -70.0

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise InputError(f"task must be transcribe or translate, got {self.task!r}")
        if not 0 <= self.max_tokens <= 10_000:
            raise InputError(f"max tokens must be between 0 and 10000, got {self.max_tokens}")
        if self.no_speech_threshold is not None and not 0.0 <= self.no_speech_threshold <= 1.0:
            raise InputError(f"no-speech threshold must be in [0, 1], got {self.no_speech_threshold}")


@dataclass(frozen=True)
class StreamOptions:
    """How live audio is cut and what happens when transcription cannot keep up."""

    step_s: float = 0.0  # > 0: sliding-window mode (whisper.cpp --step); 0: VAD mode
    length_s: float = 10.0  # sliding mode: the window; VAD mode: the longest utterance
    keep_s: float = 0.2  # sliding mode: audio carried into the next line
    silence_s: float = 0.6  # VAD: silence that ends an utterance
    min_speech_s: float = 0.2  # VAD: shorter bursts are ignored (clicks)
    pad_s: float = 0.2  # VAD: audio kept before the first and after the last voiced frame
    threshold_db: float = -45.0  # VAD: frames below this level (dBFS) are never speech
    margin_db: float = 10.0  # VAD: ... nor those less than this above the noise floor
    buffer_s: float = 30.0  # capture ring buffer; older audio is overwritten (and reported)
    max_lag_s: float = 5.0  # audio waiting longer than this counts as falling behind
    on_lag: str = "drop"  # "drop": skip to live audio with a warning; "keep": catch up later
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.on_lag not in ("drop", "keep"):
            raise InputError(f"lag policy must be drop or keep, got {self.on_lag!r}")
        if self.step_s < 0 or self.length_s <= 0 or self.keep_s < 0 or self.max_lag_s <= 0:
            raise InputError("step, length, keep and max lag must be positive")
        if self.step_s > 0 and (self.step_s > self.length_s or self.keep_s >= self.length_s):
            raise InputError(f"need step ({self.step_s}) <= length ({self.length_s}) and keep ({self.keep_s}) < length")
        if self.length_s > 30.0:
            raise InputError(f"length must be at most 30 s (one Whisper window), got {self.length_s}")
        if self.buffer_s < max(self.length_s, self.max_lag_s):
            raise InputError("the ring buffer must hold at least one window and the maximum lag")
