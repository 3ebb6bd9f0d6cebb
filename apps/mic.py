"""Microphone capture with ``sounddevice`` (PortAudio), behind ``edge.runtime.speech.capture.AudioSource``.

``sounddevice`` is imported only when a microphone is opened, so everything else works
without it; a missing package or PortAudio library is one clear error.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge.errors import DeviceError
from edge.runtime.speech.audio_io import Resampler
from edge.runtime.speech.capture import RingBuffer


def _sounddevice():
    try:
        import sounddevice
    except ImportError:
        raise DeviceError("the microphone needs the sounddevice package: pip install sounddevice") from None
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise DeviceError(
            f"the microphone needs the PortAudio library ({exc}); install it "
            "(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio)"
        ) from None
    return sounddevice


class MicSource:
    """The default (or a named) input device, captured into a bounded ring buffer at ``sample_rate``.

    The PortAudio callback only writes into the ring buffer (it must never block); when
    the device cannot record at ``sample_rate`` itself, the callback also resamples its
    block (a few hundred samples of numpy work), so the ring always holds audio at
    ``sample_rate`` and dropped audio is counted in its samples.
    """

    def __init__(self, sample_rate: int = 16000, buffer_s: float = 30.0, device: Optional[str] = None) -> None:
        self.sample_rate = sample_rate
        self.device = device
        self.ring = RingBuffer(int(buffer_s * sample_rate))
        self._stream = None
        self._resampler: Optional[Resampler] = None

    def start(self) -> None:
        """Open the device and start capturing."""
        sd = _sounddevice()
        device = int(self.device) if self.device is not None and str(self.device).isdigit() else self.device
        try:
            rate = self.sample_rate
            try:
                sd.check_input_settings(device=device, samplerate=rate, channels=1, dtype="float32")
            except Exception:  # the device cannot record at 16 kHz: take its own rate, resample
                rate = int(sd.query_devices(device, "input")["default_samplerate"])
                self._resampler = Resampler(rate, self.sample_rate)
            self._stream = sd.InputStream(
                samplerate=rate, channels=1, dtype="float32", device=device, callback=self._callback
            )
            self._stream.start()
        except DeviceError:
            raise
        except Exception as exc:  # PortAudio errors: no device, busy, permission
            raise DeviceError(f"cannot open the microphone: {' '.join(str(exc).split())[:200]}") from None

    def _callback(self, indata, frames, time_info, status) -> None:
        x = indata[:, 0]
        self.ring.write(self._resampler.process(x) if self._resampler is not None else x)

    def read(self) -> np.ndarray:
        """The samples captured since the last call."""
        return self.ring.read()

    @property
    def finished(self) -> bool:
        """A microphone never runs out."""
        return False

    def stop(self) -> None:
        """Stop capturing and close the device."""
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None


def list_input_devices() -> list[str]:
    """Names of the input devices (for error messages and ``--device``)."""
    sd = _sounddevice()
    return [f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()) if d.get("max_input_channels", 0) > 0]
