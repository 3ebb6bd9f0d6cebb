"""``edge bench``: a bundle against transformers eager and llama.cpp's own multimodal path.

The harness is ``edge.benchmarks`` (the ``benchmarks/`` folder). This module only turns the command line and the
environment into :class:`BenchOptions` and prints the results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from edge.apps.cli_options import BUNDLE, DEVICE, FALLBACK, resolve_bundle
from edge.apps.terminal_progress import TerminalProgress
from edge.errors import InputError

LLAMA_CPP_ENV = "EDGE_LLAMA_CPP_SRC"


def bench(
    bundle: Optional[Path] = BUNDLE,
    image: List[Path] = typer.Option(
        [],
        "--image",
        "-i",
        help="An image to measure with; repeat for several (default: generated 512x512, 1024x768, 2048x1536 photos).",
    ),
    audio: Optional[Path] = typer.Option(
        None, "--audio", help="A speech recording for B5 (bundles with a Whisper component)."
    ),
    quick: bool = typer.Option(False, "--quick", help="One image, fewer repeats: under 10 minutes on 2 cores."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as one JSON object."),
    source: Optional[Path] = typer.Option(
        None,
        "--source",
        help="The HF checkpoint the bundle was exported from (the transformers peer, and llama.cpp's conversion).",
    ),
    llama_cpp: Optional[Path] = typer.Option(
        None,
        "--llama-cpp",
        help=f"A llama.cpp source tree (an unpacked llama-cpp-python sdist) whose converters make the llama.cpp peer's GGUFs (default: ${LLAMA_CPP_ENV}).",
    ),
    peers: str = typer.Option(
        "transformers,llama.cpp,faster-whisper", "--peers", help="Comma-separated peers to measure, or 'none'."
    ),
    repeats: int = typer.Option(0, "--repeats", help="Measured rounds per figure (0 = 2 with --quick, else 3)."),
    budget: Optional[int] = typer.Option(
        None, "--budget", help="Token budget of the B1 budget row (default: a third of the image's tokens)."
    ),
    report: Optional[Path] = typer.Option(
        None, "--report", help="Also write a Markdown report here, with a PNG chart and the JSON next to it."
    ),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Folder for generated images, converted peer files and logs (default: the edge cache)."
    ),
    threads: int = typer.Option(0, "--threads", "-t", help="Threads for every side (0 = all cores)."),
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    qwen2vl_vision: bool = typer.Option(
        False,
        "--qwen2vl-vision",
        help="Instead of a bundle: time a random Qwen2.5-VL-3B-shaped vision tower at 448x448 and 1024x768, "
        "ours f32/int8 vs transformers eager (--quick: 2 of its 32 blocks, 448x448, one round).",
    ),
    native: bool = typer.Option(
        False,
        "--native",
        help="Instead of the peers: the native library's edge-native-run against edge run and llama.cpp's libmtmd "
        "on the bundle, each run a fresh process (TTFT, encode per tile, decode tok/s, peak RSS); needs --native-build.",
    ),
    native_build: Optional[Path] = typer.Option(
        None, "--native-build", help="The cmake build folder of this project that holds edge-native-run (--native)."
    ),
    ttft_memory: bool = typer.Option(
        False,
        "--ttft-memory",
        help="Instead of the full harness: TTFT with its breakdown (warm, rounds rotating the sides, ratios within "
        "each round) and the peak RSS of fresh processes, against llama.cpp's libmtmd and transformers "
        "(edge.benchmarks.ttft_breakdown and .memory; docs/performance.md).",
    ),
) -> None:
    """Measure a bundle next to transformers eager (fp32) and llama.cpp (libmtmd) on the same inputs
    (a Whisper component: next to faster-whisper int8).

    Example: edge bench smolvlm.bundle --source ./SmolVLM-256M-Instruct --llama-cpp ./llama.cpp --quick;
    edge bench --quick --peers none    (the default model)
    """
    from edge.apps.backends import parse_devices
    from edge.apps.defaults import cache_dir
    from edge.benchmarks import report as report_mod
    from edge.benchmarks import runner

    if not 0 <= threads <= 1024:  # the same words as the help
        raise InputError(f"threads must be 0 (all cores) or 1 to 1024, got {threads}")
    if native or native_build is not None:
        return _native(bundle, native_build, image, quick, repeats, threads, work or cache_dir() / "bench", as_json)
    if ttft_memory:
        return _ttft_memory(
            bundle, source, llama_cpp, peers, image, repeats, threads, work or cache_dir() / "bench", as_json
        )
    if qwen2vl_vision:
        return _qwen2vl_vision(quick, repeats, threads or (os.cpu_count() or 1), work or cache_dir() / "bench", as_json)
    names = tuple(p.strip() for p in peers.split(",") if p.strip() and p.strip() != "none")
    src = llama_cpp or (Path(os.environ[LLAMA_CPP_ENV]) if os.environ.get(LLAMA_CPP_ENV) else None)
    if source is not None and not (source / "config.json").is_file():
        raise InputError(f"--source {source} is not a Hugging Face checkpoint folder (no config.json)")
    options = runner.BenchOptions(
        work=(work or cache_dir() / "bench").expanduser(),
        threads=threads or (os.cpu_count() or 1),
        quick=quick,
        repeats=repeats,
        images=tuple(str(p) for p in image),
        budget_tokens=budget,
        peers=names,
        source=source,
        llama_cpp_src=src,
        audio=audio,
        devices=parse_devices(device),
        fallback=fallback,
    )
    results = runner.run(resolve_bundle(bundle, threads, as_json), options, TerminalProgress(quiet=as_json))
    if report is not None:
        png = report_mod.chart([results], report.with_suffix(".png"))
        text = report_mod.markdown_section(results)
        if png is not None:
            text += f"\n![edge against its peers]({png.name})\n"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text + "\n", encoding="utf-8")
        report.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(results, indent=1, default=str))
    else:
        print(report_mod.text_summary(results))
        for comp, note in (results.get("sides", {}).get("edge", {}).get("info") or {}).get("emulated", {}).items():
            print(f"note: edge's {comp} ran on the {note}")


def _ttft_memory(bundle, source, llama_cpp, peers: str, image, repeats: int, threads: int, work: Path, as_json: bool):
    """``--ttft-memory``: :mod:`edge.benchmarks.ttft_breakdown` then :mod:`edge.benchmarks.memory` on one bundle."""
    import sys

    from edge.benchmarks import memory, ttft_breakdown
    from edge.benchmarks.inputs import standard_images

    if len(image) > 1:
        raise InputError("--ttft-memory takes one --image")
    src = llama_cpp or (Path(os.environ[LLAMA_CPP_ENV]) if os.environ.get(LLAMA_CPP_ENV) else None)
    names = tuple(p.strip() for p in peers.split(",") if p.strip() not in ("", "none", "faster-whisper"))
    work = work.expanduser()
    bundles = {"bundle": resolve_bundle(bundle, threads, as_json)}
    img = image[0] if image else standard_images(work / "images", ((512, 512),))[0]
    rounds, threads = repeats or 3, threads or (os.cpu_count() or 1)
    configs = ttft_breakdown.side_configs(bundles, threads, source, src, work, names)
    log = None if as_json else sys.stderr
    ttft = ttft_breakdown.measure_ttft(configs, bundles, img, rounds, work / "logs", log=log)
    mem_cfg = memory.one_shot_configs({k: v for k, v in configs.items() if v["side"] != "transformers"})
    mem = memory.measure_memory(mem_cfg, bundles, img, rounds, work / "logs", log=log)
    if as_json:
        print(json.dumps({"ttft": ttft, "memory": mem}, indent=1, default=str))
    else:
        print(ttft_breakdown.summary(ttft) + "\n\n" + memory.summary(mem))


def _qwen2vl_vision(quick: bool, repeats: int, threads: int, work: Path, as_json: bool) -> None:
    """``--qwen2vl-vision``: :func:`edge.benchmarks.qwen2vl_vision.measure` (issue 15's figures)."""
    import sys

    from edge.benchmarks import qwen2vl_vision as qv

    if repeats < 0:
        raise InputError(f"--repeats must be 0 or more, got {repeats}")
    depth, sizes = (2, ["448x448"]) if quick else (32, ["448x448", "1024x768"])
    runs = repeats or (1 if quick else 3)
    folder = work.expanduser() / "qwen2vl_vision"
    report = qv.measure(runs, threads, depth, sizes, int8=True, work=folder, log=sys.stderr)
    print(json.dumps(report, indent=1) if as_json else qv.summary(report))


def _native(
    bundle: Optional[Path], build: Optional[Path], images: List[Path], quick: bool, repeats: int, threads: int,
    work: Path, as_json: bool,
) -> None:  # fmt: skip
    """``--native``: :func:`edge.benchmarks.native_bench.measure` (issue 17's figures)."""
    import sys

    from edge.benchmarks import native_bench as nb
    from edge.benchmarks.inputs import standard_images

    if build is None:
        raise InputError("--native needs --native-build DIR (the cmake build folder that holds edge-native-run)")
    nb.find_native_run(build)  # a bad folder fails before any export or run
    if repeats < 0:
        raise InputError(f"--repeats must be 0 or more, got {repeats}")
    image = images[0] if images else standard_images(work.expanduser() / "images", ((1024, 768),))[0]
    options = nb.NativeBenchOptions(
        bundle=resolve_bundle(bundle, threads, as_json),
        native_build=build,
        image=image,
        threads=threads or (os.cpu_count() or 1),
        repeats=repeats or (2 if quick else 3),
        max_tokens=16 if quick else 32,
    )
    results = nb.measure(options, log=None if as_json else sys.stderr)
    print(json.dumps(results, indent=1) if as_json else nb.summary(results))
