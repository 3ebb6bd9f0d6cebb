"""Audio input: read WAV/FLAC (and what else libsndfile reads), mix to mono, resample.

Files are read in blocks through ``soundfile`` (libsndfile), so hours of audio stream
through bounded memory. Resampling is a polyphase windowed-sinc interpolator (Smith,
"Digital Audio Resampling", https://ccrma.stanford.edu/~jos/resample/; the scheme of
libsamplerate/soxr): each output sample is a Kaiser-windowed sinc of the input around
its exact input time, low-passed at the lower of the two Nyquist rates. The filter
table has one row per output phase (``L`` rows for a rational ratio ``L/M``), and the
stream is processed block by block with identical results to a one-shot call.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from edge.errors import AudioError

MIN_RATE = 1000
MAX_RATE = 768000
# (samples, sample rate) or a path; a bare array is taken to be at the target rate
AudioInput = Union[str, os.PathLike, np.ndarray, tuple]


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, from its header."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        """Seconds of audio the header announces."""
        return self.frames / self.sample_rate if self.sample_rate > 0 else 0.0


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the libsndfile library itself is missing
        raise AudioError(f"reading audio files needs the soundfile package (pip install soundfile): {exc}") from None
    return soundfile


def open_audio(path: Path):
    """An open ``soundfile.SoundFile``, or an :class:`AudioError` saying what is wrong with ``path``."""
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioError(f"not an audio file: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty: {path}")
    sf = _soundfile()
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile's errors: not audio, unknown format, corrupt header
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise AudioError(f"cannot read {path.name} as audio: {msg[:200]}") from None
    if f.samplerate <= 0:
        f.close()
        raise AudioError(f"{path.name} has a sample rate of {f.samplerate} Hz")
    return f


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels, frames and format of an audio file."""
    p = Path(path)
    with open_audio(p) as f:
        return AudioInfo(str(p), int(f.samplerate), int(f.channels), int(f.frames), str(f.format))


def check_rate(rate: int) -> int:
    """Raise :class:`AudioError` for sample rates edge does not resample."""
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"sample rate {rate!r} Hz is not supported ({MIN_RATE} to {MAX_RATE} Hz)")
    return int(rate)


def mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a ``[frames, channels]`` block into float32 ``[frames]``."""
    x = np.asarray(block)
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise AudioError(f"audio must be [frames] or [frames, channels], got shape {x.shape}")
    return x.mean(axis=1, dtype=np.float64).astype(np.float32) if x.shape[1] > 1 else x[:, 0].astype(np.float32)


def stream_audio(src: AudioInput, sample_rate: int = 16000, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``sample_rate`` from a file or an array; memory stays bounded."""
    if isinstance(src, tuple):
        if len(src) != 2:
            raise AudioError("audio as a tuple must be (samples, sample_rate)")
        samples, rate = src
        yield from _stream_array(samples, check_rate(rate), sample_rate, block_seconds)
        return
    if isinstance(src, np.ndarray):
        yield from _stream_array(src, sample_rate, sample_rate, block_seconds)
        return
    path = Path(src).expanduser()
    with open_audio(path) as f:
        rate = int(f.samplerate)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioError(f"{path.name} has a sample rate of {rate} Hz ({MIN_RATE} to {MAX_RATE} Hz are supported)")
        rs = Resampler(rate, sample_rate)
        block = max(1, int(block_seconds * rate))
        done = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"cannot read {path.name}: {' '.join(str(exc).split())[:200]}") from None
            if len(data) == 0:
                break
            x = mono(data)
            if not np.isfinite(x).all():
                at = (done + int(np.argmin(np.isfinite(x)))) / rate
                raise AudioError(f"{path.name} contains NaN or infinite samples (at {at:.2f} s)")
            done += len(data)
            out = rs.process(x)
            if out.size:
                yield out
        tail = rs.flush()
        if tail.size:
            yield tail
        if done == 0:
            raise AudioError(f"{path.name} holds no audio samples")


def _stream_array(samples, rate: int, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    try:
        x = mono(np.asarray(samples, dtype=np.float32))
    except (TypeError, ValueError):
        raise AudioError("audio samples must be numbers") from None
    if x.size == 0:
        raise AudioError("the audio holds no samples")
    if not np.isfinite(x).all():
        raise AudioError("the audio contains NaN or infinite samples")
    rs = Resampler(rate, sample_rate)
    step = max(1, int(block_seconds * rate))
    for i in range(0, x.size, step):
        out = rs.process(x[i : i + step])
        if out.size:
            yield out
    tail = rs.flush()
    if tail.size:
        yield tail


def load_audio(src: AudioInput, sample_rate: int = 16000, max_seconds: float = 3600.0) -> np.ndarray:
    """All of ``src`` as mono float32 at ``sample_rate`` (refuses more than ``max_seconds``)."""
    parts, total = [], 0
    limit = int(max_seconds * sample_rate)
    for block in stream_audio(src, sample_rate):
        total += block.size
        if total > limit:
            raise AudioError(
                f"the audio is longer than {max_seconds:.0f} s; stream it instead (edge transcribe streams files)"
            )
        parts.append(block)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class Resampler:
    """Streaming band-limited resampling from ``src_rate`` to ``dst_rate`` (mono float32).

    ``process`` may be called with blocks of any size; ``flush`` returns the tail. The
    output has ``ceil(n_in * dst_rate / src_rate)`` samples, aligned so that output
    sample ``n`` sits at input time ``n * src_rate / dst_rate``.
    """

    ZERO_CROSSINGS = 16  # half-width of the sinc in zero crossings of the lower rate
    ROLLOFF = 0.94  # pass band edge as a fraction of the lower Nyquist rate
    BETA = 8.6  # Kaiser window shape: about 90 dB stop-band attenuation
    CHUNK = 8192  # outputs computed per vectorised step (bounds temporary memory)

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src, self.dst = check_rate(src_rate), check_rate(dst_rate)
        g = math.gcd(self.src, self.dst)
        self.up, self.down = self.dst // g, self.src // g  # output n at input time n * down / up
        self.n_in = 0
        self.n_out = 0
        if self.up == self.down:
            return
        fc = 0.5 * self.ROLLOFF * min(1.0, self.up / self.down)  # cycles per input sample
        self.half = int(math.ceil(self.ZERO_CROSSINGS / (2.0 * fc)))
        # taps j = 0..2*half-1 read input sample base - half + 1 + j; tau = its distance to the output time
        j = np.arange(2 * self.half)
        phase = np.arange(self.up)[:, None] / self.up
        tau = (self.half - 1 - j)[None, :] + phase
        window = np.i0(self.BETA * np.sqrt(np.clip(1.0 - (tau / (self.half + 1)) ** 2, 0.0, 1.0))) / np.i0(self.BETA)
        self.table = (2.0 * fc * np.sinc(2.0 * fc * tau) * window).astype(np.float32)
        self.buf = np.zeros(self.half, np.float32)  # input history; starts with zeros before t=0
        self.buf_start = -self.half

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample the next block of input."""
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        self.n_in += x.size
        if self.up == self.down:
            self.n_out += x.size
            return x
        self.buf = np.concatenate([self.buf, x])
        return self._run(self.buf_start + self.buf.size - 1)

    def flush(self) -> np.ndarray:
        """The remaining outputs (the input is taken to be zero after its end)."""
        if self.up == self.down:
            return np.zeros(0, np.float32)
        self.buf = np.concatenate([self.buf, np.zeros(self.half + 1, np.float32)])
        total = -(-self.n_in * self.up // self.down)
        return self._run(self.buf_start + self.buf.size - 1, limit=total)

    def _run(self, last_available: int, limit: int | None = None) -> np.ndarray:
        # outputs n whose last tap, base(n) + half, is available
        stop = ((last_available - self.half + 1) * self.up + self.down - 1) // self.down
        if limit is not None:
            stop = min(stop, limit)
        out = []
        for n0 in range(self.n_out, stop, self.CHUNK):
            n = np.arange(n0, min(stop, n0 + self.CHUNK), dtype=np.int64)
            base = n * self.down // self.up
            idx = (base - self.half + 1 - self.buf_start)[:, None] + np.arange(2 * self.half)[None, :]
            taps = self.table[n * self.down % self.up]
            out.append(np.einsum("ij,ij->i", self.buf[idx], taps))
        if stop > self.n_out:
            self.n_out = stop
        # keep only the history the next output needs
        keep_from = self.n_out * self.down // self.up - self.half + 1
        cut = max(0, keep_from - self.buf_start)
        if cut:
            self.buf = self.buf[cut:]
            self.buf_start += cut
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
