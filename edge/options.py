"""Option types: frozen dataclasses built once at the edge (CLI, server, API) and passed down.

Every value is checked when the object is made, so a bad option is one clear
:class:`~edge.errors.InputError` before any work starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from edge.errors import InputError


@dataclass(frozen=True)
class Budget:
    """Limits on one image's cost; None = the bundle's default."""

    max_tiles: Optional[int] = None
    max_image_tokens: Optional[int] = None
    # how many times an image may be enlarged along an axis (None: the scheme's own rule)
    max_upscale: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("max_tiles", "max_image_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.max_upscale is not None and not self.max_upscale > 0:
            raise InputError(f"max-upscale must be positive, got {self.max_upscale}")


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


@dataclass(frozen=True)
class RuntimeOptions:
    """How to open a bundle: threads (0 = backend default), context size (0 = up to 4096)."""

    threads: int = 0
    n_ctx: int = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.threads < 0 or self.threads > 1024:
            raise InputError(f"threads must be between 1 and 1024, got {self.threads}")
        if self.n_ctx < 0 or (0 < self.n_ctx < 16):
            raise InputError(f"context size must be at least 16, got {self.n_ctx}")


@dataclass(frozen=True)
class GenerateOptions:
    """One request: token limit, sampling, and whether to apply the chat template."""

    max_tokens: int = 256
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    template: bool = True
    system: Optional[str] = None
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= 1_000_000:
            raise InputError(f"max tokens must be between 1 and 1000000, got {self.max_tokens}")


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

    step_s: float = 0.0        # > 0: sliding-window mode (whisper.cpp --step); 0: VAD mode
    length_s: float = 10.0     # sliding mode: the window; VAD mode: the longest utterance
    keep_s: float = 0.2        # sliding mode: audio carried into the next line
    silence_s: float = 0.6     # VAD: silence that ends an utterance
    min_speech_s: float = 0.2  # VAD: shorter bursts are ignored (clicks)
    pad_s: float = 0.2         # VAD: audio kept before the first and after the last voiced frame
    threshold_db: float = -45.0  # VAD: frames below this level (dBFS) are never speech
    margin_db: float = 10.0      # VAD: ... nor those less than this above the noise floor
    buffer_s: float = 30.0     # capture ring buffer; older audio is overwritten (and reported)
    max_lag_s: float = 5.0     # audio waiting longer than this counts as falling behind
    on_lag: str = "drop"       # "drop": skip to live audio with a warning; "keep": catch up later
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


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how: weight dtype, threads for the parity run, overwrite."""

    dtype: str = "f16"
    threads: int = 0
    force: bool = False
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.dtype not in ("f32", "f16"):
            raise InputError(f"--dtype must be f32 or f16, got {self.dtype!r}")
        if self.threads < 0:
            raise InputError(f"threads must be positive, got {self.threads}")
