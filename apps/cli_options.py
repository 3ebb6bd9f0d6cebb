"""The command-line options several commands share, and the default-bundle fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edge.apps.terminal_progress import TerminalProgress

THREADS = typer.Option(0, "--threads", "-t", help="CPU threads for compute (0 = all cores).")
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
VERBOSE = typer.Option(
    False,
    "--verbose",
    "-v",
    help=("Also show where each graph runs and llama.cpp's own log on stderr (warnings always show)."),
)
BUNDLE = typer.Argument(
    None, help="Bundle directory. Omitted: the offline default model (SmolLM2-135M-Instruct), exported on first use."
)


def resolve_bundle(path: Optional[Path], threads: int, quiet: bool) -> Path:
    if path is not None:
        return path
    from edge.apps.defaults import default_bundle

    return default_bundle(TerminalProgress(quiet=quiet), threads)
