"""Tokenizer facts for the GGUF vocabulary, read from a HF directory or a GGUF file.

llama.cpp tokenizes with its own implementation, so the GGUF must carry the
vocabulary, merges, token types, special ids, BOS/EOS flags and the name of the
pre-tokenizer (llama.cpp's ``tokenizer.ggml.pre``). The export checks the result
against the HF tokenizer (see :mod:`edge.export.parity`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edge.errors import ExportError

# llama.cpp token types (gguf TokenType): NORMAL=1, CONTROL=3, USER_DEFINED=4, UNUSED=5.
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

# HF pre-tokenizer shapes -> llama.cpp pre-tokenizer names. The regexes are the ones
# llama.cpp's src/llama-vocab.cpp uses for each name; the key is how the same split
# is written in tokenizer.json.
_LLAMA3_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_SPLIT_REGEX_TO_PRE = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}


@dataclass
class TokenizerMeta:
    """Everything the GGUF ``tokenizer.*`` keys hold."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: Optional[str]
    tokens: list[str]
    token_types: list[int]
    merges: list[str] = field(default_factory=list)
    scores: Optional[list[float]] = None
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None
    unk_id: Optional[int] = None
    pad_id: Optional[int] = None
    add_bos: bool = False
    add_eos: bool = False
    chat_template: Optional[str] = None
    # SentencePiece (model "llama"): whether llama.cpp puts a "▁" before each text fragment that
    # starts the text or follows a special token (tokenizer.ggml.add_space_prefix); None: not written
    add_space_prefix: Optional[bool] = None
    # a "▁" rule the runtime applies beyond the GGUF's (edge.manifest.SpacePrefix: "gguf" or "first")
    space_prefix_rule: str = "gguf"

    def padded(self, n_vocab: int) -> "TokenizerMeta":
        """Pad the vocabulary to the model's embedding rows, as llama.cpp expects."""
        extra = n_vocab - len(self.tokens)
        if extra < 0:
            raise ExportError(f"tokenizer has {len(self.tokens)} tokens but the model only {n_vocab} embedding rows")
        if extra == 0:
            return self
        start = len(self.tokens)
        self.tokens = self.tokens + [f"[PAD{start + i}]" for i in range(extra)]
        self.token_types = self.token_types + [UNUSED] * extra
        if self.scores is not None:
            self.scores = self.scores + [-1000.0] * extra
        return self


def from_gguf_fields(fields: dict[str, Any]) -> TokenizerMeta:
    """Read the tokenizer out of an existing GGUF's key/value fields."""

    def get(key: str, default: Any = None) -> Any:
        return fields.get(key, default)

    model = get("tokenizer.ggml.model")
    if model not in ("gpt2", "llama"):
        raise ExportError(f"unsupported GGUF tokenizer model {model!r} (edge supports gpt2 and llama)")
    tokens = list(get("tokenizer.ggml.tokens", []))
    return TokenizerMeta(
        model=model,
        pre=get("tokenizer.ggml.pre"),
        tokens=tokens,
        token_types=list(get("tokenizer.ggml.token_type", [NORMAL] * len(tokens))),
        merges=list(get("tokenizer.ggml.merges", [])),
        scores=list(get("tokenizer.ggml.scores")) if "tokenizer.ggml.scores" in fields else None,
        bos_id=get("tokenizer.ggml.bos_token_id"),
        eos_id=get("tokenizer.ggml.eos_token_id"),
        unk_id=get("tokenizer.ggml.unknown_token_id"),
        pad_id=get("tokenizer.ggml.padding_token_id"),
        add_bos=bool(get("tokenizer.ggml.add_bos_token", model == "llama")),
        add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
        chat_template=get("tokenizer.chat_template"),
        add_space_prefix=get("tokenizer.ggml.add_space_prefix"),
    )


def from_hf_dir(src: Path) -> TokenizerMeta:
    """Read ``tokenizer.json`` (+ ``tokenizer_config.json``, chat template files) of a HF checkpoint.

    Byte-level BPE becomes the ``gpt2`` vocabulary; byte-fallback (SentencePiece-style) BPE, or a
    lone ``tokenizer.model``, the ``llama`` one (:mod:`edge.export.tokenizer_spm`).
    """
    # imported here: tokenizer_spm builds on this module's TokenizerMeta and helpers
    from edge.export import tokenizer_spm

    tj_path = src / "tokenizer.json"
    if not tj_path.is_file():
        if (src / "tokenizer.model").is_file():
            return tokenizer_spm.from_sentencepiece_model(src)
        raise ExportError(f"{src} has neither tokenizer.json nor tokenizer.model")
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    cfg = _read_json(src / "tokenizer_config.json")
    bpe = tj.get("model") or {}
    if bpe.get("type") != "BPE":
        raise ExportError(f"unsupported tokenizer model {bpe.get('type')!r} in {tj_path} (BPE only)")
    if bpe.get("byte_fallback"):
        return tokenizer_spm.from_tokenizer_json(src, tj)
    vocab: dict[str, int] = dict(bpe["vocab"])
    special: set[int] = set()
    user: set[int] = set()
    for tok in tj.get("added_tokens", []):
        vocab[tok["content"]] = tok["id"]
        (special if tok.get("special") else user).add(tok["id"])
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [UNUSED] * n
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = CONTROL if idx in special else USER_DEFINED if idx in user else NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges", [])]

    def tid(name: str) -> Optional[int]:
        value = cfg.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return vocab.get(value) if isinstance(value, str) else None

    add_bos, add_eos = _post_processor_flags(tj, cfg, tid("bos_token"), tid("eos_token"))
    return TokenizerMeta(
        model="gpt2",
        pre=detect_pre(tj.get("pre_tokenizer")),
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=tid("bos_token"),
        eos_id=tid("eos_token"),
        unk_id=tid("unk_token"),
        pad_id=tid("pad_token"),
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=read_chat_template(src, cfg),
    )


def detect_pre(pre: Optional[dict]) -> str:
    """Name the llama.cpp pre-tokenizer that splits text like this tokenizer.json one."""
    steps = (pre or {}).get("pretokenizers", [pre] if pre else [])
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex in _SPLIT_REGEX_TO_PRE:
            return _SPLIT_REGEX_TO_PRE[regex]
    raise ExportError(f"unsupported pre-tokenizer in tokenizer.json: {json.dumps(pre)[:160]}")


def read_chat_template(src: Path, cfg: dict) -> Optional[str]:
    """The chat template: ``chat_template.jinja``, ``chat_template.json`` or tokenizer_config."""
    jinja = src / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    processor_tpl = _read_json(src / "chat_template.json").get("chat_template")
    if isinstance(processor_tpl, str):
        return processor_tpl
    tpl = cfg.get("chat_template")
    if isinstance(tpl, list):  # named templates: take the default one
        tpl = next((t.get("template") for t in tpl if t.get("name") == "default"), None)
    return tpl if isinstance(tpl, str) else None


def _post_processor_flags(tj: dict, cfg: dict, bos: Optional[int], eos: Optional[int]) -> tuple[bool, bool]:
    """Whether encoding adds BOS/EOS: a TemplateProcessing post-processor decides,
    else the ``add_bos_token``/``add_eos_token`` flags of tokenizer_config.json."""
    post = tj.get("post_processor") or {}
    posts = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for p in posts:
        single = p.get("single") or []
        if p.get("type") != "TemplateProcessing" or not single:
            continue
        specials = p.get("special_tokens", {})

        def adds(item: dict, token: Optional[int]) -> bool:
            name = item.get("SpecialToken", {}).get("id")
            return name is not None and token in specials.get(name, {}).get("ids", [])

        return adds(single[0], bos), adds(single[-1], eos)
    return bool(cfg.get("add_bos_token", False)), bool(cfg.get("add_eos_token", False))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}
