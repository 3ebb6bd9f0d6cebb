"""Whisper's decoding rules as pure functions: token suppression, timestamp rules, segments.

They follow OpenAI Whisper's ``whisper/decoding.py`` (``SuppressBlank``,
``SuppressTokens``, ``ApplyTimestampRules``) and ``whisper/transcribe.py`` (splitting a
window's tokens into timed segments and choosing where the next window starts), in the
order transformers' ``WhisperForConditionalGeneration.generate`` applies them, so greedy
tokens match ``transformers.generate`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.manifest import SpeechTokens

NEG_INF = -np.inf


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax of a 1-D array (float64)."""
    x = x.astype(np.float64)
    m = np.max(x)
    if not np.isfinite(m):
        return np.full_like(x, NEG_INF)
    return x - m - np.log(np.sum(np.exp(x - m)))


def log_prob(x: np.ndarray, index: int) -> float:
    """``log_softmax(x)[index]`` with the same arithmetic, without building the whole output."""
    x = x.astype(np.float64)
    m = np.max(x)
    if not np.isfinite(m):
        return NEG_INF
    return float((x[index] - m) - np.log(np.sum(np.exp(x - m))))


def _logsumexp(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    m = np.max(x) if x.size else NEG_INF
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.sum(np.exp(x - m))))


def apply_rules(logits: np.ndarray, generated: list[int], tokens: SpeechTokens, timestamps: bool) -> np.ndarray:
    """Mask ``logits`` (a copy, 1-D over the vocabulary) for the next token.

    ``generated`` are the tokens sampled after the prompt in this window.
    """
    out = np.array(logits, dtype=np.float32, copy=True)
    if not generated:  # no blank or end of text as the first token
        out[[t for t in tokens.suppress_at_begin if t < out.size]] = NEG_INF
    out[[t for t in tokens.suppress if t < out.size]] = NEG_INF
    if timestamps:
        _timestamp_rules(out, generated, tokens)
    return out


def _timestamp_rules(out: np.ndarray, seq: list[int], tokens: SpeechTokens) -> None:
    begin = tokens.timestamp_begin
    out[tokens.notimestamps] = NEG_INF  # its own mode, chosen by the prompt
    last_ts = len(seq) >= 1 and seq[-1] >= begin
    penultimate_ts = len(seq) < 2 or seq[-2] >= begin
    if last_ts:
        if penultimate_ts:  # a pair just closed: text must follow
            out[begin:] = NEG_INF
        else:  # an open timestamp: the next is its partner (or the end)
            out[: tokens.eot] = NEG_INF
    stamps = [t for t in seq if t >= begin]
    if stamps:
        # timestamps never decrease; a closing one may repeat the opening one
        floor = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
        out[begin:floor] = NEG_INF
    if not seq:
        out[:begin] = NEG_INF  # a window starts with a timestamp
        if tokens.max_initial_timestamp_index is not None:
            out[begin + tokens.max_initial_timestamp_index + 1 :] = NEG_INF
    # if the timestamps together are likelier than any text token, take a timestamp; compared on
    # the logits (log-softmax shifts both sides by the same normaliser), so only the 1501
    # timestamp logits are exponentiated, not the whole vocabulary, at every step
    if _logsumexp(out[begin:]) > (float(np.max(out[:begin])) if begin else NEG_INF):
        out[:begin] = NEG_INF


@dataclass(frozen=True)
class WindowSplit:
    """Token slices of a window as ``(start_s, end_s, tokens)`` and the seconds consumed."""

    pieces: list[tuple[float, float, list[int]]]
    consumed_s: float


def split_window(generated: list[int], tokens: SpeechTokens, window_s: float, timestamps: bool) -> WindowSplit:
    """Cut a window's generated tokens (without end of text) into timed pieces.

    With timestamps, consecutive timestamp pairs close a piece. When the window ends
    on a single timestamp the speech ran to the end of the window and all of it is
    consumed; otherwise the next window starts at the last closing timestamp, so a
    sentence cut by the window edge is decoded again whole (OpenAI's ``transcribe``).
    """
    begin, step = tokens.timestamp_begin, tokens.time_precision
    if not timestamps:
        return WindowSplit([(0.0, window_s, list(generated))], window_s)
    is_ts = [t >= begin for t in generated]
    single_ending = len(is_ts) >= 2 and is_ts[-1] and not is_ts[-2]
    cuts = [i for i in range(1, len(is_ts)) if is_ts[i] and is_ts[i - 1]]
    if cuts:
        if single_ending:
            cuts.append(len(generated))
        pieces, last = [], 0
        for cut in cuts:
            part = generated[last:cut]
            # times past the audio in this window (the model may predict them) are clamped
            start, end = (min(window_s, (t - begin) * step) for t in (part[0], part[-1]))
            pieces.append((start, end, part))
            last = cut
        consumed = window_s if single_ending else (generated[last - 1] - begin) * step
        if consumed <= 0:
            consumed = window_s
        return WindowSplit(pieces, min(consumed, window_s))
    stamps = [t for t in generated if t >= begin]
    end = window_s
    if stamps and stamps[-1] != begin:
        end = min(window_s, (stamps[-1] - begin) * step)
    return WindowSplit([(0.0, end, list(generated))], window_s)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE, Radford et al. 2019).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to the
    characters from U+0100 upwards, in byte order.
    """
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Vocabulary:
    """Token id -> bytes for Whisper's byte-level BPE; special and timestamp ids decode to nothing."""

    def __init__(self, token_strings: list[str], eot: int) -> None:
        decoder = {c: b for b, c in bytes_to_unicode().items()}
        self._bytes = []
        for i, s in enumerate(token_strings):
            if i >= eot or s is None:
                self._bytes.append(b"")
            else:
                self._bytes.append(bytes(decoder.get(ch, 0x3F) for ch in s))

    def __len__(self) -> int:
        return len(self._bytes)

    def decode(self, ids: list[int]) -> str:
        """Text of the ids (invalid UTF-8 across a cut is replaced, as HF's ``errors="replace"``)."""
        return b"".join(self._bytes[i] for i in ids if 0 <= i < len(self._bytes)).decode("utf-8", errors="replace")
