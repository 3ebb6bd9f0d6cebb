"""Does overlapping vision and prefill shorten the time to first token? (issue 18, item 3)

The pipeline encodes every tile of an image, then prefills the prompt's rows. The rows of
tile k could instead be prefilled by llama.cpp while onnxruntime encodes tile k+1: both are
compute-bound, so on a CPU this only pays if the two libraries together use the cores better
than each one alone (neither scales perfectly with threads), and it costs the vision tower
the threads the LLM takes. This measures exactly that on a bundle's own graphs, in one process:

- ``sequential``: vision on ``threads`` threads over every tile, then each tile's rows
  prefilled on ``threads`` threads (what the pipeline does);
- ``split``: vision on ``v`` threads in a worker thread, the rows of each finished tile
  prefilled meanwhile on ``threads - v`` threads (the overlap, cores split between the sides);
- ``shared``: the same overlap with ``threads`` threads on each side (cores oversubscribed);
- ``sequential v+l``: no overlap, with the split's threads (what fewer threads alone change).

Each mode has its own pipeline (threads are fixed when a session is made); rounds rotate the
order of the modes and each mode's time is divided by ``sequential``'s of the same round.

Usage: python -m edge.benchmarks.overlap BUNDLE [--tiles 6] [--rounds 3] [--threads 2] [--vision-threads 1]
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from edge.errors import EdgeError, InputError

from .ttft_breakdown import rotation, spread


def _pipe(bundle: Path, vision_threads: int, llm_threads: int):
    import edge
    from edge.options import LLMOptions, OnnxOptions, RuntimeOptions

    return edge.load(
        bundle,
        RuntimeOptions(vision=OnnxOptions(threads=vision_threads), llm=LLMOptions(n_ctx=4096, threads=llm_threads)),
    )


def tiles_of(pipe, image: Path, n: int) -> np.ndarray:
    """The first ``n`` tiles of ``image`` under the bundle's own plan (pixel values)."""
    from edge.options import Budget
    from edge.runtime.vision.image_io import load_image

    px = pipe.scheme.plan(load_image(str(image)), Budget()).pixel_values
    return px[:n]


def sequential(pipe, px: np.ndarray) -> float:
    """Encode every tile, then prefill each tile's rows: seconds."""
    pipe.reset()
    t0 = time.perf_counter()
    embeds = pipe.vision(px)
    for rows in embeds:
        pipe.llm.eval_embeddings(rows)
    return time.perf_counter() - t0


def overlapped(pipe, px: np.ndarray) -> float:
    """Encode tile k+1 in a worker thread while tile k's rows are prefilled: seconds."""
    pipe.reset()
    done: queue.Queue = queue.Queue()

    def encode() -> None:
        try:
            for i in range(px.shape[0]):
                done.put(pipe.vision(px[i : i + 1])[0])
        except BaseException as exc:  # handed to the consumer, which raises it
            done.put(exc)

    t0 = time.perf_counter()
    worker = threading.Thread(target=encode, daemon=True)
    worker.start()
    for _ in range(px.shape[0]):
        rows = done.get()
        if isinstance(rows, BaseException):
            raise rows
        pipe.llm.eval_embeddings(rows)
    worker.join()
    return time.perf_counter() - t0


def measure(bundle: Path, image: Path, n_tiles: int, rounds: int, threads: int, vision_threads: int, log=None) -> dict:
    """Seconds per mode and per round, and each mode's ratio to ``sequential`` within its round."""
    if not 1 <= vision_threads < threads:
        raise InputError(f"--vision-threads must be between 1 and threads - 1 ({threads - 1}), got {vision_threads}")
    modes = {
        "sequential": (_pipe(bundle, threads, threads), sequential),
        f"split {vision_threads}+{threads - vision_threads}": (
            _pipe(bundle, vision_threads, threads - vision_threads),
            overlapped,
        ),
        f"shared {threads}+{threads}": (_pipe(bundle, threads, threads), overlapped),
        # the split threads without the overlap: separates what the overlap gains from what fewer threads per
        # library gain on their own (on a loaded machine a 2-thread ggml or onnxruntime run loses most)
        f"sequential {vision_threads}+{threads - vision_threads}": (
            _pipe(bundle, vision_threads, threads - vision_threads),
            sequential,
        ),
    }
    first = next(iter(modes.values()))[0]
    if first.vision is None:
        raise InputError(f"{bundle} has no vision encoder")
    px = tiles_of(first, image, n_tiles)
    names = list(modes)
    times: dict = {n: {} for n in names}
    for pipe, run in modes.values():  # warm-up: first runs pay for onnxruntime's and llama.cpp's allocations
        run(pipe, px[:1])
    for r in range(rounds):
        for name in rotation(names, r):
            pipe, run = modes[name]
            times[name][r] = run(pipe, px)
            if log is not None:
                print(f"round {r + 1}/{rounds} {name}: {times[name][r]:.2f} s", file=log, flush=True)
    for pipe, _ in modes.values():
        pipe.close()
    out = {"tiles": int(px.shape[0]), "threads": threads, "rounds": rounds, "modes": {}}
    for name in names:
        per = [times[name][r] / times["sequential"][r] for r in range(rounds)]
        out["modes"][name] = {"seconds": spread(list(times[name].values())), "ratio": {**spread(per), "per_round": per}}
    return out


def summary(results: dict) -> str:
    """A Markdown table of the modes."""
    lines = [
        f"{results['tiles']} tiles, {results['threads']} threads, {results['rounds']} rounds",
        "",
        "| mode | seconds, median (min-max) | / sequential, median (min-max) |",
        "|---|---|---|",
    ]
    for name, m in results["modes"].items():
        s, q = m["seconds"], m["ratio"]
        lines.append(
            f"| {name} | {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}) "
            f"| {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    """``python -m edge.benchmarks.overlap``."""
    ap = argparse.ArgumentParser(prog="python -m edge.benchmarks.overlap", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--tiles", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vision-threads", type=int, default=1)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.tiles < 1 or args.rounds < 1:
            raise InputError("--tiles and --rounds must be at least 1")
        image = args.image
        if image is None:
            from edge.apps.defaults import cache_dir

            from .inputs import standard_images

            image = standard_images((args.work or cache_dir() / "bench") / "images", ((512, 512),))[0]
        results = measure(args.bundle, image, args.tiles, args.rounds, args.threads, args.vision_threads, sys.stderr)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
