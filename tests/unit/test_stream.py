"""Live audio: ring buffer, VAD cuts, sliding windows, real-time replay and the lag policy."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from edge.errors import InputError
from edge.options import StreamOptions
from edge.runtime.speech.audio_io import load_audio
from edge.runtime.speech.capture import ManualClock, RingBuffer, SystemClock, WavSource
from edge.runtime.speech.live import Dropped, Segmenter, Utterance, stream_events

RATE = 16000


@pytest.fixture(scope="module")
def talk(speech_fixtures, tmp_path_factory):
    """Four sentences with pauses of 0.7-1.6 s of faint noise between them: (wav path, speech spans)."""
    rng = np.random.default_rng(0)
    parts, spans, t = [], [], 0
    for i, path in enumerate(sorted(p for p in speech_fixtures if p.endswith(".wav") and "stereo" not in p)[:4]):
        gap = (0.001 * rng.standard_normal(int(RATE * (0.7 + 0.3 * i)))).astype(np.float32)
        x = load_audio(path)
        voiced = np.flatnonzero(np.abs(x) > 0.01)
        parts += [gap, x]
        t += gap.size
        spans.append(((t + voiced[0]) / RATE, (t + voiced[-1]) / RATE))
        t += x.size
    parts.append(np.zeros(RATE, np.float32))
    path = tmp_path_factory.mktemp("stream") / "talk.wav"
    sf.write(path, np.concatenate(parts), RATE)
    return path, spans


def _assert_one_per_span(utterances, spans):
    assert len(utterances) == len(spans), [(u.start, u.end) for u in utterances]
    for u, (a, b) in zip(utterances, spans):  # in order, each covering its sentence
        assert u.start <= a + 0.05 and u.end >= b - 0.05, (u.start, u.end, a, b)
        assert u.start >= a - 0.5 and u.end <= b + 0.9
        assert u.audio.size == pytest.approx((u.end - u.start) * RATE, abs=2)


def test_ring_buffer_keeps_order_and_counts_overwrites():
    ring = RingBuffer(10)
    ring.write(np.arange(6))
    np.testing.assert_array_equal(ring.read(4), [0, 1, 2, 3])
    ring.write(np.arange(6, 14))  # wraps around the end of the array; exactly full
    assert ring.take_dropped() == 0
    np.testing.assert_array_equal(ring.read(), np.arange(4, 14))
    ring.write(np.arange(25))
    assert len(ring) == 10 and ring.take_dropped() == 15
    np.testing.assert_array_equal(ring.read(), np.arange(15, 25))
    assert ring.take_dropped() == 0 and len(ring) == 0


def test_vad_cuts_each_sentence(talk):
    path, spans = talk
    seg = Segmenter(StreamOptions())
    x = load_audio(path)
    out = []
    for i in range(0, x.size, 1234):  # any block size
        out += seg.push(x[i : i + 1234])
    out += seg.flush()
    _assert_one_per_span(out, spans)


def test_vad_ignores_clicks_and_cuts_long_speech():
    rng = np.random.default_rng(1)
    x = np.zeros(RATE * 3, np.float32)
    x[RATE : RATE + 800] = 0.5 * rng.standard_normal(800)  # a 50 ms click
    assert Segmenter(StreamOptions()).push(x) == []
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(RATE * 7) / RATE)).astype(np.float32)
    seg = Segmenter(StreamOptions(length_s=3.0))
    cuts = seg.push(tone) + seg.flush()
    assert len(cuts) == 3 and all(u.end - u.start <= 3.0 + 1e-6 for u in cuts)


def test_sliding_windows_step_length_keep():
    o = StreamOptions(step_s=1.0, length_s=4.0, keep_s=0.5)
    seg = Segmenter(o)
    out = seg.push(np.ones(RATE * 9, np.float32)) + seg.flush()
    assert len(out) == 9
    # whisper.cpp's n_new_line = length / step - 1 = 3: every third window is final
    assert [u.final for u in out] == [False, False, True] * 3
    first_line, second_line = out[2], out[3]
    assert (first_line.start, first_line.end) == (0.0, 3.0)
    assert second_line.start == pytest.approx(2.5) and second_line.end == pytest.approx(4.0)  # keeps 0.5 s
    assert all(u.end - u.start <= o.length_s + 1e-9 for u in out)


def test_replay_at_real_time_pace_with_a_manual_clock(talk):
    path, spans = talk
    clock = ManualClock()
    t0 = time.perf_counter()
    events = list(stream_events(WavSource(path, clock), StreamOptions(), clock))
    assert time.perf_counter() - t0 < 10  # seconds of "live" audio in a moment
    duration = sf.info(str(path)).duration
    assert clock.now() == pytest.approx(duration, abs=0.1)  # it waited for the audio to "arrive"
    assert not [e for e in events if isinstance(e, Dropped)]
    _assert_one_per_span([e for e in events if isinstance(e, Utterance)], spans)


def test_replay_at_real_pace(speech_fixtures):
    path = next(p for p in speech_fixtures if p.endswith(".flac"))  # 3 s at 22.05 kHz
    t0 = time.perf_counter()
    events = list(stream_events(WavSource(path, SystemClock()), StreamOptions(), SystemClock(), poll_s=0.02))
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.9 * sf.info(path).duration  # audio cannot arrive faster than it plays
    assert len([e for e in events if isinstance(e, Utterance)]) == 1


def test_slow_transcription_drops_audio_with_a_warning(talk):
    path, spans = talk
    clock = ManualClock()
    seen = []
    for e in stream_events(WavSource(path, clock), StreamOptions(max_lag_s=2.0, on_lag="drop"), clock):
        seen.append(e)
        if isinstance(e, Utterance):
            clock.advance(4.0)  # inference takes 4 s per utterance: it cannot keep up
    drops = [e for e in seen if isinstance(e, Dropped)]
    utts = [e for e in seen if isinstance(e, Utterance)]
    assert drops and all(d.reason == "lag" and d.seconds > 2.0 for d in drops)
    assert "falling behind" in drops[0].message
    covered = [any(u.start <= a + 0.05 and u.end >= b - 0.05 for u in utts) for a, b in spans]
    assert utts and covered[0] and not all(covered)  # the first is heard whole, later ones not
    starts = [u.start for u in utts]
    assert starts == sorted(starts)  # still in order, minus what was dropped


def test_keep_policy_catches_up_and_only_overflow_loses_audio(talk):
    path, spans = talk
    clock = ManualClock()
    seen = []
    for e in stream_events(WavSource(path, clock), StreamOptions(on_lag="keep"), clock):
        seen.append(e)
        if isinstance(e, Utterance):
            clock.advance(4.0)
    assert not [e for e in seen if isinstance(e, Dropped)]
    _assert_one_per_span([e for e in seen if isinstance(e, Utterance)], spans)
    # a ring buffer too small for the backlog overflows, and says so
    clock = ManualClock()
    seen = []
    opts = StreamOptions(on_lag="keep", buffer_s=5.0, length_s=5.0, max_lag_s=5.0)
    for e in stream_events(WavSource(path, clock, buffer_s=5.0), opts, clock):
        seen.append(e)
        if isinstance(e, Utterance):
            clock.advance(9.0)
    overflow = [e for e in seen if isinstance(e, Dropped)]
    assert overflow and overflow[0].reason == "overflow" and "overflowed" in overflow[0].message


@pytest.mark.parametrize(
    "kwargs",
    [dict(on_lag="wait"), dict(step_s=5.0, length_s=4.0), dict(length_s=40.0), dict(buffer_s=2.0), dict(max_lag_s=0)],
)
def test_bad_stream_options(kwargs):
    with pytest.raises(InputError):
        StreamOptions(**kwargs)
