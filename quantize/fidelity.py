"""Fidelity of a quantized bundle, measured against the bundle it was made from.

Both bundles run exactly as a user would run them (``edge.runtime``: the bundle's own
preprocessing, onnxruntime for the graphs, llama.cpp with the KV cache type the pipeline
picks for the bundle's dtype), one after the other so only one LLM is in memory:

1. :func:`observe` the reference: image embeddings of the probe images (every tile the
   bundle's own scheme makes of them, under the probes' budget: :data:`PROBE_BUDGET` for the
   quick measurement, none for ``--fidelity full``), next-token log-probabilities at every
   position of the probe texts, the held-out paragraph's negative log-likelihood, and greedy
   answers to the probe prompts (with images for VLMs, under the same budget);
2. :func:`observe` the quantized bundle with the reference at hand, which computes top-1
   agreement and KL(reference || quantized) position by position without keeping both
   distributions, then :func:`compare` turns the two observations into the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from edge.manifest import Manifest, VisionSpec
from edge.options import PROBE_BUDGET, Budget, OnnxOptions, RuntimeOptions
from edge.progress import NullProgress
from edge.quantize.texts import GREEDY_PROMPTS, HELDOUT_TEXT, PROBE_TEXTS

ANSWER_TOKENS = 24
# The tile budget of each probe image (PROBE_BUDGET, for calibration and the quick measurement): a
# sliced scheme (Idefics3, LLaVA-NeXT anyres) makes at most the global/base image and a 2x2 grid of
# it, so the cost of the probes stays bounded; a one-tile scheme (CLIP) is not affected.


@dataclass(frozen=True)
class Probes:
    """What both bundles are run on."""

    images: Sequence[Image.Image]
    texts: Sequence[str] = PROBE_TEXTS
    heldout: str = HELDOUT_TEXT
    prompts: Sequence[str] = GREEDY_PROMPTS
    answer_tokens: int = ANSWER_TOKENS
    audio: Sequence[np.ndarray] = ()  # mono clips at the speech model's sample rate
    budget: Budget = PROBE_BUDGET  # the tiles the runtime's scheme may make of each image


@dataclass
class Observation:
    """What one bundle produced on the probes."""

    vision: Optional[np.ndarray] = None  # every tile of every probe image [n_tiles, T, D]
    vision_tiles: list[int] = field(default_factory=list)  # tiles per probe image
    logprobs: list[np.ndarray] = field(default_factory=list)  # reference only: per text [n, vocab]
    positions: int = 0
    top1_agree: int = 0  # against the reference (quantized bundle only)
    kl_sum: float = 0.0
    kl_max: float = 0.0
    heldout_nll: Optional[float] = None
    heldout_tokens: int = 0
    answers: list[list[int]] = field(default_factory=list)
    with_images: bool = False
    audio: Optional[np.ndarray] = None  # cross-attention K/V rows per clip [n_clips, rows, Dh]
    transcripts: list[list[int]] = field(default_factory=list)  # greedy speech tokens per clip


def pixel_values(
    images: Sequence[Image.Image], spec: VisionSpec, root: Path, budget: Budget = PROBE_BUDGET
) -> Iterator[np.ndarray]:
    """Each image as the runtime preprocesses it for the bundle at ``root``: the tiles its own scheme
    (:func:`edge.runtime.vision.schemes.scheme_for`) plans under ``budget``, one ``[n_tiles, 3, H, W]``
    array per image, made one image at a time."""
    from edge.runtime.vision.schemes import scheme_for

    scheme = scheme_for(spec, root)
    for img in images:
        yield scheme.plan(img, budget).pixel_values


def observe(
    root: Path,
    manifest: Manifest,
    probes: Probes,
    options: RuntimeOptions = RuntimeOptions(),
    progress=NullProgress(),
    reference: Optional[Observation] = None,
    label: str = "reference",
) -> Observation:
    """Run one bundle on ``probes`` with the backends ``options``; with ``reference``, compare
    next-token distributions on the fly."""
    from edge.runtime.pipeline import Pipeline
    from edge.runtime.vision.encoder import VisionEncoder

    obs = Observation()
    progress.stage(f"loading the {label} bundle")
    pipe = Pipeline(root, options) if manifest.llm is not None else None
    try:
        if manifest.vision is not None:
            encoder = pipe.vision if pipe is not None else VisionEncoder(root, manifest.vision, options.vision)
            outs = []
            with progress.bar(len(probes.images), f"vision on {len(probes.images)} images ({label})") as advance:
                for x in pixel_values(probes.images, manifest.vision, root, probes.budget):
                    outs.append(encoder(x))
                    obs.vision_tiles.append(len(x))
                    advance(1)
            if len({o.shape[1:] for o in outs}) > 1:  # images of their own row counts (Qwen2-VL): one entry a row
                obs.vision_tiles = [o.shape[0] * o.shape[1] for o in outs]
                outs = [o.reshape(-1, 1, o.shape[-1]) for o in outs]
            obs.vision = np.concatenate(outs) if outs else None
        if pipe is not None:
            _observe_llm(pipe, probes, obs, reference, progress, label)
        if getattr(manifest, "audio", None) is not None and probes.audio:
            _observe_audio(root, manifest.audio, probes, obs, options.audio, progress, label)
    finally:
        if pipe is not None:
            pipe.close()
    return obs


def _observe_llm(
    pipe, probes: Probes, obs: Observation, reference: Optional[Observation], progress, label: str
) -> None:
    from edge.options import GenerateOptions

    llm, spec = pipe.llm, pipe.manifest.llm
    with progress.bar(len(probes.texts) + 1, f"LLM on {len(probes.texts) + 1} texts ({label})") as advance:
        for i, text in enumerate(probes.texts):
            lp = _logprobs(llm, llm.tokenize(text, add_bos=spec.add_bos))
            obs.positions += len(lp)
            if reference is None:
                obs.logprobs.append(lp.astype(np.float32))
            else:
                ref = reference.logprobs[i].astype(np.float64)
                obs.top1_agree += int(np.sum(ref.argmax(-1) == lp.argmax(-1)))
                kl = np.sum(np.exp(ref) * (ref - lp), axis=-1)
                obs.kl_sum += float(kl.sum())
                obs.kl_max = max(obs.kl_max, float(kl.max()))
            advance(1)
        ids = llm.tokenize(probes.heldout, add_bos=spec.add_bos)
        lp = _logprobs(llm, ids)
        obs.heldout_tokens = len(ids) - 1
        obs.heldout_nll = float(-np.mean(lp[np.arange(len(ids) - 1), ids[1:]]))
        advance(1)
    llm.rewind(0)
    templated = bool(spec.chat_template)
    options = GenerateOptions(max_tokens=probes.answer_tokens, template=templated, budget=probes.budget)
    with progress.bar(len(probes.prompts), f"greedy answers to {len(probes.prompts)} prompts ({label})") as advance:
        for i, prompt in enumerate(probes.prompts):
            images = (
                [probes.images[i % len(probes.images)]]
                if pipe.vision is not None and i % 2 == 1 and probes.images
                else []
            )
            if images and not templated:
                prompt = pipe.manifest.prompt.image_marker + "\n" + prompt
            obs.with_images |= bool(images)
            obs.answers.append(list(pipe.generate(prompt, images, options).tokens))
            advance(1)


def _observe_audio(
    root: Path, spec, probes: Probes, obs: Observation, backend: OnnxOptions, progress, label: str
) -> None:
    """Speech graphs on the probe clips: the encoder's cross-attention K/V (what the decoder
    reads) and the greedy tokens of the decoder, under Whisper's decoding rules."""
    from edge.options import TranscribeOptions
    from edge.runtime.speech.mel import log_mel
    from edge.runtime.speech.transcribe import WhisperGraphs, greedy_decode

    graphs = WhisperGraphs(root, spec, backend)
    options = TranscribeOptions(timestamps=False, max_tokens=probes.answer_tokens)
    rows = []
    with progress.bar(len(probes.audio), f"speech graphs on {len(probes.audio)} clips ({label})") as advance:
        for clip in probes.audio:
            cross = graphs.encode(log_mel(clip, spec.features))
            rows.append(np.concatenate([c.reshape(-1, c.shape[-1]) for c in cross]))
            obs.transcripts.append(list(greedy_decode(graphs, cross, options)[0]))
            advance(1)
    obs.audio = np.stack(rows)


def _logprobs(llm, ids: list[int]) -> np.ndarray:
    """log-softmax of the logits at every position of ``ids`` (evaluated from position 0)."""
    llm.rewind(0)
    logits = llm.eval_tokens(ids, all_logits=True).astype(np.float64)
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def embedding_figures(ref: np.ndarray, ours: np.ndarray, tiles: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Cosine similarity (per embedding row and per image) and max |difference| of two outputs.

    The outputs are ``[n, rows, D]``: one entry per image, or with ``tiles`` (tiles per image)
    one entry per tile, the tiles of an image consecutive; the figures then also count the tiles.
    """
    a = ours.reshape(-1, ours.shape[-1]).astype(np.float64)
    b = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    rows = _cosine(a, b)
    counts = [1] * len(ref) if tiles is None else [int(t) for t in tiles]
    if sum(counts) != len(ref) or len(ours) != len(ref):
        raise ValueError(f"{len(ref)} and {len(ours)} outputs for {sum(counts)} tiles")
    starts = np.cumsum([0, *counts[:-1]])
    flat_a, flat_b = ours.reshape(len(ours), -1), ref.reshape(len(ref), -1)
    images = np.array(
        [
            _cosine(
                flat_a[i : i + n].reshape(1, -1).astype(np.float64), flat_b[i : i + n].reshape(1, -1).astype(np.float64)
            )[0]
            for i, n in zip(starts, counts)
        ]
    )
    figures = {
        "images": len(counts),
        "cosine_mean": float(rows.mean()),
        "cosine_min": float(rows.min()),
        "image_cosine_min": float(images.min()),
        "max_abs_diff": float(np.abs(a - b).max()),
        "ref_max_abs": float(np.abs(b).max()),
    }
    if tiles is not None:
        figures["tiles"] = len(ref)
    return figures


def llm_figures(ref: Observation, ours: Observation) -> dict[str, Any]:
    """Top-1 agreement, KL and perplexity of the quantized LLM against the reference."""
    ppl_ref, ppl = math.exp(ref.heldout_nll), math.exp(ours.heldout_nll)
    return {
        "positions": ours.positions,
        "top1_agreement": ours.top1_agree / max(ours.positions, 1),
        "kl": ours.kl_sum / max(ours.positions, 1),
        "kl_max": ours.kl_max,
        "heldout_tokens": ours.heldout_tokens,
        "perplexity_before": ppl_ref,
        "perplexity_after": ppl,
        "perplexity_change": ppl / ppl_ref - 1.0,
    }


def answer_figures(ref: Observation, ours: Observation, max_tokens: int) -> dict[str, Any]:
    """How many greedy answers are identical, and how long the common prefixes are."""
    return {
        "prompts": len(ref.answers),
        "max_tokens": max_tokens,
        "with_images": ref.with_images,
        **_agreement(ref.answers, ours.answers, "answers"),
    }


def transcript_figures(ref: Observation, ours: Observation, max_tokens: int) -> dict[str, Any]:
    """The same for the greedy speech tokens of the probe clips."""
    return {
        "clips": len(ref.transcripts),
        "max_tokens": max_tokens,
        **_agreement(ref.transcripts, ours.transcripts, "transcripts"),
    }


def _agreement(ref: list[list[int]], ours: list[list[int]], what: str) -> dict[str, Any]:
    prefixes = [
        next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) for a, b in zip(ref, ours)
    ]
    same = [a == b for a, b in zip(ref, ours)]
    return {
        f"identical_{what}": sum(same) / max(len(same), 1),
        "mean_matched_prefix": float(np.mean(prefixes)) if prefixes else 0.0,
        f"mean_{what[:-1]}_tokens": float(np.mean([len(a) for a in ref])) if ref else 0.0,
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, -1) / np.maximum(na * nb, 1e-30)
    # two all-zero rows are identical
    return np.where((na == 0) & (nb == 0), 1.0, cos)
