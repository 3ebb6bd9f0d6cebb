"""Audio reading, mono mixdown and the streaming resampler."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edge.errors import AudioError
from edge.runtime.speech.audio_io import Resampler, audio_info, load_audio, mono, stream_audio


def _tones(rate: int, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(rate * seconds)) / rate
    return t, (0.5 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000, 16001])
def test_resampled_tones_are_the_same_tones_at_16k(rate):
    _, x = _tones(rate)
    y = np.concatenate([(r := Resampler(rate, 16000)).process(x), r.flush()])
    assert y.size == -(-x.size * 16000 // rate)
    t = np.arange(y.size) / 16000
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 3100 * t)
    mid = slice(800, y.size - 800)  # away from the edges, where the input stops
    assert np.abs(y[mid] - ideal[mid]).max() < 2e-4


def test_resampling_removes_what_16k_cannot_hold():
    rate = 44100
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 12000 * t).astype(np.float32)  # above 8 kHz: would alias to 4 kHz
    r = Resampler(rate, 16000)
    y = np.concatenate([r.process(x), r.flush()])
    assert np.abs(y[800:-800]).max() < 1e-3


def test_streaming_in_any_blocks_equals_one_shot():
    _, x = _tones(44100, 1.3)
    one = Resampler(44100, 16000)
    ref = np.concatenate([one.process(x), one.flush()])
    rng = np.random.default_rng(0)
    r, parts, i = Resampler(44100, 16000), [], 0
    while i < x.size:
        k = int(rng.integers(1, 3000))
        parts.append(r.process(x[i : i + k]))
        i += k
    parts.append(r.flush())
    np.testing.assert_array_equal(np.concatenate(parts), ref)


def test_same_rate_passes_through():
    x = np.arange(100, dtype=np.float32)
    r = Resampler(16000, 16000)
    np.testing.assert_array_equal(r.process(x), x)
    assert r.flush().size == 0


def test_mono_mixdown_averages_channels():
    x = np.stack([np.ones(10), np.zeros(10)], axis=1)
    np.testing.assert_allclose(mono(x), 0.5)


def test_fixture_files_read_like_soundfile(speech_fixtures):
    for path in speech_fixtures:
        info = audio_info(path)
        ref, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == info.sample_rate and ref.shape[1] == info.channels
        ours = load_audio(path)
        assert ours.dtype == np.float32
        assert ours.size == -(-ref.shape[0] * 16000 // rate)
        if rate == 16000 and info.channels == 1:
            np.testing.assert_array_equal(ours, ref[:, 0])


def test_stereo_44k_fixture_is_resampled_mono(speech_fixtures):
    path = next(p for p in speech_fixtures if "stereo" in p)
    assert audio_info(path).channels == 2 and audio_info(path).sample_rate == 44100
    ref, _ = sf.read(path, dtype="float32")
    ours = load_audio(path)
    # the same speech: energies agree after the mixdown and resampling
    assert np.sqrt(np.mean(ours**2)) == pytest.approx(np.sqrt(np.mean(ref.mean(axis=1) ** 2)), rel=0.02)


def test_arrays_in_and_their_errors():
    x = np.zeros(44100, np.float32)
    assert load_audio((x, 44100)).size == 16000
    assert load_audio(np.zeros(1600, np.float32)).size == 1600
    with pytest.raises(AudioError, match="sample rate"):
        load_audio((x, 0))
    with pytest.raises(AudioError, match="no samples"):
        load_audio(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        load_audio(np.array([0.0, np.inf], np.float32))
    with pytest.raises(AudioError, match="longer than"):
        load_audio(np.zeros(16000 * 3, np.float32), max_seconds=2)


def test_blocks_are_bounded(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(16000 * 25, np.float32), 16000)
    sizes = [b.size for b in stream_audio(path, block_seconds=10.0)]
    assert max(sizes) <= 16000 * 10 + 64 and sum(sizes) == 16000 * 25
