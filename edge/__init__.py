"""edge: export multimodal LLMs into bundles and run them offline on your own device.

The public Python API::

    import edge
    pipe = edge.load("path/to/bundle")
    print(pipe.generate("Describe this.", images=["photo.jpg"]).text)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Union

__version__ = "0.1.0"

from edge.errors import (  # noqa: E402
    AudioError,
    BundleError,
    ContextOverflowError,
    DeviceError,
    EdgeError,
    ExportError,
    ImageError,
    InputError,
    RuntimeFailure,
)
from edge.events import Event, FinishEvent, Placement, Result, Segment, Timings, TokenEvent, Transcript  # noqa: E402
from edge.options import (  # noqa: E402
    Budget,
    ExportOptions,
    GenerateOptions,
    LLMOptions,
    OnnxOptions,
    Provider,
    QuantizeOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
    TranscribeOptions,
)

if TYPE_CHECKING:
    from edge.runtime.live_loop import LiveLoop
    from edge.runtime.pipeline import Pipeline
    from edge.runtime.speech.transcribe import Transcriber


def load(
    bundle: Union[str, os.PathLike],
    options: Optional[RuntimeOptions] = None,
    *,
    speech: Any = None,
    threads: Optional[int] = None,
    n_ctx: Optional[int] = None,
    verbose: Optional[bool] = None,
) -> "Pipeline":
    """Open a bundle and return a :class:`edge.runtime.pipeline.Pipeline`.

    ``options`` (:class:`edge.options.RuntimeOptions`) says how each component runs: the
    vision and audio graphs on onnxruntime (threads, execution providers with their options),
    the LLM on llama.cpp (context size, threads, KV cache type...). The keywords ``threads``,
    ``n_ctx`` and ``verbose`` are the short form, :meth:`RuntimeOptions.simple`; give one form
    or the other. ``speech`` names a Whisper bundle (or is a
    :class:`edge.runtime.speech.transcribe.Transcriber`) for spoken turns: ``pipe.stream(prompt,
    audio=["question.wav"])``; it runs with ``options.audio``. A bundle that carries its own
    audio component needs none.

    Raises:
        InputError: both forms of options, or a bad option value.
        BundleError / RuntimeFailure: the bundle cannot be read or loaded.
    """
    # Imported here: the contract does not import the runtime at module level.
    from edge.runtime.pipeline import Pipeline

    runtime = _runtime_options(options, threads, n_ctx, verbose)
    pipe = Pipeline(bundle, runtime)
    if speech is not None:
        pipe.speech = speech if hasattr(speech, "transcribe") else load_speech(speech, runtime.audio)
    return pipe


def load_speech(
    bundle: Union[str, os.PathLike], options: Optional[OnnxOptions] = None, *, threads: Optional[int] = None
) -> "Transcriber":
    """Open a bundle's speech component: a :class:`edge.runtime.speech.transcribe.Transcriber`.

    ``options`` (:class:`edge.options.OnnxOptions`): how onnxruntime runs the Whisper graphs;
    ``threads`` is the short form (CPU, that many threads).
    ``load_speech("whisper.bundle").transcribe("talk.flac").text``
    """
    from edge.runtime.speech.transcribe import Transcriber

    if options is not None and threads is not None:
        raise InputError("give load_speech either options or threads, not both")
    if options is None:
        options = OnnxOptions(threads=threads or 0)
    elif not isinstance(options, OnnxOptions):
        raise InputError(f"load_speech options must be OnnxOptions, got {type(options).__name__}")
    return Transcriber(bundle, options)


def live(
    pipe: "Pipeline",
    source: Any,
    options: Any = None,
    *,
    audio: Any = None,
    speed: float = 1.0,
) -> "LiveLoop":
    """Answer about a video as it plays: an iterator of live events (docs/live.md).

    ``source`` is a video file or stream URL, or any frame source (an object with ``read()``
    giving frames with ``rgb``, ``t`` and ``index``, ``realtime``, ``broken`` and ``close()``;
    ``edge.apps.camera.CameraSource`` for a camera). ``options`` is a
    :class:`edge.runtime.live_parts.LiveOptions` (when to answer, reuse threshold, on-busy
    policy). ``audio``: a recording laid on the video's timeline (a path, or 16 kHz samples)
    or a live audio source (e.g. the microphone); its spoken questions are answered (``pipe``
    needs speech). ``speed``: a file plays at that many times real time; 0 answers every
    trigger in order (lockstep, deterministic).

    Iterating yields ``LiveToken`` (streamed text), ``LiveAnswer`` (one per answer, with tiles
    encoded/reused and frame-to-first-token latency), ``LiveWarning`` and, last, ``LiveSummary``;
    ``loop.ask(text)`` asks a typed question, ``loop.stop()`` ends it.
    """
    from edge.runtime.live_loop import AudioFeed, LiveLoop
    from edge.runtime.live_parts import LiveOptions

    if options is None:
        options = LiveOptions()
    if not isinstance(options, LiveOptions):
        raise InputError(f"edge.live options must be LiveOptions, got {type(options).__name__}")
    feed = None
    if audio is not None:
        if isinstance(audio, (str, os.PathLike)):
            from edge.runtime.speech.audio_io import load_audio

            feed = AudioFeed(samples=load_audio(os.fspath(audio)))
        elif hasattr(audio, "read") and hasattr(audio, "start"):
            feed = AudioFeed(source=audio)
        else:
            feed = AudioFeed(samples=audio)
    if isinstance(source, (str, os.PathLike)):  # opened last: nothing above can leave it open
        from edge.runtime.vision.video_io import VideoReader

        source = VideoReader(os.fspath(source))
    try:
        return LiveLoop(pipe, source, options, feed, speed=speed)
    except BaseException:
        source.close()  # the caller never gets the loop that would close it
        raise


def _runtime_options(options, threads, n_ctx, verbose) -> RuntimeOptions:
    short = {k: v for k, v in (("threads", threads), ("n_ctx", n_ctx), ("verbose", verbose)) if v is not None}
    if options is None:
        return RuntimeOptions.simple(**short)
    if short:
        raise InputError(f"give edge.load either options or {', '.join(short)}, not both")
    if not isinstance(options, RuntimeOptions):
        raise InputError(f"edge.load options must be RuntimeOptions, got {type(options).__name__}")
    return options


__all__ = [
    "__version__",
    "load",
    "load_speech",
    "live",
    # options
    "RuntimeOptions",
    "OnnxOptions",
    "LLMOptions",
    "Provider",
    "GenerateOptions",
    "SamplingOptions",
    "Budget",
    "TranscribeOptions",
    "StreamOptions",
    "ExportOptions",
    "QuantizeOptions",
    # events and results
    "Event",
    "TokenEvent",
    "FinishEvent",
    "Result",
    "Timings",
    "Placement",
    "Segment",
    "Transcript",
    # errors
    "EdgeError",
    "InputError",
    "ImageError",
    "AudioError",
    "ContextOverflowError",
    "BundleError",
    "ExportError",
    "RuntimeFailure",
    "DeviceError",
]
