"""Progress on stderr: stage lines and tqdm bars (quiet when asked)."""

from __future__ import annotations

import sys
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
    def bar(self, total: int, desc: str) -> Iterator[Callable[[int], None]]:
        with tqdm(total=total, desc=desc, file=sys.stderr, disable=self.quiet, leave=False, unit="t") as bar:
            yield bar.update
