"""ONNX graphs on onnxruntime. This is the only module that imports ``onnxruntime``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.errors import InputError, RuntimeFailure
from edge.manifest import VisionSpec


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


class VisionEncoder:
    """Runs the vision tower + projector: pixel_values [n,3,H,W] -> embeddings [n,T,D]."""

    def __init__(self, bundle: Path, spec: VisionSpec, options: SessionOptions = SessionOptions()) -> None:
        self.spec = spec
        self._session = open_session(bundle / spec.file, options)
        names = [i.name for i in self._session.get_inputs()]
        if spec.input.name not in names:
            raise RuntimeFailure(f"{spec.file} has no input {spec.input.name!r} (has {names})")

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        """Encode a batch of preprocessed images, one image per run.

        One at a time is both the fastest and the smallest on CPU: a 512x512 SigLIP tile
        encodes ~1.5x faster alone than inside a batch of 17, and the batch's attention
        activations alone take gigabytes. A graph with a fixed batch (static QDQ for NPUs)
        gets ``fixed`` images per run, zero padded.
        """
        x = np.ascontiguousarray(pixel_values, dtype=np.float32)
        fixed = self.spec.input.shape[0] if self.spec.input.shape else -1
        step = fixed if fixed > 0 else 1
        parts = []
        for i in range(0, x.shape[0], step):
            chunk = x[i:i + step]
            if len(chunk) < step:
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *x.shape[1:]), np.float32)])
            parts.append(self._run(chunk)[: min(step, x.shape[0] - i)])
        if not parts:
            return np.zeros((0, self.spec.tokens_per_image, self.spec.embed_dim), np.float32)
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            (out,) = self._session.run([self.spec.output.name], {self.spec.input.name: x})
        except Exception as exc:
            raise RuntimeFailure(f"vision encoder failed: {str(exc).splitlines()[0]}") from None
        if out.ndim != 3 or out.shape[1] != self.spec.tokens_per_image:
            raise RuntimeFailure(
                f"vision encoder returned shape {out.shape}, the manifest expects "
                f"[n, {self.spec.tokens_per_image}, {self.spec.embed_dim}]"
            )
        return out
