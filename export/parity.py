"""Parity of an exported bundle with the transformers reference, measured at export.

The figures go into the manifest's provenance; gross failures stop the export.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edge.errors import ExportError
from edge.manifest import VisionSpec
from edge.options import LLMOptions, OnnxOptions
from edge.runtime.llama_backend import LLM
from edge.runtime.text.space_prefix import with_space_prefix
from edge.runtime.vision.encoder import VisionEncoder

PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 3.14159 * 12345 = 38782.9 (approx.)",
    "  leading spaces, tabs\tand\nnew lines\n\n",
    "Ünïcödé: café, naïve, 日本語, emoji 🙂 and ÆØÅ!",
    "def f(x):\n    return x ** 2  # code",
    " one leading space, then   three, then\t\ttwo tabs",
    "\n\nstarts with newlines\r\nand CRLF \n  \n",
    "digits 0 12 345 6789 1234567890 and 3,14",
    "rare characters fall back to bytes: \U0001d518\U0001d52b \ua66e \U0001f999 \u0b9a\u0bcd",
)
# special tokens written inside text (the HF tokenizer and the runtime parse them as tokens)
SPECIAL_PROBES = ("Hello{0}world", "{0} starts, ends {0}", "a {0}{0}\nb")
GREEDY_TOKENS = 16


def tokenizer_parity(hf_tokenizer: Any, llm: LLM, add_bos: bool, space_prefix: str = "gguf") -> dict[str, Any]:
    """llama.cpp must split text into the same ids as the HF tokenizer: plain probe texts
    (leading and repeated spaces, newlines, digits, Unicode, byte-fallback characters) and
    texts with the tokenizer's special tokens inside, parsed as the runtime parses prompts
    (with the bundle's ``space_prefix`` rule, :mod:`edge.runtime.text.space_prefix`)."""
    specials = [t for t in dict.fromkeys(hf_tokenizer.all_special_tokens) if t][:4]
    texts = [(text, False) for text in PROBE_TEXTS]
    texts += [(probe.format(tok), True) for tok in specials for probe in SPECIAL_PROBES]
    for text, special in texts:
        ref = hf_tokenizer(text, add_special_tokens=add_bos)["input_ids"]
        prefixed = with_space_prefix(text, space_prefix, lambda t, sp: llm.tokenize(t, special=sp))
        ours = llm.tokenize(prefixed, add_bos=add_bos, special=special)
        if ref != ours:
            at = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
            raise ExportError(
                f"the GGUF tokenizer splits {text[:40]!r} differently from the HF tokenizer at token {at} "
                f"(llama.cpp {ours[at : at + 6]} vs HF {ref[at : at + 6]})"
            )
    return {"tokenizer_texts_checked": len(texts)}


def llm_parity(
    model: torch.nn.Module,
    gguf_path: Path,
    ids: list[int],
    options: LLMOptions,
    dtype: str,
    advance: Callable[[int], None] = lambda n=1: None,
) -> dict[str, Any]:
    """Compare llama.cpp's logits on ``ids`` and its greedy continuation with torch's.

    ``options`` are the caller's llama.cpp options; the context is sized to the probe, and
    ``dtype`` (the GGUF's weights) resolves a ``kv_dtype`` of "auto" as the runtime does.
    ``advance(1)`` is called after each of the ``2 * GREEDY_TOKENS`` greedy steps (progress).
    """
    probe = dataclasses.replace(options, n_ctx=max(16, len(ids) + GREEDY_TOKENS + 8))
    llm = LLM(gguf_path, probe, weights_dtype=dtype)
    try:
        ours = llm.eval_tokens(ids, all_logits=True)
        ours_new = []
        logits = ours[-1]
        for _ in range(GREEDY_TOKENS):
            ours_new.append(int(np.argmax(logits)))
            logits = llm.eval_tokens([ours_new[-1]])
            advance(1)
    finally:
        llm.close()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        ref = out.logits[0].float().numpy()
        ref_new, past, nxt = [], out.past_key_values, int(out.logits[0, -1].argmax())
        for _ in range(GREEDY_TOKENS):  # transformers' KV cache: one token a step, as llama.cpp
            ref_new.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
            advance(1)
    matched = next((i for i, (a, b) in enumerate(zip(ours_new, ref_new)) if a != b), GREEDY_TOKENS)
    n = ref.shape[-1]
    figures = {
        "llm_logits_max_abs_diff": float(np.abs(ours[:, :n] - ref).max()),
        "llm_logits_ref_max_abs": float(np.abs(ref).max()),
        "llm_top1_agreement": float(np.mean(ours[:, :n].argmax(-1) == ref.argmax(-1))),
        "llm_greedy_tokens_matched": int(matched),
        "llm_greedy_tokens_compared": GREEDY_TOKENS,
        "llm_probe_tokens": len(ids),
    }
    floor = 0.99 if dtype == "f32" else 0.8
    if figures["llm_top1_agreement"] < floor:
        raise ExportError(
            f"LLM parity failed: top-1 agreement {figures['llm_top1_agreement']:.3f} with transformers "
            f"(max |logit diff| {figures['llm_logits_max_abs_diff']:.3g})"
        )
    return figures


def vision_parity(
    reference: Callable[[torch.Tensor], torch.Tensor],
    bundle: Path,
    spec: VisionSpec,
    options: OnnxOptions,
    atol: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare onnxruntime's image embeddings with transformers' on seeded inputs."""
    rng = np.random.default_rng(seed)
    _, c, h, w = spec.input.shape
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    with torch.no_grad():
        ref = reference(torch.from_numpy(x)).float().numpy()
    ours = VisionEncoder(bundle, spec, options)(x)
    diff = float(np.abs(ours - ref).max())
    a, b = ours.reshape(-1, ours.shape[-1]), ref.reshape(-1, ref.shape[-1])
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    figures = {"vision_max_abs_diff": diff, "vision_cosine_min": float(cos.min()), "vision_atol": atol}
    if not diff <= atol:
        raise ExportError(f"vision parity failed: max |onnx - torch| = {diff:.3g} > {atol:g}")
    return figures
