"""The slicing facade and what the schemes share: dispatch, budgets, parameters as JSON.

Scheme-specific parity with transformers is in test_slicing_idefics3.py,
test_slicing_anyres.py and test_slicing_uhd.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicing_support import random_image

from edge.checks import resample_name
from edge.errors import InputError
from edge.runtime.vision import slicing
from edge.runtime.vision.slicing import (
    SLICERS,
    AnyresSlicing,
    Idefics3Slicing,
    UhdSlicing,
    apply_slices,
    plan_slices,
    plan_to_dict,
    slicing_from_dict,
)

CHEAP = {
    "idefics3": Idefics3Slicing(longest_edge=96, tile_size=32, tokens_per_tile=4),
    "anyres": AnyresSlicing(
        grid_pinpoints=[[28, 56], [56, 28], [56, 56]], shortest_edge=28, crop_size=28, patch_size=7
    ),
    "uhd": UhdSlicing(scale_resolution=56, patch_size=14, tokens_per_slice=4),
}
MINIMUM = {"idefics3": 4, "anyres": 17, "uhd": 4}  # tokens of the one-frame plan


def test_every_scheme_is_registered_and_tested():
    assert set(SLICERS) == set(CHEAP) == {"idefics3", "anyres", "uhd"}
    for name, params in CHEAP.items():
        assert params.scheme == name and SLICERS[name].params is type(params)


@pytest.mark.parametrize("name", sorted(CHEAP))
@pytest.mark.parametrize("size", [(1, 1), (130, 70), (70, 130), (300, 9)], ids=str)
def test_facade_dispatches(name, size):
    params = CHEAP[name]
    plan = plan_slices(*size, params, max_tiles=3)
    assert plan == SLICERS[name].plan(*size, params, max_tiles=3)
    assert plan.tiles <= 3 and plan.grid == tuple(plan.grid)
    out = apply_slices(random_image(*size), plan, params)
    frames = out if isinstance(out, list) else list(out)
    assert len(frames) == plan.tiles and all(f.dtype == np.float32 and f.shape[0] == 3 for f in frames)
    report = json.loads(json.dumps(plan_to_dict(plan)))  # plain JSON for --json reports
    assert report["tiles"] == plan.tiles and report["grid"] == list(plan.grid)


BAD_COUNTS = [0, -1, True, 1.5, "3"]


@pytest.mark.parametrize("name", sorted(CHEAP))
@pytest.mark.parametrize("limit", ["max_tiles", "max_image_tokens"])
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_bad_counts_raise(name, limit, value):
    with pytest.raises(InputError, match=limit):
        plan_slices(100, 80, CHEAP[name], **{limit: value})


@pytest.mark.parametrize("name", sorted(CHEAP))
@pytest.mark.parametrize("value", [0.0, 0.5, -1.0, float("nan"), float("inf"), True, "2"], ids=repr)
def test_bad_upscale_raises(name, value):
    with pytest.raises(InputError, match="max_upscale"):
        plan_slices(100, 80, CHEAP[name], max_upscale=value)


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_token_budget_minimum(name):
    minimum = MINIMUM[name]
    with pytest.raises(InputError, match=f"below the {minimum} tokens"):
        plan_slices(300, 200, CHEAP[name], max_image_tokens=minimum - 1)
    plan = plan_slices(300, 200, CHEAP[name], max_image_tokens=minimum)
    assert plan.tiles == 1 and plan.image_tokens == minimum and plan.budget_applied and plan.reason


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_budget_is_never_exceeded(name):
    params = CHEAP[name]
    rng = np.random.default_rng(11)
    for _ in range(150):
        w, h = (int(v) for v in rng.integers(1, 400, 2))
        tiles, tokens = int(rng.integers(1, 12)), int(rng.integers(MINIMUM[name], 200))
        upscale = float(rng.choice([1.0, 1.3, 2.0, 4.0]))
        free = plan_slices(w, h, params)
        plan = plan_slices(w, h, params, max_tiles=tiles, max_image_tokens=tokens, max_upscale=upscale)
        assert plan.tiles <= tiles and plan.image_tokens <= tokens
        assert plan.budget_applied == (plan != free)
        if plan.tiles > 1:
            assert plan.upscale <= upscale + 1e-9


@pytest.mark.parametrize("bad", [{"scheme": "tiles"}, {}, {"scheme": "idefics3", "tile": 3}], ids=str)
def test_slicing_from_dict_errors(bad):
    with pytest.raises(InputError):
        slicing_from_dict(bad)


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_params_are_plain_json(name):
    d = CHEAP[name].to_dict()
    assert json.loads(json.dumps(d)) == d and d["scheme"] == name
    assert slicing_from_dict(d) == CHEAP[name]


def test_resample_names():
    assert [resample_name(i) for i in (0, 1, 2, 3, 4, 5)] == [
        "nearest",
        "lanczos",
        "bilinear",
        "bicubic",
        "box",
        "hamming",
    ]
    assert resample_name("BICUBIC") == "bicubic"
    for bad in (6, "cubic", True, None):
        with pytest.raises(InputError):
            resample_name(bad)


def test_public_names_exist():
    for name in slicing.__all__:
        assert hasattr(slicing, name), name
