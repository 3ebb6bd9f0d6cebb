"""Live audio: a bounded ring buffer, energy VAD, step/length/keep windows and a lag policy.

The shape follows whisper.cpp's ``examples/stream``: capture runs on its own (a device
callback) into a ring buffer of bounded size; the loop takes what arrived, cuts it into
pieces to transcribe, and when transcription falls behind it applies an explicit policy
instead of letting latency grow without bound. Two ways to cut:

* **VAD mode** (``step_s == 0``, the default): an energy detector on 30 ms frames, after
  a 100 Hz high-pass (as whisper.cpp's ``vad_simple``), against an adaptive noise
  floor; an utterance ends after ``silence_s`` of silence (or at ``length_s``).
* **Sliding windows** (``step_s > 0``): every ``step_s`` of new audio, the current line
  (up to ``length_s``) is transcribed again as a partial; every ``length_s / step_s - 1``
  steps the line is final and the next one starts with the last ``keep_s`` of audio.

Capture sources, the ring buffer and clocks are in :mod:`edge.runtime.speech.capture`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np

from edge.options import StreamOptions
from edge.runtime.speech.capture import AudioSource, Clock, SystemClock

FRAME_S = 0.03


@dataclass(frozen=True)
class Utterance:
    """A piece of audio to transcribe; ``final`` is False for a sliding-mode partial."""

    audio: np.ndarray
    start: float
    end: float
    final: bool = True


@dataclass(frozen=True)
class Dropped:
    """Audio that was discarded: ``reason`` is ``lag`` (the policy) or ``overflow`` (the ring)."""

    seconds: float
    reason: str

    @property
    def message(self) -> str:
        """The warning to show."""
        why = "transcription is falling behind" if self.reason == "lag" else "the capture buffer overflowed"
        return f"{why}: dropped {self.seconds:.1f} s of audio"


Event = Union[Utterance, Dropped]


def stream_events(
    source: AudioSource,
    options: StreamOptions = StreamOptions(),
    clock: Clock = SystemClock(),
    poll_s: float = 0.05,
    timeout_s: Optional[float] = None,
) -> Iterator[Event]:
    """Utterances (and drop warnings) from a live source, until it is finished or the caller stops.

    The caller transcribes each utterance before asking for the next; the audio that
    arrives meanwhile waits in the ring buffer. On resuming, a backlog above
    ``max_lag_s`` is discarded under the ``drop`` policy (with a :class:`Dropped`
    event), so latency stays bounded; under ``keep`` it is processed late, and only
    ring-buffer overflow loses audio (also reported). ``timeout_s`` ends the stream
    (flushing what is open) after that much time on ``clock``.
    """
    seg = Segmenter(options)
    rate = options.sample_rate
    source.start()
    t_end = None if timeout_s is None else clock.now() + timeout_s
    try:
        while True:
            new = source.read()
            lost = source.ring.take_dropped()
            if lost:
                seg.skip(lost)
                yield Dropped(lost / rate, "overflow")
            if options.on_lag == "drop" and new.size > options.max_lag_s * rate:
                skip = new.size - int(options.keep_s * rate) if options.step_s else new.size
                seg.skip(skip)
                new = new[skip:]
                yield Dropped(skip / rate, "lag")
            for event in seg.push(new):
                yield event
            if source.finished or (t_end is not None and clock.now() >= t_end):
                yield from seg.flush()
                return
            if new.size == 0:
                clock.sleep(poll_s)
    finally:
        source.stop()


class Segmenter:
    """Cuts a stream of samples into utterances (VAD mode) or windows (sliding mode). Pure: no I/O."""

    def __init__(self, options: StreamOptions = StreamOptions()) -> None:
        self.o = options
        self.rate = options.sample_rate
        self.frame = int(FRAME_S * self.rate)
        self.t = 0  # samples seen (absolute stream position)
        alpha = 1.0 / (1.0 + 2 * math.pi * 100.0 / self.rate)
        self._hp_taps = alpha ** (np.arange(int(math.log(1e-6) / math.log(alpha)) + 1) + 1)
        self._hp_hist = np.zeros(self._hp_taps.size)  # recent input differences (filter state)
        self._hp_last = 0.0
        self._noise_db = -90.0
        self._partial = np.zeros(0, np.float32)  # samples not yet a whole frame
        self._audio = np.zeros(0, np.float32)  # VAD: audio kept for the utterance (with pre-roll)
        self._audio_start = 0
        self._speech_start: Optional[int] = None
        self._last_voice = 0
        self._voiced = 0
        # sliding mode
        self._line = np.zeros(0, np.float32)
        self._line_start = 0
        self._since_step = 0
        self._steps = 0

    def skip(self, n: int) -> None:
        """``n`` samples were lost: drop any utterance in progress and move the clock on."""
        self.t += n
        self._partial = np.zeros(0, np.float32)
        self._audio, self._audio_start = np.zeros(0, np.float32), self.t
        self._speech_start = None
        self._voiced = 0
        self._line, self._line_start, self._since_step = np.zeros(0, np.float32), self.t, 0

    def push(self, x: np.ndarray) -> list[Utterance]:
        """Feed samples; returns the utterances/windows they complete."""
        x = np.asarray(x, np.float32).reshape(-1)
        if x.size and not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return self._push_sliding(x) if self.o.step_s > 0 else self._push_vad(x)

    def flush(self) -> list[Utterance]:
        """End of stream: whatever is open becomes final."""
        if self.o.step_s > 0:
            if self._since_step and self._line.size:
                return [self._window(final=True)]
            return []
        out = []
        if self._speech_start is not None and self._voiced * self.frame >= self.o.min_speech_s * self.rate:
            out.append(self._cut(self._audio_start + self._audio.size))
        self._speech_start = None
        return out

    # --- sliding windows ------------------------------------------------------------
    def _push_sliding(self, x: np.ndarray) -> list[Utterance]:
        out = []
        step = int(self.o.step_s * self.rate)
        n_line = max(1, int(round(self.o.length_s / self.o.step_s)) - 1)  # whisper.cpp's n_new_line
        while x.size:
            take = min(x.size, step - self._since_step)
            self._line = np.concatenate([self._line, x[:take]])
            x, self._since_step, self.t = x[take:], self._since_step + take, self.t + take
            limit = int(self.o.length_s * self.rate)
            if self._line.size > limit:
                cut = self._line.size - limit
                self._line, self._line_start = self._line[cut:], self._line_start + cut
            if self._since_step == step:
                self._steps += 1
                self._since_step = 0
                out.append(self._window(final=self._steps % n_line == 0))
        return out

    def _window(self, final: bool) -> Utterance:
        u = Utterance(
            self._line.copy(), self._line_start / self.rate, (self._line_start + self._line.size) / self.rate, final
        )
        if final:
            keep = int(self.o.keep_s * self.rate)
            cut = max(0, self._line.size - keep)
            self._line, self._line_start = self._line[cut:], self._line_start + cut
            self._since_step = 0
        return u

    # --- VAD ------------------------------------------------------------------------
    def _push_vad(self, x: np.ndarray) -> list[Utterance]:
        out = []
        data = np.concatenate([self._partial, x])
        n = data.size // self.frame * self.frame
        self._partial = data[n:]
        if n == 0:
            return out
        self._audio = np.concatenate([self._audio, data[:n]])
        pre = int(self.o.pad_s * self.rate)
        for voiced in self._voiced_frames(data[:n]):
            f_start = self.t
            self.t += self.frame
            if self._speech_start is None:
                if voiced:
                    self._speech_start, self._last_voice, self._voiced = f_start, self.t, 1
                    self._drop_until(f_start - pre)  # keep the pre-roll only
                continue
            if voiced:
                self._last_voice = self.t
                self._voiced += 1
            too_long = self.t - self._audio_start >= self.o.length_s * self.rate
            if self.t - self._last_voice >= self.o.silence_s * self.rate or too_long:
                end = self.t if too_long else min(self.t, self._last_voice + pre)
                if self._voiced * self.frame >= self.o.min_speech_s * self.rate:
                    out.append(self._cut(end))
                else:
                    self._drop_until(end)
                self._speech_start = None
                self._voiced = 0
        if self._speech_start is None:
            self._drop_until(self.t - pre)
        return out

    def _cut(self, end: int) -> Utterance:
        n = end - self._audio_start
        u = Utterance(self._audio[:n].copy(), self._audio_start / self.rate, end / self.rate, True)
        self._drop_until(end)
        return u

    def _drop_until(self, pos: int) -> None:
        cut = min(max(0, pos - self._audio_start), self._audio.size)
        self._audio, self._audio_start = self._audio[cut:], self._audio_start + cut

    def _voiced_frames(self, x: np.ndarray) -> list[bool]:
        """Per frame: is it speech? (level in dBFS after a 100 Hz high-pass, against the noise floor)."""
        # first-order high-pass y[n] = a (y[n-1] + x[n] - x[n-1]) (whisper.cpp's high_pass_filter),
        # as a convolution of the differences with its impulse response a^(k+1), truncated at 1e-6
        d = np.diff(np.concatenate([[self._hp_last], x.astype(np.float64)]))
        self._hp_last = float(x[-1])
        full = np.concatenate([self._hp_hist, d])
        y = np.convolve(full, self._hp_taps)[self._hp_hist.size : full.size]
        self._hp_hist = full[-self._hp_taps.size :]
        levels = 10 * np.log10(np.mean(y.reshape(-1, self.frame) ** 2, axis=1) + 1e-12)
        out = []
        for level in levels:
            out.append(bool(level > max(self.o.threshold_db, self._noise_db + self.o.margin_db)))
            # the noise floor follows quiet frames down at once and creeps up slowly (3 dB/s)
            self._noise_db = (
                level if level < self._noise_db else self._noise_db + min(level - self._noise_db, 3.0 * FRAME_S)
            )
        return out
