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
from typing import Any, Literal, Optional, Union

from edge.chat_format import ChatAffixes, RoleAffixes  # noqa: F401
from edge.errors import BundleError, InputError
from edge.preprocess import (
    ImagePreprocess,  # noqa: F401
    VisionPreprocess,
)
from edge.video import VideoParams

# 2: ``vision.preprocess`` is a tagged union by ``scheme`` and holds every image parameter
# (schema 1 had a free ``vision.slicing`` dict beside it; such bundles are upgraded on load).
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle, relative to the bundle directory."""

    path: str  # relative to the bundle directory, "/"-separated
    bytes: int  # the file's size (checked at every load)
    sha256: str  # hex sha256 of the file's bytes (checked by ``edge inspect --verify``)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output. ``shape`` uses -1 for a dynamic axis."""

    name: str  # the tensor's name in the graph
    dtype: str  # element type as numpy names it ("float32", "int64", ...)
    shape: list[int]  # dimensions, -1 for a dynamic axis


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower + projector graph (ONNX).

    ``tokens_per_image`` is the number of embedding rows the graph returns per input
    tile (one tile per image for LLaVA-1.5). ``preprocess`` holds every parameter of
    the image scheme (``scheme``: clip, idefics3, anyres or uhd; see
    :mod:`edge.preprocess`); ``extras`` names small ``.npy`` files the scheme needs
    (e.g. ``image_newline``).
    """

    file: str  # the ONNX graph, a path in ``files``
    dtype: str  # how the weights are stored: "f32", "f16", or a quantization ("int8", "int4", "qdq-int8")
    input: TensorSpec  # the pixel_values input [tiles, 3, H, W]
    output: TensorSpec  # the embeddings output [tiles, tokens_per_image, embed_dim]
    tokens_per_image: int  # embedding rows the graph returns per tile
    embed_dim: int  # width of an embedding row (the LLM's n_embd)
    preprocess: VisionPreprocess  # how an image becomes tiles, tagged by "scheme"
    # extra arrays the scheme needs, name -> .npy file in ``files`` (e.g. LLaVA-NeXT's image_newline)
    extras: dict[str, str] = field(default_factory=dict)
    # how a video becomes frames through this graph (edge.video); None: the family takes no video
    video: Optional[VideoParams] = None  # tagged by "scheme" (frames, qwen2vl)
    # The same tower + projector as a GGUF in llama.cpp's multimodal-projector ("mmproj") format, a path in
    # ``files`` (edge.export.mmproj writes it; llama.cpp's clip/libmtmd and the native library load it).
    # None: not written (``edge export --no-mmproj``, or llama.cpp has no projector for the family:
    # ``projector_gguf_note`` says which). Its parity with transformers is in provenance.parity["mmproj_*"].
    projector_gguf: Optional[str] = None
    projector_gguf_dtype: Optional[str] = None  # its weights: "f32" or "f16" (norms, biases, positions: f32)
    projector_gguf_type: Optional[str] = None  # its ``clip.projector_type`` ("mlp", "idefics3", "gemma3", ...)
    # why there is no projector GGUF, or what a llama.cpp tool must know to use it (e.g. its own preprocessing)
    projector_gguf_note: str = ""


@dataclass(frozen=True)
class PromptLayout:
    """Where images go in a prompt and which text surrounds their embeddings."""

    image_marker: str = "<image>"  # the text that stands for an image in a prompt
    image_prefix: str = ""  # text before each image's embeddings
    image_suffix: str = ""  # text after each image's embeddings
    # "string": messages carry content as one string with the marker inline;
    # "parts": content is a list of {"type": "image"} / {"type": "text"} parts.
    content_format: Literal["string", "parts"] = "string"
    # the text that stands for a video in a prompt ("<video>" for SmolVLM2); "" when the family takes no video
    video_marker: str = ""
    # the chat template for conversations that hold a video, when the processor uses another one for
    # them (SmolVLM2's replaces the checkpoint's by its own DEFAULT_CHAT_TEMPLATE); None: llm.chat_template
    video_chat_template: Optional[str] = None


# How the LLM attends to the embedding rows of one image (or other media item):
# "causal": like text, each row sees the rows before it (LLaVA, LLaVA-NeXT, Idefics3 on Llama);
# "bidirectional": the rows of one item see each other too (e.g. Gemma 3); not run by this runtime yet.
MediaAttention = Literal["causal", "bidirectional"]
# How embedding rows get positions: "linear": one position per row, in prompt order, as text tokens;
# "mrope": multi-axis (temporal, height, width) rotary positions, Qwen2-VL's M-RoPE; not run by this runtime yet.
MediaPositions = Literal["linear", "mrope"]

# Where SentencePiece's "▁" prefix goes (LLMSpec.space_prefix): "gguf": as the GGUF tokenizer does it
# (llama.cpp's add_space_prefix: before the text and after every special token, or never);
# "first": HF's Metaspace prepend_scheme "first": one space before the prompt unless the prompt
# starts with a space or a special token (the GGUF then has add_space_prefix false).
SpacePrefix = Literal["gguf", "first"]


@dataclass(frozen=True)
class LLMSpec:
    """The language model (GGUF) and what the runtime must know about its tokens.

    ``media_attention`` and ``media_positions`` say how the model was trained to see the
    embedding rows of images in its context (see :data:`MediaAttention`, :data:`MediaPositions`);
    a runtime that cannot do what they say must refuse the bundle, not run it differently.
    """

    file: str  # the GGUF file, a path in ``files``
    arch: str  # GGUF ``general.architecture`` ("llama")
    dtype: str  # how the weights are stored: "f32", "f16", or a GGUF k-quant ("q8_0", "q4_k_m", ...)
    n_ctx_train: int  # the context length the model was trained with
    n_embd: int  # width of a token embedding (media embedding rows have it too)
    n_vocab: int  # tokens in the vocabulary
    bos_id: Optional[int]  # the beginning-of-sequence token id, if the model has one
    eos_ids: list[int]  # token ids that end generation (any of them)
    add_bos: bool  # tokenizing a prompt puts bos_id first
    chat_template: Optional[str] = None  # the HF Jinja chat template, if the model has one
    # token texts the chat template may refer to as bos_token / eos_token
    bos_token: Optional[str] = None
    eos_token: Optional[str] = None  # the text of the end-of-sequence token (the template's eos_token)
    # attention over the rows of one media item: "causal" or "bidirectional" (MediaAttention)
    media_attention: MediaAttention = "causal"
    # positions of media rows: "linear" (one per row) or "mrope" (multi-axis; MediaPositions)
    media_positions: MediaPositions = "linear"
    # a "▁" the runtime puts before the prompt text, beyond what the GGUF tokenizer does (SpacePrefix)
    space_prefix: SpacePrefix = "gguf"
    # the chat template as role prefixes/suffixes for runtimes without Jinja (edge/native); None: not
    # expressible that way (provenance.chat_affixes says why) or exported before this field existed
    chat_affixes: Optional[ChatAffixes] = None


@dataclass(frozen=True)
class AudioFeatures:
    """How audio becomes log-mel ``input_features``, as ``WhisperFeatureExtractor`` does it.

    Mono audio at ``sample_rate`` is cut into windows of ``chunk_length`` seconds (zero
    padded), turned into a power STFT (periodic Hann window of ``n_fft``, ``hop_length``,
    centred with reflect padding), a Slaney mel filter bank of ``n_mels`` bands from
    ``f_min`` to ``f_max``, ``log10`` clamped at ``log_floor``, then floored at
    ``max - dynamic_range`` and mapped by ``(x + 4) / 4``.
    """

    sample_rate: int = 16000  # samples per second of the mono input
    n_mels: int = 80  # mel bands (rows of input_features)
    n_fft: int = 400  # STFT window length in samples
    hop_length: int = 160  # STFT hop in samples (one frame every 10 ms at 16 kHz)
    chunk_length: int = 30  # seconds per window (the encoder's fixed input length)
    f_min: float = 0.0  # lowest mel frequency, Hz
    f_max: float = 8000.0  # highest mel frequency, Hz
    log_floor: float = 1e-10  # the power is clamped at this before log10
    dynamic_range: float = 8.0  # log-mel values below max - dynamic_range are raised to it


@dataclass(frozen=True)
class SpeechTokens:
    """Whisper's special token ids, and the token rules of its decoding."""

    sot: int  # <|startoftranscript|>
    eot: int  # <|endoftext|>: the transcript of a window ends
    transcribe: int  # <|transcribe|>
    translate: int  # <|translate|>
    notimestamps: int  # <|notimestamps|>
    no_speech: int  # <|nospeech|>: its probability tells silence
    timestamp_begin: int  # <|0.00|>: the first timestamp token; later ones follow in order
    # language code ("en") -> token id of "<|en|>"; empty for English-only models
    languages: dict[str, int] = field(default_factory=dict)
    suppress: list[int] = field(default_factory=list)  # token ids never generated, at any step
    suppress_at_begin: list[int] = field(default_factory=list)  # token ids never generated first
    # the first timestamp may be at most this many 0.02 s steps into a window
    max_initial_timestamp_index: Optional[int] = 50
    time_precision: float = 0.02  # seconds per timestamp step


@dataclass(frozen=True)
class KVCacheLayout:
    """The decoder's KV cache: one tensor per layer and kind, ``axes`` name its dimensions.

    Tensor names in ``encoder_io``/``decoder_io`` are templates: layer ``i`` of
    ``cross_k.{layer}`` is ``cross_k.0``, ``cross_k.1``... (separate tensors, so no graph
    has to split a stacked cache at every step). Self-attention K/V grow by the tokens
    fed (the decoder returns the cache with the new positions appended); cross-attention
    K/V come from the encoder once per window.
    """

    layers: int  # decoder layers (one self and one cross K/V tensor each)
    heads: int  # attention heads
    head_dim: int  # width of one head
    max_positions: int  # the most decoder positions (text tokens of one window)
    encoder_positions: int  # encoder output positions per window (cross-attention length)
    # the order of the dimensions of every cache tensor
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

    encoder: str  # the encoder ONNX graph, a path in ``files``
    decoder: str  # the KV-cached decoder ONNX graph, a path in ``files``
    vocab: str  # JSON list of the token strings by id, a path in ``files``
    dtype: str  # how the weights are stored: "f32", "f16", or a quantization
    encoder_io: dict[str, TensorSpec]  # role -> encoder tensor
    decoder_io: dict[str, TensorSpec]  # role -> decoder tensor
    kv_cache: KVCacheLayout  # the decoder's KV cache tensors
    features: AudioFeatures  # how audio becomes log-mel input_features
    tokens: SpeechTokens  # special tokens and decoding rules
    vocab_size: int  # tokens in the vocabulary (rows of the logits)
    multilingual: bool = False  # the model knows languages other than English

    @property
    def files(self) -> list[str]:
        """The bundle files this component needs."""
        return [self.encoder, self.decoder, self.vocab]


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to run a bundle; see ``docs/bundle.md``."""

    name: str  # display name
    family: str  # the exporter family ("llava", "llava_next", "idefics3", "llama", "whisper")
    files: dict[str, FileEntry]  # every file of the bundle but manifest.json, by path
    # None for a bundle without a language model (e.g. speech recognition only)
    llm: Optional[LLMSpec] = None
    prompt: PromptLayout = field(default_factory=PromptLayout)  # where images go in a prompt
    vision: Optional[VisionSpec] = None  # the image encoder; None for a bundle without images
    audio: Optional[AudioSpec] = None  # speech recognition; None for a bundle without speech
    # free-form: source, exporter, created, parity figures; quantization and fidelity when quantized
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION  # the version of this format; readers refuse versions they do not know

    def component_files(self) -> list[str]:
        """The files the components name (each must be listed in ``files``)."""
        files = [c.file for c in (self.llm, self.vision) if c is not None]
        if self.vision is not None and self.vision.projector_gguf:
            files.append(self.vision.projector_gguf)
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
        if version == 1:
            data, version = _upgrade_v1(data), SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"manifest.json has schema_version {version!r}; this edge reads "
                f"schema_version {SCHEMA_VERSION} (re-export the bundle or upgrade edge)"
            )
        return _build(Manifest, data, "manifest")


def _upgrade_v1(data: dict) -> dict:
    """A schema-1 manifest as schema 2, in memory: ``vision.slicing`` (the scheme's
    parameters, tagged with ``scheme``) becomes ``vision.preprocess``; a ``clip`` bundle
    keeps its ``preprocess``. The bundle's files are unchanged."""
    data = dict(data, schema_version=SCHEMA_VERSION)
    vision = data.get("vision")
    if not isinstance(vision, dict):
        return data
    vision = dict(vision)
    slicing = vision.pop("slicing", None)
    if slicing:
        vision["preprocess"] = slicing
    elif isinstance(vision.get("preprocess"), dict) and vision["preprocess"].get("scheme") != "clip":
        scheme = vision["preprocess"].get("scheme")
        raise BundleError(
            f"manifest.json (schema_version 1): vision.slicing is missing for scheme {scheme!r}; re-export the bundle"
        )
    data["vision"] = vision
    return data


def union_tag(variants: typing.Sequence[Any]) -> Optional[tuple[str, dict[str, type]]]:
    """``(field, {tag: class})`` when ``variants`` are dataclasses told apart by one field
    typed as a one-value ``Literal`` in each (a tagged union, e.g. ``scheme``); else None."""
    if not variants or not all(dataclasses.is_dataclass(v) for v in variants):
        return None
    for f in dataclasses.fields(variants[0]):
        tags = {}
        for cls in variants:
            tp = typing.get_type_hints(cls).get(f.name)
            if typing.get_origin(tp) is not Literal or len(typing.get_args(tp)) != 1:
                break
            tags[typing.get_args(tp)[0]] = cls
        else:
            if len(tags) == len(variants):
                return f.name, tags
    return None


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
    try:
        return cls(**kwargs)
    except InputError as exc:  # a value check of the dataclass (``__post_init__``)
        text = str(exc)
        first = text.split(" ", 1)[0]
        names = {f.name for f in dataclasses.fields(cls)}
        raise BundleError(f"manifest.json: {where}{'.' if first in names else ': '}{text}"[:300]) from None


def _convert_tagged(variants: list, value: Any, path: str) -> Any:
    """A tagged union: the class is the one whose tag (e.g. ``scheme``) the object names."""
    tagged = union_tag(variants)
    if tagged is None:  # not in the manifest: every union there is a tagged one
        raise TypeError(f"{path}: a union of {variants} has no tag field")
    name, classes = tagged
    if not isinstance(value, dict):
        raise BundleError(f"manifest.json: {path} must be an object")
    if name not in value:
        raise BundleError(f"manifest.json: {path}.{name} is missing")
    cls = classes.get(value[name]) if isinstance(value[name], str) else None
    if cls is None:
        raise BundleError(f"manifest.json: {path}.{name} must be one of {list(classes)}, got {value[name]!r}"[:200])
    return _build(cls, value, path)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1:
            return _convert_tagged(inner, value, path)
        return _convert(inner[0], value, path)
    if origin is Literal:  # a closed set of values (a JSON Schema enum)
        if not any(type(value) is type(a) and value == a for a in args):
            raise BundleError(f"manifest.json: {path} must be one of {list(args)}, got {value!r}"[:200])
        return value
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
