"""Vision int8 (and int4 / static QDQ) on a full-size SigLIP-512 tower: fidelity and CPU speed.

No real vision tower ships offline, so the tower has random weights (transformers
``SiglipVisionConfig(image_size=512, patch_size=16, hidden_size=768, intermediate_size=3072,
num_hidden_layers=12, num_attention_heads=12)``, 86 M parameters, 1024 tokens per image):
cosine figures say how much the quantizer perturbs this architecture's computation, not
how a trained model's answers change; speed does not depend on the weight values.

The graph is exported like ``edge export`` does (TorchScript exporter, opset 17, dynamic
image axis), quantized with ``edge.quantize.onnx_quant`` (the code ``edge quantize`` runs),
fed the generated probe images through CLIP-style preprocessing at 512 (mean/std 0.5, as
SigLIP), and timed one image per run, f32 and quantized runs interleaved, median of
``--runs`` on ``--threads`` threads.

Usage: python -m edge.benchmarks.quant_vision [--runs 7] [--threads 2] [--methods int8,int4,qdq-int8,qdq-int8-a8] [--json]
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


def build_siglip(path: Path) -> None:
    """Export a random SigLIP-512 vision tower (last hidden state) to ONNX."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from edge.export.vision_onnx import export_onnx

    cfg = SiglipVisionConfig(
        image_size=512,
        patch_size=16,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
    )
    torch.manual_seed(0)
    tower = SiglipVisionModel(cfg).eval()

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower = tower

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.tower(pixel_values=pixel_values).last_hidden_state

    export_onnx(Tower(), path, torch.zeros(1, 3, 512, 512), "pixel_values", "image_embeds")


def pixels(count: int) -> list[np.ndarray]:
    from edge.manifest import ImagePreprocess
    from edge.quantize.probes import probe_images
    from edge.runtime.vision.clip import clip_pixel_values

    pp = ImagePreprocess(
        scheme="clip",
        image_size=512,
        shortest_edge=512,
        crop_height=512,
        crop_width=512,
        resample="bicubic",
        mean=[0.5] * 3,
        std=[0.5] * 3,
    )
    return [clip_pixel_values([img], pp) for img in probe_images(count)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=8, help="probe images for the cosine figures")
    ap.add_argument(
        "--methods", default="int8,int4", help="comma list of int8, int4, qdq-int8 (16-bit activations), qdq-int8-a8"
    )
    ap.add_argument("--work", type=Path, default=None, help="keep the graphs here (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from edge.options import OnnxOptions
    from edge.quantize import fidelity, onnx_quant
    from edge.runtime.onnx_backend import open_session

    work = args.work or Path(tempfile.mkdtemp(prefix="quant_vision."))
    work.mkdir(parents=True, exist_ok=True)
    f32 = work / "siglip512-f32.onnx"
    if not f32.exists():
        print("exporting the SigLIP-512 tower ...", file=sys.stderr)
        build_siglip(f32)
    xs = pixels(args.images)
    graphs = {"f32": f32}
    for method in [m for m in args.methods.split(",") if m]:
        dst = work / f"siglip512-{method}.onnx"
        t = time.perf_counter()
        model = onnx_quant.load_f32(f32)
        if method == "int8":
            onnx_quant.int8_dynamic(model, dst)
        elif method == "int4":
            onnx_quant.int4_weights(model, dst, 32)
        elif method in ("qdq-int8", "qdq-int8-a8"):
            acts = "uint8" if method.endswith("a8") else "uint16"
            onnx_quant.qdq_static(model, dst, "pixel_values", [-1, 3, 512, 512], xs, activations=acts)
        else:
            ap.error(f"unknown method {method}")
        print(f"quantized to {method} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        graphs[method] = dst

    sessions = {k: open_session(p, OnnxOptions(threads=args.threads)) for k, p in graphs.items()}
    outputs = {k: np.concatenate([s.run(None, {"pixel_values": x})[0] for x in xs]) for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    one = xs[0]
    for k, s in sessions.items():  # warm-up
        s.run(None, {"pixel_values": one})
    for _ in range(args.runs):  # interleaved, so load changes hit every graph alike
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"pixel_values": one})
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["f32"])
    results = {}
    for k in sessions:
        med = statistics.median(times[k])
        entry = {
            "bytes": graphs[k].stat().st_size,
            "size_ratio": graphs[k].stat().st_size / f32.stat().st_size,
            "median_s": med,
            "speedup_vs_f32": base / med,
        }
        if k != "f32":
            entry.update(fidelity.embedding_figures(outputs["f32"], outputs[k]))
        results[k] = entry
    info = {
        "tower": "SigLIP-512 (random weights), 12 layers, hidden 768, 1024 tokens/image",
        "threads": args.threads,
        "runs": args.runs,
        "results": results,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['tower']}; {args.threads} threads, median of {args.runs} runs, one image per run")
        print(
            f"{'graph':10s} {'MB':>8s} {'size':>6s} {'median s':>9s} {'speed':>6s} {'cos mean':>9s} {'cos min':>9s} {'img cos':>9s}"
        )
        for k, e in results.items():
            cos = (
                f"{e['cosine_mean']:9.5f} {e['cosine_min']:9.5f} {e['image_cosine_min']:9.5f}"
                if "cosine_mean" in e
                else f"{'-':>9s} {'-':>9s} {'-':>9s}"
            )
            print(
                f"{k:10s} {e['bytes'] / 1e6:8.1f} {e['size_ratio']:5.2f}x {e['median_s']:9.3f} "
                f"{e['speedup_vs_f32']:5.2f}x {cos}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
