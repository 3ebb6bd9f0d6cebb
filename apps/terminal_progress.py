"""Progress on stderr: stage lines and tqdm bars (quiet when asked)."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


class TerminalProgress:
    """Renders :mod:`edge.progress` reports on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def stage(self, text: str) -> None:
        if not self.quiet:
            print(f"edge: {text}", file=sys.stderr, flush=True)

    @contextmanager
    def slow(self, text: str, after: float = 1.0) -> Iterator[None]:
        """Show ``text`` as a stage only if the ``with`` body is still running ``after`` seconds in
        (loading a small model says nothing; a large one says what the wait is)."""
        timer = threading.Timer(after, self.stage, (text,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    @contextmanager
    def bar(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        with tqdm(total=total, desc=desc, file=sys.stderr, disable=self.quiet, leave=False, unit="t") as bar:
            yield bar.update
