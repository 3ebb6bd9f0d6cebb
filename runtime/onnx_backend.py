"""ONNX graphs on onnxruntime, for vision and speech alike. This is the only module that imports ``onnxruntime``.

Nothing onnxruntime says is thrown away. Its native log goes to the process's stderr (file
descriptor 2, not ``sys.stderr``), and its Python binding offers no log callback, so while a
session is being built (graph loading, optimisation, node placement: where its warnings come
from) fd 2 is pointed at a temporary file; each line is then parsed and re-issued on the
``edge.onnxruntime`` logger at its own level (``[W:...]`` -> WARNING, ``[E:...]`` -> ERROR,
verbose and info chatter -> DEBUG). Lines that are not onnxruntime's (another thread writing
meanwhile) are written back to stderr. The session is built at onnxruntime's verbose level
because that is the only level at which it logs node placement, from which the
:class:`~edge.events.Placement` of each session is read; a fallback (a provider that was asked
for but not registered, or nodes that do not run on the provider asked for first) is logged as
a warning and kept in :attr:`Session.placement`.

Runs keep onnxruntime's log at its fatal level only: a failed run raises, and its message
becomes our one-line :class:`~edge.errors.RuntimeFailure`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Optional, Sequence

import numpy as np
import onnxruntime as ort

from edge.errors import InputError, RuntimeFailure
from edge.events import Placement
from edge.options import OnnxOptions
from edge.runtime.cpu import onnx_threads

LOG = logging.getLogger("edge.onnxruntime")

# fd 2 belongs to the whole process: two threads redirecting it at once would restore it wrongly.
# The lock holds no data; it only orders the redirections.
_FD2_LOCK = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# 2024-01-01 12:00:00.123456789 [W:onnxruntime:logid, file.cc:123 Function] message
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[([VIWEF]):onnxruntime:[^,\]]*, ([^\]]*)\] ?(.*)$")
_LEVELS = MappingProxyType(
    {"V": logging.DEBUG, "I": logging.DEBUG, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
)
# session_state.cc VerifyEachNodeIsAssignedToAnEp, at the verbose level
_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[([^\]]+)\]\. Number of nodes: (\d+)")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (for ``edge doctor``)."""
    return list(ort.get_available_providers())


def backend_version() -> str:
    """The onnxruntime version."""
    return ort.__version__


class Session:
    """An onnxruntime session made by :func:`open_session`, and where its nodes run."""

    def __init__(self, inner: ort.InferenceSession, placement: Placement) -> None:
        self._inner = inner
        self.placement = placement
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises; we report it in one line

    def run(self, outputs: Optional[Sequence[str]], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph: ``outputs`` by name (None = all) from the ``feed`` inputs."""
        return self._inner.run(None if outputs is None else list(outputs), feed, self._run_options)

    def get_inputs(self):
        """The graph's inputs (onnxruntime's ``NodeArg`` list: name, type, shape)."""
        return self._inner.get_inputs()

    def get_outputs(self):
        """The graph's outputs (onnxruntime's ``NodeArg`` list)."""
        return self._inner.get_outputs()

    def get_providers(self) -> list[str]:
        """The execution providers onnxruntime registered for this session, in priority order."""
        return self._inner.get_providers()


def open_session(path: Path, options: OnnxOptions = OnnxOptions()) -> Session:
    """An inference session with explicit threads and providers (with their provider options).

    Raises:
        InputError: a provider this onnxruntime build does not have.
        RuntimeFailure: onnxruntime cannot load the graph (its first line says why).
    """
    path = Path(path)
    so = ort.SessionOptions()
    so.log_severity_level = 0  # node placement is only logged at the verbose level; every line goes to LOG
    # 0 = edge's rule: every physical core, as onnxruntime's own default, but without spinning (docs/threads.md)
    so.intra_op_num_threads = options.threads or onnx_threads()
    so.inter_op_num_threads = 1
    spin = "1" if options.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    available = ort.get_available_providers()
    missing = [p for p in options.provider_names if p not in available]
    if missing:
        raise InputError(
            f"onnxruntime has no {', '.join(missing)} here (has {', '.join(available)}; see `edge doctor`)"
        )
    session, failure = None, None
    with _stderr_captured() as lines:
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=so,
                providers=list(options.provider_names),
                provider_options=[dict(p.options) for p in options.providers],
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            failure = exc
    placed = relay_log(lines, path.name)
    if session is None:
        text = str(failure).strip()
        first = text.splitlines()[0] if text else type(failure).__name__
        raise RuntimeFailure(f"onnxruntime cannot load {path.name}: {first}") from None
    placement = Placement(path.name, options.provider_names, tuple(session.get_providers()), placed)
    report_placement(placement)
    return Session(session, placement)


def report_placement(placement: Placement) -> None:
    """Log where a graph runs: a WARNING for each fallback, else one INFO line."""
    for reason in placement.reasons:
        LOG.warning("%s: execution provider fallback: %s", placement.graph, reason)
    if not placement.fallback:
        where = ", ".join(f"{n} nodes on {p}" for p, n in placement.nodes) or "node placement not reported"
        LOG.info("%s: %s", placement.graph, where)


def relay_log(lines: Sequence[str], graph: str) -> tuple[tuple[str, int], ...]:
    """Re-issue onnxruntime's log ``lines`` on :data:`LOG`, each at its level, prefixed with
    ``graph``; return the node placement they report (provider, node count), if any.

    A line without onnxruntime's prefix continues the previous message; before any message
    it is not onnxruntime's and goes back to stderr.
    """
    placed: list[tuple[str, int]] = []
    records: list[list] = []  # [level, source, text]
    for raw in lines:
        line = _ANSI.sub("", raw).rstrip()
        match = _LINE.match(line)
        if match:
            records.append([_LEVELS[match.group(1)], match.group(2), match.group(3)])
            hit = _PLACED.search(match.group(3))
            if hit:
                placed.append((hit.group(1), int(hit.group(2))))
        elif records:
            if line:
                records[-1][2] += "\n" + line
        elif line:
            sys.stderr.write(raw + "\n")
    for level, source, text in records:
        LOG.log(level, "%s: %s", graph, text, extra={"onnxruntime_source": source})
    return tuple(placed)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Point fd 2 at a temporary file for the ``with`` body; the list it yields gets the lines
    written meanwhile once the body ends. Without a usable fd 2 nothing is captured."""
    lines: list[str] = []
    with _FD2_LOCK, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:
            saved = None
        if saved is None:
            yield lines
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", errors="replace").splitlines())
