"""Ratios against the targets, a terminal summary, the Markdown report and its PNG chart.

Over 400 lines on purpose: one table renderer per benchmark (B1-B5, targets, roofline),
kept in one module so the report's format is defined in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

PEER_NAMES = ("transformers", "llama.cpp")


@dataclass(frozen=True)
class Metric:
    """One compared figure: how to read it from the results, which way is better, its targets."""

    key: str
    label: str
    unit: str
    read: Callable[[dict, str], Optional[float]]
    lower_is_better: bool
    # peer -> (ratio bound, condition on the results or None, why the condition matters)
    targets: tuple = ()


def _get(results: dict, *path) -> Optional[float]:
    cur = results
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur if isinstance(cur, (int, float)) and not isinstance(cur, bool) else None


def _b1_default(results: dict, side: str, key: str) -> Optional[float]:
    rows = [r for r in results.get("b1", []) if r.get("budget") is None]
    return _get(rows[0], side, key) if rows else None


def _b3(results: dict, side: str, depth_index: int, key: str, table: str = "b3") -> Optional[float]:
    rows = results.get(table) or []
    return _get(rows[depth_index], side, key) if len(rows) > depth_index else None


def _int8_vision(results: dict) -> bool:
    return str(results.get("vision_dtype", "")).startswith("int8")


METRICS = (
    Metric(
        "ttft",
        "TTFT, one image, warm",
        "ms",
        lambda r, s: _get(r, "b2_warm", s, "ttft_ms"),
        True,
        (("transformers", 0.5, None, ""), ("llama.cpp", 0.8, None, "")),
    ),
    Metric(
        "ttft_cold",
        "TTFT, fresh process (spawn to first token)",
        "ms",
        lambda r, s: _get(r, "b2_cold", s, "cold_ms"),
        True,
    ),
    Metric(
        "tile",
        "Vision encode per tile",
        "ms",
        lambda r, s: _b1_default(r, s, "tile_ms"),
        True,
        (("llama.cpp", 0.6, _int8_vision, "the target is for int8 vision against llama.cpp's f16"),),
    ),
    Metric(
        "image", "Vision encode per image (default slicing)", "ms", lambda r, s: _b1_default(r, s, "image_ms"), True
    ),
    Metric(
        "prefill0",
        "LLM prefill, depth 0",
        "tok/s",
        lambda r, s: _b3(r, s, 0, "prefill_tok_s"),
        False,
        (("llama.cpp", 1.0, None, ""),),
    ),
    Metric(
        "prefill1",
        "LLM prefill, depth of one image",
        "tok/s",
        lambda r, s: _b3(r, s, 1, "prefill_tok_s"),
        False,
        (("llama.cpp", 1.0, None, ""),),
    ),
    Metric(
        "rows0",
        "LLM prefill of embedding rows, depth 0",
        "rows/s",
        lambda r, s: _b3(r, s, 0, "prefill_tok_s", "b3_embd"),
        False,
        (("llama.cpp", 1.0, None, ""),),
    ),
    Metric(
        "rows1",
        "LLM prefill of embedding rows, depth of one image",
        "rows/s",
        lambda r, s: _b3(r, s, 1, "prefill_tok_s", "b3_embd"),
        False,
        (("llama.cpp", 1.0, None, ""),),
    ),
    Metric(
        "decode0",
        "LLM decode, depth 0",
        "tok/s",
        lambda r, s: _b3(r, s, 0, "decode_tok_s"),
        False,
        (("transformers", 3.0, None, ""), ("llama.cpp", 0.95, None, "")),
    ),
    Metric(
        "decode1",
        "LLM decode, depth of one image",
        "tok/s",
        lambda r, s: _b3(r, s, 1, "decode_tok_s"),
        False,
        (("transformers", 3.0, None, ""), ("llama.cpp", 0.95, None, "")),
    ),
    Metric(
        "rss",
        "Peak RSS, fresh process, one TTFT",
        "MiB",
        lambda r, s: (_get(r, "b4", s, "peak_rss") or 0) / 2**20 or None,
        True,
        (("llama.cpp", 1.1, None, ""),),
    ),
    Metric("disk", "Bytes on disk", "MiB", lambda r, s: (_get(r, "b4", s, "disk_bytes") or 0) / 2**20 or None, True),
)


def ratio_rows(results: dict) -> list[dict]:
    """One row per metric: our value, each peer's, ours/peer, and each target's verdict."""
    rows = []
    for m in METRICS:
        ours = m.read(results, "edge")
        row = {"key": m.key, "metric": m.label, "unit": m.unit, "edge": ours, "lower_is_better": m.lower_is_better}
        for peer in PEER_NAMES:
            theirs = m.read(results, peer)
            row[peer] = theirs
            row[f"ratio_{peer}"] = ours / theirs if ours and theirs else None
        verdicts = []
        for peer, bound, condition, why in m.targets:
            ratio = row[f"ratio_{peer}"]
            op = "<=" if m.lower_is_better else ">="
            target = f"{op} {bound}x {peer}"
            if condition is not None and not condition(results):
                verdicts.append({"target": target, "met": None, "note": why})
            elif ratio is None:
                verdicts.append({"target": target, "met": None, "note": "not measured"})
            else:
                verdicts.append({"target": target, "met": ratio <= bound if m.lower_is_better else ratio >= bound})
        row["targets"] = verdicts
        rows.append(row)
    fractions = [d.get("edge_fraction") for d in results.get("roofline", {}).get("depths", [])[:1]]
    if fractions and fractions[0] is not None:
        rows.append(
            {
                "key": "roofline",
                "metric": "Decode, fraction of the memory-bandwidth roofline (depth 0)",
                "unit": "",
                "edge": fractions[0],
                "lower_is_better": False,
                "llama.cpp": results["roofline"]["depths"][0].get("llama.cpp_fraction"),
                "targets": [{"target": ">= 0.40 of roofline", "met": fractions[0] >= 0.40}],
            }
        )
    return rows


def _fmt(v: Optional[float], digits: int = 3) -> str:
    if v is None:
        return "—"
    if float(v).is_integer() and abs(v) < 1e6:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _verdict(t: dict) -> str:
    if t["met"] is None:
        return f"{t['target']}: n/a ({t.get('note', '')})"
    return f"{t['target']}: {'met' if t['met'] else 'NOT met'}"


def targets_table(all_results: list[dict]) -> list[str]:
    """Every target of every bundle in one Markdown table: the ratio it reads and the verdict."""
    out = ["| bundle | metric | target | ratio | verdict |", "|---|---|---|---:|---|"]
    for results in all_results:
        if results.get("llm_dtype") is None:
            continue
        for r in ratio_rows(results):
            for t in r["targets"]:
                peer = next((p for p in PEER_NAMES if t["target"].endswith(p)), None)
                value = r.get(f"ratio_{peer}") if peer else r.get("edge")
                verdict = "n/a: " + t.get("note", "") if t["met"] is None else ("met" if t["met"] else "**not met**")
                out.append(f"| {results['model']} | {r['metric']} | {t['target']} | {_fmt(value)} | {verdict} |")
    return out if len(out) > 2 else []


def text_summary(results: dict) -> str:
    """The ratio table as plain text for the terminal."""
    if results.get("llm_dtype") is None:  # a speech-only bundle
        return "\n".join(
            [f"{results['model']} (audio {results.get('audio_dtype')})", *_b5_lines(results, markdown=False)]
        )
    lines = [
        f"{results['model']} ({results['family']}; LLM {results['llm_dtype']}, vision {results['vision_dtype']}, "
        f"audio {results.get('audio_dtype')})"
    ]
    head = f"{'metric':46} {'edge':>10} {'transformers':>13} {'ratio':>7} {'llama.cpp':>10} {'ratio':>7}"
    lines += [head, "-" * len(head)]
    for r in ratio_rows(results):
        label = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        lines.append(
            f"{label[:46]:46} {_fmt(r['edge']):>10} {_fmt(r.get('transformers')):>13} "
            f"{_fmt(r.get('ratio_transformers')):>7} {_fmt(r.get('llama.cpp')):>10} "
            f"{_fmt(r.get('ratio_llama.cpp')):>7}"
        )
        for t in r["targets"]:
            lines.append(f"{'':6}target {_verdict(t)}")
    lines += _b5_lines(results, markdown=False)
    for what, why in results.get("not_measured", {}).items():
        lines.append(f"not measured: {what}: {why}")
    return "\n".join(lines)


def markdown_section(results: dict) -> str:
    """The Markdown section of one bundle's results: ratios, then every phase's figures."""
    if results.get("llm_dtype") is None:  # a speech-only bundle
        return "\n".join(
            [f"### {results['model']} — audio {results.get('audio_dtype')}", "", *_b5_lines(results, markdown=True), ""]
        )
    out = [f"### {results['model']} — LLM {results['llm_dtype']}, vision {results['vision_dtype']}", ""]
    out += [
        "| metric | edge | transformers | edge / transformers | llama.cpp | edge / llama.cpp | targets |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in ratio_rows(results):
        label = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        targets = "; ".join(_verdict(t) for t in r["targets"]) or ""
        out.append(
            f"| {label} | {_fmt(r['edge'])} | {_fmt(r.get('transformers'))} | {_fmt(r.get('ratio_transformers'))} "
            f"| {_fmt(r.get('llama.cpp'))} | {_fmt(r.get('ratio_llama.cpp'))} | {targets} |"
        )
    out += ["", *_b1_table(results), *_b2_table(results), *_b3_table(results), *_b4_b5(results)]
    if results.get("borrowed"):
        out += [f"transformers figures: {results['borrowed']}", ""]
    missing = results.get("not_measured", {})
    if missing:
        out += ["Not measured: " + "; ".join(f"{k}: {v}" for k, v in missing.items()), ""]
    return "\n".join(out)


def _sides(results: dict) -> list[str]:
    return list(results.get("sides", {}))


def _b1_table(results: dict) -> list[str]:
    rows = results.get("b1")
    if not rows:
        return []
    out = [
        "B1 vision encode (median; preprocessing excludes decoding the file):",
        "",
        "| image | budget (tokens) | side | tiles | image tokens | preprocess ms | encode ms / image | ms / tile | GFLOP/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.get("skipped"):
            out.append(f"| {row['image']} | {row.get('budget')} | — | no budget row: {row['skipped']} ||||||")
            continue
        for side in _sides(results):
            fig = row.get(side)
            if not isinstance(fig, dict):
                continue
            if "image_ms" not in fig:
                out.append(
                    f"| {row['image']} | {row.get('budget') or 'default'} | {side} | {fig.get('not_available') or fig.get('error') or row.get('skipped', '')} ||||||"
                )
                continue
            out.append(
                f"| {row['image']} | {row.get('budget') or 'default'} | {side} | {_fmt(fig['tiles'])} | {_fmt(fig['image_tokens'])} "
                f"| {_fmt(fig['preprocess_ms'])} | {_fmt(fig['image_ms'])} | {_fmt(fig['tile_ms'])} | {_fmt(fig.get('gflops'))} |"
            )
    return out + [""]


def _b2_table(results: dict) -> list[str]:
    warm, cold = results.get("b2_warm"), results.get("b2_cold", {})
    if not warm:
        return []
    out = [
        f"B2 time to first token, image {warm.get('image')} (median ms):",
        "",
        "| side | warm TTFT | preprocess | encode | prefill | prompt positions | cold: spawn to loaded | cold: first TTFT |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side in _sides(results):
        w, c = warm.get(side) or {}, cold.get(side) or {}
        if "ttft_ms" not in w:
            out.append(f"| {side} | {w.get('not_available') or w.get('error') or '—'} |||||||")
            continue
        out.append(
            f"| {side} | {_fmt(w['ttft_ms'])} | {_fmt(w['preprocess_ms'])} | {_fmt(w['encode_ms'])} | {_fmt(w['prefill_ms'])} "
            f"| {_fmt(w.get('prompt_tokens'))} | {_fmt(c.get('start_ms'))} | {_fmt(c.get('first_ttft_ms'))} |"
        )
    return out + [""]


def _spread_fmt(fig: dict, key: str) -> str:
    lo_hi = fig.get(f"{key}_spread")
    value = _fmt(fig.get(key))
    return f"{value} ({_fmt(lo_hi[0])}-{_fmt(lo_hi[1])})" if lo_hi and lo_hi[0] != lo_hi[1] else value


def _paired_fmt(row: dict, key: str, peer: str = "llama.cpp") -> str:
    p = (row.get("paired") or {}).get(peer, {}).get(key)
    return f"{p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f})" if p else "—"


def _b3_table(results: dict) -> list[str]:
    rows = results.get("b3")
    if not rows:
        return []
    roof = {d["depth"]: d for d in results.get("roofline", {}).get("depths", [])}
    n = rows[0].get("rounds")
    out = [
        f"B3 LLM (median of {n or 'the'} alternating requests per side, (min-max) beside it; llama.cpp runs the "
        "bundle's own GGUF; edge / llama.cpp: the median of the per-round ratios, (min-max); tok/CPU-s: per second "
        "of the side's CPU time, what a shared machine stretches least):",
        "",
        "| input | depth | side | prefill tok/s | decode tok/s | prefill tok/CPU-s | decode tok/CPU-s | of roofline "
        "| prefill edge / llama.cpp | decode edge / llama.cpp | prefill, CPU time | decode, CPU time |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, table in (("tokens", rows), ("embedding rows", results.get("b3_embd") or [])):
        for row in table:
            for side in _sides(results):
                fig = row.get(side)
                if not fig:
                    continue
                frac = roof.get(row["depth"], {}).get(f"{side}_fraction") if kind == "tokens" else None
                tok = kind == "tokens"
                decode = _spread_fmt(fig, "decode_tok_s") if tok else "—"
                decode_cpu = _spread_fmt(fig, "decode_cpu_tok_s") if tok and "decode_cpu_tok_s" in fig else "—"
                keys = ("prefill_tok_s", "decode_tok_s", "prefill_cpu_tok_s", "decode_cpu_tok_s")
                ratios = [
                    "" if side != "edge" else (_paired_fmt(row, k) if tok or "prefill" in k else "—") for k in keys
                ]
                cpu = _spread_fmt(fig, "prefill_cpu_tok_s") if "prefill_cpu_tok_s" in fig else "—"
                out.append(
                    f"| {kind} | {row['depth']} | {side} | {_spread_fmt(fig, 'prefill_tok_s')} | {decode} | {cpu} "
                    f"| {decode_cpu} | {_fmt(frac, 2)} | {' | '.join(ratios)} |"
                )
    rf = results.get("roofline", {})
    if rf.get("bandwidth_bytes_s"):
        out += [
            "",
            f"Roofline: copy bandwidth {rf['bandwidth_bytes_s'] / 1e9:.1f} GB/s on {rf['threads']} threads; "
            + "; ".join(
                f"depth {d['depth']}: {d['bytes_per_token'] / 2**20:.0f} MiB read per token -> "
                f"{d['roofline_tok_s']:.0f} tok/s at best"
                for d in rf.get("depths", [])
            ),
        ]
    return out + [""]


def _b4_b5(results: dict) -> list[str]:
    out = ["B4 memory and disk:", "", "| side | peak RSS MiB | on disk MiB |", "|---|---:|---:|"]
    for side, fig in results.get("b4", {}).items():
        rss, disk = fig.get("peak_rss"), fig.get("disk_bytes")
        out.append(f"| {side} | {_fmt(rss / 2**20 if rss else None)} | {_fmt(disk / 2**20 if disk else None)} |")
    return out + [""] + _b5_lines(results, markdown=True) + [""]


def _b5_lines(results: dict, markdown: bool) -> list[str]:
    b5 = results.get("b5") or {}
    if "not_available" in b5:
        return [f"B5 Whisper: not measured ({b5['not_available']})"]
    sides = [k for k in b5 if k != "audio"]
    ours, peer = (b5.get("edge") or {}).get("rtf"), (b5.get("faster-whisper") or {}).get("rtf")
    ratio = f"; edge / faster-whisper = {_fmt(ours / peer)}" if ours and peer else ""
    if not markdown:
        return [
            "B5 Whisper real-time factor: " + ", ".join(f"{s} {_fmt((b5[s] or {}).get('rtf'))}" for s in sides) + ratio
        ]
    peer_type = ((results.get("sides") or {}).get("faster-whisper") or {}).get("info", {}).get("compute_type", "int8")
    out = [
        f"B5 Whisper on {Path(b5.get('audio', '')).name} (median; real-time factor = wall / audio seconds; "
        f"faster-whisper computes in {peer_type}){ratio}:",
        "",
        "| side | real-time factor | wall ms | audio s | text |",
        "|---|---:|---:|---:|---|",
    ]
    for s in sides:
        fig = b5[s] or {}
        if "rtf" not in fig:
            out.append(f"| {s} | {fig.get('not_available') or fig.get('error') or '—'} ||||")
            continue
        out.append(
            f"| {s} | {_fmt(fig['rtf'])} | {_fmt(fig['wall_ms'])} | {_fmt(fig['audio_s'])} | {fig.get('text', '')[:60]} |"
        )
    return out


def chart(all_results: list[dict], path: Path) -> Optional[Path]:
    """A PNG of edge's advantage per metric and peer (>1: edge better), one panel per bundle.

    Needs matplotlib; returns None (and writes nothing) without it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    all_results = [r for r in all_results if r.get("llm_dtype") is not None]
    if not all_results:
        return None
    keys = ("ttft", "ttft_cold", "tile", "prefill0", "rows1", "decode0", "decode1", "rss")
    names = {
        "ttft": "TTFT warm",
        "ttft_cold": "TTFT cold",
        "tile": "encode/tile",
        "prefill0": "prefill",
        "rows1": "prefill rows d=img",
        "decode0": "decode d=0",
        "decode1": "decode d=img",
        "rss": "peak RSS",
    }
    cols = min(2, len(all_results))
    rows_n = -(-len(all_results) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.5 * cols, 4.4 * rows_n), squeeze=False)
    for ax in axes.flat[len(all_results) :]:
        ax.set_visible(False)
    for ax, results in zip(axes.flat, all_results):
        rows = {r["key"]: r for r in ratio_rows(results)}
        for k, peer in enumerate(PEER_NAMES):
            vals = []
            for key in keys:
                ratio = rows.get(key, {}).get(f"ratio_{peer}")
                vals.append((1 / ratio if rows[key]["lower_is_better"] else ratio) if ratio else float("nan"))
            xs = [i + (k - 0.5) * 0.38 for i in range(len(keys))]
            ax.bar(xs, vals, width=0.38, label=f"vs {peer}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([names[k] for k in keys], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{results['model']} (LLM {results['llm_dtype']}, vision {results['vision_dtype']})", fontsize=9)
        ax.set_ylabel("edge advantage (>1: edge better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
