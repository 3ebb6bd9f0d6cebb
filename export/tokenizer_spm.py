"""SentencePiece-style tokenizers (Llama-2, Mistral, Vicuna, Gemma) as llama.cpp's ``llama`` vocabulary.

llama.cpp's SPM tokenizer (src/llama-vocab.cpp, ``llm_tokenizer_spm_session``) escapes spaces
as ``▁``, optionally prepends one ``▁`` to every text fragment that starts the text or follows a
special token (``tokenizer.ggml.add_space_prefix``), then repeatedly merges the adjacent pair
whose concatenation is a vocabulary token with the highest score (leftmost on ties); symbols
left outside the vocabulary become ``<0xXX>`` byte tokens. The facts of the GGUF keys follow
llama.cpp's converter (conversion/base.py ``_create_vocab_sentencepiece``, gguf-py
``LlamaHfVocab``): token types NORMAL/UNKNOWN/CONTROL/USER_DEFINED/BYTE, pre-tokenizer
``default``.

A HF ``tokenizer.json`` of this kind is a byte-fallback BPE with ranked merges. It has the
same result as llama.cpp's score-driven merging when (checked here, else the export is
refused with the mismatch named) every pair llama.cpp could merge is a listed merge and the
space handling is one llama.cpp has. The scores written are minus the rank of the first merge
making each token. The export-time probe (:func:`edge.export.parity.tokenizer_parity`) then
compares the ids of both tokenizers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from edge.errors import ExportError
from edge.export.tokenizer import (
    CONTROL,
    NORMAL,
    UNUSED,
    USER_DEFINED,
    TokenizerMeta,
    _post_processor_flags,
    _read_json,
    read_chat_template,
)

# llama.cpp token types beyond the ones the GPT-2 path uses (gguf TokenType).
UNKNOWN, BYTE = 2, 6
SPACE = "\u2581"  # "▁", SentencePiece's visible space
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# the score of tokens no merge makes (single characters, bytes, specials): never compared
_NO_MERGE_SCORE = -1e9


def is_spm_tokenizer_json(tj: dict) -> bool:
    """Whether a tokenizer.json is SentencePiece-style BPE (byte fallback), this module's kind."""
    model = tj.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def space_prefix(tj: dict) -> tuple[bool, str]:
    """Where text gets a leading ``▁``, read from the normalizer / pre-tokenizer: the GGUF's
    ``add_space_prefix`` and the runtime's rule (``LLMSpec.space_prefix``).

    Accepted shapes: the legacy Llama normalizer ``Prepend("▁")`` + ``Replace(" ", "▁")`` (a
    prefix on every fragment: llama.cpp's add_space_prefix), ``Replace(" ", "▁")`` alone (Gemma:
    no prefix; Gemma's no-op ``Split(" ")`` pre-tokenizer may follow), or a non-splitting ``Metaspace`` with ``prepend_scheme`` "never" (no prefix) or
    "first" (the runtime's "first" rule, :mod:`edge.runtime.text.space_prefix`). Metaspace
    "always" skips the prefix of fragments that start with a space, which llama.cpp cannot do;
    it and anything else are refused with what they are.
    """
    norm, pre = tj.get("normalizer"), tj.get("pre_tokenizer")
    steps = (norm or {}).get("normalizers", [norm] if norm else [])
    kinds = [s.get("type") for s in steps]
    replace_ok = bool(steps) and _is_space_replace(steps[-1])
    if pre is None and kinds == ["Prepend", "Replace"] and replace_ok and steps[0].get("prepend") == SPACE:
        return True, "gguf"
    if kinds == ["Replace"] and replace_ok and (pre is None or _is_space_split(pre)):
        return False, "gguf"
    if not steps and (pre or {}).get("type") == "Metaspace":
        if pre.get("replacement", SPACE) != SPACE or pre.get("split", True):
            raise ExportError(f"unsupported Metaspace pre-tokenizer (replacement/split): {json.dumps(pre)[:160]}")
        scheme = pre.get("prepend_scheme")
        if scheme is None:  # tokenizers < 0.14 wrote a boolean
            scheme = "always" if pre.get("add_prefix_space", True) else "never"
        if scheme == "always":
            raise ExportError(
                "the tokenizer's Metaspace prepend_scheme 'always' puts no '▁' before text that starts "
                "with a space, unlike llama.cpp's add_space_prefix: it cannot be represented exactly"
            )
        return False, "first" if scheme == "first" else "gguf"
    raise ExportError(
        "unsupported SentencePiece normalizer/pre-tokenizer in tokenizer.json: "
        f"normalizer={json.dumps(norm)[:120]} pre_tokenizer={json.dumps(pre)[:120]}"
    )


def _is_space_split(pre: dict) -> bool:
    # Gemma's tokenizer.json splits on " " after its normaliser has replaced every " " by "▁":
    # a no-op (transformers' GemmaConverter.pre_tokenizer)
    return pre.get("type") == "Split" and (pre.get("pattern") or {}).get("String") == " "


def _is_space_replace(step: dict) -> bool:
    return (
        step.get("type") == "Replace"
        and (step.get("pattern") or {}).get("String") == " "
        and (step.get("content") == SPACE)
    )


def from_tokenizer_json(src: Path, tj: dict) -> TokenizerMeta:
    """The ``llama`` GGUF vocabulary of a byte-fallback BPE ``tokenizer.json`` (+ tokenizer_config)."""
    cfg = _read_json(src / "tokenizer_config.json")
    bpe = tj["model"]
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if bpe.get(key):
            raise ExportError(f"tokenizer.json BPE option {key}={bpe[key]!r} has no llama.cpp equivalent")
    if bpe.get("ignore_merges"):
        raise ExportError("tokenizer.json BPE option ignore_merges=true has no SentencePiece equivalent")
    prefix, rule = space_prefix(tj)
    vocab: dict[str, int] = dict(bpe["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in bpe.get("merges", [])]
    scores = _merge_scores(vocab, merges, {t["content"] for t in tj.get("added_tokens", [])})
    n = max([*vocab.values(), *(t["id"] for t in tj.get("added_tokens", []))]) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [UNUSED] * n
    score_list = [_NO_MERGE_SCORE] * n
    unk = bpe.get("unk_token")
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = BYTE if _BYTE_TOKEN.fullmatch(text) else UNKNOWN if text == unk else NORMAL
        score_list[idx] = scores.get(text, _NO_MERGE_SCORE)
    for tok in tj.get("added_tokens", []):
        _check_added(tok)
        idx, text = tok["id"], tok["content"]
        if text == unk:
            types[idx] = UNKNOWN
        elif tok.get("special"):
            types[idx] = CONTROL
        else:  # llama.cpp matches user-defined tokens in the raw text, before spaces become "▁"
            text, types[idx] = text.replace(SPACE, " "), USER_DEFINED
        tokens[idx] = text

    ids = {t: i for i, t in enumerate(tokens)}
    bos, eos = _special_id(cfg, "bos_token", ids), _special_id(cfg, "eos_token", ids)
    add_bos, add_eos = _post_processor_flags(tj, cfg, bos, eos)
    return TokenizerMeta(
        model="llama",
        pre="default",
        tokens=tokens,
        token_types=types,
        scores=score_list,
        bos_id=bos,
        eos_id=eos,
        unk_id=vocab.get(unk) if unk else _special_id(cfg, "unk_token", ids),
        pad_id=_special_id(cfg, "pad_token", ids),
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=prefix,
        space_prefix_rule=rule,
        chat_template=read_chat_template(src, cfg),
    )


def _merge_scores(vocab: dict[str, int], merges: list[tuple[str, ...]], added: set[str]) -> dict[str, float]:
    """Score per merged token (minus the rank of its first merge), after checking that
    llama.cpp's merging by score gives what the ranked BPE merges give."""
    # A token made by several merges gets the score of the first: where two of its pairs compete,
    # llama.cpp takes the leftmost, as SentencePiece itself does (HF may order such ties by rank;
    # converted SentencePiece vocabularies rank them by piece score, so they agree in practice,
    # and the export-time probe checks it).
    first: dict[str, int] = {}
    for rank, pair in enumerate(merges):
        if len(pair) != 2 or "".join(pair) not in vocab:
            raise ExportError(f"tokenizer.json merge {' '.join(pair)!r} does not make a vocabulary token")
        first.setdefault(pair[0] + pair[1], rank)
    listed = set(merges)
    for token in vocab:
        # llama.cpp cuts added tokens out of the text before merging, and merges escaped text
        # (no " "), so neither can come out of a merge there
        if token in added or " " in token:
            continue
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            # llama.cpp merges any two adjacent symbols (vocabulary tokens or single characters)
            # whose concatenation is a token; HF only merges listed pairs
            if (left in vocab or len(left) == 1) and (right in vocab or len(right) == 1):
                if (left, right) not in listed:
                    raise ExportError(
                        f"llama.cpp would merge {left!r} + {right!r} into {token!r}, which the tokenizer.json "
                        "BPE merges never do: this tokenizer cannot be represented exactly"
                    )
    return {token: -float(rank) for token, rank in first.items()}


def _check_added(tok: dict) -> None:
    for flag in ("lstrip", "rstrip", "single_word"):
        if tok.get(flag):
            raise ExportError(f"added token {tok['content']!r} has {flag}=true, which llama.cpp does not apply")


def _special_id(cfg: dict, name: str, ids: dict[str, int]) -> Optional[int]:
    value = cfg.get(name)
    if isinstance(value, dict):
        value = value.get("content")
    return ids.get(value) if isinstance(value, str) else None


def from_sentencepiece_model(src: Path) -> TokenizerMeta:
    """The ``llama`` vocabulary of a ``tokenizer.model`` (when a checkpoint has no tokenizer.json).

    Follows llama.cpp's ``_create_vocab_sentencepiece``: pieces, scores and types from the
    model, added tokens from ``added_tokens.json`` and tokenizer_config's
    ``added_tokens_decoder``. Only BPE models with identity normalisation are accepted.
    """
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise ExportError(
            "reading tokenizer.model needs the sentencepiece package: pip install sentencepiece"
        ) from None
    path = src / "tokenizer.model"
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # the protobuf library raises its own DecodeError
        raise ExportError(f"cannot read {path}: {exc}") from None
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        raise ExportError(f"{path} is not a BPE SentencePiece model (llama.cpp's SPM tokenizer merges BPE pieces)")
    ns = proto.normalizer_spec
    if ns.name not in ("identity", "") or ns.remove_extra_whitespaces or proto.trainer_spec.treat_whitespace_as_suffix:
        raise ExportError(
            f"{path} normalises text ({ns.name!r}, remove_extra_whitespaces={ns.remove_extra_whitespaces}), "
            "which llama.cpp does not do"
        )
    sp = sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())
    n = sp.GetPieceSize()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.IdToPiece(i))
        scores.append(float(sp.GetScore(i)))
        types.append(
            UNKNOWN
            if sp.IsUnknown(i)
            else CONTROL
            if sp.IsControl(i)
            else UNUSED
            if sp.IsUnused(i)
            else BYTE
            if sp.IsByte(i)
            else NORMAL
        )
    cfg = _read_json(src / "tokenizer_config.json")
    added = {int(k): v for k, v in (cfg.get("added_tokens_decoder") or {}).items()}
    for text, idx in _read_json(src / "added_tokens.json").items():
        added.setdefault(int(idx), {"content": text, "special": False})
    for idx in sorted(added):
        info = added[idx]
        while idx >= len(tokens):
            tokens.append(f"[PAD{len(tokens)}]")
            scores.append(-1000.0)
            types.append(UNUSED)
        _check_added(info)
        special = bool(info.get("special"))
        tokens[idx] = info["content"] if special else info["content"].replace(SPACE, " ")
        types[idx] = CONTROL if special and types[idx] != UNKNOWN else types[idx] if special else USER_DEFINED
        scores[idx] = -1000.0
    ids = {t: i for i, t in enumerate(tokens)}

    def special(name: str, fallback: int) -> Optional[int]:
        found = _special_id(cfg, name, ids)
        return found if found is not None else (fallback if fallback >= 0 else None)

    return TokenizerMeta(
        model="llama",
        pre="default",
        tokens=tokens,
        token_types=types,
        scores=scores,
        bos_id=special("bos_token", sp.bos_id()),
        eos_id=special("eos_token", sp.eos_id()),
        unk_id=special("unk_token", sp.unk_id()),
        pad_id=special("pad_token", sp.pad_id()),
        add_bos=bool(cfg.get("add_bos_token", True)),
        add_eos=bool(cfg.get("add_eos_token", False)),
        # tokenizer_config's add_prefix_space wins, as in llama.cpp's converter (LlamaModel.set_vocab)
        add_space_prefix=bool(
            cfg["add_prefix_space"] if cfg.get("add_prefix_space") is not None else ns.add_dummy_prefix
        ),
        chat_template=read_chat_template(src, cfg),
    )
