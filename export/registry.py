"""One small declarative spec per architecture family, looked up by HF ``model_type``.

Adding a family means adding one file under ``export/families/`` that builds a
:class:`FamilySpec` and calls :func:`register`; shared code never branches on the
model type. Every registered family must have a tiny-model parity test
(``tests/parity/test_registry_coverage.py`` checks that).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from edge.errors import ExportError
from edge.manifest import ImagePreprocess, PromptLayout


@dataclass(frozen=True)
class VisionPart:
    """How to export a family's vision tower + projector and describe its input."""

    # model -> torch.nn.Module mapping pixel_values [n,3,H,W] to embeddings [n,T,D]
    module: Callable[[Any], Any]
    # (model, pixel_values) -> embeddings computed by transformers itself (parity reference)
    reference: Callable[[Any, Any], Any]
    # (source dir, model config) -> preprocessing parameters of the HF image processor
    preprocess: Callable[[Path, Any], ImagePreprocess]
    # model config -> embedding rows per image
    tokens_per_image: Callable[[Any], int]
    # (model config, tokenizer vocabulary) -> where images go in the prompt
    prompt: Callable[[Any, list[str]], PromptLayout]
    # (source dir, model config) -> scheme parameters of a slicing family (VisionSpec.slicing)
    slicing: Optional[Callable[[Path, Any], dict]] = None
    # model -> named arrays the runtime needs besides the graph (e.g. LLaVA-NeXT's image_newline)
    extras: Optional[Callable[[Any], dict]] = None
    input_name: str = "pixel_values"
    output_name: str = "image_embeds"
    # max |onnxruntime - torch| allowed at export, per weight dtype
    atol: dict[str, float] = field(default_factory=lambda: {"f32": 1e-3, "f16": 5e-2})


@dataclass(frozen=True)
class FamilySpec:
    """What the exporter needs to know about one architecture family."""

    name: str
    model_types: tuple[str, ...]
    # the transformers class name that loads a checkpoint of this family
    model_class: str
    # model config -> the Llama-shaped config of the language model
    text_config: Callable[[Any], Any]
    # model -> (name, tensor) pairs under LlamaForCausalLM names (model.layers.N..., lm_head)
    text_tensors: Callable[[Any], Iterable[tuple[str, Any]]]
    vision: Optional[VisionPart] = None


_REGISTRY: dict[str, FamilySpec] = {}


def register(spec: FamilySpec) -> FamilySpec:
    """Add a family; each HF ``model_type`` may belong to one family only."""
    for mt in spec.model_types:
        if mt in _REGISTRY:
            raise ValueError(f"model_type {mt!r} is already registered by {_REGISTRY[mt].name}")
        _REGISTRY[mt] = spec
    return spec


def families() -> dict[str, FamilySpec]:
    """All registered families by name."""
    _load_builtin()
    return {s.name: s for s in _REGISTRY.values()}


def spec_for(model_type: str) -> FamilySpec:
    """The family of a HF ``model_type``, or an :class:`ExportError` listing what is supported."""
    _load_builtin()
    if model_type not in _REGISTRY:
        known = ", ".join(sorted(set(_REGISTRY) | set(_SPEECH)))
        raise ExportError(f"unsupported model_type {model_type!r} (supported: {known})")
    return _REGISTRY[model_type]


@dataclass(frozen=True)
class SpeechSpec:
    """A speech-recognition family (encoder-decoder ASR such as Whisper).

    It has no LLM and no vision tower, so it brings its own exporter, which writes a
    whole bundle with an ``audio`` component.
    """

    name: str
    model_types: tuple[str, ...]
    # (source, config, out, ExportOptions, progress) -> Manifest
    export: Callable[..., Any]


@dataclass(frozen=True)
class Importer:
    """A foreign checkpoint format (e.g. CTranslate2) that is converted to a HF checkpoint first."""

    name: str
    # directory -> whether it holds this format
    detect: Callable[[Path], bool]
    # (source directory, empty destination directory) -> the HF checkpoint directory written
    convert: Callable[[Path, Path], Path]


_SPEECH: dict[str, SpeechSpec] = {}
_IMPORTERS: list[Importer] = []


def register_speech(spec: SpeechSpec) -> SpeechSpec:
    """Add a speech family; its model types may not belong to another family."""
    for mt in spec.model_types:
        if mt in _REGISTRY or mt in _SPEECH:
            raise ValueError(f"model_type {mt!r} is already registered")
        _SPEECH[mt] = spec
    return spec


def speech_families() -> dict[str, SpeechSpec]:
    """All registered speech families by name."""
    _load_builtin()
    return {s.name: s for s in _SPEECH.values()}


def speech_spec_for(model_type: str) -> Optional[SpeechSpec]:
    """The speech family of a HF ``model_type``, or None."""
    _load_builtin()
    return _SPEECH.get(model_type)


def register_importer(importer: Importer) -> Importer:
    """Add a foreign checkpoint format."""
    _IMPORTERS.append(importer)
    return importer


def importer_for(path: Path) -> Optional[Importer]:
    """The importer that recognises the directory ``path``, or None."""
    _load_builtin()
    return next((imp for imp in _IMPORTERS if path.is_dir() and imp.detect(path)), None)


def _load_builtin() -> None:
    # Importing the package registers every built-in family exactly once.
    import edge.export.families  # noqa: F401
