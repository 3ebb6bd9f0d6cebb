"""Cameras for ``edge live``: OpenCV's ``VideoCapture`` on a device index, as a live frame source.

Apps are the only layer that touches devices; the frames go to
:class:`edge.runtime.live_loop.LiveLoop` like those of a video file, with ``realtime`` set (a
camera makes frames on its own clock; the loop keeps only the newest).
"""

from __future__ import annotations

import time
from typing import Optional

from edge.errors import DeviceError
from edge.runtime.vision.video_io import Frame, cv2_module


class CameraSource:
    """Frames of camera ``index`` (or of anything else ``cv2.VideoCapture`` opens, e.g. a capture
    pipeline string); stream time is seconds since the first frame. A camera that stops
    giving frames ends the stream (:attr:`broken` is then True)."""

    realtime = True

    def __init__(self, index: int | str) -> None:
        cv2 = cv2_module()
        self._cv2 = cv2
        self.broken = False
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise DeviceError(f"no camera at index {index} (not connected, or busy in another program)")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._cap.release()
            raise DeviceError(f"camera {index} opened but gives no frames (busy in another program?)")
        self._first: Optional[Frame] = None
        self._t0 = time.perf_counter()
        self._index = 0
        self._first = self._frame(bgr)

    def _frame(self, bgr) -> Frame:
        frame = Frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), time.perf_counter() - self._t0, self._index)
        self._index += 1
        return frame

    def read(self) -> Optional[Frame]:
        """The next frame (blocks at the camera's rate), or None once the camera stopped."""
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        if self._cap is None:
            return None
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self.broken = True
            self.close()
            return None
        return self._frame(bgr)

    def close(self) -> None:
        """Release the device."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
