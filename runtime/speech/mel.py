"""Whisper's log-mel features in numpy, matching ``transformers.WhisperFeatureExtractor``.

The recipe is OpenAI Whisper's ``log_mel_spectrogram`` (whisper/audio.py), which the
HF extractor reproduces: a centred STFT with a periodic Hann window and reflect padding,
power spectrum, a Slaney-normalised mel filter bank on the Slaney mel scale (Slaney's
Auditory Toolbox, as in librosa), ``log10`` with a floor, then a dynamic-range floor of
``max - 8`` and the affine map ``(x + 4) / 4``. The last STFT frame is dropped, so 30 s
at 16 kHz gives exactly 3000 frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge.errors import InputError
from edge.manifest import AudioFeatures


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mel = 3.0 * freq / 200.0
    logstep = 27.0 / np.log(6.4)
    high = freq >= 1000.0
    return np.where(high, 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * logstep, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(logstep * (mel - 15.0)), 200.0 * mel / 3.0)


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular Slaney-normalised filters, shape ``[n_fft // 2 + 1, n_mels]`` (float64).

    Filter edges are equally spaced on the mel scale; each triangle is scaled by
    ``2 / (upper - lower)`` Hz so every band has about the same energy (Slaney norm).
    """
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    width = np.diff(edges)
    offset = edges[None, :] - fft_freqs[:, None]
    rising = -offset[:, :-2] / width[:-1]
    falling = offset[:, 2:] / width[1:]
    bank = np.maximum(0.0, np.minimum(rising, falling))
    return bank * (2.0 / (edges[2:] - edges[:-2]))[None, :]


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    # periodic Hann (torch.hann_window's default), as Whisper uses
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def n_window_samples(features: AudioFeatures) -> int:
    """Samples in one window (30 s at 16 kHz: 480000)."""
    return features.chunk_length * features.sample_rate


def n_window_frames(features: AudioFeatures) -> int:
    """Mel frames in one window (30 s: 3000)."""
    return n_window_samples(features) // features.hop_length


def log_mel(samples: np.ndarray, features: AudioFeatures = AudioFeatures()) -> np.ndarray:
    """Log-mel features ``[n_mels, frames]`` (float32) of one window of mono audio.

    ``samples`` is padded with zeros (or cut) to ``chunk_length`` seconds first, as the
    HF extractor does by default, so the result always has ``n_window_frames`` frames.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise InputError(f"audio must be mono (1-D samples), got shape {x.shape}")
    n = n_window_samples(features)
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    else:
        x = x[:n]
    if not np.isfinite(x).all():
        raise InputError("audio contains NaN or infinite samples")
    power = _power_spectrogram(x.astype(np.float64), features.n_fft, features.hop_length)
    bank = mel_filters(features.sample_rate, features.n_fft, features.n_mels, features.f_min, features.f_max)
    mel = bank.T @ power[:, :-1]  # the last frame is dropped (Whisper's convention)
    logs = np.log10(np.maximum(mel, features.log_floor))
    logs = np.maximum(logs, logs.max() - features.dynamic_range)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def _power_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|^2 ``[n_fft // 2 + 1, frames]`` with centred frames (reflect padding)."""
    half = n_fft // 2
    if x.size <= half:
        raise InputError(f"audio window of {x.size} samples is too short for the STFT")
    padded = np.pad(x, (half, half), mode="reflect")
    n_frames = 1 + (padded.size - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, n_fft), strides=(padded.strides[0] * hop, padded.strides[0]), writeable=False
    )
    spec = np.fft.rfft(frames * _hann(n_fft), axis=-1)
    return (spec.real**2 + spec.imag**2).T
