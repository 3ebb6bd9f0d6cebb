"""`edge live`: answer about a camera or a video as it plays, re-encoding only the tiles that changed."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
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


def live(
    bundle: Optional[Path] = BUNDLE,
    camera: Optional[int] = typer.Option(None, "--camera", help="Camera index (0 = the first camera)."),
    video: Optional[str] = typer.Option(
        None, "--video", help="A video file, or a stream URL (http, https, rtsp, rtmp, udp, tcp)."
    ),
    mic: bool = typer.Option(
        False, "--mic", help="Answer spoken questions from the microphone (needs --audio-bundle)."
    ),
    audio: Optional[Path] = typer.Option(
        None, "--audio", help="An audio file laid on the video's timeline: its spoken questions are answered."
    ),
    audio_bundle: Optional[Path] = typer.Option(None, "--audio-bundle", help="A Whisper bundle for spoken questions."),
    prompt: str = typer.Option(
        "Describe what you see in one sentence.", "--prompt", "-p", help="The question of narration and scene changes."
    ),
    every: Optional[float] = typer.Option(
        None, "--every", help="Answer every this many seconds of stream time (default 5 when no other trigger)."
    ),
    on_change: bool = typer.Option(False, "--on-change", help="Answer when the scene changes."),
    change_threshold: float = typer.Option(
        12.0, "--change-threshold", help="Scene change that triggers: mean grey-level difference, 0-255."
    ),
    max_fps: Optional[float] = typer.Option(None, "--max-fps", help="Take at most this many frames per second."),
    reuse_threshold: float = typer.Option(
        0.0,
        "--reuse-threshold",
        help="Reuse a tile's embedding when no block mean (1/16 of the tile side) moved more than this (0-255 levels; 0 = exact).",
    ),
    on_busy: str = typer.Option(
        "skip", "--on-busy", metavar="skip|cancel|queue", help="A trigger during an answer: drop it, cancel, or queue."
    ),
    speed: float = typer.Option(
        1.0, "--speed", help="Play a video file at this many times real time; 0 = answer every trigger (no drops)."
    ),
    stdin: bool = typer.Option(
        False, "--stdin", help="Read typed questions from stdin, one a line (on by default in a terminal)."
    ),
    max_tokens: int = typer.Option(64, "--max-tokens", "-n", help="Most tokens per answer."),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    max_image_tokens: Optional[int] = MAX_IMAGE_TOKENS,
    max_tiles: Optional[int] = MAX_TILES,
    threads: int = THREADS,
    as_json: bool = typer.Option(
        False, "--json", help="One JSON line per answer (frame time, trigger, text, tiles, latency) and a summary line."
    ),
    provider: List[str] = PROVIDER,
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    gpu_layers: Optional[str] = GPU_LAYERS,
    verbose: bool = VERBOSE,
) -> None:
    """Answer about a camera or a video as it plays (narration, scene changes, spoken or typed questions).

    Only the tiles that changed go through the vision graph again; an unchanged frame with the
    same question answers from the KV cache. Ctrl-C ends the run with a summary (docs/live.md).

    Example: edge live smolvlm.bundle --camera 0 --on-change --reuse-threshold 4
    """
    from edge.apps.backends import command_options
    from edge.errors import InputError
    from edge.options import Budget, GenerateOptions
    from edge.runtime.live_parts import LiveOptions

    if (camera is None) == (video is None):
        raise InputError("give exactly one of --camera INDEX or --video FILE_OR_URL")
    if mic and audio is not None:
        raise InputError("give --mic or --audio, not both")
    if (mic or audio is not None) and audio_bundle is None:
        raise InputError("spoken questions need a Whisper bundle: --audio-bundle WHISPER")
    if max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {max_tokens}")
    options = LiveOptions(
        prompt=prompt,
        every_s=every,
        on_change=on_change,
        change_threshold=change_threshold,
        max_fps=max_fps,
        reuse_threshold=reuse_threshold,
        on_busy=on_busy,
        generate=GenerateOptions(
            max_tokens=max_tokens, budget=Budget(max_tiles=max_tiles, max_image_tokens=max_image_tokens)
        ),
    )
    if not verbose:  # FFmpeg inside OpenCV prints its own decoder errors; ours say it in one line
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when OpenCV starts FFmpeg
    source = _open_source(camera, video)  # a bad source is said before the model loads
    try:
        feed = _audio_feed(mic, audio)
        runtime = command_options(threads, ctx, provider, verbose, device, fallback, gpu_layers)
        pipe = load_bundle(bundle, threads, True, runtime, speech=audio_bundle)
        from edge.runtime.live_loop import LiveLoop

        loop = LiveLoop(pipe, source, options, feed, speed=speed)
    except BaseException:
        source.close()
        raise
    if stdin or sys.stdin.isatty():
        threading.Thread(target=_read_questions, args=(loop,), name="edge-live-stdin", daemon=True).start()
    _print_events(loop, as_json)


def _open_source(camera: Optional[int], video: Optional[str]):
    if camera is not None:
        from edge.apps.camera import CameraSource

        return CameraSource(camera)
    from edge.runtime.vision.video_io import VideoReader

    return VideoReader(video)


def _audio_feed(mic: bool, audio: Optional[Path]):
    from edge.runtime.live_loop import AudioFeed

    if mic:
        from edge.apps.mic import MicSource

        return AudioFeed(source=MicSource())
    if audio is not None:
        from edge.runtime.speech.audio_io import load_audio

        return AudioFeed(samples=load_audio(str(audio)))
    return None


def _read_questions(loop) -> None:
    for line in sys.stdin:
        loop.ask(line)


def _print_events(loop, as_json: bool) -> None:
    """Stream answers to stdout (text, or one JSON line each), warnings to stderr; Ctrl-C stops
    the loop at the next token and the summary still prints."""

    def on_interrupt(signum, frame) -> None:
        if loop.stopping:  # a second Ctrl-C before the loop wound down: quit now
            raise KeyboardInterrupt
        loop.stop()

    previous = (
        signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        _print_all(loop, as_json)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _print_all(loop, as_json: bool) -> None:
    from edge.runtime.live_parts import LiveAnswer, LiveSummary, LiveToken, LiveWarning

    for ev in loop:
        if isinstance(ev, LiveToken) and not as_json:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif isinstance(ev, LiveAnswer):
            if as_json:
                print(json.dumps(ev.as_dict(), ensure_ascii=False), flush=True)
            else:
                tag = "" if ev.finish_reason != "cancelled" else " [cancelled]"
                print(
                    f"{tag}\n[{ev.t:.1f}s {ev.trigger}: {ev.tiles_encoded}/{ev.tiles} tiles encoded, "
                    f"first token {ev.latency_ms:.0f} ms]",
                    flush=True,
                )
        elif isinstance(ev, LiveWarning):
            print(f"warning: [{ev.t:.1f}s] {ev.message}", file=sys.stderr, flush=True)
        elif isinstance(ev, LiveSummary):
            if as_json:
                print(json.dumps(ev.as_dict()), flush=True)
            print(
                f"live: {ev.answers} answers over {ev.duration_s:.1f} s of stream ({ev.ended}); "
                f"{ev.tiles_encoded} of {ev.tiles} tiles encoded; skipped {ev.skipped}, cancelled {ev.cancelled}; "
                f"first token p50 {ev.latency_p50_ms:.0f} ms, p95 {ev.latency_p95_ms:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
