"""The benchmark's inputs and the record of its conditions: standard images, date, CPU, load."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
from pathlib import Path

STANDARD_SIZES = ((512, 512), (1024, 768), (2048, 1536))


def standard_images(folder: Path, sizes=STANDARD_SIZES) -> list[Path]:
    """Seeded photo-like JPEGs (smooth gradients, shapes and noise) of the standard sizes."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for w, h in sizes:
        path = folder / f"photo-{w}x{h}.jpg"
        if not path.is_file():
            rng = np.random.default_rng(w * 7 + h)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 200
            arr = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
            draw = ImageDraw.Draw(img)
            for _ in range(12):
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                draw.ellipse([x0, y0, x0 + w // 6, y0 + h // 6], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            img.save(path, quality=90)
        out.append(path)
    return out


def conditions(o) -> dict:
    """Date, CPU, threads and load: the conditions the figures of ``o`` (BenchOptions) were taken under."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_detail": cpu_detail(),
        "cores": os.cpu_count(),
        "threads": o.threads,
        "quick": o.quick,
        "rounds": o.rounds,
        "llm_rounds": getattr(o, "llm_rounds", None),
        "phases": list(getattr(o, "phases", ())),
        "cold_rounds": o.cold_rounds,
        "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(o).items()
            if k in ("n_prompt", "n_gen", "prompt", "budget_tokens", "peers")
        },
    }


# the instruction sets that decide which llama.cpp / onnxruntime kernels run (and which GGUF type is fastest)
_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "neon", "asimddp", "sve", "i8mm")


def cpu_detail() -> str:
    """Vendor, family/model and the SIMD features that matter here, as ``lscpu`` / /proc/cpuinfo give them
    (a virtual machine's "model name" is often just "AMD EPYC"); "" where it cannot be read."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    fields: dict = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    parts = [fields.get("vendor_id", ""), f"family {fields['cpu family']} model {fields.get('model', '?')}"
             if "cpu family" in fields else ""]  # fmt: skip
    have = [f for f in _FEATURES if f in flags]
    return ", ".join(p for p in parts if p) + (f"; {' '.join(have)}" if have else "")
