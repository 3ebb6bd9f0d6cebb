"""Live audio capture: a bounded ring buffer, clocks, and the sources the live loop reads.

Capture is behind :class:`AudioSource` (``read`` returns what arrived since the last
call); :class:`WavSource` replays a file at real-time pace against a :class:`Clock`, so
tests can run a minute of "live" audio in milliseconds with a :class:`ManualClock`.
A microphone source lives in ``edge.apps`` (the only layer that opens devices).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from edge.errors import InputError
from edge.runtime.speech.audio_io import Resampler, mono, open_audio


class RingBuffer:
    """A bounded FIFO of float32 samples; writing never blocks (the capture side may be a callback).

    When full, the oldest samples are overwritten; their count is kept in ``dropped``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise InputError("ring buffer capacity must be positive")
        self._buf = np.zeros(capacity, np.float32)
        self._start = 0  # index of the oldest sample
        self._size = 0
        self._lock = threading.Lock()
        self.dropped = 0

    @property
    def capacity(self) -> int:
        """Samples it holds at most."""
        return self._buf.size

    def __len__(self) -> int:
        return self._size

    def write(self, x: np.ndarray) -> None:
        """Append samples, overwriting the oldest when full."""
        x = np.asarray(x, np.float32).reshape(-1)
        cap = self._buf.size
        with self._lock:
            if x.size >= cap:
                self.dropped += self._size + x.size - cap
                self._buf[:] = x[-cap:]
                self._start, self._size = 0, cap
                return
            over = self._size + x.size - cap
            if over > 0:
                self.dropped += over
                self._start = (self._start + over) % cap
                self._size -= over
            end = (self._start + self._size) % cap
            first = min(x.size, cap - end)
            self._buf[end : end + first] = x[:first]
            self._buf[: x.size - first] = x[first:]
            self._size += x.size

    def read(self, max_samples: Optional[int] = None) -> np.ndarray:
        """Remove and return the oldest samples (all of them by default), in order."""
        with self._lock:
            n = self._size if max_samples is None else min(max_samples, self._size)
            idx = (self._start + np.arange(n)) % self._buf.size
            out = self._buf[idx].copy()
            self._start = (self._start + n) % self._buf.size
            self._size -= n
            return out

    def take_dropped(self) -> int:
        """Samples dropped since the last call."""
        with self._lock:
            n, self.dropped = self.dropped, 0
            return n


class Clock(Protocol):
    """Time for the stream loop (injectable, so tests need not wait)."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told: ``sleep`` advances it at once."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Let time pass (e.g. to stand for slow inference)."""
        self.t += max(0.0, seconds)


class AudioSource(Protocol):
    """Where live audio comes from: a microphone, or a file replayed at real-time pace."""

    sample_rate: int
    ring: RingBuffer

    def start(self) -> None: ...
    def read(self) -> np.ndarray: ...
    def stop(self) -> None: ...
    @property
    def finished(self) -> bool: ...


class WavSource:
    """Replays an audio file (any rate/channels; resampled, mixed to mono) at real-time pace.

    At each :meth:`read`, the audio that the clock says has been "captured" since the
    last read goes through the ring buffer, as a device callback would have written it,
    so a slow reader sees overflow exactly as with a microphone.
    """

    def __init__(self, path: str | Path, clock: Clock, sample_rate: int = 16000, buffer_s: float = 30.0) -> None:
        self.path = Path(path)
        self.clock = clock
        self.sample_rate = sample_rate
        self.ring = RingBuffer(int(buffer_s * sample_rate))
        self._file = None
        self._pending = np.zeros(0, np.float32)
        self._captured = 0
        self._eof = False

    def start(self) -> None:
        """Open the file; time zero is now."""
        self._file = open_audio(self.path)
        self._resampler = Resampler(int(self._file.samplerate), self.sample_rate)
        self._t0 = self.clock.now()

    def read(self) -> np.ndarray:
        """The samples "captured" since the last call (through the ring buffer)."""
        due = int((self.clock.now() - self._t0) * self.sample_rate)
        block = self.ring.capacity
        while self._captured < due and not self.finished_capture:
            need = min(due - self._captured, block)
            while self._pending.size < need and not self._eof:
                data = self._file.read(max(need, 4096), dtype="float32", always_2d=True)
                x = self._resampler.process(mono(data)) if len(data) else self._resampler.flush()
                self._eof = len(data) == 0
                self._pending = np.concatenate([self._pending, x])
            piece, self._pending = self._pending[:need], self._pending[need:]
            self.ring.write(piece)
            self._captured += piece.size
            if piece.size == 0:
                break
        return self.ring.read()

    @property
    def finished_capture(self) -> bool:
        """The whole file has been captured."""
        return self._eof and self._pending.size == 0

    @property
    def finished(self) -> bool:
        """Everything has been captured and read."""
        return self.finished_capture and len(self.ring) == 0

    def stop(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
