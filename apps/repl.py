"""The terminal chat loop behind ``edge chat``."""

from __future__ import annotations

import sys
from typing import Iterator, Optional

from edge.apps.interrupt import StopOnInterrupt
from edge.errors import EdgeError
from edge.events import Event, FinishEvent
from edge.options import GenerateOptions
from edge.runtime.pipeline import Pipeline
from edge.runtime.vision.image_io import load_image

HELP = (
    "commands: /image PATH (attach to your next message), /audio PATH or /mic (speak your message; "
    "needs a speech model: --audio-bundle), /reset, /quit; Ctrl-C stops an answer, "
    "Ctrl-D (or Ctrl-C at the prompt) quits"
)


def repl(pipe: Pipeline, options: GenerateOptions, system: Optional[str] = None) -> None:
    """Read messages from stdin until /quit or end of input; stream answers to stdout."""
    session = pipe.chat(system)
    interactive = sys.stdin.isatty()
    note = "" if pipe.vision else " (text only: image answers need a VLM bundle)"
    print(f"edge chat with {pipe.manifest.name}{note}. {HELP}", file=sys.stderr)
    pending: list = []
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt quits, as Ctrl-D does
            print(file=sys.stderr)
            break
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            pending = []
            print("(conversation cleared)", file=sys.stderr)
            continue
        if line == "/help":
            print(HELP, file=sys.stderr)
            continue
        if line.startswith("/image"):
            path = line[len("/image") :].strip()
            try:
                load_image(path)  # check now, so a bad path is reported at once (before a missing encoder)
                if pipe.vision is None:
                    raise EdgeError("this bundle has no vision encoder; it cannot take images")
                pending.append(path)
                print(f"(image attached: {path})", file=sys.stderr)
            except EdgeError as exc:
                print(f"error: {exc}", file=sys.stderr)
            continue
        if line == "/mic" or line == "/audio" or line.startswith("/audio "):
            from edge.apps.speech_flow import spoken_text

            try:
                line = spoken_text(pipe.speech, line)  # the transcript becomes the user's message
                print(f"(heard: {line})", file=sys.stderr)
            except EdgeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
        elif line.startswith("/"):
            print(f"error: unknown command {line.split()[0]}; {HELP}", file=sys.stderr)
            continue
        try:
            with StopOnInterrupt() as stop:
                stream_answer(session.send(line, pending, options), stop)
            pending = []
        except EdgeError as exc:
            print(f"error: {exc}", file=sys.stderr)


def stream_answer(events: Iterator[Event], stop: StopOnInterrupt) -> Optional[FinishEvent]:
    """Write an answer's text to stdout as it comes and its timings to stderr; return its
    :class:`FinishEvent`, or None when Ctrl-C (``stop``) ended it early. The stream is closed
    either way, so the pipeline keeps the KV cache of what was evaluated."""
    try:
        for ev in events:
            if stop.requested:
                break
            if isinstance(ev, FinishEvent):
                t = ev.timings
                print(flush=True)
                print(
                    f"[{t.generated_tokens} tokens, prefill {t.prefill_ms:.0f} ms "
                    f"({t.prompt_tokens - t.reused_tokens} new of {t.prompt_tokens}), "
                    f"{t.decode_tokens_per_s:.1f} tok/s]",
                    file=sys.stderr,
                )
                return ev
            sys.stdout.write(ev.text)
            sys.stdout.flush()
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    print(flush=True)
    print("[stopped]", file=sys.stderr, flush=True)
    return None
