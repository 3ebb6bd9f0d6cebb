"""Peak RSS of a fresh process answering one image, against llama.cpp's libmtmd (issue 18, item 4).

Each sample is a **fresh** worker process (:mod:`benchmarks.worker`): start, load the side,
answer one TTFT request with one image, then its ``VmHWM`` (the high-water mark of resident
memory, Python and every library included: every side runs in a Python process). Rounds
rotate the order of the sides; the ratio edge[x] / llama.cpp[x] is taken within each round
and the median and min-max over rounds are reported (peak RSS hardly depends on load, but
the page cache does, and it is shared).

edge's side is ``edge run`` itself, a fresh CLI process (``RuntimeOptions.one_shot``: the image is
encoded first, the vision session released, then the LLM loads), its peak from ``wait4``; a
``--variant`` is a worker process with option overrides (``--variant long-lived='{"one_shot": false}'``:
the pipeline chat and serve hold, vision session and LLM both loaded up front).

Usage::

    python -m edge.benchmarks.memory --bundle f16=B16 --bundle q8=B8 --source HF --llama-cpp SRC \\
        [--rounds 3] [--variant NAME=JSON] [--json OUT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from edge.errors import EdgeError

from .common import NotAvailable
from .procs import SETTLE_S, SideError, Worker
from .ttft_breakdown import (
    PROMPT,
    _fmt,
    _say,
    _slug,
    arg_parser,
    common_args,
    request_args,
    rotation,
    run_conditions,
    side_configs,
    spread,
    write_json,
)


def one_shot_configs(configs: dict) -> dict:
    """``configs`` with every plain edge side measured as ``edge run`` itself (side ``edge-run``: the
    CLI in a fresh process, one image, one token); edge sides with overrides stay worker processes."""
    out = {}
    for name, cfg in configs.items():
        if cfg["side"] == "edge" and not cfg.get("overrides"):
            cfg = {"side": "edge-run", "bundle": cfg["bundle"], "threads": cfg["threads"]}
        out[name] = cfg
    return out


def edge_run_peak(cfg: dict, image: Path, prompt: str, log_path: Path) -> dict:
    """``edge run BUNDLE --image IMAGE`` (one token, ``--json``) in a fresh process: its peak RSS
    (``ru_maxrss`` of the child, from ``wait4``) and the TTFT it reports."""
    import json
    import os
    import subprocess

    cmd = [sys.executable, "-m", "edge.apps.cli", "run", cfg["bundle"], "--image", str(image), "--prompt", prompt]
    cmd += ["--max-tokens", "1", "--threads", str(cfg["threads"]), "--ctx", "4096", "--json"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SideError(f"edge run exited with code {proc.returncode} (see {log_path})")
    ttft = json.loads(out)["timings"]["ttft_ms"]
    return {"peak_rss": int(usage.ru_maxrss) * 1024, "loaded_rss": None, "ttft_ms": ttft}


def measure_memory(
    configs: dict, bundles: dict, image: Path, rounds: int, logs: Path, prompt: str = PROMPT, log=None, partial=None
) -> dict:
    """Peak RSS of fresh processes, ``rounds`` per side in rotating order; medians, spreads, ratios.
    ``partial(results)`` is called after every sample with the figures so far."""
    names = list(configs)
    samples: dict = {n: {} for n in names}
    errors: dict = {}
    for r in range(rounds):
        for name in rotation(names, r):
            if name in errors:
                continue
            if configs[name]["side"] == "edge-run":
                try:
                    samples[name][r] = edge_run_peak(configs[name], image, prompt, logs / f"memory-{_slug(name)}.log")
                    _say(
                        log,
                        f"round {r + 1}/{rounds} {name} (edge run): peak {samples[name][r]['peak_rss'] / 2**20:.0f} MiB",
                    )
                except SideError as exc:
                    errors[name] = str(exc)
                if partial is not None:
                    partial(_figures(image, rounds, names, samples, errors))
                continue
            w = Worker(name, configs[name], logs / f"memory-{_slug(name)}.log")
            try:
                w.start()
                loaded = w.peak_rss
                res = w.call("ttft", **request_args(name, configs[name], image, prompt, bundles))
                samples[name][r] = {"peak_rss": w.peak_rss, "loaded_rss": loaded, "ttft_ms": res["ttft_ms"]}
                _say(log, f"round {r + 1}/{rounds} {name}: peak {w.peak_rss / 2**20:.0f} MiB")
            except (NotAvailable, SideError) as exc:
                errors[name] = str(exc)
            finally:
                w.stop()
            if partial is not None:
                partial(_figures(image, rounds, names, samples, errors))
            time.sleep(SETTLE_S)
    return _figures(image, rounds, names, samples, errors)


def _figures(image: Path, rounds: int, names: list, samples: dict, errors: dict) -> dict:
    out: dict = {"image": str(image), "rounds": rounds, "sides": {}, "not_measured": errors, "ratios": {}}
    for name, got in samples.items():
        if got:
            out["sides"][name] = {k: spread([s[k] for s in got.values()]) for k in ("peak_rss", "loaded_rss")}
    for name in names:
        if not name.startswith("edge["):
            continue
        peer = f"llama.cpp[{name[5:-1].split(':')[0]}]"
        if peer in samples:
            per = [samples[name][r]["peak_rss"] / samples[peer][r]["peak_rss"]
                   for r in range(rounds) if r in samples[name] and r in samples[peer]]  # fmt: skip
            out["ratios"][f"{name} / {peer}"] = {**spread(per), "per_round": per}
    return out


def summary(results: dict) -> str:
    """Markdown tables: peak RSS per side (MiB, median and min-max), then the ratios."""
    mib = 1 / 2**20
    lines = ["| side | peak RSS (MiB) | after loading (MiB) |", "|---|---|---|"]
    for name, fig in results.get("sides", {}).items():
        lines.append(f"| {name} | {_fmt(fig['peak_rss'], mib)} | {_fmt(fig['loaded_rss'], mib)} |")
    lines += ["", "| ratio (peak RSS, within each round) | median (min-max) | rounds |", "|---|---|---|"]
    for pair, s in results.get("ratios", {}).items():
        lines.append(f"| {pair} | {_fmt(s, 1.0, 2)} | {s.get('n')} |")
    for name, why in results.get("not_measured", {}).items():
        lines.append(f"\n{name}: not measured ({why})")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    """``python -m edge.benchmarks.memory``."""
    ap = arg_parser("python -m edge.benchmarks.memory", __doc__)
    ap.set_defaults(peers="llama.cpp")
    args = ap.parse_args(argv)
    try:
        bundles, variants, peers, image, work = common_args(args)
        configs = side_configs(bundles, args.threads, args.source, args.llama_cpp, work, peers, variants)

        def dump(res: dict) -> None:  # what is measured so far survives a run that is stopped
            write_json(args.json, res)

        results = measure_memory(
            one_shot_configs(configs), bundles, image, args.rounds, work / "logs", log=sys.stderr, partial=dump
        )
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    results["conditions"] = run_conditions(args.threads, args.rounds)
    write_json(args.json, results)
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
