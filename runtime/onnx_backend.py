"""ONNX graphs on onnxruntime, for vision and speech alike. This is the only module that imports ``onnxruntime``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from edge.errors import InputError, RuntimeFailure


@dataclass(frozen=True)
class SessionOptions:
    """Threads (0 = onnxruntime's default) and execution providers, set explicitly."""

    threads: int = 0
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise InputError(f"threads must be positive, got {self.threads}")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (for ``edge doctor``)."""
    return list(ort.get_available_providers())


def backend_version() -> str:
    """The onnxruntime version."""
    return ort.__version__


def open_session(path: Path, options: SessionOptions) -> ort.InferenceSession:
    """An inference session with explicit threads/providers and a one-line error on failure."""
    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures are reported by us, in one line
    if options.threads:
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    missing = [p for p in options.providers if p not in ort.get_available_providers()]
    if missing:
        raise InputError(f"onnxruntime has no {', '.join(missing)} here (see `edge doctor`)")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=list(options.providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"onnxruntime cannot load {path.name}: {first}") from None
