"""``edge quantize``: a bundle -> a new, smaller bundle with a measured fidelity report.

Flow: read and check the source bundle, decide per component what the recipe does to it
(failing early when it cannot apply), then write the new bundle atomically
(``edge.bundle.write_bundle``): copy the untouched files, quantize the LLM with llama.cpp's
own quantizer and the graphs with onnxruntime's, then run both bundles on the probes and
record the figures in the new manifest (``provenance.fidelity``) next to the recipe
(``provenance.quantization``). The source bundle is only read, never written.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edge import __version__
from edge.bundle import check_output, file_entries, load_manifest, write_bundle
from edge.errors import InputError
from edge.manifest import MANIFEST_NAME, Manifest, TensorSpec
from edge.options import QuantizeOptions
from edge.progress import NullProgress
from edge.quantize import fidelity, onnx_quant, speech_int8
from edge.quantize.probes import probe_audio, probe_images
from edge.quantize.recipes import Recipe, get_recipe

UNQUANTIZED = ("f32", "f16")


@dataclass(frozen=True)
class _Plan:
    llm: Optional[str]
    vision: Optional[str]
    audio: Optional[str]
    skipped: dict[str, str]


def quantize_bundle(
    src: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    recipe: Union[str, Recipe],
    options: QuantizeOptions = QuantizeOptions(),
    progress=NullProgress(),
) -> Manifest:
    """Write a quantized copy of the bundle ``src`` into ``out`` and return its manifest.

    Raises:
        InputError: unknown recipe, a recipe that does not apply to this bundle, an output
            that is the source (or inside it), an unreadable image.
        BundleError: ``src`` is not a valid bundle, or ``out`` exists (without ``force``).
        ExportError / RuntimeFailure: a quantizer failed.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    root, manifest = load_manifest(src)
    out = check_output(out, options.force)
    _check_paths(root.absolute(), out)
    plan = _plan(root, manifest, recipe)
    from edge.runtime.vision.image_io import load_image

    images = probe_images(options.generated_images) + [load_image(p) for p in options.images]

    def populate(tmp: Path) -> Manifest:
        return _populate(tmp, root, manifest, recipe, plan, images, options, progress)

    return write_bundle(out, populate, overwrite=options.force)


def _check_paths(root: Path, out: Path) -> None:
    src, dst = root.resolve(), out.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise InputError(
            f"the output {out} must be a new directory outside the source bundle {root} (the source is never modified)"
        )


def _plan(root: Path, m: Manifest, recipe: Recipe) -> _Plan:
    skipped: dict[str, str] = {}
    llm = vision = None
    if m.llm is None:
        skipped["llm"] = "the bundle has no language model"
    elif recipe.llm is None:
        skipped["llm"] = f"recipe {recipe.name} keeps the LLM ({m.llm.dtype})"
    elif m.llm.dtype not in UNQUANTIZED:
        raise InputError(f"the LLM of {root} is already quantized ({m.llm.dtype}); quantize an f32 or f16 bundle")
    else:
        llm = recipe.llm
    if m.vision is None:
        skipped["vision"] = "the bundle has no vision graph"
    elif recipe.vision is None:
        skipped["vision"] = f"recipe {recipe.name} keeps the vision graph ({m.vision.dtype})"
    elif m.vision.dtype not in UNQUANTIZED:
        raise InputError(
            f"the vision graph of {root} is already quantized ({m.vision.dtype}); quantize an f32 or f16 bundle"
        )
    else:
        vision = recipe.vision
        if vision == "qdq-int8":
            shape = list(m.vision.input.shape)
            if len(shape) != 4 or any(d <= 0 for d in shape[1:]):
                raise InputError(
                    f"recipe {recipe.name} does not apply to the {m.family} family: its vision graph takes "
                    f"images of variable size {shape}, a static NPU graph needs fixed sizes "
                    "(use q8, q4 or q4-int4vision)"
                )
    audio = None
    if m.audio is None:
        skipped["audio"] = "the bundle has no speech model"
    elif recipe.audio is None:
        skipped["audio"] = f"recipe {recipe.name} keeps the speech graphs ({m.audio.dtype})"
    elif m.audio.dtype not in UNQUANTIZED:
        raise InputError(
            f"the speech graphs of {root} are already quantized ({m.audio.dtype}); quantize an f32 or f16 bundle"
        )
    else:
        audio = recipe.audio
    if llm is None and vision is None and audio is None:
        raise InputError(f"recipe {recipe.name} does not apply to {root}: " + "; ".join(skipped.values()))
    return _Plan(llm=llm, vision=vision, audio=audio, skipped=skipped)


def _populate(tmp: Path, root: Path, m: Manifest, recipe: Recipe, plan: _Plan, images, options, progress) -> Manifest:
    produced = set()
    if plan.llm:
        produced.add(m.llm.file)
    if plan.vision:
        produced.add(m.vision.file)
    if plan.audio:
        produced.update((m.audio.encoder, m.audio.decoder))
    for rel in m.files:
        if rel not in produced:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
    new = dataclasses.replace(m, name=options.name or f"{m.name}-{recipe.name}", files={})
    if plan.llm:
        new = dataclasses.replace(new, llm=_quantize_llm(tmp, root, m, plan.llm, options.threads, progress))
    if plan.vision:
        new = dataclasses.replace(
            new, vision=_quantize_vision(tmp, root, m, plan.vision, recipe, images, options, progress)
        )
    if plan.audio:
        new = dataclasses.replace(new, audio=_quantize_audio(tmp, root, m, plan.audio, recipe, progress))
    # a provisional manifest lets the runtime open the new bundle for the measurements
    (tmp / MANIFEST_NAME).write_text(dataclasses.replace(new, files=file_entries(tmp)).to_json(), encoding="utf-8")
    report = _measure(tmp, root, m, new, plan, images, options, progress)
    provenance = dict(m.provenance)
    provenance["quantization"] = {
        **recipe.describe(),
        "source_bundle": m.name,
        "source_dtypes": {
            k: v.dtype for k, v in (("llm", m.llm), ("vision", m.vision), ("audio", m.audio)) if v is not None
        },
        "tool": f"edge {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    provenance["fidelity"] = report
    if recipe.npu and plan.vision:  # does the NPU take the graph whole, and how close is it (docs/devices.md)
        from edge.quantize.npu import npu_record

        progress.stage(f"checking the vision graph on the NPU ({recipe.npu})")
        provenance["npu"] = npu_record(tmp, root, m, new, images[:4], options.budget, options.threads)
    return dataclasses.replace(new, provenance=provenance)


def _quantize_llm(tmp: Path, root: Path, m: Manifest, ftype: str, threads: int, progress):
    from edge.runtime.llama_backend import quantize_gguf

    with progress.bar(100, f"LLM -> {ftype} (llama.cpp)") as advance:
        shown = [0]

        def report(done: int, total: int) -> None:
            pct = done * 100 // total if total else 0
            if pct > shown[0]:
                advance(pct - shown[0])
                shown[0] = pct

        quantize_gguf(root / m.llm.file, tmp / m.llm.file, ftype, threads, report)
    return dataclasses.replace(m.llm, dtype=ftype.lower())


def _quantize_vision(tmp: Path, root: Path, m: Manifest, method: str, recipe: Recipe, images, options, progress):
    spec = m.vision
    dst = tmp / spec.file
    progress.stage(f"vision graph -> {method} (onnxruntime)")
    if method in ("int8", "int4"):
        _weights_only(root / spec.file, dst, method, recipe, f16=spec.dtype == "f16")
        return dataclasses.replace(spec, dtype=method)
    model = onnx_quant.load_f32(root / spec.file)
    # the tiles the runtime makes of each image, each one calibration input (the static graph takes one tile)
    batches = [tile[None] for px in fidelity.pixel_values(images, spec, root, options.budget) for tile in px]
    with progress.bar(len(batches), f"calibrating on {len(batches)} tiles of {len(images)} images") as advance:
        onnx_quant.qdq_static(
            model,
            dst,
            spec.input.name,
            spec.input.shape,
            batches,
            on_batch=lambda: advance(1),
            activations=recipe.qdq_activations,
        )
    return dataclasses.replace(
        spec,
        dtype=method,
        input=TensorSpec(spec.input.name, spec.input.dtype, [1, *spec.input.shape[1:]]),
        output=TensorSpec(spec.output.name, spec.output.dtype, [1, *spec.output.shape[1:]]),
    )


def _quantize_audio(tmp: Path, root: Path, m: Manifest, method: str, recipe: Recipe, progress):
    spec = m.audio
    with progress.bar(2, f"speech graphs -> {method} (onnxruntime)") as advance:
        for name, logits in ((spec.encoder, None), (spec.decoder, spec.decoder_io["logits"].name)):
            _weights_only(root / name, tmp / name, method, recipe, f16=spec.dtype == "f16", logits=logits)
            advance(1)
    return dataclasses.replace(spec, dtype=method)


def _weights_only(src: Path, dst: Path, method: str, recipe: Recipe, f16: bool, logits: Optional[str] = None) -> None:
    """int8 (dynamic) or int4 weights; the float weights left over keep the source's f16 storage.

    ``logits``: the logits output of a Whisper decoder, whose tied projection gets int8 too
    (:func:`edge.quantize.speech_int8.int8_decoder`).
    """
    model = onnx_quant.load_f32(src)
    if method == "int8" and logits is not None:
        speech_int8.int8_decoder(model, dst, logits)
    elif method == "int8":
        onnx_quant.int8_dynamic(model, dst)
    else:
        onnx_quant.int4_weights(model, dst, recipe.int4_block)
    if f16:
        onnx_quant.store_floats_f16(dst)


def _measure(
    tmp: Path, root: Path, before: Manifest, after: Manifest, plan: _Plan, images, options, progress
) -> dict[str, Any]:
    audio = probe_audio(before.audio.features.sample_rate) if before.audio is not None else ()
    generated, budget = options.fidelity_probes()
    made = len(images) - len(options.images)  # the generated images come first, then the user's
    images = list(images[: min(generated, made)]) + list(images[made:])
    probes = fidelity.Probes(images=images, audio=audio, budget=budget)
    progress.stage(f"measuring fidelity against the source bundle ({options.fidelity}; --fidelity full for more)")
    ref = fidelity.observe(root, before, probes, options.runtime, progress, label="source")
    ours = fidelity.observe(tmp, after, probes, options.runtime, progress, reference=ref, label="quantized")
    report: dict[str, Any] = {
        "reference": before.name,
        "probes": {
            "fidelity": options.fidelity,
            "generated_images": min(generated, made),
            "user_images": len(options.images),
            "texts": len(probes.texts),
            "prompts": len(probes.prompts),
            "audio_clips": len(audio),
        },
    }
    for part, method in (("llm", plan.llm), ("vision", plan.vision), ("audio", plan.audio)):
        if method is None:
            report[part] = {"skipped": plan.skipped.get(part, "not quantized")}
            continue
        spec_before, spec_after = getattr(before, part), getattr(after, part)
        files = [spec_before.encoder, spec_before.decoder] if part == "audio" else [spec_before.file]
        entry: dict[str, Any] = {
            "dtype_before": spec_before.dtype,
            "dtype_after": spec_after.dtype,
            "bytes_before": sum(before.files[f].bytes for f in files),
            "bytes_after": sum((tmp / f).stat().st_size for f in files),
        }
        entry["size_ratio"] = entry["bytes_after"] / max(entry["bytes_before"], 1)
        if part == "llm":
            entry.update(fidelity.llm_figures(ref, ours))
        elif part == "vision":  # per tile the runtime's scheme made, under the probe budget
            entry.update(fidelity.embedding_figures(ref.vision, ours.vision, ref.vision_tiles))
            entry["budget"] = dataclasses.asdict(probes.budget)
            if method == "qdq-int8":
                entry["calibration_tiles"] = sum(ref.vision_tiles)
        else:  # the encoder's cross-attention K/V, then what the decoder makes of them
            figures = fidelity.embedding_figures(ref.audio, ours.audio)
            entry.update({"clips": figures.pop("images"), **figures})
            entry["transcripts"] = fidelity.transcript_figures(ref, ours, probes.answer_tokens)
        report[part] = entry
    for part, why in plan.skipped.items():
        report.setdefault(part, {"skipped": why})
    if before.llm is not None:
        report["end_to_end"] = fidelity.answer_figures(ref, ours, probes.answer_tokens)
    else:
        report["end_to_end"] = {"skipped": "the bundle has no language model"}
    return report


def summary_lines(report: dict[str, Any]) -> Sequence[str]:
    """The fidelity report as short human-readable lines (the CLI prints them)."""
    lines = []
    for part in ("llm", "vision", "audio"):
        entry = report.get(part)
        if entry is None:
            continue
        if "skipped" in entry:
            lines.append(f"{part:7s} skipped: {entry['skipped']}")
            continue
        size = f"{entry['bytes_before']:,} -> {entry['bytes_after']:,} bytes ({entry['size_ratio']:.2f}x)"
        lines.append(f"{part:7s} {entry['dtype_before']} -> {entry['dtype_after']}: {size}")
        if part == "audio":
            t = entry["transcripts"]
            lines.append(
                f"        encoder cross-attention K/V cosine mean {entry['cosine_mean']:.5f}, min "
                f"{entry['cosine_min']:.5f} on {entry['clips']} clips; greedy speech tokens "
                f"{t['identical_transcripts'] * 100:.0f} % identical, mean matched prefix {t['mean_matched_prefix']:.1f}"
            )
        elif part == "llm":
            lines.append(
                f"        top-1 agreement {entry['top1_agreement']:.4f}, mean KL {entry['kl']:.5f} over "
                f"{entry['positions']} positions; perplexity {entry['perplexity_before']:.3f} -> "
                f"{entry['perplexity_after']:.3f} ({entry['perplexity_change'] * 100:+.2f} %)"
            )
        else:
            lines.append(
                f"        cosine mean {entry['cosine_mean']:.5f}, min {entry['cosine_min']:.5f}; max |diff| "
                f"{entry['max_abs_diff']:.4g} (outputs up to {entry['ref_max_abs']:.4g}) on {entry['images']} images"
            )
    e2e = report.get("end_to_end", {})
    if "skipped" not in e2e and e2e:
        lines.append(
            f"answers {e2e['identical_answers'] * 100:.0f} % identical over {e2e['prompts']} greedy answers "
            f"of up to {e2e['max_tokens']} tokens; mean matched prefix {e2e['mean_matched_prefix']:.1f} tokens"
            + (" (with images)" if e2e.get("with_images") else "")
        )
    probes = report.get("probes", {})
    if probes.get("fidelity"):
        quick = probes["fidelity"] == "quick"
        more = "; --fidelity full measures every generated image and tile" if quick else ""
        lines.append(
            f"measured: {probes['fidelity']} ({probes['generated_images']} generated and "
            f"{probes['user_images']} given images){more}"
        )
    return lines
