"""`edge run` and `edge chat`: answering with a bundle."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from edge.apps.cli_options import (
    BUNDLE,
    DEVICE,
    FALLBACK,
    GPU_LAYERS,
    MAX_IMAGE_TOKENS,
    MAX_TILES,
    PROVIDER,
    THREADS,
    VERBOSE,
    load_bundle,
)


def run(
    bundle: Optional[Path] = BUNDLE,
    prompt: str = typer.Option(..., "--prompt", "-p", help="The prompt; '-' reads it from stdin."),
    image: List[Path] = typer.Option([], "--image", "-i", help="An image file; repeat for several."),
    video: List[Path] = typer.Option(
        [], "--video", help="A video file (families that take video: SmolVLM2, Qwen2.5-VL); repeat for several."
    ),
    frames: Optional[int] = typer.Option(
        None,
        "--frames",
        help="Frames to sample from each --video (SmolVLM2: at most; Qwen2.5-VL: rounded to pairs; "
        "default: the model's own sampling).",
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; higher = more random."),
    top_k: int = typer.Option(40, "--top-k", help="Sample among the k most likely tokens (0 = all)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling (reproducible output)."),
    no_template: bool = typer.Option(
        False,
        "--no-template",
        help="Send the prompt as is; images go where the family's placeholder (<image> for LLaVA) stands, videos at <video>.",
    ),
    system: Optional[str] = typer.Option(None, "--system", help="A system message (with the chat template)."),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    max_image_tokens: Optional[int] = MAX_IMAGE_TOKENS,
    max_tiles: Optional[int] = MAX_TILES,
    threads: int = THREADS,
    as_json: bool = typer.Option(
        False,
        "--json",
        help=("Print one JSON object at the end (text, tokens, timings, where each graph ran) instead of streaming."),
    ),
    provider: List[str] = PROVIDER,
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    gpu_layers: Optional[str] = GPU_LAYERS,
    verbose: bool = VERBOSE,
) -> None:
    """Answer one prompt, streaming the answer to stdout (Ctrl-C stops it: exit code 130).

    Example: edge run llava.bundle --image cat.jpg --prompt "What is in this picture?"
    """
    from edge.apps.backends import command_options
    from edge.options import Budget, GenerateOptions, SamplingOptions

    runtime = command_options(threads, ctx, provider, verbose, device, fallback, gpu_layers)
    # one answer, then the process ends: the vision session is freed once the images are encoded
    runtime = dataclasses.replace(runtime, one_shot=True)
    if prompt == "-":
        prompt = sys.stdin.read()
    options = GenerateOptions(
        max_tokens=max_tokens,
        sampling=SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed),
        template=not no_template,
        system=system,
        budget=Budget(max_tiles=max_tiles, max_image_tokens=max_image_tokens),
    )
    from edge.runtime.vision.image_io import load_image

    for path in image:  # a bad image file is reported before the model loads (or is first exported)
        load_image(str(path))
    _check_videos(video, frames)
    pipe = load_bundle(bundle, threads, as_json, runtime)
    videos = _sample_videos(pipe, video, frames)
    from edge.apps.interrupt import StopOnInterrupt

    with StopOnInterrupt() as stop:
        finished = _answer(pipe, pipe.stream(prompt, [str(p) for p in image], options, videos=videos), as_json, stop)
    if not finished:  # Ctrl-C stopped the answer at a token boundary
        print(flush=True)
        print("[stopped]", file=sys.stderr, flush=True)
        raise typer.Exit(130)


def _check_videos(paths: List[Path], frames: Optional[int]) -> None:
    """Bad --frames and unreadable video files are reported before the model loads."""
    from edge.errors import InputError

    if frames is not None and frames < 1:
        raise InputError(f"--frames must be a positive integer, got {frames}")
    if frames is not None and not paths:
        raise InputError("--frames needs a --video")
    if paths:
        import os

        from edge.runtime.vision.video_io import VideoReader

        # FFmpeg (inside OpenCV) prints its own line for a file it cannot parse; the error below says it once
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

        for path in paths:
            VideoReader(str(path)).close()


def _sample_videos(pipe, paths: List[Path], frames: Optional[int]) -> list:
    """Each --video sampled as the bundle's family samples it (at most --frames frames)."""
    if not paths:
        return []
    from edge.errors import InputError
    from edge.runtime.vision.videos import sample_video

    spec = pipe.manifest.vision.video if pipe.manifest.vision is not None else None
    if spec is None:
        raise InputError(f"this model ({pipe.manifest.family}) cannot take video")
    temporal = getattr(pipe.manifest.vision.preprocess, "temporal_patch_size", 2)  # qwen2vl groups frames
    return [sample_video(str(p), spec, frames, temporal) for p in paths]


def _answer(pipe, events, as_json: bool, stop) -> bool:
    """Print one answer as ``edge run`` does; False when Ctrl-C (``stop``) ended it early."""
    from edge.events import FinishEvent

    for ev in events:
        if stop.requested:
            events.close()
            return False
        if isinstance(ev, FinishEvent):
            if as_json:
                out = {
                    "text": ev.text,
                    "tokens": ev.tokens,
                    "finish_reason": ev.reason,
                    "timings": ev.timings.as_dict(),
                    "placement": {k: p.as_dict() for k, p in pipe.placement.items()},
                }
                print(json.dumps(out, ensure_ascii=False))
            else:
                print(flush=True)
        elif not as_json:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
    return True


def chat(
    bundle: Optional[Path] = BUNDLE,
    system: Optional[str] = typer.Option(None, "--system", help="A system message for the whole conversation."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n", help="Most tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; higher = more random."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling."),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    max_image_tokens: Optional[int] = MAX_IMAGE_TOKENS,
    max_tiles: Optional[int] = MAX_TILES,
    audio_bundle: Optional[Path] = typer.Option(
        None, "--audio-bundle", help="A Whisper bundle for spoken turns (/audio PATH, /mic)."
    ),
    threads: int = THREADS,
    provider: List[str] = PROVIDER,
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    gpu_layers: Optional[str] = GPU_LAYERS,
    verbose: bool = VERBOSE,
) -> None:
    """Chat in the terminal; the KV cache is kept so each turn only evaluates what is new.

    Commands: /image PATH (attach to the next message), /audio PATH and /mic (speak your
    message; with --audio-bundle), /reset, /quit. Ctrl-C stops an answer; Ctrl-D (or Ctrl-C
    at the prompt) quits.

    Example: edge chat            (the offline default model)
    """
    from edge.apps.backends import command_options
    from edge.apps.repl import repl
    from edge.options import Budget, GenerateOptions, SamplingOptions

    options = GenerateOptions(
        max_tokens=max_tokens,
        sampling=SamplingOptions(temperature=temperature, seed=seed),
        budget=Budget(max_tiles=max_tiles, max_image_tokens=max_image_tokens),
    )
    runtime = command_options(threads, ctx, provider, verbose, device, fallback, gpu_layers)
    pipe = load_bundle(bundle, threads, False, runtime, speech=audio_bundle)
    repl(pipe, options, system)
