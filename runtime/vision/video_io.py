"""Video files and network streams -> RGB frames with their stream times (OpenCV ``VideoCapture``).

OpenCV (``opencv-python-headless``, the ``live`` extra) is the one capture library of the live
loop: its wheels carry an FFmpeg build for files and network streams (http, rtsp) and the
platform camera backends (V4L2, AVFoundation, Media Foundation) behind the same
``VideoCapture`` call, so cameras (opened in ``edge.apps``, the only layer that touches devices)
and files share one code path. PyAV decodes files and streams as well, but opening a camera
with it takes a per-OS device format string.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from edge.errors import InputError, RuntimeFailure

# Network schemes OpenCV's FFmpeg backend reads; anything else with "://" is refused up front.
STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "tcp")


def cv2_module():
    """OpenCV, or an :class:`InputError` saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise InputError("video needs OpenCV: pip install 'edge-mllm[live]' (opencv-python-headless)") from None
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:  # its own warnings ("can't open camera by index") would repeat our one-line errors
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    return cv2


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB pixels ``[H, W, 3]`` uint8 and its time in the stream (seconds)."""

    rgb: np.ndarray
    t: float
    index: int


def check_source(source: str) -> str:
    """``source`` if it names a readable file or a supported stream URL, else an :class:`InputError`."""
    text = str(source)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme == "file":
            text = text.split("://", 1)[1]
        elif scheme not in STREAM_SCHEMES:
            raise InputError(f"unsupported video URL scheme {scheme!r} (use a file or {', '.join(STREAM_SCHEMES)})")
        else:
            return text
    path = Path(text)
    if not path.is_file():
        raise InputError(f"no such video file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read video file: {path}")
    return str(path)


class VideoReader:
    """Frames of a video file or network stream, in order, until its end.

    A file that cannot be opened or has no decodable frame is an :class:`InputError`; a file
    that breaks off part way (truncated, corrupt tail) simply ends there, as a camera that
    stops does, and :attr:`broken` says so.
    """

    realtime = False  # a file is read as fast as it is asked for; the live loop paces it

    def __init__(self, source: str) -> None:
        self.source = check_source(source)
        cv2 = cv2_module()
        self._cv2 = cv2
        self._cap = cv2.VideoCapture(self.source)
        if not self._cap.isOpened():
            raise InputError(f"cannot open video {source} (not a video, or a format this OpenCV cannot decode)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0  # a stream without a rate: assume 25 frames/s
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: Optional[int] = n if n > 0 else None
        self.broken = False
        self._index = 0
        first = self._read()
        if first is None:
            self.close()
            raise InputError(f"cannot decode any frame of video {source} (corrupt or empty)")
        self._first: Optional[Frame] = first

    def _read(self) -> Optional[Frame]:
        try:
            ok, bgr = self._cap.read()
        except Exception as exc:  # a decoder error part way: the stream ends here
            self.broken = True
            raise RuntimeFailure(f"video decoding failed: {str(exc).splitlines()[0]}") from None
        if not ok or bgr is None:
            return None
        rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        frame = Frame(rgb, self._index / self.fps, self._index)
        self._index += 1
        return frame

    def read(self) -> Optional[Frame]:
        """The next frame, or None at the end of the stream."""
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        if self._cap is None:
            return None
        frame = self._read()
        if frame is None:
            if self.frame_count is not None and self._index < self.frame_count:
                self.broken = True  # fewer frames than the container promised: cut short
            self.close()
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        """Release the decoder."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def sample_frames(path: str, n: int, fps: float = 0.0, skip_secs: float = 0.0):
    """An :class:`edge.video.Video` of ``n`` frames sampled evenly from a video file, with their times.

    With ``fps`` > 0 it samples as ``SmolVLMVideoProcessor.sample_frames`` does (at most ``n`` frames,
    ``fps`` per second of video, ``skip_secs`` off both ends of a long video; see
    :func:`edge.runtime.vision.videos.sample_indices`), else exactly ``n`` frames (fewer if the file
    has fewer). The frame count and rate are the container's, as transformers' OpenCV reader takes them.

    Raises:
        InputError: ``n`` below 1, or a file that is missing, unreadable or has no frames.
    """
    from edge.runtime.vision.videos import sample_indices
    from edge.video import Video

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--frames must be a positive integer, got {n!r}")
    reader = VideoReader(path)
    try:
        total = reader.frame_count
        frames: list[Frame] = []
        if total is None:  # no count in the container: decode everything, then pick
            frames = list(reader)
            total = len(frames)
        keep = set(sample_indices(total, reader.fps, n, fps, skip_secs))
        if frames:
            picked = [f for f in frames if f.index in keep]
        else:
            picked = [f for f in reader if f.index in keep]
    finally:
        reader.close()
    if not picked:
        raise InputError(f"cannot decode the sampled frames of video {path}")
    return Video(
        tuple(f.rgb for f in picked),
        tuple(f.t for f in picked),
        duration=total / reader.fps if reader.fps else None,
        source=str(path),
    )
