"""The bundle manifest: the one contract between export and runtime.

``manifest.json`` is plain JSON (a C library reads the same file). It holds every
file name, tensor name, preprocessing constant and prompt-layout token the runtime
needs; no other module hard-codes any of them.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from edge.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle, relative to the bundle directory."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output. ``shape`` uses -1 for a dynamic axis."""

    name: str
    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class ImagePreprocess:
    """How an image becomes ``pixel_values``, as the family's HF image processor does it.

    ``scheme`` names the planner (``clip``: resize the shortest edge, centre-crop).
    """

    scheme: str
    image_size: int
    shortest_edge: int
    crop_height: int
    crop_width: int
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    resample: str = "bicubic"
    rescale_factor: float = 1.0 / 255.0
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower + projector graph (ONNX).

    ``tokens_per_image`` is the number of embedding rows the graph returns per input
    tile (one tile per image for LLaVA-1.5). ``slicing`` holds the parameters of a
    slicing scheme (Idefics3 splitting, LLaVA-NeXT anyres) by plain-JSON names;
    ``extras`` names small ``.npy`` files the scheme needs (e.g. ``image_newline``).
    """

    file: str
    dtype: str
    input: TensorSpec
    output: TensorSpec
    tokens_per_image: int
    embed_dim: int
    preprocess: ImagePreprocess
    slicing: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptLayout:
    """Where images go in a prompt and which text surrounds their embeddings."""

    image_marker: str = "<image>"
    image_prefix: str = ""
    image_suffix: str = ""
    # "string": messages carry content as one string with the marker inline;
    # "parts": content is a list of {"type": "image"} / {"type": "text"} parts.
    content_format: str = "string"


@dataclass(frozen=True)
class LLMSpec:
    """The language model (GGUF) and what the runtime must know about its tokens."""

    file: str
    arch: str
    dtype: str
    n_ctx_train: int
    n_embd: int
    n_vocab: int
    bos_id: Optional[int]
    eos_ids: list[int]
    add_bos: bool
    chat_template: Optional[str] = None
    # token texts the chat template may refer to as bos_token / eos_token
    bos_token: Optional[str] = None
    eos_token: Optional[str] = None


@dataclass(frozen=True)
class AudioFeatures:
    """How audio becomes log-mel ``input_features``, as ``WhisperFeatureExtractor`` does it.

    Mono audio at ``sample_rate`` is cut into windows of ``chunk_length`` seconds (zero
    padded), turned into a power STFT (periodic Hann window of ``n_fft``, ``hop_length``,
    centred with reflect padding), a Slaney mel filter bank of ``n_mels`` bands from
    ``f_min`` to ``f_max``, ``log10`` clamped at ``log_floor``, then floored at
    ``max - dynamic_range`` and mapped by ``(x + 4) / 4``.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    chunk_length: int = 30
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-10
    dynamic_range: float = 8.0


@dataclass(frozen=True)
class SpeechTokens:
    """Whisper's special token ids, and the token rules of its decoding."""

    sot: int
    eot: int
    transcribe: int
    translate: int
    notimestamps: int
    no_speech: int
    timestamp_begin: int
    # language code ("en") -> token id of "<|en|>"; empty for English-only models
    languages: dict[str, int] = field(default_factory=dict)
    # never generated, at any step / at the first generated step
    suppress: list[int] = field(default_factory=list)
    suppress_at_begin: list[int] = field(default_factory=list)
    # the first timestamp may be at most this many 0.02 s steps into a window
    max_initial_timestamp_index: Optional[int] = 50
    time_precision: float = 0.02


@dataclass(frozen=True)
class KVCacheLayout:
    """The decoder's KV cache: one tensor per layer and kind, ``axes`` name its dimensions.

    Tensor names in ``encoder_io``/``decoder_io`` are templates: layer ``i`` of
    ``cross_k.{layer}`` is ``cross_k.0``, ``cross_k.1``... (separate tensors, so no graph
    has to split a stacked cache at every step). Self-attention K/V grow by the tokens
    fed (the decoder returns the cache with the new positions appended); cross-attention
    K/V come from the encoder once per window.
    """

    layers: int
    heads: int
    head_dim: int
    max_positions: int
    encoder_positions: int
    axes: list[str] = field(default_factory=lambda: ["batch", "head", "position", "head_dim"])

    def names(self, template: str) -> list[str]:
        """The per-layer tensor names of a ``{layer}`` template."""
        return [template.format(layer=i) for i in range(self.layers)]


@dataclass(frozen=True)
class AudioSpec:
    """Speech recognition (Whisper): an ONNX encoder and a KV-cached ONNX decoder.

    ``encoder_io`` / ``decoder_io`` map a role to its graph tensor. Encoder roles:
    ``input_features``, ``hidden_states``, ``cross_k``, ``cross_v``. Decoder roles:
    ``input_ids``, ``self_k``, ``self_v``, ``cross_k``, ``cross_v`` (inputs) and
    ``logits`` (last position only), ``new_self_k``, ``new_self_v`` (outputs).
    ``vocab`` is a JSON list of the byte-level BPE token strings, indexed by id.
    """

    encoder: str
    decoder: str
    vocab: str
    dtype: str
    encoder_io: dict[str, TensorSpec]
    decoder_io: dict[str, TensorSpec]
    kv_cache: KVCacheLayout
    features: AudioFeatures
    tokens: SpeechTokens
    vocab_size: int
    multilingual: bool = False

    @property
    def files(self) -> list[str]:
        """The bundle files this component needs."""
        return [self.encoder, self.decoder, self.vocab]


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to run a bundle; see ``docs/bundle.md``."""

    name: str
    family: str
    files: dict[str, FileEntry]
    # None for a bundle without a language model (e.g. speech recognition only)
    llm: Optional[LLMSpec] = None
    prompt: PromptLayout = field(default_factory=PromptLayout)
    vision: Optional[VisionSpec] = None
    audio: Optional[AudioSpec] = None
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def component_files(self) -> list[str]:
        """The files the components name (each must be listed in ``files``)."""
        files = [c.file for c in (self.llm, self.vision) if c is not None]
        return files + (self.audio.files if self.audio is not None else [])

    def to_json(self) -> str:
        """Serialise to the JSON text written as ``manifest.json``."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    @staticmethod
    def from_json(text: str) -> "Manifest":
        """Parse ``manifest.json`` text; raise :class:`BundleError` naming what is wrong."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"manifest.json is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"manifest.json has schema_version {version!r}; this edge reads "
                f"schema_version {SCHEMA_VERSION} (re-export the bundle or upgrade edge)"
            )
        return _build(Manifest, data, "manifest")


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from parsed JSON, checking every field's type."""
    if not isinstance(data, dict):
        raise BundleError(f"manifest.json: {where} must be an object")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BundleError(f"manifest.json: {path} is missing")
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name], path)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise BundleError(f"manifest.json: {path} must be a list")
        return [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BundleError(f"manifest.json: {path} must be an object")
        return {k: _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise BundleError(f"manifest.json: {path} must be {tp.__name__}, got {value!r}"[:200])
    return value
