"""The vision tower + projector graph: pixel values -> embedding rows, one tile per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import RuntimeFailure
from edge.events import Placement
from edge.manifest import VisionSpec
from edge.options import OnnxOptions
from edge.runtime.onnx_backend import open_session
from edge.runtime.vision.slice_qwen2vl import graph_feeds as qwen2vl_feeds

# Schemes whose graph takes more than the pixel values, by scheme name: (preprocess, one element of
# pixel_values, input name) -> (feeds, rows the run returns). Listed explicitly, as SCHEMES is.
GRAPH_FEEDS = {"qwen2vl": qwen2vl_feeds}


class VisionEncoder:
    """Runs the vision tower + projector: pixel_values [n,3,H,W] -> embeddings [n,T,D]."""

    def __init__(self, bundle: Path, spec: VisionSpec, options: OnnxOptions = OnnxOptions()) -> None:
        self.spec = spec
        self._path, self._options = Path(bundle) / spec.file, options
        self._session = self._open()
        self._placement = self._session.placement  # kept when the session is released
        self._feeds = GRAPH_FEEDS.get(spec.preprocess.scheme)

    def _open(self):
        session = open_session(self._path, self._options)
        names = [i.name for i in session.get_inputs()]
        if self.spec.input.name not in names:
            raise RuntimeFailure(f"{self.spec.file} has no input {self.spec.input.name!r} (has {names})")
        return session

    @property
    def placement(self) -> Placement:
        """Where the graph runs: the execution providers asked for and those its nodes got."""
        return self._placement

    @property
    def released(self) -> bool:
        """Whether the session is released (the next encode reopens it)."""
        return self._session is None

    def release(self) -> None:
        """Free the session and its memory (a one-shot run, once its images are encoded); the next
        call reopens it."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    @property
    def session(self):
        """The open session (reopened here after :meth:`release`)."""
        if self._session is None:
            self._session = self._open()
        return self._session

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
            chunk = x[i : i + step]
            if len(chunk) < step:
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *x.shape[1:]), np.float32)])
            parts.append(self._run(chunk)[: min(step, x.shape[0] - i)])
        if not parts:
            return np.zeros((0, self.spec.tokens_per_image, self.spec.embed_dim), np.float32)
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._feeds is not None:
            return self._run_fed(x)
        try:
            (out,) = self.session.run([self.spec.output.name], {self.spec.input.name: x})
        except Exception as exc:
            raise RuntimeFailure(f"vision encoder failed: {str(exc).splitlines()[0]}") from None
        if out.ndim != 3 or out.shape[1] != self.spec.tokens_per_image:
            raise RuntimeFailure(
                f"vision encoder returned shape {out.shape}, the manifest expects "
                f"[n, {self.spec.tokens_per_image}, {self.spec.embed_dim}]"
            )
        return out

    def _run_fed(self, x: np.ndarray) -> np.ndarray:
        # one element per run, with the scheme's precomputed inputs (e.g. Qwen2.5-VL's windows)
        feeds, rows = self._feeds(self.spec.preprocess, x[0], self.spec.input.name)
        try:
            (out,) = self.session.run([self.spec.output.name], feeds)
        except Exception as exc:
            raise RuntimeFailure(f"vision encoder failed: {str(exc).splitlines()[0]}") from None
        if out.shape != (1, rows, self.spec.embed_dim):
            raise RuntimeFailure(
                f"vision encoder returned shape {out.shape}, the manifest expects [1, {rows}, {self.spec.embed_dim}]"
            )
        return out
