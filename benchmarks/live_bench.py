"""Live-loop benchmark: vision work and frame-to-first-token latency on a synthetic desk video,
re-encoding every frame against tile-level reuse (exact and under ``--reuse-threshold``).

Usage (the figures of docs/live.md; a few minutes on 2 cores)::

    python -m edge.benchmarks.live_bench --work /tmp/edge-bench [--threads 2] [--seconds 8]

The model is the full-size SmolVLM-256M shape (``edge.export.builders.full_size``: random
SigLIP-B/16-512 tower, real SmolLM2-135M text), so vision costs what it costs on the real model.
The video: a still desk (smooth shading, papers, a keyboard), a hand-sized patch moving over
it, Gaussian sensor noise and MJPG compression, 1024x768 at 10 frames/s. Every run answers the
same frames (one a second, lockstep) with the same question, greedy.

Drift of threshold reuse: per reused tile, the cosine between the embedding rows it reused and
the rows the vision graph gives for its own pixels; and how many greedy answers differ from the
answers on freshly encoded frames. The first answered frame encodes everything in every run;
the per-frame figures are over the frames after it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

PROMPT = "What is on the desk?"
W, H, FPS = 1024, 768, 10


def desk_video(path: Path, seconds: float, seed: int = 0) -> Path:
    """Write the synthetic desk video (MJPG .avi) and return its path."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    desk = np.stack([120 + 40 * xx / W, 90 + 30 * yy / H, 60 + 20 * (xx + yy) / (W + H)], -1)
    for x0, y0, x1, y1, c in [(80, 90, 380, 480, (235, 235, 225)), (620, 520, 980, 700, (40, 40, 45)),
                              (450, 120, 600, 260, (200, 60, 50))]:  # fmt: skip
        desk[y0:y1, x0:x1] = c
    hand = np.zeros((120, 160), bool)  # an ellipse of ~hand size
    hy, hx = np.mgrid[0:120, 0:160]
    hand[((hx - 80) / 80) ** 2 + ((hy - 60) / 60) ** 2 <= 1] = True
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    for i in range(int(seconds * FPS)):
        img = desk.copy()
        x = int(600 + 120 * np.sin(i / 15.0))  # the hand moves over the right half of the desk
        y = int(250 + 60 * np.cos(i / 11.0))
        img[y : y + 120, x : x + 160][hand] = (210, 160, 130)
        img = np.clip(img + rng.normal(0, 2.5, img.shape), 0, 255).astype(np.uint8)
        out.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out.release()
    return path


def _frames(video: Path, times: list[float]) -> list[np.ndarray]:
    from edge.runtime.vision.video_io import VideoReader

    want = {int(round(t * FPS)): t for t in times}
    return [f.rgb for f in VideoReader(str(video)) if f.index in want]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def fresh_run(pipe, frames: list[np.ndarray], options) -> list[dict]:
    """Every frame from scratch (caches and KV emptied): the cost without reuse."""
    out = []
    for rgb in frames:
        pipe.reset()
        t0 = time.perf_counter()
        first = None
        for ev in pipe.stream(PROMPT, [Image.fromarray(rgb)], options):
            if first is None:
                first = time.perf_counter()
        t = ev.timings
        blocks = pipe.images.encode([Image.fromarray(rgb)], options.budget, type(t)())[0].blocks  # a cache hit
        out.append({"text": ev.text, "tiles_encoded": t.tiles_encoded, "tiles": t.tiles_encoded + t.tiles_reused,
                    "vision_ms": t.preprocess_ms + t.image_encode_ms, "latency_ms": (first - t0) * 1000,
                    "blocks": [np.array(b) for b in blocks]})  # fmt: skip
    return out


def live_run(pipe, video: Path, options, threshold: float, every: float, fresh: list[dict]) -> tuple[list, list]:
    """The live loop (lockstep: the same frames answered as in :func:`fresh_run`), and the cosine
    of each approximately reused tile's rows against the rows of its own pixels (``fresh``)."""
    import edge
    from edge.runtime.live_parts import LiveAnswer, LiveOptions
    from edge.runtime.text.sequence import MediaBlock

    pipe.reset()
    opts = LiveOptions(prompt=PROMPT, every_s=every, reuse_threshold=threshold, generate=options)
    rows, cos = [], []
    for e in edge.live(pipe, str(video), opts, speed=0):
        if not isinstance(e, LiveAnswer):
            continue
        rows.append({"t": e.t, "text": e.text, "tiles_encoded": e.tiles_encoded, "tiles": e.tiles,
                     "vision_ms": e.vision_ms, "latency_ms": e.latency_ms, "reused_tokens": e.reused_tokens,
                     "prompt_tokens": e.prompt_tokens})  # fmt: skip
        # the blocks this answer used are what the KV cache now holds (benchmark-only peek)
        used = [x.embeds for x in pipe._seq if isinstance(x, MediaBlock)]
        ref = fresh[len(rows) - 1]["blocks"]
        if threshold > 0 and len(used) == len(ref):
            cos += [c for c in (_cos(u, r) for u, r in zip(used, ref)) if c < 1.0 - 1e-7]
    return rows, cos


def _stats(rows: list[dict], key: str) -> tuple[float, float]:
    v = [r[key] for r in rows[1:]] or [0.0]  # the first frame encodes everything in every run
    return float(np.percentile(v, 50)), float(np.percentile(v, 95))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edge-bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--max-tiles", type=int, default=5, help="0 = the full plan (4x3 + 1 tiles)")
    ap.add_argument("--thresholds", default="0,4,8")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    import edge
    from edge.apps.terminal_progress import TerminalProgress
    from edge.benchmarks.suite import prepare_bundle
    from edge.options import Budget, GenerateOptions

    args.work.mkdir(parents=True, exist_ok=True)
    _, bundle = prepare_bundle("smolvlm-256m", args.work, "f16", args.threads, TerminalProgress())
    video = desk_video(args.work / "desk.avi", args.seconds)
    times = [i * args.every for i in range(int(args.seconds / args.every))]
    frames = _frames(video, times)
    options = GenerateOptions(max_tokens=12, budget=Budget(max_tiles=args.max_tiles or None))
    pipe = edge.load(bundle, threads=args.threads)
    fresh = fresh_run(pipe, frames, options)
    print(f"re-encoded {len(frames)} frames", flush=True)
    results = {"frames": len(frames), "tiles_per_frame": fresh[0]["tiles"], "runs": {}}
    rows = [("re-encode every frame", fresh, None)]
    for th in [float(x) for x in args.thresholds.split(",")]:
        run, cos = live_run(pipe, video, options, th, args.every, fresh)
        changed = sum(a["text"] != b["text"] for a, b in zip(run, fresh))
        rows.append((f"live, reuse threshold {th:g}", run, {"cos": cos, "changed": changed}))
        print(f"live run at threshold {th:g}: {[r['tiles_encoded'] for r in run]} tiles encoded", flush=True)
    print(f"{len(frames)} answered frames, {fresh[0]['tiles']} tiles each; p50/p95 over frames 2..{len(frames)}")
    print("| run | tiles encoded / frame | vision ms / frame | frame -> first token ms p50 / p95 | "
          "reused-tile cosine min / mean | answers changed |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, run, extra in rows:
        enc = float(np.mean([r["tiles_encoded"] for r in run[1:]]))
        vis50, _ = _stats(run, "vision_ms")
        lat50, lat95 = _stats(run, "latency_ms")
        cos = (extra or {}).get("cos") or []
        cos_s = f"{min(cos):.4f} / {np.mean(cos):.4f} ({len(cos)} tiles)" if cos else "1 (exact)"
        changed = "-" if extra is None else f"{extra['changed']} of {len(run)}"
        print(f"| {name} | {enc:.1f} | {vis50:.0f} | {lat50:.0f} / {lat95:.0f} | {cos_s} | {changed} |")
        results["runs"][name] = {"tiles_encoded_mean": enc, "vision_ms_p50": vis50, "latency_ms_p50": lat50,
                                 "latency_ms_p95": lat95, "cos_min": min(cos) if cos else 1.0,
                                 "cos_mean": float(np.mean(cos)) if cos else 1.0,
                                 "answers_changed": None if extra is None else extra["changed"]}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    pipe.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
