"""The benchmark of one bundle against its peers, in one run on identical inputs.

Over 400 lines on purpose: the phases B1-B5 share one context and one alternation loop;
splitting them would scatter the method the report describes.

Phases (each alternates the sides request by request, after warm-ups; figures are medians):

- B1 vision encode per image and per tile, at the bundle's default slicing and under a
  token budget; GFLOP/s from :func:`roofline.vision_flops_per_tile`;
- B2 time to first token, one image and a short prompt: warm (models loaded, caches
  emptied before every request) with its breakdown, and cold (a fresh process: load,
  then the first request);
- B3 LLM prefill and decode tokens/s at depth 0 and at the depth of one image's tokens;
- B4 peak RSS of the fresh processes of B2-cold, and bytes on disk;
- B5 Whisper real-time factor, when the bundle has audio and the runtime can transcribe.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edge.bundle import load_manifest
from edge.errors import InputError
from edge.progress import NullProgress

from . import roofline
from .common import NotAvailable, median, spread, token_ids
from .inputs import conditions, standard_images
from .procs import SETTLE_S, SideError, Worker, alternate

PEERS = ("transformers", "llama.cpp", "faster-whisper")
PHASES = ("b1", "b2", "b3", "b5")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often. ``repeats``/``cold_repeats`` 0 = the mode's default."""

    work: Path
    threads: int = 2
    quick: bool = False
    repeats: int = 0
    cold_repeats: int = 0
    images: tuple = ()
    budget_tokens: Optional[int] = None
    peers: tuple = PEERS
    source: Optional[Path] = None
    llama_cpp_src: Optional[Path] = None
    n_prompt: int = 512
    n_gen: int = 128
    prompt: str = "Describe this image in one sentence."
    audio: Optional[Path] = None
    whisper_model: Optional[Path] = None  # faster-whisper's CTranslate2 folder (default: --source if it is one)
    # `--device`: component -> device for edge's side ({} = every component on the CPU), and `--fallback`
    devices: dict = field(default_factory=dict)
    fallback: str = "cpu"
    # which phases run (B4's peak RSS comes from B2's fresh processes); a subset keeps a run short
    phases: tuple = PHASES

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= 1024:
            raise InputError(f"threads must be between 1 and 1024, got {self.threads}")
        if self.repeats < 0 or self.cold_repeats < 0:
            raise InputError("repeats must be 0 (the default) or more")
        if self.n_gen < 2 or self.n_prompt < 1:
            raise InputError("the LLM benchmark needs a prompt and at least 2 generated tokens")
        if not self.phases or any(p not in PHASES for p in self.phases):
            raise InputError(f"phases must be some of {', '.join(PHASES)}, got {', '.join(self.phases) or 'none'}")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise InputError(f"unknown peer {unknown[0]!r} (peers: {', '.join(PEERS)}, or none)")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise InputError(f"the token budget must be at least 1, got {self.budget_tokens}")
        for f in (*self.images, *([self.audio] if self.audio else [])):
            if not Path(f).is_file():
                raise InputError(f"file not found: {f}")

    @property
    def rounds(self) -> int:
        # --quick: one measured request per side (medians of one; the full run takes three)
        return self.repeats or (1 if self.quick else 3)

    @property
    def llm_rounds(self) -> int:
        # B3: several requests per side even in --quick (two ABBA cycles), their spread reported:
        # one request per side on a shared machine reads anywhere from 0.5x to 2x (docs/benchmarks.md)
        return self.repeats or (4 if self.quick else 6)

    @property
    def cold_rounds(self) -> int:
        return self.cold_repeats or (1 if self.quick else 3)


@dataclass
class Context:
    """What one run works with."""

    bundle: Path
    options: BenchOptions
    manifest: object
    sides: dict = field(default_factory=dict)  # name -> worker config
    missing: dict = field(default_factory=dict)  # name -> why it is not measured


def _setup(bundle: Path, o: BenchOptions, progress) -> Context:
    root, manifest = load_manifest(bundle)
    if manifest.llm is None and getattr(manifest, "audio", None) is None:
        raise InputError(f"{bundle} has neither a language model nor a speech model to measure")
    ctx = Context(root, o, manifest)
    if manifest.llm is None:
        return ctx
    ctx.sides["edge"] = {
        "side": "edge", "bundle": str(root), "threads": o.threads, "devices": dict(o.devices), "fallback": o.fallback
    }  # fmt: skip
    if "transformers" in o.peers:
        if o.source is None:
            ctx.missing["transformers"] = "needs the HF checkpoint the bundle was exported from (--source)"
        else:
            ctx.sides["transformers"] = {"side": "transformers", "source": str(o.source), "threads": o.threads}
    if "llama.cpp" in o.peers:
        cfg = {"side": "llama.cpp", "threads": o.threads, "same_gguf": str(root / manifest.llm.file)}
        if manifest.vision is not None:
            if o.source is None or o.llama_cpp_src is None:
                ctx.missing["llama.cpp (multimodal)"] = (
                    "needs --source and a llama.cpp source tree (--llama-cpp) "
                    "to convert the checkpoint with llama.cpp's own tools"
                )
            else:
                from .convert import prepare

                key = f"{o.source.absolute()}".replace("/", "_").strip("_")[-80:]
                files = prepare(o.source, o.work / "llama.cpp" / key, o.llama_cpp_src, manifest.llm.dtype, progress)
                cfg.update(text=str(files.text), mmproj=str(files.mmproj))
        ctx.sides["llama.cpp"] = cfg
    return ctx


def run(bundle: Path, o: BenchOptions, progress=NullProgress()) -> dict:
    """Benchmark ``bundle`` against the requested peers; a JSON-ready dict of every figure."""
    ctx = _setup(Path(bundle), o, progress)
    m = ctx.manifest
    images = [Path(p) for p in o.images] or standard_images(o.work / "images")
    if o.quick:
        images = images[:1]
    audio = getattr(m, "audio", None)
    results: dict = {
        "bundle": str(ctx.bundle),
        "model": m.name,
        "family": m.family,
        "llm_dtype": m.llm.dtype if m.llm else None,
        "vision_dtype": m.vision.dtype if m.vision else None,
        "audio_dtype": audio.dtype if audio else None,
        "conditions": {**conditions(o), "devices": dict(o.devices) or {"all": "cpu"}, "fallback": o.fallback},
        "not_measured": dict(ctx.missing),
        "sides": {},
    }
    logs = o.work / "logs"
    if m.llm is not None:
        _vlm(ctx, results, images, logs, progress)
    results["b5"] = _b5(ctx, logs, progress) if "b5" in o.phases else {"not_available": "not asked for (--phases)"}
    results["conditions"]["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return results


def _vlm(ctx: Context, results: dict, images: list, logs: Path, progress) -> None:
    """B1-B4 and the roofline for a bundle with a language model."""
    m = ctx.manifest
    workers = []
    for name, cfg in ctx.sides.items():
        progress.stage(f"loading {name}")
        try:
            workers.append(Worker(name, cfg, logs / f"{name}.log").start())
        except NotAvailable as exc:
            results["not_measured"][name] = str(exc)
    try:
        for w in workers:
            results["sides"][w.name] = {"load_ms": w.load_ms, "info": w.info}
        first = images[0]
        # B3 first: its prefills warm every side's LLM for B2; B1 warms the vision for B2
        depth = _image_depth(first, ctx) if m.vision is not None else 0
        phases = ctx.options.phases
        if "b3" in phases:
            results["b3"] = _b3(workers, depth, ctx, progress)
            results["b3_embd"] = _b3(workers, depth, ctx, progress, embeddings=True)
        if m.vision is not None and "b1" in phases:
            results["b1"] = _b1(workers, images, ctx, progress)
        if m.vision is not None and "b2" in phases:
            results["b2_warm"] = _b2_warm(workers, first, ctx, progress)
    finally:
        for w in workers:
            w.stop()
    if m.vision is not None and "b2" in phases:
        results["b2_cold"] = _cold(ctx, first, logs, progress)
    results["b4"] = _b4(results, ctx)
    if "b3" in phases:
        results["roofline"] = _roofline(results, ctx, progress)


def _alt(progress, desc: str, workers, op: str, args: dict, repeats: int, warmup: int = 0, per_side=None) -> dict:
    """:func:`alternate` under a progress bar counting requests."""
    with progress.bar((repeats + warmup) * len(workers), desc) as advance:
        return alternate(workers, op, args, repeats, warmup=warmup, per_side=per_side, advance=advance)


def _tile_flops(ctx: Context) -> Optional[float]:
    src = ctx.options.source
    if src is None or not (src / "config.json").is_file():
        return None
    return roofline.vision_flops_per_tile(json.loads((src / "config.json").read_text()))


def _b1(workers, images, ctx: Context, progress) -> list:
    o = ctx.options
    flops = _tile_flops(ctx)
    rows = []
    progress.stage("B1 vision encode")
    for i, img in enumerate(images):
        default = _alt(
            progress, f"B1 {_label(img)}", workers, "encode", {"image": str(img)}, o.rounds, warmup=1 if i == 0 else 0
        )
        rows.append(_b1_row(img, None, default, flops))
        ours = default.get("edge", {}).get("median")
        if ours is None:
            continue
        budget = int(o.budget_tokens or max(1, ours["image_tokens"] // 3))
        probe = _probe_budget(workers, img, budget)
        if isinstance(probe, str):
            rows.append({"image": _label(img), "budget": budget, "skipped": probe})
            continue
        per_side = {"transformers": {"longest_edge": probe.get("longest_edge")}}
        res = _alt(
            progress,
            f"B1 {_label(img)} budget {budget}",
            workers,
            "encode",
            {"image": str(img), "max_image_tokens": budget},
            o.rounds,
            per_side=per_side,
        )
        rows.append(_b1_row(img, budget, res, flops))
    return rows


def _probe_budget(workers, img, budget: int):
    """edge's plan under the budget (its ``longest_edge`` is what transformers is asked for),
    or why there is no budget row."""
    ours = next(w for w in workers if w.name == "edge")
    try:
        return ours.call("encode", image=str(img), max_image_tokens=budget)
    except (NotAvailable, SideError) as exc:
        return str(exc)


def _b1_row(img, budget, res: dict, flops: Optional[float]) -> dict:
    row = {"image": _label(img), "budget": budget, "flops_per_tile": flops}
    ours_tiles = res.get("edge", {}).get("median", {}).get("tiles")
    for side, entry in res.items():
        med = entry.get("median")
        if med is None:
            row[side] = {k: v for k, v in entry.items() if k != "samples"}
            continue
        tiles = med.get("tiles") or ours_tiles
        if med.get("tiles") is None and ours_tiles and res["edge"]["median"]["image_tokens"]:
            # llama.cpp reports tokens only: tiles from its token count at our tokens per tile
            tiles = round(med["image_tokens"] * ours_tiles / res["edge"]["median"]["image_tokens"])
        fig = {
            "image_ms": med["encode_ms"],
            "preprocess_ms": med["preprocess_ms"],
            "tiles": tiles,
            "image_tokens": med["image_tokens"],
            "tile_ms": med["encode_ms"] / tiles if tiles else None,
        }
        if flops and tiles:
            fig["gflops"] = flops * tiles / (med["encode_ms"] / 1e3) / 1e9
        row[side] = fig
    return row


def _label(img: Path) -> str:
    from PIL import Image

    with Image.open(img) as im:
        return f"{im.width}x{im.height}"


def _b2_warm(workers, image: Path, ctx: Context, progress) -> dict:
    progress.stage("B2 time to first token (warm)")
    # --quick: B1 and B3 ran just before on the same image, which is warm-up enough
    res = _alt(
        progress,
        "B2 warm",
        workers,
        "ttft",
        {"image": str(image), "prompt": ctx.options.prompt},
        ctx.options.rounds,
        warmup=0 if ctx.options.quick else 1,
        per_side={"llama.cpp": {"prompt": _rendered_prompt(ctx)}},
    )
    return {
        "image": _label(image),
        **{s: e.get("median", {k: v for k, v in e.items() if k != "samples"}) for s, e in res.items()},
    }


def _rendered_prompt(ctx: Context) -> str:
    """The chat-template text with the image marker, as edge renders it (llama.cpp's mtmd takes text)."""
    from edge.runtime.text.prompt import Message, render_chat

    m = ctx.manifest
    return render_chat(m.llm, m.prompt, [Message("user", ctx.options.prompt, ("image",))])


def _image_depth(image: Path, ctx: Context) -> int:
    """LLM positions one image takes at the bundle's default slicing (edge's plan, without encoding)."""
    from edge.options import Budget
    from edge.runtime.vision.image_io import load_image
    from edge.runtime.vision.schemes import scheme_for

    m = ctx.manifest
    plan = scheme_for(m.vision, ctx.bundle).plan(load_image(str(image)), Budget())
    n_tiles = plan.pixel_values.shape[0]
    return int(plan.info.get("image_tokens") or n_tiles * m.vision.tokens_per_image)


def _b3(workers, depth: int, ctx: Context, progress, embeddings: bool = False) -> list:
    """B3 rows at depth 0 and at one image's depth: token ids (``llm``), or with ``embeddings`` seeded
    embedding rows (``llm_embd``: how an image's rows enter the LLM; edge and llama.cpp only, and
    only 2 tokens decoded: decode after rows is decode after tokens)."""
    o = ctx.options
    vocab = ctx.manifest.llm.n_vocab
    if embeddings:
        workers = [w for w in workers if w.name in ("edge", "llama.cpp")]
        if len(workers) < 2:
            return []
    progress.stage("B3 LLM prefill and decode" + (" over embedding rows" if embeddings else ""))
    rows = []
    if not embeddings:
        warm = [w for w in workers if w.name != "edge"] + [w for w in workers if w.name == "edge"]
        alternate(warm, "llm", {"ids": token_ids(64, vocab), "depth": 0, "n_gen": 8}, 0, warmup=1)
    for d in sorted({0, depth}):
        if embeddings:
            op, args, n_gen = "llm_embd", {"n_rows": d + o.n_prompt, "seed": d, "depth": d, "n_gen": 2}, 2
        else:
            ids = token_ids(d + o.n_prompt, vocab, seed=d)
            op, args, n_gen = "llm", {"ids": ids, "depth": d, "n_gen": o.n_gen}, o.n_gen
        label = f"B3 {'rows' if embeddings else 'tokens'} depth {d}"
        res = _alt(progress, label, workers, op, args, o.llm_rounds, warmup=1 if embeddings and d == 0 else 0)
        row = {"depth": d, "n_prompt": o.n_prompt, "n_gen": n_gen, "rounds": o.llm_rounds}
        for s, e in res.items():
            if "median" not in e:
                row[s] = {k: v for k, v in e.items() if k != "samples"}
                continue
            row[s] = dict(e["median"])
            for key in B3_KEYS:
                if key in row[s]:
                    row[s][f"{key}_spread"] = spread(x.get(key) for x in e["samples"])
        row["paired"] = _paired(res)
        rows.append(row)
    return rows


# B3's figures: tokens per second of wall clock, and per second of the side's CPU time (the robust one
# on a shared machine; edge and llama.cpp only)
B3_KEYS = ("prefill_tok_s", "decode_tok_s", "prefill_cpu_tok_s", "decode_cpu_tok_s")


def _paired(res: dict, ours: str = "edge") -> dict:
    """Per-round ratios ours/peer of B3's figures (the requests of one round ran back to back, so
    a slow spell of the machine divides out): ``{peer: {key: {"median", "min", "max", "n"}}}``."""
    out: dict = {}
    mine = res.get(ours, {}).get("samples") or []
    for peer, entry in res.items():
        theirs = entry.get("samples") or []
        if peer == ours or not mine or not theirs:
            continue
        for key in B3_KEYS:
            ratios = [a[key] / b[key] for a, b in zip(mine, theirs) if a.get(key) and b.get(key)]
            if ratios:
                lo, hi = spread(ratios)
                out.setdefault(peer, {})[key] = {"median": median(ratios), "min": lo, "max": hi, "n": len(ratios)}
    return out


def _cold(ctx: Context, image: Path, logs: Path, progress) -> dict:
    """Fresh processes, alternating sides: load, then one TTFT request, then the peak RSS."""
    progress.stage("B2 cold start and B4 peak RSS (fresh processes)")
    samples: dict = {name: [] for name in ctx.sides}
    errors: dict = {}
    for _ in range(ctx.options.cold_rounds):
        for name, cfg in ctx.sides.items():
            if name in errors:
                continue
            w = Worker(name, cfg, logs / f"{name}-cold.log")
            try:
                w.start()
                prompt = _rendered_prompt(ctx) if name == "llama.cpp" else ctx.options.prompt
                res = w.call("ttft", image=str(image), prompt=prompt)
                samples[name].append(
                    {
                        "start_ms": w.start_ms,
                        "load_ms": w.load_ms,
                        "first_ttft_ms": res["ttft_ms"],
                        "cold_ms": w.start_ms + res["ttft_ms"],
                        "peak_rss": w.peak_rss,
                    }
                )
            except (NotAvailable, SideError) as exc:
                errors[name] = str(exc)
            finally:
                w.stop()
            time.sleep(SETTLE_S)
    out = {"image": _label(image)}
    for name in ctx.sides:
        if samples[name]:
            out[name] = {k: median(s[k] for s in samples[name]) for k in samples[name][0]}
        elif name in errors:
            out[name] = {"not_available": errors[name]}
    return out


def _b4(results: dict, ctx: Context) -> dict:
    from .ours import bundle_bytes

    disk = {"edge": bundle_bytes(ctx.bundle)}
    src = ctx.options.source
    if src is not None and "transformers" in ctx.sides:
        disk["transformers"] = sum(p.stat().st_size for p in src.iterdir() if p.suffix in (".safetensors", ".bin"))
    cpp = ctx.sides.get("llama.cpp", {})
    if cpp.get("text"):
        disk["llama.cpp"] = Path(cpp["text"]).stat().st_size + Path(cpp["mmproj"]).stat().st_size
    cold = results.get("b2_cold", {})
    return {
        name: {"disk_bytes": disk.get(name), "peak_rss": (cold.get(name) or {}).get("peak_rss")} for name in ctx.sides
    }


def _b5(ctx: Context, logs: Path, progress) -> dict:
    """Whisper real-time factor: edge's transcriber against faster-whisper (int8) on one file."""
    o = ctx.options
    if getattr(ctx.manifest, "audio", None) is None:
        return {"not_available": "the bundle has no audio (Whisper) component"}
    if o.audio is None:
        return {"not_available": "no audio file to transcribe (--audio FILE)"}
    progress.stage("B5 Whisper real-time factor")
    workers, out = [], {"audio": str(o.audio)}
    cfgs = {"edge": {"side": "edge-speech", "bundle": str(ctx.bundle), "threads": o.threads}}
    ct2 = o.whisper_model or (o.source if o.source is not None and (o.source / "model.bin").is_file() else None)
    if "faster-whisper" in o.peers and ct2 is None:
        out["faster-whisper"] = {"not_available": "needs the CTranslate2 model folder (--source) the bundle came from"}
    elif "faster-whisper" in o.peers:
        cfgs["faster-whisper"] = {"side": "faster-whisper", "model_dir": str(ct2), "threads": o.threads}
    try:
        for name, cfg in cfgs.items():
            try:
                workers.append(Worker(name, cfg, logs / f"{name}-speech.log").start())
            except NotAvailable as exc:
                out[name] = {"not_available": str(exc)}
        res = _alt(progress, "B5", workers, "transcribe", {"audio": str(o.audio)}, o.rounds, warmup=1)
    finally:
        for w in workers:
            w.stop()
    for name, entry in res.items():
        out[name] = entry.get("median", {k: v for k, v in entry.items() if k != "samples"})
    return out


def _roofline(results: dict, ctx: Context, progress) -> dict:
    progress.stage("memory bandwidth")
    bw = roofline.memory_bandwidth(ctx.options.threads)
    facts = roofline.gguf_facts(ctx.bundle / ctx.manifest.llm.file)
    kv_bytes = 4 if ctx.manifest.llm.dtype == "f32" else 2
    out = {"bandwidth_bytes_s": bw, "threads": ctx.options.threads, "gguf": facts, "depths": []}
    for row in results.get("b3", []):
        bpt = roofline.bytes_per_token(facts, row["depth"], kv_bytes)
        entry = {"depth": row["depth"], "bytes_per_token": bpt, "roofline_tok_s": bw / bpt}
        for side in ("edge", "llama.cpp", "transformers"):
            tok_s = (row.get(side) or {}).get("decode_tok_s")
            if tok_s:
                entry[f"{side}_fraction"] = tok_s / (bw / bpt)
        out["depths"].append(entry)
    return out
