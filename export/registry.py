"""One small declarative spec per architecture family, looked up by HF ``model_type``.

Adding a family means adding one file under ``export/families/`` that builds a
:class:`FamilySpec` (its vision part, its LLM part, its runtime scheme by name) and
listing it in ``export/families/__init__.py``; shared code never branches on the model
type. The registry is filled explicitly from those lists (:func:`builtin`), never by
importing a module for its side effect. Every registered family must have a tiny-model
parity test (``tests/parity/test_registry_coverage.py`` checks that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

from edge.errors import ExportError
from edge.manifest import MediaAttention, MediaPositions, PromptLayout, VisionPreprocess


@dataclass(frozen=True)
class VisionPart:
    """How to export a family's vision tower + projector and describe its input."""

    # the runtime's preprocessing scheme (a key of edge.runtime.vision.schemes.SCHEMES); the
    # preprocessing ``preprocess`` returns must name the same one
    scheme: str
    # model -> torch.nn.Module mapping pixel_values [n,3,H,W] to embeddings [n,T,D]
    module: Callable[[Any], Any]
    # (model, pixel_values) -> embeddings computed by transformers itself (parity reference)
    reference: Callable[[Any, Any], Any]
    # (source dir, model config) -> preprocessing parameters of the HF image processor
    # (the scheme's parameters, all of them: VisionSpec.preprocess, e.g. Idefics3Slicing)
    preprocess: Callable[[Path, Any], VisionPreprocess]
    # model config -> embedding rows per image
    tokens_per_image: Callable[[Any], int]
    # (model config, tokenizer vocabulary) -> where images go in the prompt
    prompt: Callable[[Any, list[str]], PromptLayout]
    # model -> named arrays the runtime needs besides the graph (e.g. LLaVA-NeXT's image_newline)
    extras: Optional[Callable[[Any], dict]] = None
    # (source dir, model config) -> how a video becomes frames (edge.video.VideoFrames); None: no video
    video: Optional[Callable[[Path, Any], Any]] = None
    # a graph fed more than pixel values (e.g. Qwen2.5-VL's precomputed window inputs) brings its own
    # export: (bundle dir, model, preprocessing, options, progress) -> (VisionSpec, parity figures)
    export: Optional[Callable[..., tuple[Any, dict]]] = None
    # (model, config, source dir, preprocessing) -> edge.export.mmproj.ProjectorPlan: how the tower + projector
    # map onto llama.cpp's clip (the mmproj GGUF, export/mmproj_maps.py); None: llama.cpp has no projector for it
    projector: Optional[Callable[..., Any]] = None
    input_name: str = "pixel_values"
    output_name: str = "image_embeds"
    # max |onnxruntime - torch| allowed at export, per weight dtype
    atol: dict[str, float] = field(default_factory=lambda: {"f32": 1e-3, "f16": 5e-2})


class LLMHParams(Protocol):
    """What the shared export path reads from an LLM part's hyper-parameters (for the manifest)."""

    n_vocab: int
    n_embd: int
    n_ctx_train: int


@dataclass(frozen=True)
class LLMPart:
    """A language-model architecture: its HF text config and tensors -> a GGUF llama.cpp runs.

    A part lives next to its GGUF writer (``export/llm_<arch>.py``, e.g. ``llm_llama.LLAMA``);
    families name it. It owns the architecture's facts: hyper-parameters, GGUF tensor names
    and layout (q/k permutation, tied output), and how the model sees media rows. The family
    owns where the language model sits in its checkpoint (``FamilySpec.text_config`` and
    ``text_tensors``). A new architecture is a new part file, not an edit of the export path.
    """

    # GGUF ``general.architecture``, recorded as ``LLMSpec.arch``
    arch: str
    # HF text config -> the writer's hyper-parameters
    hparams: Callable[[Any], LLMHParams]
    # (path, hparams, (HF name, f32 array) pairs, TokenizerMeta, dtype, bundle name, progress) -> None
    write_gguf: Callable[..., None]
    # how the model attends to / positions the rows of a media item (LLMSpec.media_attention/_positions)
    media_attention: MediaAttention = "causal"
    media_positions: MediaPositions = "linear"


@dataclass(frozen=True)
class FamilySpec:
    """What the exporter needs to know about one architecture family."""

    name: str
    model_types: tuple[str, ...]
    # the transformers class name that loads a checkpoint of this family
    model_class: str
    # the language model's architecture (hparams, GGUF writer, media facts)
    llm: LLMPart
    # model config -> the config of the language model, as ``llm.hparams`` reads it
    text_config: Callable[[Any], Any]
    # model -> (name, tensor) pairs of the language model under the HF causal-LM names its
    # LLM part maps (for Llama: LlamaForCausalLM names, model.layers.N..., lm_head)
    text_tensors: Callable[[Any], Iterable[tuple[str, Any]]]
    vision: Optional[VisionPart] = None


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


@dataclass(frozen=True)
class Registry:
    """The families, speech families and importers, indexed; build it with :func:`make_registry`."""

    families: dict[str, FamilySpec]  # by name
    speech: dict[str, SpeechSpec]  # by name
    importers: tuple[Importer, ...]
    by_model_type: dict[str, FamilySpec]
    speech_by_model_type: dict[str, SpeechSpec]


def make_registry(
    families: Iterable[FamilySpec], speech: Iterable[SpeechSpec] = (), importers: Iterable[Importer] = ()
) -> Registry:
    """Index explicit lists of specs; each HF ``model_type`` and each name may belong to one spec only,
    and every vision part must name a scheme the runtime has.

    Raises:
        ValueError: a duplicated model type or name, or an unknown runtime scheme (a bug in a spec).
    """
    from edge.runtime.vision.schemes import SCHEMES

    families, speech = tuple(families), tuple(speech)
    owners: dict[str, str] = {}
    for spec in (*families, *speech):
        for mt in spec.model_types:
            if mt in owners:
                raise ValueError(f"model_type {mt!r} is already registered by {owners[mt]}")
            owners[mt] = spec.name
    for kind, specs in (("family", families), ("speech family", speech)):
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{kind} name {dup[0]!r} is used twice")
    for spec in families:
        if spec.vision is not None and spec.vision.scheme not in SCHEMES:
            raise ValueError(
                f"family {spec.name} names the image scheme {spec.vision.scheme!r}, which the "
                f"runtime does not have (it has: {', '.join(sorted(SCHEMES))})"
            )
    return Registry(
        families={s.name: s for s in families},
        speech={s.name: s for s in speech},
        importers=tuple(importers),
        by_model_type={mt: s for s in families for mt in s.model_types},
        speech_by_model_type={mt: s for s in speech for mt in s.model_types},
    )


def builtin() -> Registry:
    """The built-in families, speech families and importers listed in ``edge.export.families``."""
    from edge.export.families import FAMILIES, IMPORTERS, SPEECH_FAMILIES

    return make_registry(FAMILIES, SPEECH_FAMILIES, IMPORTERS)


def families() -> dict[str, FamilySpec]:
    """All registered families by name."""
    return builtin().families


def spec_for(model_type: str) -> FamilySpec:
    """The family of a HF ``model_type``, or an :class:`ExportError` listing what is supported."""
    reg = builtin()
    if model_type not in reg.by_model_type:
        known = ", ".join(sorted(set(reg.by_model_type) | set(reg.speech_by_model_type)))
        raise ExportError(f"unsupported model_type {model_type!r} (supported: {known})")
    return reg.by_model_type[model_type]


def speech_families() -> dict[str, SpeechSpec]:
    """All registered speech families by name."""
    return builtin().speech


def speech_spec_for(model_type: str) -> Optional[SpeechSpec]:
    """The speech family of a HF ``model_type``, or None."""
    return builtin().speech_by_model_type.get(model_type)


def importer_for(path: Path) -> Optional[Importer]:
    """The importer that recognises the directory ``path``, or None."""
    return next((imp for imp in builtin().importers if path.is_dir() and imp.detect(path)), None)
