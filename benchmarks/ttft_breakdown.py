"""Time to first token with one image, broken down, against transformers eager and llama.cpp's libmtmd.

Issue 18's TTFT figure: one 512x512 image and a short prompt through each side's chat template
to the first greedy token, on bundles of several recipes (``q8``, ``q4``...) in **one run**, so
that every ratio is taken under the same load. Each side is a warm worker process
(:mod:`benchmarks.worker`: models loaded, KV cache and embedding cache emptied before every
request). Rounds rotate the order of the sides (round r starts at side r mod n), and each
ratio is computed **within a round** (edge[q8] / llama.cpp[q8] of the same round) before the
median over rounds is taken, so a burst of load from another process cannot fall on one side
only; the spread (min-max over rounds) is reported with every median.

edge's breakdown comes from the pipeline's :class:`~edge.events.Timings`: ``image_load_ms``
(decoding the file), ``slice_ms`` (the scheme's plan: slicing, resizing, normalising),
``encode_ms`` (vision tower + projector over every tile), ``prefill_ms`` (llama.cpp over the
prompt's text and image rows up to the first logits) and ``other_ms`` (tokenizing, the first
sampling, Python between the stages). llama.cpp's breakdown: ``preprocess_ms`` (stb decode +
``mtmd_tokenize``: its slicing), ``encode_ms`` (``mtmd_encode_chunk``), ``prefill_ms``.

Usage::

    python -m edge.benchmarks.ttft_breakdown --bundle q8=B8 --bundle q4=B4 --source HF \\
        --llama-cpp LLAMA_SRC [--rounds 3] [--threads 2] [--image IMG] [--json OUT]

``--variant NAME=JSON`` adds edge sides with option overrides (``{"vision": {...}, "llm": {...},
"one_shot": true}``, see :class:`benchmarks.ours.Ours`) on the first bundle, to compare options
in the same run. ``--peers none`` measures edge only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

from edge.errors import EdgeError, InputError

from .common import NotAvailable
from .procs import SETTLE_S, SideError, Worker

PROMPT = "Describe this image in one sentence."
# the fields of each side's ttft reply that make its breakdown, in order
BREAKDOWN = ("image_load_ms", "slice_ms", "preprocess_ms", "encode_ms", "prefill_ms", "other_ms")


def side_configs(
    bundles: dict,
    threads: int,
    source: Optional[Path] = None,
    llama_src: Optional[Path] = None,
    work: Optional[Path] = None,
    peers: tuple = ("transformers", "llama.cpp"),
    variants: Optional[dict] = None,
) -> dict:
    """Worker configurations by side name: ``edge[label]`` per bundle, ``edge[label:variant]`` per
    variant (on the first bundle), ``llama.cpp[label]`` per bundle (llama.cpp's own conversion of
    ``source`` with the bundle's LLM type) and ``transformers`` once (fp32 whatever the bundle)."""
    from edge.bundle import load_manifest

    out: dict = {}
    for label, bundle in bundles.items():
        out[f"edge[{label}]"] = {"side": "edge", "bundle": str(bundle), "threads": threads}
    first = next(iter(bundles))
    for name, overrides in (variants or {}).items():
        out[f"edge[{first}:{name}]"] = {
            "side": "edge", "bundle": str(bundles[first]), "threads": threads, "overrides": overrides
        }  # fmt: skip
    if "llama.cpp" in peers:
        if source is None or llama_src is None:
            raise InputError("the llama.cpp peer needs --source and --llama-cpp (its converters)")
        from .convert import prepare

        key = f"{Path(source).absolute()}".replace("/", "_").strip("_")[-80:]
        for label, bundle in bundles.items():
            _, m = load_manifest(bundle)
            files = prepare(Path(source), Path(work) / "llama.cpp" / key, Path(llama_src), m.llm.dtype)
            out[f"llama.cpp[{label}]"] = {
                "side": "llama.cpp", "threads": threads, "text": str(files.text), "mmproj": str(files.mmproj)
            }  # fmt: skip
    if "transformers" in peers:
        if source is None:
            raise InputError("the transformers peer needs --source (the HF checkpoint)")
        out["transformers"] = {"side": "transformers", "source": str(source), "threads": threads}
    return out


def rendered_prompt(bundle: Path, prompt: str = PROMPT) -> str:
    """The chat-template text with the image marker, as edge renders it (llama.cpp's mtmd takes text)."""
    from edge.bundle import load_manifest
    from edge.runtime.text.prompt import Message, render_chat

    _, m = load_manifest(bundle)
    return render_chat(m.llm, m.prompt, [Message("user", prompt, ("image",))])


def request_args(name: str, cfg: dict, image: Path, prompt: str, bundles: dict) -> dict:
    """The ``ttft`` arguments of side ``name``: llama.cpp gets the rendered template text."""
    if cfg["side"] == "llama.cpp":
        return {"image": str(image), "prompt": rendered_prompt(next(iter(bundles.values())), prompt)}
    return {"image": str(image), "prompt": prompt}


def rotation(names: list, r: int) -> list:
    """Round ``r``'s order of the sides: the list rotated by ``r``."""
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def spread(values: list) -> dict:
    """Median, min and max of ``values`` (None when empty)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def with_other(res: dict) -> dict:
    """A ttft reply with ``other_ms``: the TTFT the named stages do not account for."""
    out = dict(res)
    parts = [out.get(k) or 0.0 for k in ("preprocess_ms", "encode_ms", "prefill_ms")]
    out["other_ms"] = max(0.0, float(out["ttft_ms"]) - sum(parts))
    return out


def ratios(samples: dict, rounds: int) -> dict:
    """Per pair ``edge[x]`` / peer (``llama.cpp[x]``, ``transformers``): the TTFT ratio of each
    round, then their spread."""
    out = {}
    for name in samples:
        if not name.startswith("edge["):
            continue
        label = name[5:-1].split(":")[0]
        for peer in (f"llama.cpp[{label}]", "transformers"):
            if peer not in samples:
                continue
            per_round = []
            for r in range(rounds):
                a, b = samples[name].get(r), samples[peer].get(r)
                if a and b:
                    per_round.append(a["ttft_ms"] / b["ttft_ms"])
            out[f"{name} / {peer}"] = {**spread(per_round), "per_round": per_round}
    return out


def measure_ttft(
    configs: dict,
    bundles: dict,
    image: Path,
    rounds: int,
    logs: Path,
    prompt: str = PROMPT,
    warmup: int = 1,
    log=None,
    partial=None,
) -> dict:
    """Warm TTFT of every side, rounds rotating the order; medians, spreads and per-round ratios.
    ``partial(results)`` is called after every measured request with the figures so far."""
    workers, results = {}, {"image": str(image), "rounds": rounds, "sides": {}, "not_measured": {}}
    try:
        for name, cfg in configs.items():
            _say(log, f"loading {name}")
            try:
                workers[name] = Worker(name, cfg, logs / f"ttft-{_slug(name)}.log").start()
            except (NotAvailable, SideError) as exc:
                results["not_measured"][name] = str(exc)
        names = list(workers)
        samples: dict = {n: {} for n in names}
        for r in range(warmup + rounds):
            for name in rotation(names, r):
                if name in results["not_measured"]:
                    continue
                try:
                    res = workers[name].call("ttft", **request_args(name, configs[name], image, prompt, bundles))
                except (NotAvailable, SideError) as exc:
                    results["not_measured"][name] = str(exc)
                    continue
                if r >= warmup:
                    samples[name][r - warmup] = with_other(res)
                    _say(log, f"round {r - warmup + 1}/{rounds} {name}: {res['ttft_ms']:.0f} ms")
                    if partial is not None:
                        partial(_figures(results, samples, rounds))
                time.sleep(SETTLE_S)
    finally:
        for w in workers.values():
            w.stop()
    return _figures(results, samples, rounds)


def _figures(results: dict, samples: dict, rounds: int) -> dict:
    """``results`` with each side's spreads and the per-round ratios of ``samples``."""
    for name, got in samples.items():
        if not got:
            continue
        first = next(iter(got.values()))
        keys = ["ttft_ms", *[k for k in BREAKDOWN if k in first]]
        results["sides"][name] = {k: spread([s.get(k) for s in got.values()]) for k in keys}
        results["sides"][name]["tiles"] = first.get("tiles")
        results["sides"][name]["prompt_tokens"] = first.get("prompt_tokens")
        results["sides"][name]["samples"] = [got[r] for r in sorted(got)]
    results["ratios"] = ratios(samples, rounds)
    return results


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _say(log, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)


def _fmt(s: Optional[dict], scale: float = 1.0, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "-"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"


def summary(results: dict) -> str:
    """Markdown tables: each side's TTFT and breakdown (medians, min-max), then the ratios."""
    lines = [
        "| side | TTFT (s) | file decode (ms) | slicing (ms) | vision (s) | prefill (s) | other (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig in results.get("sides", {}).items():
        lines.append(
            f"| {name} | {_fmt(fig.get('ttft_ms'), 1e-3, 2)} | {_fmt(fig.get('image_load_ms'))} | "
            f"{_fmt(fig.get('slice_ms') or fig.get('preprocess_ms'))} | {_fmt(fig.get('encode_ms'), 1e-3, 2)} | "
            f"{_fmt(fig.get('prefill_ms'), 1e-3, 2)} | {_fmt(fig.get('other_ms'))} |"
        )
    lines += ["", "| ratio (TTFT, within each round) | median (min-max) | rounds |", "|---|---|---|"]
    for pair, s in results.get("ratios", {}).items():
        lines.append(f"| {pair} | {_fmt(s, 1.0, 2)} | {s.get('n')} |")
    for name, why in results.get("not_measured", {}).items():
        lines.append(f"\n{name}: not measured ({why})")
    return "\n".join(lines)


def run_conditions(threads: int, rounds: int) -> dict:
    """Date, CPU, cores, threads, rounds and the load average after the run."""
    import os

    from .inputs import conditions

    base = dict(quick=False, rounds=rounds, cold_rounds=rounds)
    o = argparse.Namespace(threads=threads, **base)
    c = {k: v for k, v in conditions(_Plain(o)).items() if k != "options"}
    c["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return c


class _Plain:
    """A namespace :func:`inputs.conditions` can read (it lists dataclass fields: none here)."""

    __dataclass_fields__: dict = {}

    def __init__(self, ns) -> None:
        self.__dict__.update(vars(ns))


def parse_pairs(items: list, what: str) -> dict:
    """``NAME=VALUE`` items -> dict (an :class:`InputError` for anything else)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"{what} must be NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def write_json(path: Optional[Path], results: dict) -> None:
    """Write ``results`` to ``--json``'s file, when one was given."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def arg_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The command line shared with :mod:`benchmarks.memory`."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--bundle", action="append", default=[], help="LABEL=BUNDLE (repeat: q8=..., q4=...)")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON option overrides on the first bundle")
    ap.add_argument("--source", type=Path, help="the HF checkpoint the bundles were exported from")
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp source tree (its converters make the peer's files)")
    ap.add_argument("--peers", default="transformers,llama.cpp", help="comma-separated peers, or 'none'")
    ap.add_argument("--image", type=Path, help="the image (default: the generated 512x512 photo)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds first (TTFT only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, help="folder for the converted peer files, images and logs")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    return ap


def common_args(args) -> tuple:
    """(bundles, variants, peers, image, work) from the shared command line."""
    from edge.apps.defaults import cache_dir

    bundles = {k: Path(v) for k, v in parse_pairs(args.bundle, "--bundle").items()}
    if not bundles:
        raise InputError("give at least one --bundle LABEL=BUNDLE")
    try:
        variants = {k: json.loads(v) for k, v in parse_pairs(args.variant, "--variant").items()}
    except ValueError as exc:
        raise InputError(f"--variant: not JSON ({exc})") from None
    if args.rounds < 1 or args.threads < 1:
        raise InputError("--rounds and --threads must be at least 1")
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none")
    work = (args.work or cache_dir() / "bench").expanduser()
    if args.image is None:
        from .inputs import standard_images

        image = standard_images(work / "images", ((512, 512),))[0]
    else:
        image = args.image
        if not image.is_file():
            raise InputError(f"file not found: {image}")
    return bundles, variants, peers, image, work


def main(argv: Optional[list] = None) -> int:
    """``python -m edge.benchmarks.ttft_breakdown``."""
    args = arg_parser("python -m edge.benchmarks.ttft_breakdown", __doc__).parse_args(argv)
    try:
        bundles, variants, peers, image, work = common_args(args)
        configs = side_configs(bundles, args.threads, args.source, args.llama_cpp, work, peers, variants)

        def dump(res: dict) -> None:  # what is measured so far survives a run that is stopped
            write_json(args.json, res)

        results = measure_ttft(
            configs, bundles, image, args.rounds, work / "logs", warmup=args.warmup, log=sys.stderr, partial=dump
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
