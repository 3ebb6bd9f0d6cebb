"""The speech surfaces: ``edge transcribe``, ``edge listen`` and spoken turns in ``edge chat``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

from edge.errors import EdgeError, InputError
from edge.options import OnnxOptions, StreamOptions, TranscribeOptions
from edge.runtime.speech.capture import SystemClock, WavSource
from edge.runtime.speech.live import Dropped, stream_events
from edge.runtime.speech.transcribe import Transcriber


def transcribe(bundle: Path, audio: Path, options: TranscribeOptions, backend: OnnxOptions, as_json: bool) -> None:
    """Print the transcript of a file (segments stream to stdout as they are decoded)."""
    tr = Transcriber(bundle, backend)
    if as_json:  # quiet, as every --json command (segments print as they come without it)
        result = tr.transcribe(audio, options)
        placement = {k: p.as_dict() for k, p in tr.placement.items()}
        print(json.dumps({**result.as_dict(), "placement": placement}, ensure_ascii=False))
        return
    t0 = time.perf_counter()
    n = 0
    last = None
    for seg in tr.segments(audio, options):
        text = seg.text.strip()
        if options.timestamps:
            print(f"[{_clock(seg.start)} -> {_clock(seg.end)}] {text}", flush=True)
        else:
            print(text, flush=True)
        n += 1
        last = seg
    elapsed = time.perf_counter() - t0
    where = f", {last.end:.1f} s of speech" if last else ""
    print(f"[{n} segments{where}, {elapsed:.2f} s]", file=sys.stderr)


def _clock(t: float) -> str:
    m, s = divmod(t, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h:02d}:{m:02d}:{s:06.3f}" if h else f"{m:02d}:{s:06.3f}"


def listen(
    bundle: Path,
    stream: StreamOptions,
    options: TranscribeOptions,
    backend: OnnxOptions,
    as_json: bool,
    wav: Optional[Path] = None,
    device: Optional[str] = None,
) -> None:
    """Transcribe live audio (the microphone, or ``wav`` replayed at real-time pace) until Ctrl-C."""
    tr = Transcriber(bundle, backend)
    if wav is not None:
        source = WavSource(wav, SystemClock(), tr.sample_rate, stream.buffer_s)
    else:
        from edge.apps.mic import MicSource, _sounddevice

        _sounddevice()  # a missing package or PortAudio library fails here, before "listening"
        source = MicSource(tr.sample_rate, stream.buffer_s, device)
    tty = sys.stdout.isatty() and not as_json
    options = _live(options)
    print("edge: listening (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        for event in stream_events(source, stream):
            if isinstance(event, Dropped):
                print(f"warning: {event.message}", file=sys.stderr, flush=True)
                if as_json:
                    print(json.dumps({"dropped_s": round(event.seconds, 3), "reason": event.reason}), flush=True)
                continue
            t = time.perf_counter()
            text = tr.transcribe_samples(event.audio, options)
            busy = time.perf_counter() - t
            if as_json:
                print(
                    json.dumps(
                        {
                            "start": round(event.start, 3),
                            "end": round(event.end, 3),
                            "final": event.final,
                            "text": text,
                            "elapsed_s": round(busy, 3),
                        },
                        ensure_ascii=False,
                    ),
                    flush=True,
                )
            elif not event.final:
                if tty:
                    sys.stdout.write("\r\033[K" + text)
                    sys.stdout.flush()
            elif text:
                sys.stdout.write(("\r\033[K" if tty else "") + text + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        print("", file=sys.stderr)


def _live(options: TranscribeOptions) -> TranscribeOptions:
    # pieces of live audio are short and already cut at silences: plain text, no windows to seek
    from dataclasses import replace

    return replace(options, timestamps=False)


def record_utterance(tr: Transcriber, device: Optional[str] = None, timeout_s: float = 20.0) -> str:
    """Listen on the microphone until one utterance ends; return its text (for ``/mic``)."""
    from edge.apps.mic import MicSource, _sounddevice

    _sounddevice()
    source = MicSource(tr.sample_rate, 30.0, device)
    print("(listening... speak, then pause)", file=sys.stderr, flush=True)
    for event in stream_events(source, StreamOptions(), timeout_s=timeout_s):
        if isinstance(event, Dropped):
            continue
        text = tr.transcribe_samples(event.audio, _live(TranscribeOptions()))
        if text:
            return text
    raise InputError(f"heard nothing in {timeout_s:.0f} s")


def spoken_text(tr: Optional[Transcriber], arg: str, device: Optional[str] = None) -> str:
    """The text of a ``/audio PATH`` or ``/mic`` command in the chat."""
    if tr is None:
        raise EdgeError("no speech model: start the chat with --audio-bundle PATH (a Whisper bundle)")
    if arg == "/mic":
        return record_utterance(tr, device)
    path = arg[len("/audio") :].strip()
    if not path:
        raise InputError("usage: /audio PATH")
    text = tr.transcribe(Path(path).expanduser(), TranscribeOptions()).text
    if not text:
        raise InputError(f"no speech recognised in {path}")
    return text
