"""The backend options of a command, built once from its flags, and where the backends' log goes.

Every command that runs a bundle (run, chat, transcribe, listen, export's parity check,
quantize's fidelity run) turns ``--threads``, ``--ctx``, ``--provider`` and ``--verbose`` into
:class:`~edge.options.RuntimeOptions` here and passes them down; nothing below builds its own.

Logging: the CLI shows the ``edge`` loggers (``edge.onnxruntime`` carries onnxruntime's own
messages and every execution provider fallback) on stderr as ``edge: warning: ...`` lines.
Without ``--verbose`` WARNING and above are shown; with it INFO too (where each graph runs)
and llama.cpp's log is echoed; ``EDGE_DEBUG=1`` also shows DEBUG (onnxruntime's verbose
chatter) besides the traceback of an internal error.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from edge.options import CPU, OnnxOptions, Provider, RuntimeOptions

LOGGER = "edge"


def onnx_options(threads: int = 0, providers: Sequence[str] = ()) -> OnnxOptions:
    """onnxruntime options from ``--threads`` and the ``--provider`` values (none = CPU)."""
    return OnnxOptions(threads=threads, providers=tuple(Provider.parse(p) for p in providers) or (CPU,))


def runtime_options(
    threads: int = 0, ctx: int = 0, providers: Sequence[str] = (), verbose: bool = False
) -> RuntimeOptions:
    """Every component's options from the flags of one command: the same threads everywhere,
    ``--ctx`` for the LLM, the ``--provider`` list for the vision and audio graphs."""
    onnx = onnx_options(threads, providers)
    return RuntimeOptions.simple(threads=threads, n_ctx=ctx, providers=onnx.providers, verbose=verbose)


def command_options(
    threads: int = 0, ctx: int = 0, providers: Sequence[str] = (), verbose: bool = False
) -> RuntimeOptions:
    """What a command calls once: :func:`runtime_options`, with the log level of ``--verbose``
    set (:func:`setup_logging`)."""
    setup_logging(verbose)
    return runtime_options(threads, ctx, providers, verbose)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it), as ``edge: level: message``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"edge: {record.levelname.lower()}: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not turn a log line into a crash
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """Show the ``edge`` loggers on stderr: WARNING and above, INFO too with ``verbose``,
    everything with ``EDGE_DEBUG`` set. Idempotent (one handler, whatever the number of calls)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False  # the CLI's own format; no second copy through the root logger
    level = logging.DEBUG if os.environ.get("EDGE_DEBUG") else logging.INFO if verbose else logging.WARNING
    logger.setLevel(level)
