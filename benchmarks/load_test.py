"""``python -m edge.benchmarks.load_test``: speed alone and beside a competing CPU-bound process.

For each thread configuration a fresh worker process loads the bundle (environment variables
such as ``OMP_WAIT_POLICY`` are read by libgomp when it loads, so each configuration needs its
own process), is measured alone, then again while this process runs one, then two busy loops
(``--busy``; each a ``while True: pass`` Python process: one core taken, as by a browser tab at
work), stopped after each phase. Figures are medians over the rounds of each phase (at most
``--rounds``, no new round after ``--seconds``), and the CPU that other processes used meanwhile
is measured (``/proc/stat``) so that a run disturbed from outside shows as one:

- the LLM (the default SmolLM2 bundle, or ``--bundle``): time to first token and decode
  tokens/s of a short chat prompt, and prefill tokens/s of a longer raw prompt;
- the vision graph (``--vision BUNDLE``, a bundle with a vision encoder): milliseconds per tile.

``--llama-lib DIR`` runs the LLM rows against another build of llama.cpp's libraries
(``LLAMA_CPP_LIB_PATH``), e.g. one built without OpenMP, where ggml's own threadpool and its
polling level are used. The results table (Markdown) goes to stdout; ``--json`` keeps the raw
figures. Progress goes to stderr. ``docs/threads.md`` shows a run and the defaults chosen from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

CHAT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
LONG_PROMPT = " ".join(
    ["The committee met on a grey morning to review the harbour plans, the budget and the timetable."] * 16
)
HOG = "while True:\n    pass\n"


@dataclass(frozen=True)
class Config:
    """One thread configuration: ``threads`` 0 is edge's rule; ``poll`` None attaches no threadpool
    (llama.cpp's implicit one, as edge 0.1 did); ``env`` is set for the worker process."""

    name: str
    threads: int
    poll: Optional[int] = 0
    spinning: bool = False
    env: dict = field(default_factory=dict)


def llm_configs(cores: int) -> list[Config]:
    """The LLM rows: the old default, the candidates, the new default (threads 0)."""
    return [
        Config(f"{cores} threads (all cores), llama.cpp's implicit pool: edge 0.1", cores, None),
        Config(f"{cores} threads, poll 0", cores, 0),
        Config(f"{cores} threads, poll 0, OMP_WAIT_POLICY=PASSIVE", cores, 0, env={"OMP_WAIT_POLICY": "PASSIVE"}),
        Config(f"{max(1, cores - 1)} thread(s) (cores - 1), poll 50", max(1, cores - 1), 50),
        Config("threads 0 (edge's rule: cores - 1), poll 0: the new default", 0, 0),
    ]


def vision_configs(cores: int) -> list[Config]:
    """The vision rows: onnxruntime's default (every physical core, spinning), the candidates,
    the new default (threads 0: every physical core, no spinning)."""
    return [
        Config(f"{cores} threads (all cores), spinning: onnxruntime's default, edge 0.1", cores, spinning=True),
        Config(f"{max(1, cores - 1)} thread(s) (cores - 1), spinning", max(1, cores - 1), spinning=True),
        Config(f"{max(1, cores - 1)} thread(s) (cores - 1), no spinning", max(1, cores - 1), spinning=False),
        Config("threads 0 (edge's rule: all cores), no spinning: the new default", 0, spinning=False),
    ]


# --- worker side ------------------------------------------------------------------------
def _worker(spec: dict) -> None:
    """Load what ``spec`` says, answer "ready", then measure one phase per line read on stdin."""
    from edge.options import GenerateOptions, LLMOptions, OnnxOptions, RuntimeOptions

    cfg = Config(**spec["config"])
    if spec["kind"] == "llm":
        from edge.runtime import llama_backend
        from edge.runtime.pipeline import Pipeline

        if cfg.poll is None:  # reproduce edge 0.1: no threadpool of ours attached
            llama_backend._threadpool_api = lambda: None
        llm = LLMOptions(threads=cfg.threads, poll=cfg.poll or 0)
        pipe = Pipeline(spec["bundle"], RuntimeOptions(llm=llm))
        info = {"threads": pipe.llm.threads, "system_info": llama_backend.system_info()}
        chat = GenerateOptions(max_tokens=spec["tokens"])
        raw = GenerateOptions(max_tokens=1, template=False)
        pipe.generate(CHAT_PROMPT, options=chat)  # warm-up

        def measure() -> dict:
            pipe.reset()
            t = pipe.generate(CHAT_PROMPT, options=chat).timings
            pipe.reset()
            long = pipe.generate(LONG_PROMPT, options=raw).timings
            return {
                "ttft_ms": t.ttft_ms,
                "decode_tok_s": t.decode_tokens_per_s,
                "prefill_tok_s": long.prompt_tokens / max(long.prefill_ms, 1e-9) * 1000,
                "long_prompt_tokens": long.prompt_tokens,
            }

    else:
        import numpy as np

        from edge.bundle import load_manifest
        from edge.runtime.vision.encoder import VisionEncoder

        root, manifest = load_manifest(spec["bundle"])
        encoder = VisionEncoder(root, manifest.vision, OnnxOptions(threads=cfg.threads, spinning=cfg.spinning))
        shape = [1, *manifest.vision.input.shape[1:]]
        tile = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        encoder(tile)  # warm-up
        info = {"threads": cfg.threads, "tile": shape}

        def measure() -> dict:
            t0 = time.perf_counter()
            encoder(tile)
            return {"ms_per_tile": (time.perf_counter() - t0) * 1000}

    print(json.dumps({"ready": True, "info": info}), flush=True)
    for line in sys.stdin:
        rounds, seconds = line.split()
        rows, t0 = [measure()], time.perf_counter()
        while len(rows) < int(rounds) and time.perf_counter() - t0 < float(seconds):
            rows.append(measure())
        print(json.dumps(rows), flush=True)


# --- driver side ------------------------------------------------------------------------
def _say(text: str) -> None:
    print(f"load_test: {text}", file=sys.stderr, flush=True)


def _run_config(kind: str, cfg: Config, bundle: Path, args) -> dict:
    env = dict(os.environ, **cfg.env)
    if args.llama_lib and kind == "llm":
        env["LLAMA_CPP_LIB_PATH"] = str(args.llama_lib)
    spec = {"kind": kind, "config": asdict(cfg), "bundle": str(bundle), "tokens": args.tokens}
    cmd = [sys.executable, "-m", "edge.benchmarks.load_test", "--worker", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
    out = {"kind": kind, "config": cfg.name}
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"the {kind} worker for {cfg.name!r} did not start (see its stderr above)")
        out["info"] = ready["info"]
        for busy in [0, *args.busy]:
            phase = _phase(busy)
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(busy)]
            try:
                if hogs:
                    time.sleep(0.5)  # the busy loops are running before the first request
                pids = [proc.pid, *(h.pid for h in hogs)]
                t0, busy0, ours0 = time.perf_counter(), _busy_s(), sum(_cpu_s(pid) for pid in pids)
                proc.stdin.write(f"{args.rounds} {args.seconds}\n")
                proc.stdin.flush()
                rows = json.loads(proc.stdout.readline())
                wall = time.perf_counter() - t0
                ours = sum(_cpu_s(pid) for pid in pids) - ours0
                others = None if busy0 is None else max(0.0, (_busy_s() - busy0 - ours) / wall)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            out[phase] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            out[phase]["other_cores"] = others  # CPU used meanwhile by processes that are not ours, in cores
            _say(f"  {kind} | {cfg.name} | {phase}: {_brief(out[phase])} ({wall:.0f} s)")
            time.sleep(0.5)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    return out


def _phase(busy: int) -> str:
    return "alone" if busy == 0 else f"{busy} busy"


def _brief(fig: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in fig.items() if k != "long_prompt_tokens" and v is not None)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_s() -> Optional[float]:
    """CPU seconds every process has used since boot (Linux ``/proc/stat``), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _cpu_s(pid: Optional[int]) -> float:
    """CPU seconds (user + system) one process has used, 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, load before the run."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from edge.runtime.cpu import available_cpus, llm_threads, physical_cores

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": model,
        "logical_cpus": available_cpus(),
        "physical_cores": physical_cores(),
        "auto_threads": llm_threads(),
        "loadavg_1min_before": load,
        "python": platform.python_version(),
    }


def markdown(results: list[dict], info: dict) -> str:
    """The results as Markdown tables (one per kind), the phases side by side for each figure; the
    last column is the most CPU that processes not started here used meanwhile (0 = a clean run)."""
    lines = [
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['physical_cores']} physical cores "
        f"(edge's rule: {info['auto_threads']} LLM thread(s)); 1-minute load before the run "
        f"{info['loadavg_1min_before']:.2f}.",
        "",
    ]
    heads = {
        "llm": [("ttft_ms", "TTFT ms", 0), ("decode_tok_s", "decode tok/s", 1), ("prefill_tok_s", "prefill tok/s", 0)],
        "vision": [("ms_per_tile", "ms per tile", 0)],
    }
    for kind, cols in heads.items():
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        phases = [k for k in rows[0] if k == "alone" or k.endswith(" busy")]
        head = " | ".join(f"{label}, {phase}" for _, label, _ in cols for phase in phases)
        lines += [f"| {kind} configuration | {head} | others (cores) |", "|---" * (2 + len(cols) * len(phases)) + "|"]
        for r in rows:
            cells = [_cell(r[phase].get(key), nd) for key, _, nd in cols for phase in phases]
            others = max((r[phase]["other_cores"] or 0.0) for phase in phases)
            lines.append(f"| {r['config']} | {' | '.join(cells)} | {others:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: Optional[list[str]] = None) -> int:
    """Run the measurements; print the Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m edge.benchmarks.load_test", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help="LLM bundle (default: the cached default SmolLM2 bundle)")
    parser.add_argument("--vision", type=Path, help="a bundle whose vision graph is measured (default: none)")
    parser.add_argument("--no-llm", action="store_true", help="measure the vision graph only")
    parser.add_argument("--rounds", type=int, default=5, help="measured requests per phase (median)")
    parser.add_argument("--seconds", type=float, default=20.0, help="no new round after this long in a phase")
    parser.add_argument("--tokens", type=int, default=48, help="tokens generated per chat request")
    parser.add_argument("--llama-lib", type=Path, help="a folder with another build of llama.cpp's libraries")
    parser.add_argument(
        "--busy", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2],
        help="the phases after the one alone: how many busy loops run beside it (default 1,2)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return 0
    from edge.runtime.cpu import physical_cores

    info = machine()
    cores = physical_cores()
    jobs = []
    if not args.no_llm:
        if args.bundle is None:
            from edge.apps.defaults import default_bundle_path

            args.bundle = default_bundle_path()
            if not (args.bundle / "manifest.json").is_file():
                print(f"no default bundle at {args.bundle}: run `edge chat` once, or pass --bundle", file=sys.stderr)
                return 2
        jobs += [("llm", c, args.bundle) for c in llm_configs(cores)]
    if args.vision is not None:
        jobs += [("vision", c, args.vision) for c in vision_configs(cores)]
    phases = ", ".join(_phase(n) for n in [0, *args.busy])
    _say(f"{len(jobs)} configurations, phases {phases}; {args.rounds} rounds a phase at most")
    results = []
    for i, (kind, cfg, bundle) in enumerate(jobs, 1):
        _say(f"[{i}/{len(jobs)}] {kind}: {cfg.name}")
        results.append(_run_config(kind, cfg, bundle, args))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1) + "\n", encoding="utf-8")
    print(markdown(results, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
