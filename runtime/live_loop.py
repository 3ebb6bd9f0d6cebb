"""The live loop: frames (and speech) in, answers out, with vision work that follows what changed.

A frame source (a video file or stream from :mod:`edge.runtime.vision.video_io`, or a camera
that ``edge.apps`` opens) gives RGB frames with stream times. Triggers decide when to answer:
every N seconds, a scene change, the end of a spoken question (the existing VAD,
:class:`~edge.runtime.speech.live.Segmenter`, then Whisper), or a typed line (:meth:`LiveLoop.ask`).
Each answer goes through the same :class:`~edge.runtime.pipeline.Pipeline` as ``edge run``:
the image stage reuses every unchanged tile, and the KV prefix up to the first changed block is
kept, so an unchanged frame with the same question costs almost nothing.

Two ways to run (``speed``):

* real time (a camera, or a file played at ``speed`` x real time): capture runs on its own
  thread into a one-frame slot (newest wins); triggers go through a :class:`Mailbox` that
  applies the on-busy policy; answers stream on the caller's thread;
* lockstep (``speed=0``, files only): every trigger is answered before the next frame is read,
  nothing is dropped, and the run is deterministic (tests, offline analysis).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Iterator, Optional, Protocol

import numpy as np
from PIL import Image

from edge.errors import EdgeError, InputError
from edge.events import FinishEvent
from edge.runtime.live_parts import (
    LiveAnswer,
    LiveEvent,
    LiveFrame,
    LiveOptions,
    LiveSummary,
    LiveToken,
    LiveWarning,
    Mailbox,
    NewestFrame,
    Trigger,
    percentile,
    scene_distance,
    scene_thumb,
)
from edge.runtime.speech.live import Segmenter, Utterance
from edge.runtime.vision.embed_cache import EmbeddingCache, TileCache

RATE = 16000
# In live mode the caches hold recent frames only: noisy camera frames never repeat exactly,
# so a large cache would only fill up. These bounds keep memory flat however long the stream.
LIVE_IMAGE_CACHE_BYTES = 32 << 20
LIVE_TILE_CACHE_BYTES = 96 << 20


class FrameSource(Protocol):
    """Where frames come from: ``read()`` gives the next (``rgb``, ``t``, ``index``) or None at
    the end; ``realtime`` is True for a device that produces frames on its own clock;
    ``broken`` is True when it stopped early (a camera unplugged, a truncated file)."""

    realtime: bool
    broken: bool

    def read(self): ...

    def close(self) -> None: ...


class AudioFeed:
    """Speech for the loop: a whole recording laid on the stream's timeline (``samples`` at
    16 kHz, time 0 = the first frame) or a live source (``edge.runtime.speech.capture.AudioSource``,
    e.g. the microphone), cut into utterances by the VAD of ``edge listen``."""

    def __init__(self, samples: Optional[np.ndarray] = None, source=None, options=None) -> None:
        from edge.options import StreamOptions

        if (samples is None) == (source is None):
            raise InputError("an audio feed takes either samples or a live source")
        self._samples = None if samples is None else np.asarray(samples, np.float32).reshape(-1)
        self._source = source
        self._seg = Segmenter(options or StreamOptions())
        self._pos = 0
        self._started = False

    def advance(self, t: float) -> list[Utterance]:
        """Feed the audio up to stream time ``t`` (a live source: what arrived); the utterances it ends."""
        if self._samples is not None:
            end = min(self._samples.size, int(t * RATE))
            x, self._pos = self._samples[self._pos : end], max(self._pos, end)
        else:
            if not self._started:
                self._source.start()
                self._started = True
            x = self._source.read()
        return self._seg.push(x) if x.size else []

    def flush(self) -> list[Utterance]:
        """The rest of a recording (and what is open) at the end of the stream."""
        out = []
        if self._samples is not None and self._pos < self._samples.size:
            out += self._seg.push(self._samples[self._pos :])
            self._pos = self._samples.size
        return out + self._seg.flush()

    def close(self) -> None:
        if self._source is not None and self._started:
            self._source.stop()


class LiveLoop:
    """Answers about a frame source as it plays; iterate it for :data:`LiveEvent`s.

    ``pipe`` is an ``edge.load`` pipeline with a vision component (and speech for spoken
    questions). Iterating runs the loop; :meth:`stop` (from any thread) ends it with a summary.
    """

    def __init__(
        self,
        pipe,
        source: FrameSource,
        options: LiveOptions = LiveOptions(),
        audio: Optional[AudioFeed] = None,
        speed: float = 1.0,
    ) -> None:
        if pipe.images is None:
            raise InputError("live mode needs a bundle with a vision encoder")
        if audio is not None and pipe.speech is None:
            raise InputError("spoken questions need a speech model: pass --audio-bundle WHISPER")
        if not (isinstance(speed, (int, float)) and 0 <= speed <= 1000):
            raise InputError(f"--speed must be between 0 (lockstep) and 1000, got {speed}")
        if source.realtime and speed == 0:
            raise InputError("a camera cannot be read in lockstep (speed 0)")
        self.pipe, self.source, self.options, self.audio = pipe, source, options, audio
        self.lockstep = speed == 0 and not source.realtime
        self.speed = speed
        self.mailbox = Mailbox(options.on_busy)
        self.newest = NewestFrame()
        self._stop = threading.Event()
        self._typed: deque[str] = deque(maxlen=8)  # lockstep: typed lines wait for the next frame
        self._history: deque[LiveFrame] = deque(maxlen=4)  # recent frames, for the end of an utterance
        self._every_next = 0.0
        self._change_ref: Optional[np.ndarray] = None
        self._last_used = -1e9
        self._ended = "end of stream"
        self._warnings: deque[LiveWarning] = deque(maxlen=64)  # from the capture thread
        self._n_answers = 0
        self._stats = {"frames": 0, "used": 0, "triggers": 0, "cancelled": 0, "lag": 0, "tiles": [0, 0, 0]}
        self._latencies: deque[float] = deque(maxlen=100_000)  # floats; bounded for week-long runs
        self._t = 0.0
        self._capture_error: Optional[Exception] = None
        stage = pipe.images
        stage.set_reuse_threshold(options.reuse_threshold)
        stage.cache = EmbeddingCache(min(stage.cache.max_bytes, LIVE_IMAGE_CACHE_BYTES))
        stage.tile_cache = TileCache(min(stage.tile_cache.rows.max_bytes, LIVE_TILE_CACHE_BYTES))

    # --- control -------------------------------------------------------------------
    def ask(self, question: str) -> None:
        """A typed question about the frame current now."""
        question = question.strip()
        if not question:
            return
        if self.lockstep:
            self._typed.append(question)
            return
        frame = self.newest.get()
        if frame is not None:
            self._post(Trigger("typed", frame, question))

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._ended == "stopped"

    def stop(self) -> None:
        """End the loop (the running answer stops at its next token); a summary follows."""
        self._ended = "stopped"
        self._stop.set()
        self.mailbox.close()

    # --- the loop ------------------------------------------------------------------
    def __iter__(self) -> Iterator[LiveEvent]:
        try:
            yield from (self._lockstep() if self.lockstep else self._realtime())
        finally:
            self._stop.set()
            self.mailbox.close()
            self.source.close()
            if self.audio is not None:
                self.audio.close()
        yield self._summary()

    def _lockstep(self) -> Iterator[LiveEvent]:
        frame = None
        for frame in self._frames():
            for trig in self._triggers(frame):
                self._stats["triggers"] += 1
                yield from self._answer(trig)
            if self._stop.is_set():
                return
        yield from self._drain_warnings()
        if frame is not None:
            for trig in self._end_triggers(frame):
                self._stats["triggers"] += 1
                yield from self._answer(trig)

    def _realtime(self) -> Iterator[LiveEvent]:
        capture = threading.Thread(target=self._capture, name="edge-live-capture", daemon=True)
        capture.start()
        try:
            while True:
                yield from self._drain_warnings()
                trig = self.mailbox.take(timeout=0.05)
                if trig is None:
                    if (not capture.is_alive() and not self.mailbox.waiting) or self._stop.is_set():
                        break
                    continue
                try:
                    yield from self._answer(trig)
                finally:
                    self.mailbox.done()
            yield from self._drain_warnings()
        finally:
            self._stop.set()
            capture.join(timeout=5)
        if self._capture_error is not None:
            raise self._capture_error

    def _capture(self) -> None:
        """The capture thread: read (paced for files), keep the newest frame, post triggers."""
        frame = None
        try:
            for frame in self._frames():
                for trig in self._triggers(frame):
                    self._post(trig)
            if frame is not None and not self._stop.is_set():
                for trig in self._end_triggers(frame):
                    self._post(trig)
        except EdgeError as exc:  # a decoder or device error part way: the stream ends here
            self._ended = "source stopped"
            self._warnings.append(LiveWarning(self._t, f"the source stopped: {exc}"))
        except Exception as exc:  # a bug: raised again on the caller's thread, not lost with this one
            self._capture_error = exc

    def _post(self, trig: Trigger) -> None:
        self._stats["triggers"] += 1
        self.mailbox.post(trig)

    def _frames(self) -> Iterator[LiveFrame]:
        """Frames from the source (paced in real time for a file), after ``max_fps``."""
        t0 = time.perf_counter()
        behind_warned = False
        while not self._stop.is_set():
            raw = self.source.read()
            if raw is None:
                if getattr(self.source, "broken", False):
                    self._ended = "source stopped"
                    self._warnings.append(LiveWarning(self._t, "the source stopped before its end"))
                return
            self._stats["frames"] += 1
            if not self.lockstep and not self.source.realtime:
                wait = t0 + raw.t / self.speed - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -self.options.lag_warn_s and not behind_warned:
                    behind_warned = True
                    self._warnings.append(LiveWarning(raw.t, f"decoding falls behind the {self.speed}x pace"))
            self._t = raw.t
            if self.options.max_fps is not None and raw.t - self._last_used < 1.0 / self.options.max_fps - 1e-9:
                continue
            self._last_used = raw.t
            self._stats["used"] += 1
            frame = LiveFrame(raw.rgb, raw.t, raw.index, time.perf_counter())
            self.newest.put(frame)
            if not self._history or frame.t - self._history[-1].t >= 0.2:
                self._history.append(frame)
            yield frame

    def _triggers(self, frame: LiveFrame) -> list[Trigger]:
        """What fires at this frame: a scene change or the narration tick (one answer for
        both), typed lines, the spoken questions that ended."""
        o = self.options
        out = []
        kind = None
        narrate = o.every_s if o.every_s is not None else (None if o.on_change or self.audio else 5.0)
        if o.on_change:
            thumb = scene_thumb(frame.rgb)
            if self._change_ref is None or scene_distance(thumb, self._change_ref) > o.change_threshold:
                self._change_ref, kind = thumb, "change"
        if narrate is not None and frame.t + 1e-9 >= self._every_next:
            self._every_next = (np.floor(frame.t / narrate + 1e-9) + 1) * narrate
            kind = kind or "every"
        if kind is not None:
            out.append(Trigger(kind, frame, o.prompt))
        while self._typed:
            out.append(Trigger("typed", frame, self._typed.popleft()))
        if self.audio is not None:
            out += [self._spoken(u, frame) for u in self.audio.advance(frame.t)]
        return out

    def _end_triggers(self, frame: LiveFrame) -> list[Trigger]:
        out = [Trigger("typed", frame, q) for q in self._typed]
        self._typed.clear()
        if self.audio is not None:
            out += [self._spoken(u, frame) for u in self.audio.flush()]
        return out

    def _spoken(self, u: Utterance, current: LiveFrame) -> Trigger:
        """A spoken question, about the frame current when the utterance ended."""
        frame = current
        for f in self._history:
            if f.t <= u.end + 1e-6:
                frame = f
        return Trigger("speech", frame, None, u.audio)

    # --- answering -----------------------------------------------------------------
    def _answer(self, trig: Trigger) -> Iterator[LiveEvent]:
        question = trig.question
        if trig.kind == "speech":
            question = self.pipe.hear("", [(trig.audio, RATE)]).strip()
            if not question:
                yield LiveWarning(trig.frame.t, "heard speech but no words; not answered")
                return
        n = self._n_answers
        self._n_answers += 1
        stream = self.pipe.stream(question, [Image.fromarray(trig.frame.rgb)], self.options.generate)
        first: Optional[float] = None
        finish: Optional[FinishEvent] = None
        parts: list[str] = []
        try:
            for ev in stream:
                if isinstance(ev, FinishEvent):
                    finish = ev
                    break
                if first is None:
                    first = time.perf_counter()
                if ev.text:
                    parts.append(ev.text)
                    yield LiveToken(n, ev.text)
                if self.mailbox.cancel_requested or self._stop.is_set():
                    break
        finally:
            stream.close()
        t = finish.timings if finish is not None else None
        if finish is None:
            self._stats["cancelled"] += 1
        enc, reused = (t.tiles_encoded, t.tiles_reused) if t else (0, 0)
        tiles = enc + reused
        latency = (first - trig.frame.captured) * 1000 if first is not None else 0.0
        if first is not None:
            self._latencies.append(latency)
        for i, v in enumerate((tiles, enc, reused)):
            self._stats["tiles"][i] += v
        yield LiveAnswer(
            answer=n,
            t=trig.frame.t,
            trigger=trig.kind,
            question=question,
            text="".join(parts) if finish is None else finish.text,
            finish_reason=finish.reason if finish is not None else "cancelled",
            tiles=tiles,
            tiles_encoded=enc,
            tiles_reused=reused,
            latency_ms=latency,
            vision_ms=(t.preprocess_ms + t.image_encode_ms) if t else 0.0,
            prefill_ms=t.prefill_ms if t else 0.0,
            reused_tokens=t.reused_tokens if t else 0,
            prompt_tokens=t.prompt_tokens if t else 0,
        )
        if latency > self.options.lag_warn_s * 1000:
            self._stats["lag"] += 1
            yield LiveWarning(
                trig.frame.t,
                f"answers lag the stream: {latency / 1000:.1f} s from frame to first token "
                f"(over {self.options.lag_warn_s:g} s; use --max-fps, --on-busy skip or a higher --reuse-threshold)",
            )

    def _drain_warnings(self) -> Iterator[LiveWarning]:
        while self._warnings:
            yield self._warnings.popleft()

    def _summary(self) -> LiveSummary:
        s = self._stats
        lat = list(self._latencies)
        return LiveSummary(
            ended=self._ended,
            duration_s=self._t,
            frames=s["frames"],
            frames_used=s["used"],
            triggers=s["triggers"],
            answers=self._n_answers,
            skipped=self.mailbox.dropped,
            cancelled=s["cancelled"],
            tiles=s["tiles"][0],
            tiles_encoded=s["tiles"][1],
            tiles_reused=s["tiles"][2],
            latency_p50_ms=percentile(lat, 50),
            latency_p95_ms=percentile(lat, 95),
            lag_warnings=s["lag"],
        )
