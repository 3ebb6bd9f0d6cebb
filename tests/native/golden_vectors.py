"""Golden vectors of the Python image preprocessing, for the native library's checker.

:func:`write_golden` runs the Python runtime's schemes (``edge.runtime.vision.schemes.SCHEMES``, the
UHD planner, the Pillow / torch resamplers) on seeded random images of many sizes and writes what they
give into a directory: ``index.json`` lists the cases; raw RGB inputs (``*.rgb``), pixel values and
layout blocks (raw little-endian ``*.bin``) sit next to it. ``edge-vision-golden DIR`` (built from
edge/native/tests/vision_golden.cpp) recomputes every case from the same inputs and compares plans and
layouts exactly and pixel values bit for bit.

Parameters come from the tiny builders (export/builders/tiny*.py: their processor settings) and from
the real families' processor defaults (export/builders/full_size.py, edge/preprocess*.py defaults).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
from golden_cases import BAD_BUDGETS, BUDGETS, PARAMS, SIZES  # tests/native (on sys.path: run or imported from there)
from PIL import Image

from edge.errors import BundleError, EdgeError, ImageError, InputError
from edge.manifest import TensorSpec, VisionSpec
from edge.options import Budget
from edge.preprocess import UhdSlicing
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.resize_aa import resize_uint8
from edge.runtime.vision.schemes import SCHEMES
from edge.runtime.vision.slice_common import plan_to_dict
from edge.runtime.vision.slice_qwen2vl import graph_feeds
from edge.runtime.vision.slice_uhd import apply_uhd, plan_uhd, uhd_layout

DIM = 4  # width of the fake embedding rows used for layouts
RAW_LIMIT = 1 << 19  # float32 arrays up to this many values are stored whole; larger ones as a digest


def _image(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if seed % 2:  # smooth content (gradients) as well as noise
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1)
        return np.clip(base + rng.integers(-8, 9, (h, w, 3)), 0, 255).astype(np.uint8)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[dict] = []
        self.images: dict[tuple, str] = {}
        self.blob = open(root / "arrays.bin", "wb")  # every array, back to back (8-byte aligned)
        self.offset = 0

    def array(self, name: str, a: np.ndarray) -> dict:
        """Append ``a`` to ``arrays.bin``; ``name`` only labels it."""
        a = np.ascontiguousarray(a)
        dtype = {np.float32: "f32", np.int64: "i64", np.uint8: "u8"}[a.dtype.type]
        data = a.tobytes()
        data += b"\0" * (-len(data) % 8)
        self.blob.write(data)
        out = {"name": name, "offset": self.offset, "dtype": dtype, "shape": list(a.shape)}
        self.offset += len(data)
        return out

    def pixels(self, name: str, a: np.ndarray) -> dict:
        """Pixel values: whole when small, else :func:`digest` plus every 997th value (for diagnostics)."""
        a = np.ascontiguousarray(a, np.float32)
        if a.size <= RAW_LIMIT:
            return self.array(name, a)
        out = self.array(name, a.reshape(-1)[::997])
        return {**out, "shape": list(a.shape), "sample_step": 997, "digest": str(digest(a))}

    def image(self, w: int, h: int, seed: int) -> tuple[np.ndarray, str]:
        arr = _image(w, h, seed)
        key = (w, h, seed)
        if key not in self.images:
            self.images[key] = f"img_{w}x{h}_{seed}.rgb"
            arr.tofile(self.root / self.images[key])
        return arr, self.images[key]


def digest(a: np.ndarray) -> int:
    """A position-weighted sum of the float32 bit patterns, modulo 2**64 (odd weights: any change of one
    value changes it); ``edge-vision-golden`` computes the same."""
    bits = np.ascontiguousarray(a, np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    i = np.arange(bits.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        weights = (i * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)) | np.uint64(1)
        return int(np.sum(bits * weights, dtype=np.uint64))


def _error(exc: EdgeError) -> dict:
    kind = "image" if isinstance(exc, ImageError) else "input" if isinstance(exc, InputError) else "bundle"
    if isinstance(exc, BundleError):
        kind = "bundle"
    return {"kind": kind, "message": str(exc)}


def _spec(params: Any, tokens: int, extras: dict) -> VisionSpec:
    shape = [-1, 3, -1, -1]
    return VisionSpec(
        file="vision.onnx",
        dtype="f32",
        input=TensorSpec("pixel_values", "float32", shape),
        output=TensorSpec("embeds", "float32", [-1, max(tokens, 1), DIM]),
        tokens_per_image=max(tokens, 1),
        embed_dim=DIM,
        preprocess=params,
        extras=extras,
    )


def fake_embeds(runs: int, rows: int) -> np.ndarray:
    """The embeddings the layout cases feed: a fixed function of the flat index (the checker makes the same)."""
    k = np.arange(runs * rows * DIM, dtype=np.int64)
    return (((k * 7919) % 1000).astype(np.float32) / np.float32(997)).reshape(runs, rows, DIM)


def _scheme_case(
    w: _Writer, name: str, params: Any, tokens: int, size: tuple, budget: dict, seed: int, pixels: bool = True
) -> None:
    tag = f"{name}_{size[0]}x{size[1]}_{seed}_{len(w.cases)}"
    arr, img = w.image(size[0], size[1], seed)
    extras = {}
    if params.scheme == "anyres":
        extras = {"image_newline": "newline.npy"}
    case: dict = {"id": tag, "kind": "scheme", "image": img, "width": size[0], "height": size[1], "budget": budget}
    spec = _spec(params, tokens, extras)
    case["vision"] = json.loads(json.dumps(dataclasses.asdict(spec)))
    try:
        scheme = SCHEMES[params.scheme](spec, w.root)
        plan = scheme.plan(load_image(arr), Budget(**budget))
    except EdgeError as exc:
        case["error"] = _error(exc)
        w.cases.append(case)
        return
    px = plan.pixel_values
    case["info"] = json.loads(json.dumps(plan.info))
    case["shape"] = list(px.shape)
    if pixels:  # (real-size plans under a budget: plan and layout only, to keep the vectors small)
        case["pixels"] = w.pixels(f"{tag}.px.bin", px)
    if params.scheme == "qwen2vl":
        feeds, rows = graph_feeds(params, px[0], "pixel_values")
        # the pixel feed is pixel_values[0] as [rows, width]: its shape only (the values are compared above)
        case["feeds"] = {k: w.array(f"{tag}.feed_{k}", v) for k, v in feeds.items() if k != "pixel_values"}
        case["run_shape"] = list(feeds["pixel_values"].shape)
        runs = px.shape[0]
    else:
        runs, rows = px.shape[0], tokens
    embeds = fake_embeds(runs, rows)
    layout, blocks = scheme.layout(embeds, plan)
    pieces = []
    for p in layout:
        if isinstance(p, str):
            pieces.append({"text": p})
        else:
            b = np.ascontiguousarray(blocks[p], np.float32)
            pieces.append({"block": p, **w.array(f"{tag}.block{p}.bin", b)})
            if params.scheme == "qwen2vl":
                pieces[-1]["positions"] = w.array(f"{tag}.pos{p}.bin", scheme.positions(plan.info, p).astype(np.int64))
    case["layout"] = pieces
    case["runs"], case["rows_per_run"] = int(runs), int(rows)
    w.cases.append(case)


def _uhd_case(
    w: _Writer, name: str, params: UhdSlicing, size: tuple, budget: dict, seed: int, pixels: bool = True
) -> None:
    tag = f"{name}_{size[0]}x{size[1]}_{seed}_{len(w.cases)}"
    case: dict = {
        "id": tag,
        "kind": "uhd",
        "params": params.to_dict(),
        "width": size[0],
        "height": size[1],
        "budget": budget,
    }
    try:
        Budget(**budget)
        plan = plan_uhd(size[0], size[1], params, **budget)
    except EdgeError as exc:
        case["error"] = _error(exc)
        w.cases.append(case)
        return
    case["plan"] = plan_to_dict(plan)
    layout = uhd_layout(plan, params, image_index=seed % 3)
    case["image_index"] = seed % 3
    case["layout"] = [{"text": p} if isinstance(p, str) else {"block": p} for p in layout]
    if pixels:
        arr, img = w.image(size[0], size[1], seed)
        frames = apply_uhd(Image.fromarray(arr, "RGB"), plan, params)
        case["image"] = img
        case["frames"] = [w.pixels(f"{tag}.f{i}.bin", f) for i, f in enumerate(frames)]
    w.cases.append(case)


def _resize_cases(w: _Writer) -> None:
    """Pillow's resize on every filter and both pass orders, and torch's antialiased resize."""
    sizes = [
        ((7, 5), (3, 2)),
        ((5, 7), (13, 11)),
        ((40, 30), (39, 9)),
        ((30, 40), (12, 3)),
        ((9, 200), (9, 20)),
        ((64, 48), (64, 47)),
        ((3, 3), (300, 2)),
        ((101, 67), (33, 150)),
    ]
    for i, ((sw, sh), (dw, dh)) in enumerate(sizes):
        arr, img = w.image(sw, sh, 100 + i)
        for f in ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"):
            out = np.asarray(
                Image.fromarray(arr, "RGB").resize((dw, dh), resample=getattr(Image.Resampling, f.upper()))
            )
            w.cases.append(
                {
                    "id": f"pil_{f}_{i}",
                    "kind": "resize",
                    "engine": "pil",
                    "filter": f,
                    "image": img,
                    "width": sw,
                    "height": sh,
                    "out": [dw, dh],
                    "expect": w.array(f"pil_{f}_{i}.bin", out),
                }
            )
        for f in ("bilinear", "bicubic"):
            out = resize_uint8(arr, (dw, dh), f)
            w.cases.append(
                {
                    "id": f"torch_{f}_{i}",
                    "kind": "resize",
                    "engine": "torch",
                    "filter": f,
                    "image": img,
                    "width": sw,
                    "height": sh,
                    "out": [dw, dh],
                    "expect": w.array(f"torch_{f}_{i}.bin", out),
                }
            )


def _image_errors(w: _Writer) -> None:
    """What the Python runtime says about an RGB array without pixels or of an enormous size."""
    for width, height in ((0, 0), (0, 5), (9000, 8000)):
        try:
            load_image(np.zeros((height, width, 3), np.uint8))
        except EdgeError as exc:
            w.cases.append(
                {
                    "id": f"image_{width}x{height}",
                    "kind": "image_error",
                    "width": width,
                    "height": height,
                    "error": _error(exc),
                }
            )


def write_golden(root: Path, *, newline_seed: int = 5) -> dict:
    """Write every case into ``root`` (created); returns the index that ``index.json`` holds."""
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root)
    np.save(root / "newline.npy", np.random.default_rng(newline_seed).standard_normal(DIM).astype(np.float32))
    for n, (name, params, tokens, kind) in enumerate(PARAMS):
        for i, size in enumerate(SIZES[kind]):
            for j, budget in enumerate(BUDGETS):
                seed = i % 4  # images shared between parameter sets (written once)
                if isinstance(params, UhdSlicing):
                    _uhd_case(w, name, params, size, budget, seed, pixels=not j)
                else:
                    _scheme_case(w, name, params, tokens, size, budget, seed, pixels=kind != "real" or not j)
        for k, budget in enumerate(BAD_BUDGETS):
            if isinstance(params, UhdSlicing):
                _uhd_case(w, name, params, (100, 60), budget, 0, pixels=False)
            else:
                _scheme_case(w, name, params, tokens, (100, 60), budget, 0)
    _resize_cases(w)
    _image_errors(w)
    w.blob.close()
    index = {"dim": DIM, "cases": w.cases}
    (root / "index.json").write_text(json.dumps(index))
    return index


def summary(index: dict) -> dict[str, int]:
    """Cases per kind/scheme, for reports."""
    out: dict[str, int] = {}
    for c in index["cases"]:
        key = c["kind"] if c["kind"] != "scheme" else c["vision"]["preprocess"]["scheme"]
        key += " (error)" if "error" in c else ""
        out[key] = out.get(key, 0) + 1
    return out


def main(argv: Optional[list] = None) -> None:
    """``python tests/native/golden_vectors.py DIR``: write the vectors and print a summary."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    index = write_golden(Path(args[0]))
    print(json.dumps(summary(index), indent=1))


if __name__ == "__main__":
    main()
