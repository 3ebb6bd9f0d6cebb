"""Our side of the benchmark: a bundle on edge's runtime (onnxruntime + llama.cpp).

Every operation mirrors what a user of ``edge.load`` gets: the bundle's own slicing
scheme, the vision graph, the pipeline's generation loop (``steps`` with the
pipeline's sampler and text decoder). Operations return plain dicts of figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from edge.errors import InputError
from edge.options import Budget

from .common import NotAvailable, llm_figures

# llama.cpp's context for every side: room for one sliced image, a 512-token prompt and 128+ tokens
N_CTX = 4096


class Ours:
    """A bundle opened with :func:`edge.load`."""

    name = "edge"

    def __init__(
        self,
        bundle: str,
        threads: int,
        n_ctx: int = N_CTX,
        devices: Optional[dict] = None,
        fallback: str = "cpu",
        overrides: Optional[dict] = None,
    ) -> None:
        import dataclasses

        import edge
        from edge.options import LLMOptions, OnnxOptions, RuntimeOptions

        devices = devices or {}
        if devices:  # `edge bench --device`: each component where the flags put it (docs/devices.md)
            options = RuntimeOptions(
                vision=OnnxOptions(threads=threads, device=devices.get("vision"), fallback=fallback),
                audio=OnnxOptions(threads=threads, device=devices.get("audio"), fallback=fallback),
                llm=LLMOptions(n_ctx=n_ctx, threads=threads, device=devices.get("llm", "cpu")),
            )
        else:
            options = RuntimeOptions.simple(threads=threads, n_ctx=n_ctx)
        # `overrides` (benchmarks.ttft_breakdown / memory variants): {"vision": {OnnxOptions field: value},
        # "llm": {LLMOptions field: value}, RuntimeOptions field: value}
        extra = dict(overrides or {})
        for part in ("vision", "llm"):
            if part in extra:
                extra[part] = dataclasses.replace(getattr(options, part), **extra[part])
        self.pipe = edge.load(bundle, dataclasses.replace(options, **extra) if extra else options)
        self.manifest = self.pipe.manifest

    def info(self) -> dict:
        """What was loaded and where it runs (reported with the figures); timings of a graph on the
        QNN HTP emulator are labelled: they are functional, not the NPU's speed."""
        m = self.manifest
        placement = {k: p.as_dict() for k, p in self.pipe.placement.items()}
        emulated = [k for k, p in placement.items() if "emulator" in str(p.get("reason", ""))]
        return {
            "llm_dtype": m.llm.dtype if m.llm else None,
            "vision_dtype": m.vision.dtype if m.vision else None,
            "n_ctx": self.pipe.llm.n_ctx,
            "n_vocab": self.pipe.llm.n_vocab,
            "placement": placement,
            "emulated": {k: "QNN HTP emulator on the host CPU: functional timings, not device speed" for k in emulated},
        }

    def encode(self, image: str, max_image_tokens: Optional[int] = None, longest_edge: Optional[int] = None) -> dict:
        """B1: slice + preprocess a decoded image, then run the vision graph on all its tiles."""
        from edge.runtime.vision.image_io import load_image

        if self.pipe.vision is None:
            raise NotAvailable("this bundle has no vision encoder")
        img = load_image(image)  # decoding the file is not part of B1
        t0 = time.perf_counter()
        try:
            plan = self.pipe.scheme.plan(img, Budget(max_image_tokens=max_image_tokens))
        except InputError as exc:  # e.g. a budget below the model's fixed tokens per image
            raise NotAvailable(str(exc)) from None
        t1 = time.perf_counter()
        embeds = self.pipe.vision(plan.pixel_values)
        t2 = time.perf_counter()
        _, blocks = self.pipe.scheme.layout(embeds, plan)
        return {
            "preprocess_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "tiles": int(plan.pixel_values.shape[0]),
            "image_tokens": int(sum(b.shape[0] for b in blocks)),
            "longest_edge": plan.info.get("longest_edge"),
        }

    def ttft(self, image: str, prompt: str) -> dict:
        """B2: one image file and a short prompt through the chat template to the first token,
        with empty caches (no KV prefix, no cached embeddings)."""
        from edge.options import GenerateOptions

        self.pipe.reset()
        t0 = time.perf_counter()
        result = self.pipe.generate(prompt, [image], GenerateOptions(max_tokens=1))
        wall = (time.perf_counter() - t0) * 1e3
        t = result.timings
        return {
            "ttft_ms": wall,
            "preprocess_ms": t.preprocess_ms,
            "image_load_ms": t.image_load_ms,
            "slice_ms": t.slice_ms,
            "encode_ms": t.image_encode_ms,
            "prefill_ms": t.prefill_ms,
            "prompt_tokens": t.prompt_tokens,
            "tiles": t.tiles,
        }

    def llm(self, ids: list[int], depth: int, n_gen: int) -> dict:
        """B3: ``ids[:depth]`` fill the cache (untimed), ``ids[depth:]`` are prefilled (timed),
        then ``n_gen`` tokens are decoded greedily with end-of-sequence ignored."""
        from edge.options import SamplingOptions
        from edge.runtime.text.generate import TextDecoder, steps
        from edge.runtime.text.sampling import Sampler

        llm = self.pipe.llm
        self.pipe.reset()
        if depth:
            llm.eval_tokens(ids[:depth])
        c0, t0 = time.process_time(), time.perf_counter()
        logits = llm.eval_tokens(ids[depth:])
        c1, t1 = time.process_time(), time.perf_counter()
        sampler, decoder = Sampler(SamplingOptions()), TextDecoder(llm.piece)
        stamps, cpu = [], []
        for token, why in steps(logits, sampler, lambda t: llm.eval_tokens([t]), n_gen, llm.n_ctx - llm.n_past, ()):
            if why:
                break
            decoder(token)
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        self.pipe.reset()
        return llm_figures(len(ids) - depth, t1 - t0, stamps, c1 - c0, cpu)

    def llm_embd(self, n_rows: int, seed: int, depth: int, n_gen: int) -> dict:
        """B3 over embedding rows (an image's way into the LLM, ``LLM.eval_embeddings``): ``depth``
        rows fill the cache (untimed), the rest are prefilled (timed), then ``n_gen`` greedy tokens."""
        from .common import embedding_rows

        llm = self.pipe.llm
        rows = embedding_rows(n_rows, llm.n_embd, seed)
        self.pipe.reset()
        if depth:
            llm.eval_embeddings(rows[:depth])
        c0, t0 = time.process_time(), time.perf_counter()
        logits = llm.eval_embeddings(rows[depth:])
        c1, t1 = time.process_time(), time.perf_counter()
        stamps, cpu = [], []
        for _ in range(n_gen):
            token = int(logits.argmax())
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
            if len(stamps) < n_gen:
                logits = llm.eval_tokens([token])
        self.pipe.reset()
        return llm_figures(n_rows - depth, t1 - t0, stamps, c1 - c0, cpu)

    def close(self) -> None:
        self.pipe.close()


class OursSpeech:
    """The speech (Whisper) component of a bundle on edge's transcriber (B5)."""

    name = "edge"

    def __init__(self, bundle: str, threads: int) -> None:
        from edge.options import OnnxOptions
        from edge.runtime.speech.transcribe import load_speech

        self.tr = load_speech(bundle, OnnxOptions(threads=threads))

    def info(self) -> dict:
        return {"audio_dtype": self.tr.spec.dtype}

    def transcribe(self, audio: str) -> dict:
        """One file through 30 s windows, greedy, with timestamps (the defaults of ``edge transcribe``)."""
        t0 = time.perf_counter()
        out = self.tr.transcribe(audio)
        wall = time.perf_counter() - t0
        return {
            "wall_ms": wall * 1e3,
            "audio_s": out.duration,
            "rtf": wall / max(out.duration, 1e-9),
            "chars": len(out.text),
            "text": out.text[:160],
        }

    def close(self) -> None:
        self.tr = None


def bundle_bytes(bundle: Path) -> int:
    """Bytes on disk of a bundle (every file the manifest lists, and the manifest)."""
    from edge.bundle import load_manifest

    root, m = load_manifest(bundle)
    return sum(f.bytes for f in m.files.values()) + (root / "manifest.json").stat().st_size
