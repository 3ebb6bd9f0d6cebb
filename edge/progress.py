"""Progress reporting that long work calls and the surfaces (CLI) render.

Library code reports stages and counted steps through this interface; it never
writes to the terminal itself. ``NullProgress`` is the silent default.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


class NullProgress:
    """Reports nothing."""

    def stage(self, text: str) -> None:
        """A new stage of the work begins."""

    @contextmanager
    def bar(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        """A counted step; yields ``advance(n)``."""
        yield lambda n=1: None
