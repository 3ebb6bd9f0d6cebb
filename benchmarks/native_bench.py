"""``edge bench --native``: the native library's example program against the Python runtime and
llama.cpp's own multimodal path, on the same bundle, image, prompt and threads.

Each measured run is a fresh process, so peak RSS is the whole process's (its ``VmHWM``) and
nothing is warm but the OS file cache (one untimed run per side fills it first). The sides:

- ``native``: ``edge-native-run BUNDLE --image IMG --prompt P --json`` (libedge, edge/native);
- ``python``: ``edge run BUNDLE -i IMG -p P --json`` (the Python runtime);
- ``llama.cpp``: the bundle's LLM GGUF and projector GGUF through libmtmd
  (:class:`~edge.benchmarks.peer_llamacpp.LlamaCppPeer`, in ``python -m edge.benchmarks.native_bench``),
  with the prompt the bundle's chat template renders.

Rounds alternate the order of the sides (round r starts with side r mod 3). Figures: TTFT, image
encode time (per tile where the tile count is known), decode tokens/s, peak RSS, process wall time;
medians with min/max, and ratios "how many times better the native side is" (> 1: native better).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge.errors import InputError, RuntimeFailure

from .common import NotAvailable, median

SIDES = ("native", "python", "llama.cpp")
EXE = "edge-native-run"
# where a build directory of the root CMakeLists.txt (or an install prefix) puts the example
_EXE_PLACES = ("edge/native/tools", "tools", "bin", ".")
FIGURES = ("ttft_ms", "encode_ms", "encode_ms_per_tile", "decode_tok_s", "peak_rss_mb", "wall_s")
_LOWER_IS_BETTER = {"ttft_ms", "encode_ms", "encode_ms_per_tile", "peak_rss_mb", "wall_s"}


@dataclass(frozen=True)
class NativeBenchOptions:
    """What ``edge bench --native`` measures."""

    bundle: Path  # the bundle directory
    native_build: Path  # a build directory of the root CMakeLists.txt (holds edge-native-run)
    image: Path  # the image of every request
    prompt: str = "Describe this image in one sentence."
    threads: int = 2  # threads of every side
    repeats: int = 3  # measured rounds
    max_tokens: int = 32  # tokens generated per request
    sides: tuple = SIDES
    timeout_s: float = 900.0  # per run


def find_native_run(build: Path) -> Path:
    """The ``edge-native-run`` executable of a build directory.

    Raises:
        InputError: ``build`` is no directory, or holds no executable example.
    """
    if not build.is_dir():
        raise InputError(f"--native-build {build} is not a directory (a cmake build folder of this project)")
    for place in _EXE_PLACES:
        exe = build / place / EXE
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    raise InputError(f"no executable {EXE} in {build} (build it: cmake --build {build} --target {EXE})")


def _vm_hwm(pid: int) -> int:
    """``VmHWM`` (the peak RSS so far) of a live process, in bytes; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _run(cmd: list[str], timeout: float) -> tuple[str, str, int, float, int]:
    """Run ``cmd`` as a fresh process: stdout, stderr, exit code, wall seconds and its peak RSS in bytes.

    The peak is the process's own ``VmHWM``, sampled every 10 ms until it exits (it only grows, so the
    last sample holds it but for the final milliseconds). Not ``ru_maxrss`` from ``wait4``: Linux
    carries the parent's high-water mark into a child across ``exec``, so every side would read at
    least this harness's own RSS."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks: dict[str, bytes] = {}

    def read(name: str, pipe) -> None:  # both pipes drained at once, so neither fills up and blocks the child
        chunks[name] = pipe.read()
        pipe.close()

    readers = [threading.Thread(target=read, args=(n, f)) for n, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    peak, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _vm_hwm(proc.pid))
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        for r in readers:
            r.join()
        raise RuntimeFailure(f"{Path(cmd[0]).name} ran past {timeout:.0f} s")
    for r in readers:
        r.join()
    out, err = (chunks.get(k, b"").decode(errors="replace") for k in ("out", "err"))
    return out, err, proc.returncode, time.perf_counter() - t0, peak


def side_command(side: str, o: NativeBenchOptions, exe: Optional[Path]) -> list[str]:
    """The command line of one fresh run of ``side``."""
    if side == "native":
        if exe is None:
            raise InputError("the native side needs --native-build")
        return [str(exe), str(o.bundle), "--image", str(o.image), "--prompt", o.prompt, "--json",
                "--threads", str(o.threads), "--max-tokens", str(o.max_tokens)]  # fmt: skip
    if side == "python":
        return [sys.executable, "-m", "edge.apps.cli", "run", str(o.bundle), "-i", str(o.image), "-p", o.prompt,
                "--json", "--threads", str(o.threads), "-n", str(o.max_tokens)]  # fmt: skip
    if side == "llama.cpp":
        cfg = {"bundle": str(o.bundle), "image": str(o.image), "prompt": o.prompt, "threads": o.threads,
               "max_tokens": o.max_tokens}  # fmt: skip
        return [sys.executable, "-m", "edge.benchmarks.native_bench", json.dumps(cfg)]
    raise InputError(f"unknown side {side!r}; the sides are {list(SIDES)}")


def _last_json(text: str) -> Optional[dict]:
    """The JSON object a side printed last (the whole output, or its last line)."""
    for candidate in (text.strip(), text.strip().splitlines()[-1] if text.strip() else ""):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _record(side: str, data: dict, wall: float, rss: int) -> dict:
    """One run's figures, named alike for every side."""
    if side == "llama.cpp":
        rec = {k: data.get(k) for k in ("ttft_ms", "encode_ms", "prompt_tokens", "decode_tok_s", "generated")}
        rec["tiles"] = None
    else:
        t = data.get("timings", {})
        rec = {
            "ttft_ms": t.get("ttft_ms"), "encode_ms": t.get("image_encode_ms"), "tiles": t.get("tiles"),
            "prompt_tokens": t.get("prompt_tokens"), "decode_tok_s": t.get("decode_tokens_per_s"),
            "generated": t.get("generated_tokens", len(data.get("tokens", []))),
        }  # fmt: skip
    tiles = rec.get("tiles")
    rec["encode_ms_per_tile"] = rec["encode_ms"] / tiles if tiles and rec.get("encode_ms") is not None else None
    return dict(rec, peak_rss_mb=rss / 2**20, wall_s=wall)


def run_side(side: str, o: NativeBenchOptions, exe: Optional[Path]) -> dict:
    """One fresh-process run of ``side``: its figures.

    Raises:
        NotAvailable: the side cannot run this bundle (e.g. no projector GGUF for llama.cpp).
        RuntimeFailure: the side failed (its last error line).
    """
    out, err, code, wall, rss = _run(side_command(side, o, exe), o.timeout_s)
    data = _last_json(out)
    if code == 3 and data and data.get("not_available"):
        raise NotAvailable(data["not_available"])
    if code != 0 or data is None:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise RuntimeFailure(f"the {side} side failed (exit code {code}): {lines[-1] if lines else 'no output'}"[:300])
    return _record(side, data, wall, rss)


def _stats(runs: list[dict]) -> dict:
    out: dict = {"median": {}, "min": {}, "max": {}, "spread_pct": {}}
    for fig in FIGURES:
        vals = [r[fig] for r in runs if r.get(fig) is not None]
        if not vals:
            continue
        mid = median(vals)
        out["median"][fig], out["min"][fig], out["max"][fig] = mid, min(vals), max(vals)
        out["spread_pct"][fig] = 100.0 * (max(vals) - min(vals)) / mid if mid else 0.0
    return out


def measure(o: NativeBenchOptions, log=None) -> dict:
    """Warm-up runs, then ``o.repeats`` alternated rounds of fresh processes; medians, spread, ratios."""
    if o.repeats < 1:
        raise InputError(f"repeats must be 1 or more, got {o.repeats}")
    if not (o.bundle / "manifest.json").is_file():
        raise InputError(f"{o.bundle} is not a bundle (no manifest.json)")
    if not o.image.is_file():
        raise InputError(f"the image {o.image} does not exist")
    exe = find_native_run(o.native_build) if "native" in o.sides else None
    sides = {s: {"runs": []} for s in o.sides}
    for s in o.sides:  # warm-up: fills the file cache, and finds out early whether a side can run at all
        try:
            run_side(s, o, exe)
        except NotAvailable as exc:
            sides[s]["not_available"] = str(exc)
    live = [s for s in o.sides if "not_available" not in sides[s]]
    for r in range(o.repeats):
        order = live[r % len(live) :] + live[: r % len(live)] if live else []
        for s in order:
            rec = run_side(s, o, exe)
            sides[s]["runs"].append(rec)
            if log is not None:
                print(f"round {r + 1}/{o.repeats} {s}: ttft {rec['ttft_ms']:.0f} ms", file=log, flush=True)
    for s in live:
        sides[s].update(_stats(sides[s]["runs"]))
    _llamacpp_tiles(sides)
    return {
        "bundle": str(o.bundle), "image": str(o.image), "prompt": o.prompt, "threads": o.threads,
        "repeats": o.repeats, "max_tokens": o.max_tokens, "native_run": str(exe) if exe else None,
        "sides": sides, "ratios": _ratios(sides),
    }  # fmt: skip


def _llamacpp_tiles(sides: dict) -> None:
    """llama.cpp's encode time per tile, with edge's tile count, where its prompt is as long as edge's
    (the same slicing); mtmd reports no tile count of its own."""
    peer, ours = sides.get("llama.cpp", {}), sides.get("python") or sides.get("native") or {}
    pm, om = peer.get("median", {}), ours.get("median", {})
    tiles = [r.get("tiles") for r in ours.get("runs", []) if r.get("tiles")]
    p_tok = [r.get("prompt_tokens") for r in peer.get("runs", [])]
    o_tok = [r.get("prompt_tokens") for r in ours.get("runs", [])]
    if pm.get("encode_ms") is not None and tiles and p_tok and o_tok and p_tok[0] == o_tok[0] and om:
        pm["encode_ms_per_tile"] = pm["encode_ms"] / tiles[0]


def _ratios(sides: dict) -> dict:
    """``native_vs_<side>``: how many times better native is per figure (> 1: native better)."""
    nat = sides.get("native", {}).get("median", {})
    out = {}
    for s, data in sides.items():
        med = data.get("median", {})
        if s == "native" or not med or not nat:
            continue
        ratios = {}
        for fig in FIGURES:
            a, b = nat.get(fig), med.get(fig)
            if a and b:
                ratios[fig] = b / a if fig in _LOWER_IS_BETTER else a / b
        out[f"native_vs_{s}"] = ratios
    return out


def summary(results: dict) -> str:
    """A plain-text table of the medians (min-max) and the ratios."""
    names = {"ttft_ms": "TTFT ms", "encode_ms": "encode ms", "encode_ms_per_tile": "encode/tile ms",
             "decode_tok_s": "decode tok/s", "peak_rss_mb": "peak RSS MiB", "wall_s": "process s"}  # fmt: skip
    lines = [f"native bench: {results['bundle']}  threads={results['threads']}  rounds={results['repeats']}"]
    for s, data in results["sides"].items():
        if "not_available" in data:
            lines.append(f"  {s:10s} not available: {data['not_available']}")
            continue
        cells = []
        for fig, label in names.items():
            if fig in data.get("median", {}):
                lo, hi = data["min"].get(fig, data["median"][fig]), data["max"].get(fig, data["median"][fig])
                cells.append(f"{label} {data['median'][fig]:.1f} ({lo:.1f}-{hi:.1f})")
        lines.append(f"  {s:10s} " + "  ".join(cells))
    for key, ratios in results["ratios"].items():
        lines.append(f"  {key}: " + "  ".join(f"{names[f]} x{v:.2f}" for f, v in ratios.items()))
    return "\n".join(lines)


def _llamacpp_once(cfg: dict) -> dict:
    """One llama.cpp request in this process: the bundle's GGUFs through libmtmd, the bundle's prompt."""
    from edge.bundle import load_manifest
    from edge.runtime.text.prompt import Message, render_chat

    from .peer_llamacpp import LlamaCppPeer

    root, m = load_manifest(Path(cfg["bundle"]))
    if m.vision is None or not getattr(m.vision, "projector_gguf", None) or m.llm is None:
        note = getattr(m.vision, "projector_gguf_note", "") if m.vision is not None else ""
        raise NotAvailable(f"the bundle has no projector GGUF for llama.cpp{': ' + note if note else ''}")
    if m.llm.chat_template:
        text = render_chat(m.llm, m.prompt, [Message("user", cfg["prompt"], (cfg["image"],))])
    else:
        text = m.prompt.image_marker + "\n" + cfg["prompt"]
    if m.llm.bos_token and text.startswith(m.llm.bos_token):  # mtmd_tokenize puts the BOS itself
        text = text[len(m.llm.bos_token) :]
    text = text.replace(m.prompt.image_marker, "<image>")
    t0 = time.perf_counter()
    peer = LlamaCppPeer(
        int(cfg["threads"]), 4096, text=str(root / m.llm.file), mmproj=str(root / m.vision.projector_gguf)
    )
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        first = peer.ttft(cfg["image"], text)
        dec = peer.decode_after(int(cfg["max_tokens"]))
    finally:
        peer.close()
    return dict(first, load_ms=load_ms, decode_tok_s=dec["decode_tok_s"], generated=dec["generated"])


def main(argv: list[str]) -> int:
    """``python -m edge.benchmarks.native_bench CONFIG_JSON``: one llama.cpp run, one JSON line out
    (exit code 3 with ``{"not_available": ...}`` when the bundle cannot run there)."""
    try:
        print(json.dumps(_llamacpp_once(json.loads(argv[0]))))
        return 0
    except NotAvailable as exc:
        print(json.dumps({"not_available": str(exc)}))
        return 3
    except Exception as exc:  # noqa: BLE001 - one line for the parent, which names the side
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
