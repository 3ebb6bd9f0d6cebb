"""The export step that writes the mmproj GGUF and measures it against transformers.

Parity: llama.cpp's own multimodal path (:class:`edge.runtime.mtmd_backend.MtmdSession`: libmtmd's
preprocessing, clip on ggml) encodes a seeded probe image chosen so that libmtmd's pixels equal the HF
image processor's (``ProjectorPlan.probe``); transformers encodes the HF processor's tiles of the same
image with the family's reference (``VisionPart.reference``, i.e. ``get_image_features``). The tiles
whose pixels agree (``ProjectorPlan.agree``) are found in libmtmd's rows and compared: max |diff|
and the least cosine over rows go into ``provenance.parity`` as ``mmproj_*``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ExportError
from edge.export.mmproj import MMPROJ_FILE, NoProjector, ProjectorPlan, write_mmproj
from edge.manifest import VisionSpec

# the least row cosine at which libmtmd's rows count as transformers' (mmproj_within_tolerance)
COSINE_FLOOR = {"f32": 0.99, "f16": 0.97}


def export_projector(
    tmp: Path, llm_file: str, source_dir: Path, spec, model, config, vision: VisionSpec, options, progress
) -> tuple[VisionSpec, dict[str, Any]]:
    """Write ``mmproj.gguf`` for a family whose projector llama.cpp knows and measure it; else record why not."""
    part = spec.vision
    if not options.mmproj:
        return dataclasses.replace(vision, projector_gguf_note="not written (edge export --no-mmproj)"), {}
    if part.projector is None:
        note = f"llama.cpp's clip has no projector for the {spec.name} family"
        return dataclasses.replace(vision, projector_gguf_note=note), {}
    try:
        plan = part.projector(model, config, source_dir, vision.preprocess)
    except NoProjector as exc:
        return dataclasses.replace(vision, projector_gguf_note=f"not written: {exc}"), {}
    progress.stage(f"vision tower + projector -> llama.cpp mmproj GGUF ({plan.projector_type}, {options.dtype})")
    counts = write_mmproj(tmp / MMPROJ_FILE, plan, options.dtype, options.name or spec.name)
    vision = dataclasses.replace(
        vision,
        projector_gguf=MMPROJ_FILE,
        projector_gguf_dtype=options.dtype,
        projector_gguf_type=plan.projector_type,
        projector_gguf_note=plan.note,
    )
    progress.stage("checking the mmproj GGUF on llama.cpp's multimodal library against transformers")
    figures = projector_parity(tmp / llm_file, tmp / MMPROJ_FILE, source_dir, part, model, plan, options)
    figures["mmproj_tensors_f16"] = counts["f16"]
    figures["mmproj_tensors_f32"] = counts["f32"]
    return vision, figures


def probe_image(plan: ProjectorPlan, seed: int = 0) -> np.ndarray:
    """The seeded RGB probe (height x width x 3, uint8) of ``plan``: smooth gradients plus noise."""
    w, h = plan.probe
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(w + h - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)


def reference_tiles(source_dir: Path, part, model, rgb: np.ndarray) -> list[np.ndarray]:
    """transformers on the HF image processor's tiles of ``rgb``: one [rows, D] array per tile."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(source_dir)
    out = proc(images=[Image.fromarray(rgb)], return_tensors="pt")
    with torch.no_grad():
        if "image_grid_thw" in out:  # Qwen2-VL style: patches of the whole image, merged rows out
            feats = model.model.visual(out["pixel_values"].float(), out["image_grid_thw"])
            return [feats.float().numpy()]
        px = out["pixel_values"].float()
        if px.ndim == 5:  # [images, tiles, 3, H, W]
            px = px[0]
        feats = part.reference(model, px)
    feats = feats.float().numpy()
    return [f for f in feats.reshape(-1, *feats.shape[-2:])]


def projector_parity(llm_gguf: Path, mmproj: Path, source_dir: Path, part, model, plan, options) -> dict[str, Any]:
    """Max |libmtmd - transformers| and the least row cosine over the tiles whose pixels agree."""
    from edge.runtime.mtmd_backend import MtmdSession

    rgb = probe_image(plan)
    ref = reference_tiles(source_dir, part, model, rgb)
    # encoding needs no KV room: a small context (the model itself is mmapped)
    with MtmdSession(llm_gguf, mmproj, threads=max(1, options.threads or 2), n_ctx=256) as mm:
        ours = np.concatenate(mm.encode(rgb), axis=0)
    chosen = {"all": ref, "first": ref[:1], "all_but_last": ref[:-1] if len(ref) > 1 else ref}[plan.agree]
    diff, cos_min, scale = 0.0, 1.0, 0.0
    for tile in chosen:
        d, c = _best_block(ours, tile, plan.rows)
        diff, cos_min = max(diff, d), min(cos_min, c)
        scale = max(scale, float(np.abs(tile).max()))
    figures = {
        "mmproj_max_abs_diff": diff,
        "mmproj_cosine_min": cos_min,
        "mmproj_ref_max_abs": scale,
        "mmproj_tiles_compared": len(chosen),
        "mmproj_rows_libmtmd": int(ours.shape[0]),
        "mmproj_row_alignment": plan.rows,
        "mmproj_probe_image": list(plan.probe),
    }
    # recorded, not enforced: where clip's graph itself departs from transformers (llama.cpp's own converter
    # output gives the same rows, e.g. Idefics3 on tiny towers), the figure says so and the bundle stays usable
    figures["mmproj_within_tolerance"] = bool(cos_min >= COSINE_FLOOR[options.dtype])
    return figures


def _best_block(ours: np.ndarray, tile: np.ndarray, rows: str = "same") -> tuple[float, float]:
    """The tile's rows as found in libmtmd's rows (the block, at a multiple of the tile's row count,
    that is closest): (max |diff|, least row cosine). libmtmd orders overview and grid tiles its own way.
    ``rows`` "cls_last": only clip's rows 0..n-2 are compared, with HF's rows 1..n-1."""
    n = tile.shape[0]
    if ours.shape[0] < n or ours.shape[1] != tile.shape[1]:
        raise ExportError(f"libmtmd gave {ours.shape} image rows; transformers gives {tile.shape} per tile")
    best = None
    for start in range(0, ours.shape[0] - n + 1, n):
        block = ours[start : start + n]
        ref = tile
        if rows == "cls_last":
            block, ref = block[:-1], tile[1:]
        d = float(np.abs(block - ref).max())
        if best is None or d < best[0]:
            cos = np.sum(block * ref, -1) / (np.linalg.norm(block, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
            best = (d, float(cos.min()))
    return best
