"""edge: export multimodal LLMs into bundles and run them offline on your own device.

The public Python API::

    import edge
    pipe = edge.load("path/to/bundle")
    print(pipe.generate("Describe this.", images=["photo.jpg"]).text)
"""
from __future__ import annotations

__version__ = "0.1.0"

from edge.errors import BundleError, EdgeError, ExportError, ImageError, InputError  # noqa: E402


def load(bundle, speech=None, **options):
    """Open a bundle and return a :class:`edge.runtime.pipeline.Pipeline`.

    Keyword options are those of :class:`edge.runtime.pipeline.RuntimeOptions`
    (``threads``, ``n_ctx``, ``verbose``). ``speech`` names a Whisper bundle (or is a
    :class:`edge.runtime.speech.transcribe.Transcriber`) for spoken turns: ``pipe.stream(prompt,
    audio=["question.wav"])``; a bundle that carries its own audio component needs none.
    """
    # Imported here: the contract does not import the runtime at module level.
    from edge.runtime.pipeline import Pipeline
    from edge.options import RuntimeOptions

    runtime = RuntimeOptions(**options)
    pipe = Pipeline(bundle, runtime)
    if speech is not None:
        pipe.speech = speech if hasattr(speech, "transcribe") else load_speech(speech, threads=runtime.threads)
    return pipe


def load_speech(bundle, threads: int = 0):
    """Open a bundle's speech component: a :class:`edge.runtime.speech.transcribe.Transcriber`.

    ``load_speech("whisper.bundle").transcribe("talk.flac").text``
    """
    from edge.runtime.speech.transcribe import Transcriber

    return Transcriber(bundle, threads=threads)


__all__ = ["load", "load_speech", "EdgeError", "InputError", "ImageError", "BundleError", "ExportError", "__version__"]
