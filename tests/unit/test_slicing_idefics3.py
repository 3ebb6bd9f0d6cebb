"""Idefics3 / SmolVLM splitting against transformers' slow ``Idefics3ImageProcessor`` and
the ``Idefics3Processor`` prompt.

SmolVLM-256M-Instruct's settings (its ``preprocessor_config.json`` / ``processor_config.json``
on the hub, and ``SmolVLMImageProcessor`` = ``Idefics3ImageProcessor`` in transformers
4.57): ``size={"longest_edge": 2048}``, ``max_image_size={"longest_edge": 512}``,
``resample=1`` (Lanczos), mean = std = 0.5, ``image_seq_len=64`` (SigLIP patch 16 at 512
-> 32x32 patches, pixel shuffle ``scale_factor=4`` -> 1024 / 16 = 64). A cheap config
with the same structure (longest edge 4 tiles of 32) covers many more sizes.

Measured: every case below is bit-identical to HF (max |diff| 0.0).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicing_support import expand, random_image, size_id, tokenizer

from edge.errors import InputError
from edge.runtime.vision.slicing import (
    Idefics3Slicing,
    apply_idefics3,
    idefics3_layout,
    idefics3_pixel_attention_mask,
    pad_idefics3_batch,
    plan_idefics3,
    slicing_from_dict,
)

transformers = pytest.importorskip("transformers")

SMOLVLM = dict(
    size={"longest_edge": 2048},
    max_image_size={"longest_edge": 512},
    resample=1,
    image_mean=[0.5, 0.5, 0.5],
    image_std=[0.5, 0.5, 0.5],
)
CHEAP = dict(
    size={"longest_edge": 128},
    max_image_size={"longest_edge": 32},
    resample=1,
    image_mean=[0.48, 0.45, 0.41],
    image_std=[0.27, 0.26, 0.28],
)
SEQ = {"smolvlm": 64, "cheap": 4}
CONFIGS = {"smolvlm": SMOLVLM, "cheap": CHEAP}

SMOLVLM_SIZES = [
    (1, 1),
    (1, 4000),
    (4000, 1),
    (997, 13),
    (331, 727),
    (512, 512),
    (1024, 512),
    (1536, 1024),
    (2048, 1536),
]
CHEAP_SIZES = [
    (1, 1),
    (1, 4000),
    (4000, 1),
    (997, 13),
    (13, 997),
    (331, 727),
    (727, 331),
    (2, 3),
    (3, 2),
    (5, 7),
    (11, 13),
    (32, 32),
    (64, 32),
    (32, 64),
    (96, 64),
    (128, 128),
    (33, 33),
    (31, 31),
    (65, 64),
    (64, 65),
    (129, 97),
    (127, 128),
    (128, 127),
    (160, 96),
    (96, 160),
    (63, 127),
    (101, 103),
    (37, 29),
    (17, 1999),
    (1999, 17),
    (255, 1),
    (1, 255),
    (500, 50),
    (50, 500),
    (300, 200),
    (200, 300),
    (640, 480),
    (480, 640),
    (1920, 1080),
    (1080, 1920),
    (4096, 3),
    (1001, 999),
    (1537, 1024),
]


def hf_image_processor(config: str, **overrides):
    return transformers.Idefics3ImageProcessor(**{**CONFIGS[config], **overrides})


def params_for(config: str, **overrides) -> Idefics3Slicing:
    return Idefics3Slicing.from_processor_config(
        hf_image_processor(config, **overrides).to_dict(), tokens_per_tile=SEQ[config]
    )


def hf_run(config: str, dims, text: str = "User:<image>Describe it.", **overrides):
    """The HF processor on one image and prompt: pixel values, attention mask, input ids."""
    proc = transformers.Idefics3Processor(
        image_processor=hf_image_processor(config, **overrides), tokenizer=tokenizer(), image_seq_len=SEQ[config]
    )
    return proc(images=[random_image(*dims)], text=text, return_tensors="np", input_data_format="channels_last")


def check_against_hf(config: str, dims, **overrides) -> None:
    params = params_for(config, **overrides)
    plan = plan_idefics3(*dims, params)
    got = apply_idefics3(random_image(*dims), plan, params)
    ref = hf_run(config, dims, **overrides)
    ref_px = ref["pixel_values"][0]
    assert got.dtype == np.float32 and got.shape == ref_px.shape
    assert np.abs(got - ref_px).max() == 0.0  # bit-identical
    np.testing.assert_array_equal(idefics3_pixel_attention_mask(plan), ref["pixel_attention_mask"][0])
    assert plan.tiles == got.shape[0]
    # The prompt: our layout expanded equals HF's expanded prompt, token for token.
    ids = ref["input_ids"][0].tolist()
    text = "User:" + expand(idefics3_layout(plan, params), params.tokens_per_tile) + "Describe it."
    assert tokenizer()(text)["input_ids"] == ids
    assert ids.count(tokenizer().convert_tokens_to_ids("<image>")) == plan.image_tokens


@pytest.mark.parametrize("size", SMOLVLM_SIZES, ids=size_id)
def test_smolvlm_matches_hf(size):
    check_against_hf("smolvlm", size)


@pytest.mark.parametrize("size", CHEAP_SIZES, ids=size_id)
def test_cheap_config_matches_hf(size):
    check_against_hf("cheap", size)


@pytest.mark.parametrize(
    "overrides",
    [
        {"do_image_splitting": False},
        {"resample": 3},
        {"do_normalize": False},
        {"do_resize": False},
        {"size": {"longest_edge": 100}},
        {"max_image_size": {"longest_edge": 40}},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
@pytest.mark.parametrize("size", [(1, 1), (70, 45), (45, 150), (300, 7)], ids=size_id)
def test_flags_match_hf(overrides, size):
    check_against_hf("cheap", size, **overrides)


def test_grid_and_boxes_by_hand():
    params = params_for("smolvlm")
    plan = plan_idefics3(1000, 600, params)
    # 1000x600 -> longest edge 2048: 2048 x int(2048 / (1000/600)) = 1228 (even);
    # tile multiples: 2048 x ceil(int(2048 / (2048/1228)) / 512) * 512 = 2048 x 1536.
    assert plan.resized == (2048, 1228) and plan.canvas == (2048, 1536)
    assert plan.grid == (3, 4) and plan.tiles == 13 and plan.image_tokens == 13 * 64
    assert plan.tile_boxes[5] == (512, 512, 1024, 1024)
    assert not plan.budget_applied and plan.reason == ""


def test_batch_padding_matches_hf():
    hf = hf_image_processor("cheap")
    images = [random_image(40, 30), random_image(130, 20)]
    ref = hf([[images[0]], [images[1]]], return_tensors="np", input_data_format="channels_last")
    params = params_for("cheap")
    ours = [apply_idefics3(im, plan_idefics3(im.width, im.height, params), params) for im in images]
    values, mask = pad_idefics3_batch(ours)
    assert values.shape == ref["pixel_values"].shape
    np.testing.assert_array_equal(values, ref["pixel_values"])
    np.testing.assert_array_equal(mask, ref["pixel_attention_mask"])


# ---- budget ------------------------------------------------------------------------

BUDGET_SIZES = [(1, 1), (1000, 600), (600, 1000), (4000, 1), (300, 200), (1500, 1500), (97, 13)]


@pytest.mark.parametrize("size", BUDGET_SIZES, ids=size_id)
def test_budget_picks_the_largest_fitting_edge(size):
    params = params_for("smolvlm")
    full = plan_idefics3(*size, params)
    for max_tiles in range(1, full.tiles + 2):
        plan = plan_idefics3(*size, params, max_tiles=max_tiles)
        assert plan.tiles <= max_tiles
        assert plan.budget_applied == (full.tiles > max_tiles)
        if plan.budget_applied:
            assert "max_tiles" in plan.reason and plan.longest_edge < 2048
            # One tile-size step up does not fit: the best smaller grid was taken.
            assert _plan_at(size, params, plan.longest_edge + 512).tiles > max_tiles
        by_tokens = plan_idefics3(*size, params, max_image_tokens=max_tiles * 64)
        assert by_tokens == plan or by_tokens.grid == plan.grid  # the same limit, counted in tokens


def _plan_at(size, params: Idefics3Slicing, edge: int):
    data = {k: v for k, v in params.to_dict().items() if k != "scheme"}
    return plan_idefics3(*size, Idefics3Slicing(**{**data, "longest_edge": edge}))


@pytest.mark.parametrize("size,max_tiles", [((70, 45), 5), ((45, 150), 3), ((130, 20), 1), ((1, 1), 7)], ids=str)
def test_budgeted_plan_is_hf_with_a_smaller_edge(size, max_tiles):
    params = params_for("cheap")
    plan = plan_idefics3(*size, params, max_tiles=max_tiles)
    assert plan.budget_applied
    ref = hf_image_processor("cheap", size={"longest_edge": plan.longest_edge})(
        random_image(*size), return_tensors="np", input_data_format="channels_last", return_row_col_info=True
    )
    got = apply_idefics3(random_image(*size), plan, params)
    assert (ref["rows"][0][0], ref["cols"][0][0]) == plan.grid
    np.testing.assert_array_equal(got, ref["pixel_values"][0])


@pytest.mark.parametrize("size", [(1, 1), (300, 200), (1000, 1000), (4000, 1), (2000, 1000), (513, 100)], ids=size_id)
@pytest.mark.parametrize("max_upscale", [1.0, 1.5, 3.0])
def test_max_upscale_is_respected(size, max_upscale):
    params = params_for("smolvlm")
    plan = plan_idefics3(*size, params, max_upscale=max_upscale)
    assert plan.upscale == plan.longest_edge / max(size)  # before the snap to whole tiles
    if plan.tile_boxes:  # one frame (the model's fixed input) is always allowed
        assert plan.upscale <= max_upscale
    if plan.budget_applied:  # one step up would have enlarged too much
        assert _plan_at(size, params, plan.longest_edge + 512).upscale > max_upscale


def test_budget_below_the_global_image_is_refused():
    params = params_for("smolvlm")
    with pytest.raises(InputError, match="below the 64 tokens"):
        plan_idefics3(1000, 600, params, max_image_tokens=63)
    plan = plan_idefics3(1000, 600, params, max_image_tokens=64)
    assert plan.tiles == 1 and plan.grid == (0, 0) and plan.budget_applied


# ---- parameters ------------------------------------------------------------------------


def test_params_from_config_and_json_round_trip():
    d = hf_image_processor("smolvlm").to_dict()
    params = Idefics3Slicing.from_processor_config({**d, "image_seq_len": 64})
    assert (params.longest_edge, params.tile_size, params.tokens_per_tile, params.resample) == (
        2048,
        512,
        64,
        "lanczos",
    )
    again = slicing_from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params


@pytest.mark.parametrize(
    "bad",
    [
        {"tile_size": 0},
        {"longest_edge": -1},
        {"tokens_per_tile": 1.5},
        {"resample": "cubic"},
        {"mean": [0.5, 0.5]},
        {"std": [0.5, 0.0, 0.5]},
        {"do_pad": "yes"},
        {"rescale_factor": 0},
    ],
    ids=str,
)
def test_bad_params_raise(bad):
    with pytest.raises(InputError):
        Idefics3Slicing(**bad)


def test_wrong_image_size_raises():
    params = params_for("cheap")
    with pytest.raises(InputError, match="plan was made for"):
        apply_idefics3(random_image(10, 10), plan_idefics3(11, 10, params), params)
