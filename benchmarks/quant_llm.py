"""Which GGUF type for the ``q4``/``q8`` recipes: prefill, decode and fidelity of llama.cpp's types
on one LLM, measured on this CPU.

``python -m edge.benchmarks.quant_llm BUNDLE [--types Q4_0,Q4_K_M,Q5_K_M,Q8_0] [--work DIR]``
quantizes the (f16) bundle's LLM into each type with ``edge quantize`` (the recipes' own code path,
so each gets the recipes' fidelity report against the f16 bundle: top-1 agreement, KL, perplexity),
then times every type and f16 in one process, in alternating order (every other round reversed),
on the same seeded token ids: a prefill of ``--prompt`` tokens and ``--gen`` greedy decode steps.

Two clocks: the wall clock at ``--threads``, and the CPU time of the calling thread with one
thread (llama.cpp then computes on that thread alone). The second is what to compare on a shared
machine: other processes stretch the wall clock (and a 2-thread ggml graph waits at its barrier
for a preempted partner) but barely the CPU time of a single-threaded run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

TYPES = ("Q4_0", "Q4_K_M", "Q5_K_M", "Q8_0")


def quantized(bundle: Path, work: Path, ftype: str, threads: int) -> Path:
    """``bundle`` with its LLM quantized to ``ftype`` (cached under ``work``), fidelity report included."""
    from edge.options import QuantizeOptions
    from edge.quantize.api import quantize_bundle
    from edge.quantize.recipes import get_recipe

    out = work / f"llm-{ftype}"
    if not (out / "manifest.json").is_file():
        recipe = dataclasses.replace(get_recipe("q8"), name=f"llm-{ftype}", llm=ftype, vision=None, audio=None)
        quantize_bundle(bundle, out, recipe, QuantizeOptions(threads=threads))
    return out


def _time(llm, ids: list[int], n_gen: int) -> dict:
    llm.rewind(0, force=True)
    c0, w0 = time.thread_time(), time.perf_counter()
    logits = llm.eval_tokens(ids)
    c1, w1 = time.thread_time(), time.perf_counter()
    for _ in range(n_gen):
        logits = llm.eval_tokens([int(logits.argmax())])
    c2, w2 = time.thread_time(), time.perf_counter()
    return {"prefill": (c1 - c0, w1 - w0), "decode": (c2 - c1, w2 - w1)}


def measure(files: dict, threads: int, rounds: int, n_prompt: int, n_gen: int) -> dict:
    """``{name: {"prefill_tok_cpu_s", "decode_tok_cpu_s" (1 thread), "prefill_tok_s", "decode_tok_s"
    (``threads``), with (min, max)}}`` over ``rounds`` alternating rounds."""
    from edge.options import LLMOptions
    from edge.runtime.llama_backend import LLM

    from .common import token_ids

    single = {k: LLM(p, LLMOptions(n_ctx=n_prompt + n_gen + 8, threads=1)) for k, p in files.items()}
    # one thread: the wall-clock figures come from the same runs (a shared machine: ``--threads 1``)
    multi = (
        single
        if threads == 1
        else {k: LLM(p, LLMOptions(n_ctx=n_prompt + n_gen + 8, threads=threads)) for k, p in files.items()}
    )
    ids = token_ids(n_prompt, single[next(iter(single))].n_vocab, seed=1)
    samples: dict = {k: {"cpu": [], "wall": []} for k in files}
    names = list(files)
    for llm in {id(x): x for x in (*single.values(), *multi.values())}.values():  # warm-up: first-call costs
        _time(llm, ids[:64], 4)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            samples[k]["cpu"].append(_time(single[k], ids, n_gen))
            samples[k]["wall"].append(samples[k]["cpu"][-1] if threads == 1 else _time(multi[k], ids, n_gen))
    for llm in {id(x): x for x in (*single.values(), *multi.values())}.values():
        llm.close()
    out = {}
    for k, s in samples.items():
        fig = {}
        for clock, idx, suffix in (("cpu", 0, "_tok_cpu_s"), ("wall", 1, "_tok_s")):
            for phase, n in (("prefill", n_prompt), ("decode", n_gen)):
                rates = [n / x[phase][idx] for x in s[clock]]
                fig[phase + suffix] = statistics.median(rates)
                fig[phase + suffix + "_spread"] = [min(rates), max(rates)]
        out[k] = fig
    return out


def fidelity(bundle: Path) -> dict:
    """The LLM part of the recipes' fidelity report a quantized bundle's manifest holds."""
    m = json.loads((bundle / "manifest.json").read_text())
    llm = m.get("provenance", {}).get("fidelity", {}).get("llm", {})
    keys = ("bytes_after", "size_ratio", "top1_agreement", "kl", "perplexity_change")
    return {k: llm.get(k) for k in keys}


def table(figures: dict, fid: dict, threads: int) -> list[str]:
    """Markdown rows: speed relative to f16 and to Q4_K_M, and the fidelity each type costs."""
    base = figures.get("f16", {})
    out = [
        "| type | MB | prefill tok/CPU-s, 1 thread | decode tok/CPU-s, 1 thread "
        f"| prefill tok/s, {threads} threads | decode tok/s, {threads} threads | top-1 vs f16 | KL | perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(fig: dict, key: str) -> str:
        lo, hi = fig[key + "_spread"]
        rel = f", {fig[key] / base[key]:.2f}x f16" if base.get(key) and fig is not base else ""
        return f"{fig[key]:.0f} ({lo:.0f}-{hi:.0f}{rel})"

    for k, fig in figures.items():
        f = fid.get(k, {})
        mb = f"{f['bytes_after'] / 1e6:.0f}" if f.get("bytes_after") else "—"
        top1 = f"{f['top1_agreement']:.3f}" if f.get("top1_agreement") is not None else "1"
        kl = f"{f['kl']:.4f}" if f.get("kl") is not None else "0"
        ppl = f"{f['perplexity_change'] * 100:+.2f} %" if f.get("perplexity_change") is not None else "0"
        out.append(
            f"| {k} | {mb} | {cell(fig, 'prefill_tok_cpu_s')} | {cell(fig, 'decode_tok_cpu_s')} "
            f"| {cell(fig, 'prefill_tok_s')} | {cell(fig, 'decode_tok_s')} | {top1} | {kl} | {ppl} |"
        )
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """Command line of ``python -m edge.benchmarks.quant_llm``."""
    from edge.bundle import load_manifest
    from edge.errors import EdgeError

    ap = argparse.ArgumentParser(prog="python -m edge.benchmarks.quant_llm", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="a bundle with an f16 (or f32) LLM")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--work", type=Path, default=Path("quant-llm"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        root, m = load_manifest(args.bundle)
        files, fid = {m.llm.dtype: root / m.llm.file}, {}
        for t in [t.strip() for t in args.types.split(",") if t.strip()]:
            print(f"quantizing {t} (with its fidelity report) ...", file=sys.stderr, flush=True)
            q = quantized(root, args.work, t, args.threads)
            files[t], fid[t] = q / load_manifest(q)[1].llm.file, fidelity(q)
        print("timing ...", file=sys.stderr, flush=True)
        figures = measure(files, args.threads, args.rounds, args.prompt, args.gen)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps({"figures": figures, "fidelity": fid}, indent=1))
    else:
        print("\n".join(table(figures, fid, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
