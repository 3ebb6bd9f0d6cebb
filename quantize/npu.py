"""NPU checks and ahead-of-time compilation of a bundle's static QDQ vision graph.

- :func:`npu_record`: after ``edge quantize`` with an ``npu-*`` recipe, opens the new vision
  graph on the NPU execution provider with CPU fallback off (on x86-64 that is
  ``onnxruntime-qnn``'s HTP emulator: the NPU's operator support and numerics), and records in
  the manifest (``provenance.npu``) whether the NPU takes it whole, the cosine and max diff of
  its output against the f32 CPU graph and the CPU run of the same QDQ graph on the runtime's
  own tiles, and whether greedy answers match ``--device npu`` against ``--device cpu``.
- :func:`compile_bundle` (``edge compile``): writes a new bundle with the graph compiled into
  an EPContext model (a QNN context binary embedded in an ONNX file), recorded in
  ``provenance.compiled``; the runtime opens it instead of the QDQ graph when the provider
  matches (:func:`edge.runtime.onnx_backend.compiled_contexts`).
"""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge import __version__
from edge.bundle import check_output, load_manifest, write_bundle
from edge.errors import InputError
from edge.manifest import MANIFEST_NAME, Manifest
from edge.options import CPU, Budget, GenerateOptions, OnnxOptions, Provider, RuntimeOptions
from edge.progress import NullProgress

# the graph dtype an NPU target takes, and the greedy answer measured for agreement
NPU_DTYPE = "qdq-int8"
ANSWER_TOKENS = 16
PROMPT = "Describe the image."


def _provider(target: str, soc: Optional[str] = None) -> Provider:
    from edge.runtime.onnx_backend import TARGETS

    if target not in TARGETS:
        raise InputError(f"unknown compile target {target!r} (targets: {', '.join(TARGETS)})")
    if soc is not None and (not str(soc).isdigit()):
        raise InputError(f"--soc must be a Qualcomm SoC model number (e.g. 60 for Snapdragon 8 Gen 3), got {soc!r}")
    return Provider(TARGETS[target], {"soc_model": str(soc)} if soc is not None else {})


def npu_record(
    tmp: Path, root: Path, before: Manifest, after: Manifest, images: Sequence, budget: Budget, threads: int = 0
) -> dict[str, Any]:
    """``provenance.npu`` of a bundle just quantized into ``tmp`` from ``root`` (see the module
    docstring); ``{"checked": False, "why": ...}`` when the NPU provider is not installed."""
    from edge.quantize.fidelity import embedding_figures, pixel_values
    from edge.runtime.onnx_backend import backend_version, installed_plugins
    from edge.runtime.vision.encoder import VisionEncoder

    target = "qnn-htp"
    provider = _provider(target)
    record: dict[str, Any] = {"target": target, "provider": provider.name}
    if after.vision is None or after.vision.dtype != NPU_DTYPE:
        return {**record, "complete": False, "why": "the vision graph is not static QDQ"}
    if provider.name not in installed_plugins():
        return {**record, "checked": False, "why": "onnxruntime-qnn is not installed (pip install 'edge-mllm[npu]')"}
    npu = OnnxOptions(threads=threads, providers=(provider,), fallback="error")
    try:
        htp = VisionEncoder(tmp, after.vision, npu)
    except InputError as exc:
        return {**record, "checked": True, "complete": False, "why": str(exc)}
    checked_with = f"onnxruntime {backend_version()}, onnxruntime-qnn {installed_plugins()[provider.name]}"
    record.update(checked=True, complete=True, checked_with=checked_with, placement=htp.placement.as_dict())
    f32 = VisionEncoder(root, before.vision, OnnxOptions(threads=threads))
    qdq = VisionEncoder(tmp, after.vision, OnnxOptions(threads=threads))
    outs: dict[str, list] = {"f32": [], "qdq": [], "npu": []}
    tiles = []
    for x in pixel_values(list(images), after.vision, tmp, budget):
        for name, enc in (("f32", f32), ("qdq", qdq), ("npu", htp)):
            outs[name].append(enc(x))
        tiles.append(len(x))
    if tiles:
        got = {k: np.concatenate(v) for k, v in outs.items()}
        record["vs_f32_cpu"] = embedding_figures(got["f32"], got["npu"], tiles)
        record["vs_qdq_cpu"] = embedding_figures(got["qdq"], got["npu"], tiles)
    if after.llm is not None and images:
        record["greedy"] = _greedy_agreement(tmp, images[0], budget, threads)
    return record


def _greedy_agreement(bundle: Path, image, budget: Budget, threads: int) -> dict[str, Any]:
    """The greedy answer to :data:`PROMPT` with one image, vision on the NPU vs on the CPU."""
    from edge.runtime.pipeline import Pipeline

    answers = []
    for vision in (OnnxOptions(threads=threads, device="npu", fallback="error"), OnnxOptions(threads=threads)):
        runtime = dataclasses.replace(RuntimeOptions.simple(threads=threads), vision=vision)
        pipe = Pipeline(bundle, runtime)
        try:
            options = GenerateOptions(max_tokens=ANSWER_TOKENS, budget=budget)
            answers.append(list(pipe.generate(PROMPT, [image], options).tokens))
        finally:
            pipe.close()
    npu, cpu = answers
    matched = next((i for i, (a, b) in enumerate(zip(npu, cpu)) if a != b), min(len(npu), len(cpu)))
    return {
        "prompt": PROMPT,
        "image": "the first probe image (edge.quantize.probes.probe_images)",
        "tokens": len(cpu),
        "matched_prefix": matched,
        "identical": npu == cpu,
        "npu_tokens": npu,
        "cpu_tokens": cpu,
    }


def compile_bundle(
    src: Path, out: Path, target: str = "qnn-htp", soc: Optional[str] = None, force: bool = False,
    threads: int = 0, progress=NullProgress(),
) -> Manifest:  # fmt: skip
    """``edge compile``: a copy of the bundle ``src`` with its static QDQ vision graph compiled
    for ``target`` (``soc``: the Qualcomm SoC model the context is made for), written
    atomically to ``out``; session creation with and without the context is measured and
    recorded (``provenance.compiled``)."""
    from edge.runtime.onnx_backend import compile_context, open_session

    provider = _provider(target, soc)
    root, m = load_manifest(src)
    if m.vision is None or m.vision.dtype != NPU_DTYPE:
        got = "no vision graph" if m.vision is None else f"a {m.vision.dtype} vision graph"
        raise InputError(f"{root} has {got}; compile a static QDQ bundle (edge quantize --recipe npu-int8)")
    if any(e.get("graph") == m.vision.file for e in m.provenance.get("compiled") or []):
        raise InputError(f"{root} is already compiled; compile the bundle it was made from")
    out = check_output(out, force)
    name = f"{Path(m.vision.file).stem}.{target}.onnx"

    def populate(tmp: Path) -> Manifest:
        for rel in m.files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
        progress.stage(f"compiling {m.vision.file} for {target}" + (f" (SoC {soc})" if soc else ""))
        seconds = compile_context(tmp / m.vision.file, tmp / name, provider, threads)
        entry = {
            "graph": m.vision.file,
            "target": target,
            "provider": provider.name,
            "file": name,
            "soc_model": str(soc) if soc is not None else "",
            "tool": f"edge {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "compile_s": round(seconds, 3),
        }
        provenance = {**m.provenance, "compiled": [*(m.provenance.get("compiled") or []), entry]}
        (tmp / MANIFEST_NAME).write_text(dataclasses.replace(m, provenance=provenance).to_json(), encoding="utf-8")
        entry["session_ms"] = _session_times(tmp, m, provider, threads, open_session)
        return dataclasses.replace(m, name=f"{m.name}-{target}", files={}, provenance=provenance)

    return write_bundle(out, populate, overwrite=force)


def _session_times(tmp: Path, m: Manifest, provider: Provider, threads: int, open_session, runs: int = 3) -> dict:
    """Median session creation (ms) of the QDQ graph (compiled at start-up) and of the context."""
    qdq_dir = tmp / ".qdq-only"  # the graph alone, where no manifest names a context
    qdq_dir.mkdir()
    shutil.copy2(tmp / m.vision.file, qdq_dir / m.vision.file)
    options = OnnxOptions(threads=threads, providers=(provider, CPU), fallback="error")
    times: dict[str, list[float]] = {"qdq_graph": [], "context": []}
    try:
        for _ in range(runs):
            for key, path in (("qdq_graph", qdq_dir / m.vision.file), ("context", tmp / m.vision.file)):
                t0 = time.perf_counter()
                session = open_session(path, options)
                times[key].append((time.perf_counter() - t0) * 1000)
                if key == "context" and not session.placement.context:
                    raise InputError(f"the compiled context of {m.vision.file} was not used")
    finally:
        shutil.rmtree(qdq_dir, ignore_errors=True)
    return {k: round(statistics.median(v), 1) for k, v in times.items()}
