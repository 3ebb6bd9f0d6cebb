"""Worker processes and the alternating schedule: warm-ups, then rounds on identical requests,
the order reversed every other round (ours, peer, peer | peer, peer, ours | ...: on a machine whose
load drifts, no side always goes first or last), medians and spreads at the end."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from edge.errors import RuntimeFailure

from .common import NotAvailable, median

# pause between two sides' requests: lets the previous side's spinning worker threads park
SETTLE_S = 0.2


def worker_command(cfg: dict) -> list[str]:
    """The command that starts :mod:`edge.benchmarks.worker` for ``cfg``."""
    return [sys.executable, "-m", "edge.benchmarks.worker", json.dumps(cfg)]


class SideError(RuntimeFailure):
    """A side failed a request (the message says which side and why)."""


@dataclass
class Worker:
    """One live side process."""

    name: str
    cfg: dict
    log: Path
    proc: Optional[subprocess.Popen] = None
    load_ms: float = 0.0
    start_ms: float = 0.0  # from spawning the process to loaded (interpreter and imports included)
    info: dict = field(default_factory=dict)
    peak_rss: int = 0

    def start(self, timeout: float = 900.0) -> "Worker":
        """Start the process and wait until the side is loaded; :class:`NotAvailable` if it cannot load."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            worker_command(self.cfg), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1
        )
        err.close()
        reply = self._read(timeout)
        if not reply.get("ok"):
            self.stop()
            if reply.get("not_available"):
                raise NotAvailable(reply.get("error", "not available"))
            raise SideError(f"{self.name} failed to load: {reply.get('error')}")
        self.load_ms, self.info, self.peak_rss = reply["load_ms"], reply.get("info", {}), reply.get("peak_rss", 0)
        self.start_ms = (time.perf_counter() - t0) * 1e3
        return self

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise SideError(f"{self.name} did not answer within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=30)
            tail = _tail(self.log)
            raise SideError(f"{self.name} exited with code {code}: {tail}")
        return json.loads(line)

    def call(self, op: str, **args) -> dict:
        """One request; the result dict (``peak_rss`` added), or :class:`NotAvailable` / :class:`SideError`."""
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        reply = self._read(3600)
        if not reply.get("ok"):
            if reply.get("not_available"):
                raise NotAvailable(reply["error"])
            raise SideError(f"{self.name} failed {op}: {reply.get('error')}")
        self.peak_rss = reply.get("peak_rss", self.peak_rss)
        return reply["result"]

    def stop(self) -> None:
        """Ask the process to quit (killed if it does not within 30 s)."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _tail(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def alternate(
    workers: list[Worker],
    op: str,
    args: dict,
    repeats: int,
    warmup: int = 0,
    per_side: Optional[dict] = None,
    advance: Optional[Callable[[int], None]] = None,
) -> dict:
    """Run ``op`` on every worker in turn, ``warmup`` discarded rounds then ``repeats`` rounds.

    ``per_side`` overrides arguments for one side (``{"transformers": {"longest_edge": 1024}}``);
    ``advance(1)`` is called after every request (a progress bar).
    Rounds run in alternating order (every other one reversed).
    Returns ``{side: {"samples": [...], "median": {field: value}}}`` or ``{side: {"error": ...}}``.
    """
    out: dict = {w.name: {"samples": []} for w in workers}
    live = list(workers)
    for r in range(warmup + repeats):
        for w in list(live if (r - warmup) % 2 == 0 else live[::-1]):
            kwargs = dict(args, **(per_side or {}).get(w.name, {}))
            try:
                res = w.call(op, **kwargs)
            except NotAvailable as exc:
                out[w.name] = {"not_available": str(exc)}
                live.remove(w)
                continue
            except SideError as exc:
                out[w.name] = {"error": str(exc)}
                live.remove(w)
                continue
            if r >= warmup:
                out[w.name]["samples"].append(res)
            if advance is not None:
                advance(1)
            time.sleep(SETTLE_S)
    for name, entry in out.items():
        if entry.get("samples"):
            entry["median"] = medians(entry["samples"])
    return out


def medians(samples: list[dict]) -> dict:
    """Field-wise median of numeric fields; other fields from the first sample."""
    first = samples[0]
    out = {}
    for key, value in first.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = median(s.get(key) for s in samples)
        else:
            out[key] = value
    return out
