"""Ctrl-C while an answer streams: stop the answer, not the program.

Python turns SIGINT into a ``KeyboardInterrupt`` wherever the main thread happens to be, which
may be between two llama.cpp calls of one step. While an answer streams, :class:`StopOnInterrupt`
replaces that with a flag the caller checks between tokens, so the answer stops at a token
boundary and the pipeline's KV cache keeps what it really holds. A second Ctrl-C before the
first was honoured (a long prefill) raises ``KeyboardInterrupt`` as usual: the program quits.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Optional


class StopOnInterrupt:
    """A ``with`` block during which SIGINT sets :attr:`requested` instead of raising.

    Outside the main thread (where Python cannot install signal handlers) it does nothing and
    Ctrl-C keeps its usual meaning.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:  # asked twice and the answer has not stopped yet: quit
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnInterrupt":
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: Optional[type], value: Optional[BaseException], traceback: Optional[TracebackType]
    ) -> None:
        if self._installed:  # the previous handler may be None (installed outside Python)
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)
            self._installed, self._previous = False, None
