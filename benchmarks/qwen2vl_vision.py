"""The Qwen2.5-VL-3B vision tower + merger (random weights): ms per image, ours vs transformers.

No real Qwen2.5-VL ships offline, so the tower has random weights in the 3B shapes
(``Qwen2_5_VLVisionConfig(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420,
out_hidden_size=2048, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])``, 670 M
parameters); speed does not depend on the weight values. Each image size is preprocessed as the
runtime does it (``smart_resize`` with the processor's default limits: 448x448 -> 32x32 patches,
1024x768 -> 54x74), then timed one image per run, median of ``--runs``:

* ``onnx-f32`` / ``onnx-int8``: our graph (:mod:`edge.export.vision_qwen2vl`, one graph for every
  grid) on onnxruntime, f32 and dynamic int8 (``edge.quantize.onnx_quant.int8_dynamic``, what
  ``edge quantize -r q8`` runs), with the precomputed window/rotary inputs made per run;
* ``hf-eager``: transformers' ``model.visual(pixel_values, grid_thw)`` with eager attention.

``--depth`` shrinks the tower for a quick run (the full-attention blocks keep their 1-in-8
pattern); ``cosine_vs_hf`` is the min cosine of our rows against transformers'. libmtmd's
Qwen2.5-VL projector is not timed yet: the libmtmd peer (``peer_llamacpp``) needs the tower's projector
GGUF from llama.cpp's converter (``convert_hf_to_gguf.py --mmproj``), not wired for this family.

Usage: edge bench --qwen2vl-vision [--quick] [--repeats 3] [--threads 2] [--json], or
       python -m edge.benchmarks.qwen2vl_vision [--runs 3] [--threads 2] [--depth 32]
       [--sizes 448x448,1024x768] [--skip-int8] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(depth: int):
    """A random Qwen2.5-VL-3B-shaped vision tower (eager attention) and its preprocessing."""
    import torch
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from edge.preprocess import Qwen2VLPreprocess

    cfg = Qwen2_5_VLVisionConfig(
        depth=depth,
        hidden_size=1280,
        num_heads=16,
        intermediate_size=3420,
        out_hidden_size=2048,
        window_size=112,
        fullatt_block_indexes=[i for i in range(depth) if i % 8 == 7] or [depth - 1],
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    tower = Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg, attn_implementation="eager").eval()
    return tower, Qwen2VLPreprocess()


def median_s(fn, runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=32, help="vision blocks (32 = the real 3B tower)")
    ap.add_argument("--sizes", default="448x448,1024x768", help="comma list of WIDTHxHEIGHT")
    ap.add_argument("--skip-int8", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="keep the graphs here (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    report = measure(args.runs, args.threads, args.depth, sizes, not args.skip_int8, args.work)
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 0


def measure(runs: int, threads: int, depth: int, sizes, int8: bool = True, work=None, log=sys.stderr) -> dict:
    """Time the tower at each ``WIDTHxHEIGHT`` of ``sizes`` (``edge bench --qwen2vl-vision`` and
    :func:`main`): ``{"depth", "threads", "runs", "sizes": {size: figures}}``; graphs are kept in
    ``work`` (a temporary folder when None) and reused by later runs."""
    import torch
    from PIL import Image

    from edge.export.vision_qwen2vl import Qwen25VisionGraph, export_qwen2vl_onnx
    from edge.options import OnnxOptions
    from edge.quantize import onnx_quant
    from edge.runtime.onnx_backend import open_session
    from edge.runtime.vision.slice_qwen2vl import apply_qwen2vl, graph_feeds, plan_qwen2vl

    torch.set_num_threads(threads)
    tower, pp = build(depth)
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="qwen2vl_vision."))
    work.mkdir(parents=True, exist_ok=True)
    graphs = {"onnx-f32": work / f"qwen25vl-3b-d{depth}-f32.onnx"}
    if not graphs["onnx-f32"].exists():
        print(f"exporting the tower (depth {depth}) ...", file=log)
        export_qwen2vl_onnx(Qwen25VisionGraph(tower, pp), graphs["onnx-f32"], pp, (16, 16))
    if int8:
        graphs["onnx-int8"] = work / f"qwen25vl-3b-d{depth}-int8.onnx"
        if not graphs["onnx-int8"].exists():
            print("quantizing to int8 ...", file=log)
            onnx_quant.int8_dynamic(onnx_quant.load_f32(graphs["onnx-f32"]), graphs["onnx-int8"])
    sessions = {k: open_session(p, OnnxOptions(threads=threads)) for k, p in graphs.items()}
    rng = np.random.default_rng(0)
    results = {}
    for size in sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        plan = plan_qwen2vl(w, h, pp)
        group = apply_qwen2vl([img], plan, pp)[0]
        px = torch.from_numpy(group.reshape(-1, group.shape[-1]).copy())
        thw = torch.tensor([list(plan.grid)])
        with torch.no_grad():
            ref = tower(px, thw).numpy()
        entry = {"grid": list(plan.grid), "rows": plan.image_tokens}

        def hf_run():
            with torch.no_grad():
                tower(px, thw)

        entry["hf-eager_ms"] = median_s(hf_run, runs) * 1000
        for k, sess in sessions.items():

            def run(sess=sess):
                feeds, _ = graph_feeds(pp, group, "pixel_values")  # the per-image input work is timed too
                return sess.run(None, feeds)[0][0]

            out = run()
            cos = np.sum(out * ref, -1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
            entry[f"{k}_ms"] = median_s(run, runs) * 1000
            entry[f"{k}_cosine_vs_hf"] = float(cos.min())
            entry[f"{k}_speedup_vs_hf"] = entry["hf-eager_ms"] / entry[f"{k}_ms"]
        results[size] = entry
    return {"depth": depth, "threads": threads, "runs": runs, "sizes": results}


def summary(report: dict) -> str:
    """:func:`measure`'s figures as lines of text."""
    lines = [
        f"Qwen2.5-VL-3B vision tower, depth {report['depth']}, {report['threads']} threads, median of {report['runs']}"
    ]
    for size, e in report["sizes"].items():
        sides = ", ".join(f"{k[:-3]} {v:.0f} ms" for k, v in e.items() if k.endswith("_ms"))
        lines.append(f"  {size} (grid {e['grid']}, {e['rows']} rows): {sides}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
