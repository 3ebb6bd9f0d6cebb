"""The command-line options several commands share, and the default-bundle fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edge.apps.terminal_progress import TerminalProgress

THREADS = typer.Option(
    0,
    "--threads",
    "-t",
    help=(
        "CPU threads for compute, 1 to 1024; 0 = auto: the LLM one per physical core less one, "
        "the vision and audio graphs one per physical core (docs/threads.md)."
    ),
)
MAX_IMAGE_TOKENS = typer.Option(
    None, "--max-image-tokens", help="Most LLM positions one image may take (a smaller tile grid is chosen to fit)."
)
MAX_TILES = typer.Option(None, "--max-tiles", help="Most tiles one image may be cut into, the overview image included.")
PROVIDER = typer.Option(
    [],
    "--provider",
    metavar="NAME[:K=V,...]",
    help=(
        "An onnxruntime execution provider for the vision/audio graphs, NAME[:key=value,...] (e.g. cuda:device_id=0); "
        "repeat in order of preference (default: cpu). A fallback is reported."
    ),
)
DEVICE = typer.Option(
    [],
    "--device",
    metavar="auto|cpu|gpu|npu|COMPONENT=DEVICE",
    help=(
        "Where the bundle runs (default: cpu): auto (the documented rule, docs/devices.md), cpu, gpu, or npu "
        "(the vision graph on the NPU; audio and LLM on the CPU); COMPONENT=DEVICE (vision, audio, llm) overrides "
        "one component, e.g. --device auto --device llm=cpu."
    ),
)
# `edge listen` already has --device (the microphone): its compute device is --compute
COMPUTE = typer.Option(
    [],
    "--compute",
    metavar="auto|cpu|gpu|npu",
    help="Where the speech graphs run (default: cpu; docs/devices.md). --device is the microphone here.",
)
FALLBACK = typer.Option(
    "cpu",
    "--fallback",
    metavar="cpu|error",
    help=(
        "Graph nodes the device cannot run: cpu = run them on the CPU (a warning names them), "
        "error = refuse the graph, naming the first unsupported operators."
    ),
)
GPU_LAYERS = typer.Option(
    None,
    "--gpu-layers",
    metavar="auto|N",
    help="LLM layers llama.cpp offloads to its GPU (auto = all); given alone it puts the LLM on the GPU.",
)
VERBOSE = typer.Option(
    False,
    "--verbose",
    "-v",
    help=("Also show where each graph runs and llama.cpp's own log on stderr (warnings always show)."),
)
FIDELITY = typer.Option(
    "quick",
    "--fidelity",
    metavar="quick|full",
    help=(
        "How thorough the fidelity report is: quick (4 generated images and yours, at most 5 tiles each) "
        "or full (12 images, every tile the runtime makes; much slower on sliced VLMs)."
    ),
)
BUNDLE = typer.Argument(
    None, help="Bundle directory. Omitted: the offline default model (SmolLM2-135M-Instruct), exported on first use."
)


def resolve_bundle(path: Optional[Path], threads: int, quiet: bool) -> Path:
    if path is not None:
        return path
    from edge.apps.defaults import default_bundle

    return default_bundle(TerminalProgress(quiet=quiet), threads)


def load_bundle(path: Optional[Path], threads: int, quiet: bool, runtime, speech=None):
    """``edge.load`` of ``path`` (None: the default model, exported on first use), saying what
    the wait is when loading takes more than a second."""
    import edge

    root = resolve_bundle(path, threads, quiet)
    with TerminalProgress(quiet=quiet).slow(f"loading {root}"):
        return edge.load(root, runtime, speech=speech)
