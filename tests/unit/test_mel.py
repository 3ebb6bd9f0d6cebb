"""Log-mel features against transformers' WhisperFeatureExtractor (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from edge.errors import InputError
from edge.manifest import AudioFeatures
from edge.runtime.speech.mel import hz_to_mel, log_mel, mel_filters, mel_to_hz, n_window_frames


def _signals():
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 7) / 16000
    yield "noise", (0.1 * rng.standard_normal(16000 * 5)).astype(np.float32)
    yield "chirp", (0.5 * np.sin(2 * np.pi * (100 + 400 * t) * t)).astype(np.float32)
    yield "short", (0.3 * rng.standard_normal(700)).astype(np.float32)
    yield "exactly 30 s", (0.05 * rng.standard_normal(480000)).astype(np.float32)
    yield "longer than 30 s", (0.05 * rng.standard_normal(500000)).astype(np.float32)
    yield "silence", np.zeros(16000, np.float32)
    yield "loud clipped", np.clip(3 * rng.standard_normal(16000), -1, 1).astype(np.float32)


@pytest.mark.parametrize("name,x", list(_signals()), ids=[n for n, _ in _signals()])
def test_features_match_the_hf_extractor(name, x):
    fe = WhisperFeatureExtractor(feature_size=80)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel(x)
    assert ours.shape == ref.shape == (80, 3000)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-4, name


def test_128_mel_bands_as_large_v3():
    fe = WhisperFeatureExtractor(feature_size=128)
    x = (0.2 * np.random.default_rng(1).standard_normal(16000 * 3)).astype(np.float32)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel(x, AudioFeatures(n_mels=128))
    assert ours.shape == (128, 3000)
    assert np.abs(ours - ref).max() < 1e-4


def test_filter_bank_is_transformers_slaney_bank():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=80,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )
    np.testing.assert_allclose(mel_filters(16000, 400, 80, 0.0, 8000.0), ref, rtol=1e-10, atol=1e-12)


def test_mel_scale_round_trip_and_knee():
    f = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-9, atol=1e-9)
    assert hz_to_mel(np.array([1000.0]))[0] == pytest.approx(15.0)  # linear below, log above


def test_window_geometry():
    assert n_window_frames(AudioFeatures()) == 3000


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="mono"):
        log_mel(np.zeros((2, 100), np.float32))
    with pytest.raises(InputError, match="NaN"):
        log_mel(np.array([0.0, np.nan, 0.1], np.float32))
