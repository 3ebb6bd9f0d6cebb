"""How media rows are attended and positioned: the manifest records it, the runtime reads it
(positions an item takes) and refuses what it cannot execute."""

from __future__ import annotations

import dataclasses
import json
import re
import typing

import numpy as np
import pytest

from edge.errors import BundleError
from edge.manifest import LLMSpec, Manifest, MediaAttention, MediaPositions
from edge.runtime.text.sequence import (
    SUPPORTED_MEDIA_ATTENTION,
    SUPPORTED_MEDIA_POSITIONS,
    MediaBlock,
    check_media_facts,
    width,
)


def _llm(**facts) -> LLMSpec:
    return LLMSpec(
        file="llm.gguf",
        arch="llama",
        dtype="f32",
        n_ctx_train=64,
        n_embd=8,
        n_vocab=10,
        bos_id=1,
        eos_ids=[2],
        add_bos=True,
        **facts,
    )


def _text_bundle(llm: LLMSpec) -> Manifest:
    return Manifest(name="demo", family="llama", files={}, llm=llm)


def test_defaults_are_what_llama_vlms_do():
    spec = _llm()
    assert (spec.media_attention, spec.media_positions) == ("causal", "linear")
    assert "causal" in typing.get_args(MediaAttention) and "bidirectional" in typing.get_args(MediaAttention)
    assert "linear" in typing.get_args(MediaPositions) and "mrope" in typing.get_args(MediaPositions)


def test_facts_round_trip_and_old_manifests_get_the_defaults():
    m = _text_bundle(_llm(media_attention="bidirectional", media_positions="mrope"))
    again = Manifest.from_json(m.to_json())
    assert again == m and again.llm.media_attention == "bidirectional"
    data = json.loads(_text_bundle(_llm()).to_json())
    for key in ("media_attention", "media_positions"):
        del data["llm"][key]  # a bundle written before these facts were recorded
    old = Manifest.from_json(json.dumps(data))
    assert (old.llm.media_attention, old.llm.media_positions) == ("causal", "linear")


@pytest.mark.parametrize(
    "key, value", [("media_attention", "sideways"), ("media_positions", 3), ("media_positions", "Linear")]
)
def test_unknown_values_are_refused_with_the_field_named(key, value):
    data = json.loads(_text_bundle(_llm()).to_json())
    data["llm"][key] = value
    with pytest.raises(BundleError, match=f"manifest.json: manifest.llm.{key} must be one of"):
        Manifest.from_json(json.dumps(data))


def test_runtime_runs_causal_linear_and_refuses_the_rest():
    check_media_facts(_llm())  # what this runtime executes
    # bidirectional media attention runs (Gemma 3: each block decoded in one ubatch, causal attention off)
    check_media_facts(_llm(media_attention="bidirectional"))
    assert SUPPORTED_MEDIA_ATTENTION == ("causal", "bidirectional") and SUPPORTED_MEDIA_POSITIONS == ("linear",)
    for facts, words in (({"media_positions": "mrope"}, "'mrope' (multi-axis) positions"),):
        with pytest.raises(BundleError, match=re.escape(words)) as info:
            check_media_facts(_llm(**facts))
        assert "\n" not in str(info.value) and "upgrade edge" in str(info.value)


def test_positions_an_item_takes():
    block = MediaBlock("img:0", np.zeros((7, 8), np.float32))
    assert width(5, "linear") == 1  # a token id
    assert width(block, "linear") == 7  # one position per embedding row
    assert sum(width(x, "linear") for x in [1, 2, block, 3]) == 10
    with pytest.raises(Exception, match="not supported"):
        width(block, "mrope")


def test_llm_spec_fields_are_documented():
    """Every field the manifest gains has a comment in edge/manifest.py (the JSON Schema's descriptions)."""
    import inspect

    from edge import manifest

    source = inspect.getsource(manifest.LLMSpec)
    for f in ("media_attention", "media_positions"):
        line = next(i for i, l in enumerate(source.splitlines()) if l.strip().startswith(f"{f}:"))
        assert source.splitlines()[line - 1].strip().startswith("#"), f
    assert {f.name for f in dataclasses.fields(LLMSpec)} >= {"media_attention", "media_positions"}
