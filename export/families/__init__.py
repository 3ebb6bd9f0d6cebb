"""The built-in architecture families, listed explicitly: the registry
(:func:`edge.export.registry.builtin`) reads these tuples, nothing registers itself on import.

A new family is one file here whose spec is added to the right tuple.
"""

from __future__ import annotations

from edge.export.families import gemma3, idefics3, llama, llava, llava_next, qwen2_5_vl, smolvlm, whisper
from edge.export.registry import FamilySpec, Importer, SpeechSpec

# vision-language models and plain causal LMs (exported by edge.export.vlm)
FAMILIES: tuple[FamilySpec, ...] = (
    llama.SPEC,
    llava.SPEC,
    llava_next.SPEC,
    idefics3.SPEC,
    smolvlm.SPEC,
    gemma3.SPEC,
    gemma3.TEXT_SPEC,
    qwen2_5_vl.SPEC,
)
# speech-recognition families, each with its own exporter
SPEECH_FAMILIES: tuple[SpeechSpec, ...] = (whisper.SPEC,)
# foreign checkpoint formats converted to HF checkpoints before export, tried in this order
IMPORTERS: tuple[Importer, ...] = (whisper.CTRANSLATE2,)
