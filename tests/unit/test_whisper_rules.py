"""Whisper's token rules and segment splitting, on hand-made token sequences."""

from __future__ import annotations

import numpy as np
import pytest

from edge.manifest import SpeechTokens
from edge.runtime.speech.decode_rules import Vocabulary, apply_rules, bytes_to_unicode, split_window

T = SpeechTokens(
    sot=50257,
    eot=50256,
    transcribe=50358,
    translate=50357,
    notimestamps=50362,
    no_speech=50361,
    timestamp_begin=50363,
    suppress=[1, 2],
    suppress_at_begin=[220, 50256],
    max_initial_timestamp_index=50,
)
V = 51864
B = T.timestamp_begin


def ts(seconds: float) -> int:
    return B + int(round(seconds / 0.02))


def test_suppression_at_every_step_and_at_the_first():
    logits = np.zeros(V, np.float32)
    first = apply_rules(logits, [], T, timestamps=False)
    assert np.isinf(first[[1, 2, 220, 50256]]).all() and np.isfinite(first[3])
    later = apply_rules(logits, [400], T, timestamps=False)
    assert np.isinf(later[[1, 2]]).all() and np.isfinite(later[[220, 50256]]).all()


def test_a_window_starts_with_an_early_timestamp():
    out = apply_rules(np.zeros(V, np.float32), [], T, timestamps=True)
    allowed = np.flatnonzero(np.isfinite(out))
    assert allowed.min() == B and allowed.max() == B + 50  # <|0.00|> .. <|1.00|>


def test_timestamps_pair_up_and_never_go_back():
    logits = np.zeros(V, np.float32)
    logits[B:] = -10.0  # timestamps unlikely, so the probability-mass rule stays out of the way
    opened = apply_rules(logits, [ts(1.0), 400, ts(2.0)], T, timestamps=True)
    # after text and one timestamp: its partner (>= 2.00) or the end, no text
    assert np.isinf(opened[: T.eot]).all() and np.isfinite(opened[T.eot])
    assert np.isinf(opened[B : ts(2.0)]).all() and np.isfinite(opened[ts(2.0)])
    closed = apply_rules(logits, [ts(1.0), 400, ts(2.0), ts(2.0)], T, timestamps=True)
    assert np.isinf(closed[B:]).all()  # a closed pair: text must follow
    assert np.isinf(closed[T.notimestamps])


def test_timestamp_mass_beats_the_best_text_token():
    logits = np.full(V, -10.0, np.float32)
    logits[400] = 2.0  # the single best token is text...
    logits[B : B + 1000] = 0.0  # ...but the timestamps together are likelier
    out = apply_rules(logits, [ts(0.0), 400], T, timestamps=True)
    assert np.isinf(out[:B]).all()


def test_split_into_timed_segments_and_seek():
    text = [400, 401]
    # two complete segments, ending on a pair: the next window starts at the last timestamp
    toks = [ts(0.0), *text, ts(2.0), ts(2.0), *text, ts(5.0), ts(5.0), 402]
    s = split_window(toks, T, 30.0, True)
    assert [(a, b) for a, b, _ in s.pieces] == [(0.0, 2.0), (2.0, 5.0)]
    assert s.consumed_s == pytest.approx(5.0)
    # a single timestamp at the end: speech ran to the end of the window, all of it is consumed
    s = split_window([ts(0.0), *text, ts(2.0), ts(2.0), *text, ts(7.5)], T, 30.0, True)
    assert [(a, b) for a, b, _ in s.pieces] == [(0.0, 2.0), (2.0, 7.5)] and s.consumed_s == 30.0
    # no pair at all: one segment up to the last timestamp
    s = split_window([ts(0.0), *text, ts(3.0)], T, 12.0, True)
    assert [(a, b) for a, b, _ in s.pieces] == [(0.0, 3.0)] and s.consumed_s == 12.0
    # times past the audio in the window are clamped to it
    s = split_window([ts(0.0), *text, ts(9.0), ts(9.0), 403, ts(20.0)], T, 4.0, True)
    assert all(b <= 4.0 for _, b, _ in s.pieces)
    # without timestamps: one piece, the whole window
    assert split_window(text, T, 3.5, False).pieces == [(0.0, 3.5, text)]


def test_byte_level_vocabulary_decodes_utf8():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "\u0120"
    enc = lambda s: "".join(table[b] for b in s.encode("utf-8"))  # noqa: E731
    strings = [enc(" caf"), enc("é"), enc(" 日本"), "<|endoftext|>"]
    vocab = Vocabulary(strings + ["<|startoftranscript|>"], eot=4)
    assert vocab.decode([0, 1, 2]) == " café 日本"
    assert vocab.decode([0, 4, 99]) == " caf"  # special and unknown ids decode to nothing
