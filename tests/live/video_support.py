"""Video files for the live tests, written with OpenCV's VideoWriter (MJPG: every frame is coded
on its own, so a frame that repeats decodes to exactly the same pixels)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

W, H, FPS = 96, 64, 10  # the tiny Idefics3 bundle cuts 96x64 into 3x2 tiles of 32 + the global image


def background(seed: int, w: int = W, h: int = H) -> np.ndarray:
    """A blocky still "desk": 8x8 blocks of random colours (RGB uint8)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def write_video(
    path: Path, frames: list[np.ndarray] | Callable[[int], np.ndarray], n: Optional[int] = None, fps: float = FPS
) -> Path:
    """Write RGB frames (a list, or ``frames(i)`` for i < n) as an MJPG .avi."""
    import cv2

    get = frames if callable(frames) else frames.__getitem__
    count = n if n is not None else len(frames)
    first = get(0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    assert out.isOpened()
    for i in range(count):
        out.write(cv2.cvtColor(np.ascontiguousarray(get(i)), cv2.COLOR_RGB2BGR))
    out.release()
    return path


def with_square(img: np.ndarray, x: int, y: int, size: int = 8, colour=(255, 255, 255)) -> np.ndarray:
    """``img`` with a filled square at (x, y) (the "hand")."""
    out = img.copy()
    out[y : y + size, x : x + size] = colour
    return out


def desk_timeline(noise: float = 0.0, seed: int = 3) -> Callable[[int], np.ndarray]:
    """60 frames at 10 fps: 0-2 s still desk A; 2-4 s a square moves inside the top-left
    tile (x, y < 32); 4-6 s a cut to desk B, still. ``noise``: Gaussian sensor noise (levels)."""
    a, b = background(seed), background(seed + 1)
    rng = np.random.default_rng(seed + 100)

    def frame(i: int) -> np.ndarray:
        if i < 20:
            img = a
        elif i < 40:
            img = with_square(a, 2 + (i - 20), 4 + (i - 20) // 2)
        else:
            img = b
        if noise:
            img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        return img

    return frame


class GatedSource:
    """A real-time frame source whose clock the test holds: the frames of a video file (decoded by
    the runtime's ``VideoReader``), handed out only when the test allows them.

    While the loop is idle (no answer running, no trigger waiting) frames flow on their own, up to
    the next trigger; while an answer runs, a frame is read only for a credit the test gives with
    :meth:`allow` (at a ``LiveToken``, the answer is then provably still running). So which
    triggers arrive during an answer is fixed by the test, not by how fast the machine is.
    """

    realtime = True  # the loop reads it on its capture thread, without pacing

    def __init__(self, path: Path) -> None:
        from edge.runtime.vision.video_io import VideoReader

        self._frames = iter(VideoReader(str(path)))
        self.broken = False
        self.mailbox = None
        self.served = 0
        self.exhausted = False  # the video has no more frames
        self._credits = 0
        self._ended = False
        self._blocked = False
        self._cond = threading.Condition()

    def attach(self, loop) -> "GatedSource":
        self.mailbox = loop.mailbox
        return self

    def _idle(self) -> bool:
        return self.mailbox is not None and not self.mailbox.busy and not self.mailbox.waiting

    def read(self):
        with self._cond:
            self._blocked = True
            self._cond.notify_all()
            while not (self._ended or self._credits or self._idle()):
                self._cond.wait(0.005)  # the mailbox does not notify this condition: look again soon
            self._blocked = False
            if self._ended:
                return None
            if self._credits:
                self._credits -= 1
        frame = next(self._frames, None)
        with self._cond:
            self.served += frame is not None
            self.exhausted = frame is None
            self._cond.notify_all()
        return frame

    def allow(self, n: int) -> None:
        """Let ``n`` more frames through, busy or not."""
        with self._cond:
            self._credits += n
            self._cond.notify_all()

    def settle(self, served: int, timeout: float = 300) -> None:
        """Wait until ``served`` frames were read and the capture thread is back in :meth:`read`
        (so the triggers of those frames were posted). The timeout only guards against a hang."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.exhausted or (self.served >= served and self._blocked and not self._credits)):
                assert time.monotonic() < deadline, f"the capture thread stalled at {self.served} frames"
                self._cond.wait(0.05)

    def end(self) -> None:
        """The stream ends at the next read."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        self.end()
