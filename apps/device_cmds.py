"""`edge doctor` (versions, devices, where a bundle would run) and `edge compile` (NPU contexts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from edge import __version__
from edge.apps.cli_options import DEVICE, FALLBACK, THREADS, VERBOSE
from edge.apps.terminal_progress import TerminalProgress


def device_report() -> dict:
    """What ``edge doctor`` says about devices: onnxruntime's providers and the hardware each
    runs on (plugin providers registered first), installed plugin packages, what to install
    for the providers that are missing, and llama.cpp's backend devices."""
    from edge.runtime import llama_backend as llm
    from edge.runtime import onnx_backend as onnx
    from edge.runtime.devices import GPU_EPS, INSTALL, NPU_EPS

    hardware = onnx.ep_devices()
    providers = onnx.available_providers()
    gpus = llm.gpu_devices()
    return {
        "onnxruntime_devices": [d.as_dict() for d in hardware],
        "onnxruntime_plugins": onnx.installed_plugins(),
        "gpu_providers": [p for p in GPU_EPS if p in providers],
        "npu_providers": [p for p in NPU_EPS if p in providers],
        "llama_cpp_devices": llm.backend_devices(),
        "llama_cpp_gpu_offload": bool(gpus),
        "install": {
            "gpu": INSTALL["gpu"] if not any(p in providers for p in GPU_EPS) else None,
            "npu": INSTALL["npu"] if not any(p in providers for p in NPU_EPS) else None,
            "llm_gpu": INSTALL["llm-gpu"] if not gpus else None,
        },
    }


def bundle_plan(bundle: Path, devices: List[str], fallback: str) -> dict:
    """Where each component of ``bundle`` would run with ``--device`` ``devices`` (default:
    auto), by the rule of :mod:`edge.runtime.devices`; nothing is loaded."""
    from edge.apps.backends import parse_devices
    from edge.bundle import load_manifest
    from edge.errors import InputError
    from edge.runtime import llama_backend as llm
    from edge.runtime import onnx_backend as onnx
    from edge.runtime.devices import llm_layers, onnx_choice

    root, m = load_manifest(bundle)
    where = {c: "auto" for c in ("vision", "audio", "llm")}
    where.update(parse_devices(devices))
    plan: dict = {}
    hardware, available = onnx.ep_devices(), onnx.available_providers()
    graphs = [("vision", m.vision.file)] if m.vision else []
    graphs += [("audio", m.audio.encoder)] if m.audio else []
    for comp, file in graphs:
        try:
            c = onnx_choice(where[comp], onnx.graph_dtype(root / file), available, hardware, fallback)
            plan[comp] = {"graph": file, "device": c.device, "providers": list(c.providers), "reason": c.reason}
            contexts = [e["file"] for e in onnx.compiled_contexts(root / file) if e.get("provider") == c.providers[0]]
            if contexts:
                plan[comp]["context"] = contexts[0]
        except InputError as exc:
            plan[comp] = {"graph": file, "device": where[comp], "error": str(exc)}
    if m.llm is not None:
        gpus = [d["name"] for d in llm.gpu_devices()]
        try:
            layers, why = llm_layers(where["llm"], None, gpus, 1 << 30)
            plan["llm"] = {"device": "gpu" if layers else "cpu", "gpu_layers": "all" if layers else 0, "reason": why}
        except InputError as exc:
            plan["llm"] = {"device": where["llm"], "error": str(exc)}
    return {"bundle": str(root), **plan}


def doctor(
    bundle: Optional[Path] = typer.Argument(None, help="A bundle: also say where each of its components would run."),
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Versions, onnxruntime providers and devices (NPU, GPU), llama.cpp's build, CPU features and
    GPU devices, threads, where bundles are cached, and (with BUNDLE) where each component of it
    would run under --device (default: auto; docs/devices.md).

    Example: edge doctor llava-npu.bundle --device npu --json
    """
    import importlib.metadata
    import platform

    from edge.apps.defaults import cache_dir, default_bundle_path
    from edge.manifest import MANIFEST_NAME
    from edge.runtime import cpu
    from edge.runtime import llama_backend as llm
    from edge.runtime import onnx_backend as vision

    default = default_bundle_path()
    info = {
        "edge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "physical_cores": cpu.physical_cores(),
        "threads_auto": {"llm": cpu.llm_threads(), "vision_audio": cpu.onnx_threads()},
        "onnxruntime": vision.backend_version(),
        "onnxruntime_providers": vision.available_providers(),
        "llama_cpp_python": llm.backend_version(),
        "llama_cpp_system_info": llm.system_info(),
        "cache_dir": str(cache_dir()),
        "default_bundle": str(default),
        "default_bundle_exists": (default / MANIFEST_NAME).is_file(),
    }
    for dist in ("torch", "transformers"):  # the export extras; their versions without importing them (seconds)
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    info["devices"] = device_report()
    # the provider list again: registering a plugin provider (above) adds it
    info["onnxruntime_providers"] = vision.available_providers()
    if bundle is not None:
        info["placement"] = bundle_plan(bundle, device, fallback)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        if k not in ("devices", "placement"):
            print(f"{k}: {v}")
    d = info["devices"]
    for dev in d["onnxruntime_devices"]:
        note = " (emulated NPU: functional, not device speed)" if dev["emulated"] else ""
        print(f"device: onnxruntime {dev['provider']} on {dev['kind']} ({dev['vendor']}){note}")
    for dev in d["llama_cpp_devices"]:
        print(f"device: llama.cpp {dev['name']} {dev['type']} ({dev['description']})")
    for what, hint in d["install"].items():
        if hint:
            print(f"missing: {what}: {hint}")
    for comp, where in (info.get("placement") or {}).items():
        if comp == "bundle":
            continue
        text = where.get("error") or f"{where['device']} ({', '.join(where.get('providers', []))}) {where['reason']}"
        print(f"placement: {comp}: {text}".rstrip())


def compile(
    bundle: Path = typer.Argument(..., help="A static QDQ bundle (edge quantize --recipe npu-int8)."),
    out: Path = typer.Option(..., "--out", "-o", help="The compiled bundle directory (written atomically)."),
    target: str = typer.Option("qnn-htp", "--target", help="What to compile for: qnn-htp (Qualcomm Hexagon NPU)."),
    soc: Optional[str] = typer.Option(
        None, "--soc", help="The Qualcomm SoC model number the context is made for (QNN's soc_model, e.g. 60)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an existing bundle."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the compiled context's record as JSON."),
    verbose: bool = VERBOSE,
) -> None:
    """Compile a bundle's static QDQ vision graph ahead of time into an NPU context (onnxruntime
    EPContext model), written into a new bundle: a phone loads it instead of compiling at start-up.

    Example: edge compile llava-npu.bundle -o llava-htp.bundle --target qnn-htp --soc 60
    """
    from edge.apps.backends import setup_logging
    from edge.quantize.npu import compile_bundle

    setup_logging(verbose)
    m = compile_bundle(bundle, out, target, soc, force, threads, TerminalProgress(quiet=as_json))
    entry = m.provenance["compiled"][-1]
    if as_json:
        print(json.dumps(entry, indent=2))
        return
    ms = entry["session_ms"]
    print(f"wrote {out} ({entry['file']} for {target}{', SoC ' + entry['soc_model'] if entry['soc_model'] else ''})")
    print(
        f"session creation: {ms['context']:.1f} ms with the context, {ms['qdq_graph']:.1f} ms compiling the QDQ graph"
    )
