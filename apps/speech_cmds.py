"""`edge transcribe` and `edge listen`: speech to text from a file or the microphone."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edge.apps.cli_options import COMPUTE, DEVICE, FALLBACK, PROVIDER, THREADS, VERBOSE


def transcribe(
    bundle: Path = typer.Argument(..., help="A Whisper bundle (edge export of a Whisper or CTranslate2 model)."),
    audio: Path = typer.Argument(
        ..., help="An audio file: WAV, FLAC, OGG, MP3 (any rate, mono or stereo); long files stream."
    ),
    language: Optional[str] = typer.Option(
        None, "--language", help="Language code for multilingual models (default: detect)."
    ),
    task: str = typer.Option(
        "transcribe", "--task", help="transcribe, or translate (to English; multilingual models)."
    ),
    no_timestamps: bool = typer.Option(False, "--no-timestamps", help="Plain text without timed segments."),
    threads: int = THREADS,
    as_json: bool = typer.Option(
        False,
        "--json",
        help=("Print one JSON object: text, segments with times, real-time factor, where each graph ran."),
    ),
    provider: List[str] = PROVIDER,
    compute: List[str] = DEVICE,
    fallback: str = FALLBACK,
    verbose: bool = VERBOSE,
) -> None:
    """Transcribe an audio file; segments print as each 30 s window is decoded.

    Example: edge transcribe whisper.bundle meeting.flac --json
    """
    from edge.apps import speech_flow
    from edge.apps.backends import audio_devices, command_options
    from edge.options import TranscribeOptions

    backend = command_options(threads, 0, provider, verbose, audio_devices(compute), fallback).audio
    options = TranscribeOptions(language=language, task=task, timestamps=not no_timestamps)
    speech_flow.transcribe(bundle, audio, options, backend, as_json)


def listen(
    bundle: Path = typer.Argument(..., help="A Whisper bundle."),
    step: float = typer.Option(
        0.0, "--step", help="Seconds between partial transcripts (sliding windows); 0 = cut utterances at pauses (VAD)."
    ),
    length: float = typer.Option(
        10.0, "--length", help="Window length in sliding mode; longest utterance in VAD mode (seconds, at most 30)."
    ),
    keep: float = typer.Option(0.2, "--keep", help="Seconds of audio carried into the next window (sliding mode)."),
    silence: float = typer.Option(0.6, "--silence", help="Pause (seconds) that ends an utterance (VAD mode)."),
    threshold: float = typer.Option(-45.0, "--threshold", help="Quietest speech level in dBFS (VAD mode)."),
    max_lag: float = typer.Option(5.0, "--max-lag", help="Seconds of audio allowed to wait while transcription runs."),
    on_lag: str = typer.Option(
        "drop",
        "--on-lag",
        help="When audio waits longer than --max-lag: drop (skip to live audio, with a warning) or keep.",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="Input device name or index (default: the system's)."),
    wav: Optional[Path] = typer.Option(
        None, "--file", help="Replay this audio file at real-time pace instead of the microphone."
    ),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per transcript (start, end, final, text)."),
    provider: List[str] = PROVIDER,
    compute: List[str] = COMPUTE,
    fallback: str = FALLBACK,
    verbose: bool = VERBOSE,
) -> None:
    """Transcribe the microphone live, printing each utterance as it ends (Ctrl-C stops).

    Example: edge listen whisper.bundle --step 2 --length 8
    """
    from edge.apps import speech_flow
    from edge.apps.backends import audio_devices, command_options
    from edge.options import StreamOptions, TranscribeOptions

    backend = command_options(threads, 0, provider, verbose, audio_devices(compute), fallback).audio

    stream = StreamOptions(
        step_s=step,
        length_s=length,
        keep_s=keep,
        silence_s=silence,
        threshold_db=threshold,
        max_lag_s=max_lag,
        on_lag=on_lag,
        buffer_s=max(30.0, length, max_lag),
    )
    speech_flow.listen(bundle, stream, TranscribeOptions(), backend, as_json, wav=wav, device=device)
