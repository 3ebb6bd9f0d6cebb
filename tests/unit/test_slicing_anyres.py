"""LLaVA-NeXT anyres against transformers: ``LlavaNextImageProcessor`` (slow) pixels,
``LlavaNextProcessor`` token counts, and ``LlavaNextModel.pack_image_features``.
(Over 400 lines on purpose: planner, pixels, token counts and feature packing of one scheme,
each against its transformers reference, read together.)

llava-v1.6's settings (llava-hf/llava-v1.6-* ``preprocessor_config.json``): pinpoints
``[[336,672],[672,336],[672,672],[1008,336],[336,1008]]``, shortest edge and crop 336,
bicubic, CLIP mean/std; CLIP ViT-L/14 at 336 (576 features per frame). A cheap config
with the same structure (scaled by 1/12: crop 28, patch 7) covers many more sizes.

Measured: pixel values bit-identical to HF (max |diff| 0.0); packed features identical
to torch (they are copies).

HF's processor guesses the channel axis of the resized image inside
``_pad_for_patching`` (no ``input_data_format`` is passed there), so an image resized
to 1 or 3 rows (e.g. 4000x1) is padded along the wrong axes and sliced into garbage.
Those sizes are checked against HF's building blocks called with the axis stated.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicing_support import random_image, size_id, tokenizer

from edge.errors import InputError
from edge.runtime.vision.slicing import (
    AnyresSlicing,
    anyres_feature_window,
    apply_anyres,
    pack_anyres_features,
    plan_anyres,
    select_best_resolution,
    slicing_from_dict,
)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
V16 = dict(
    size={"shortest_edge": 336},
    crop_size={"height": 336, "width": 336},
    resample=3,
    image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    image_mean=CLIP_MEAN,
    image_std=CLIP_STD,
)
CHEAP = dict(
    size={"shortest_edge": 28},
    crop_size={"height": 28, "width": 28},
    resample=3,
    image_grid_pinpoints=[[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]],
    image_mean=CLIP_MEAN,
    image_std=CLIP_STD,
)
CONFIGS = {"v16": (V16, 14), "cheap": (CHEAP, 7)}

V16_SIZES = [
    (1, 1),
    (1, 4000),
    (997, 13),
    (331, 727),
    (336, 336),
    (336, 672),
    (672, 336),
    (672, 672),
    (1008, 336),
    (336, 1008),
    (640, 480),
    (2000, 1500),
]
CHEAP_SIZES = [
    (1, 1),
    (1, 4000),
    (997, 13),
    (13, 997),
    (331, 727),
    (727, 331),
    (2, 3),
    (2, 5),
    (5, 7),
    (11, 13),
    (28, 28),
    (56, 28),
    (28, 56),
    (84, 28),
    (28, 84),
    (56, 56),
    (29, 29),
    (27, 27),
    (57, 56),
    (56, 57),
    (85, 29),
    (100, 100),
    (101, 103),
    (37, 29),
    (17, 1999),
    (1999, 17),
    (1, 255),
    (500, 50),
    (50, 500),
    (300, 200),
    (200, 300),
    (640, 480),
    (480, 640),
    (1920, 1080),
    (1080, 1920),
    (1001, 999),
    (63, 127),
    (127, 63),
    (2, 2),
    (5, 3),
]
# Resized to 1 or 3 rows: HF's processor mis-pads them (see the module docstring).
CHANNEL_GUESS_SIZES = [(4000, 1), (1000, 3), (255, 1), (3, 1), (120, 1), (1999, 17)]


def hf_image_processor(config: str, **overrides):
    return transformers.LlavaNextImageProcessor(**{**CONFIGS[config][0], **overrides})


def params_for(config: str, **overrides) -> AnyresSlicing:
    return AnyresSlicing.from_processor_config(
        hf_image_processor(config, **overrides).to_dict(), patch_size=CONFIGS[config][1]
    )


def check_against_hf(config: str, dims) -> None:
    params = params_for(config)
    plan = plan_anyres(*dims, params)
    got = apply_anyres(random_image(*dims), plan, params)
    proc = transformers.LlavaNextProcessor(
        image_processor=hf_image_processor(config),
        tokenizer=tokenizer(),
        patch_size=CONFIGS[config][1],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    ref = proc(
        images=[random_image(*dims)],
        text="<image>\nWhat is it?",
        return_tensors="np",
        input_data_format="channels_last",
    )
    # HF's processor mis-pads images resized to 1 or 3 rows: use its building blocks there.
    ref_px = hf_blocks(config, dims) if plan.resized[1] in (1, 3) else ref["pixel_values"][0]
    assert got.dtype == np.float32 and got.shape == ref_px.shape
    assert np.abs(got - ref_px).max() == 0.0  # bit-identical
    assert list(ref["image_sizes"][0]) == [dims[1], dims[0]]
    ids = ref["input_ids"][0].tolist()
    assert ids.count(tokenizer().convert_tokens_to_ids("<image>")) == plan.image_tokens
    assert tokenizer()("<image>" * plan.image_tokens + "\nWhat is it?")["input_ids"] == ids


@pytest.mark.parametrize("size", V16_SIZES, ids=size_id)
def test_llava_v16_matches_hf(size):
    check_against_hf("v16", size)


@pytest.mark.parametrize("size", CHEAP_SIZES, ids=size_id)
def test_cheap_config_matches_hf(size):
    check_against_hf("cheap", size)


def hf_blocks(config: str, dims) -> np.ndarray:
    """HF's get_image_patches + _preprocess, with ``channels_last`` stated at every step."""
    from transformers.image_processing_utils import select_best_resolution as hf_select
    from transformers.image_transforms import pad, resize
    from transformers.image_utils import ChannelDimension
    from transformers.models.llava_next.image_processing_llava_next import divide_to_patches

    last = ChannelDimension.LAST
    hf = hf_image_processor(config)
    image = np.asarray(random_image(*dims))
    best = hf_select(image.shape[:2], hf.image_grid_pinpoints)
    resized = hf._resize_for_patching(image, best, resample=hf.resample, input_data_format=last)
    padding = hf._get_padding_size(resized.shape[:2], best)
    padded = pad(resized, padding, input_data_format=last)
    patches = divide_to_patches(padded, hf.crop_size["height"], input_data_format=last)
    se = hf.size["shortest_edge"]
    base = resize(image, (se, se), resample=hf.resample, input_data_format=last)
    frames = hf._preprocess(
        [base] + patches,
        do_resize=True,
        size=hf.size,
        resample=hf.resample,
        do_center_crop=True,
        crop_size=hf.crop_size,
        do_rescale=True,
        rescale_factor=hf.rescale_factor,
        do_normalize=True,
        image_mean=hf.image_mean,
        image_std=hf.image_std,
        input_data_format=last,
    )
    return np.stack(frames)


@pytest.mark.parametrize("config", ["v16", "cheap"])
@pytest.mark.parametrize("size", CHANNEL_GUESS_SIZES, ids=size_id)
def test_one_row_images_match_hf_building_blocks(config, size):
    params = params_for(config)
    got = apply_anyres(random_image(*size), plan_anyres(*size, params), params)
    ref = hf_blocks(config, size)
    assert got.shape == ref.shape and np.abs(got - ref).max() == 0.0


def test_select_best_resolution_matches_hf():
    from transformers.image_processing_utils import select_best_resolution as hf_select

    rng = np.random.default_rng(5)
    pins = V16["image_grid_pinpoints"]
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(1, 3000, 2))
        assert select_best_resolution(h, w, pins) == tuple(hf_select((h, w), pins))


# ---- the model side: feature packing ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models():
    """Tiny random LlavaNext models (v1.6 geometry and the cheap one): only their configs and
    ``image_newline`` matter to ``pack_image_features``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    out = {}
    for name, (cfg, patch) in CONFIGS.items():
        crop = cfg["crop_size"]["height"]
        config = LlavaNextConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=8,
                intermediate_size=8,
                num_hidden_layers=1,
                num_attention_heads=1,
                image_size=crop,
                patch_size=patch,
            ),
            text_config=LlamaConfig(
                vocab_size=64,
                hidden_size=16,
                intermediate_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
            ),
            image_grid_pinpoints=cfg["image_grid_pinpoints"],
            vision_feature_select_strategy="default",
        )
        torch.manual_seed(0)
        out[name] = LlavaNextForConditionalGeneration(config).eval()
    return out


def torch_pack(model, features: np.ndarray, dims) -> np.ndarray:
    with torch.no_grad():
        packed, lens = model.model.pack_image_features(
            [torch.from_numpy(features)],
            torch.tensor([[dims[1], dims[0]]]),
            "default",
            image_newline=model.model.image_newline,
        )
    assert int(lens[0]) == packed[0].shape[0]
    return packed[0].numpy()


@pytest.mark.parametrize("config", ["v16", "cheap"])
@pytest.mark.parametrize(
    "size",
    [
        (1, 1),
        (1, 4000),
        (4000, 1),
        (997, 13),
        (331, 727),
        (336, 336),
        (640, 480),
        (481, 640),
        (2000, 1500),
        (1008, 336),
        (1, 2),
        (37, 29),
        (672, 673),
    ],
    ids=size_id,
)
def test_pack_matches_torch(tiny_models, config, size):
    model, params = tiny_models[config], params_for(config)
    plan = plan_anyres(*size, params)
    side = params.crop_size // params.patch_size
    features = (
        np.random.default_rng(size[0] + 7 * size[1]).standard_normal((plan.tiles, side * side, 16)).astype(np.float32)
    )
    newline = model.model.image_newline.detach().numpy()
    got = pack_anyres_features(features, plan, params, newline)
    ref = torch_pack(model, features, size)
    assert got.shape == (plan.image_tokens, 16)
    np.testing.assert_array_equal(got, ref)


def test_pack_base_only_matches_torch_single_patch_branch(tiny_models):
    params = params_for("cheap")
    plan = plan_anyres(300, 200, params, max_tiles=1)
    assert plan.grid == (0, 0) and plan.tiles == 1 and plan.budget_applied
    features = np.random.default_rng(1).standard_normal((1, 16, 16)).astype(np.float32)
    model = tiny_models["cheap"]
    got = pack_anyres_features(features, plan, params, model.model.image_newline.detach().numpy())
    np.testing.assert_array_equal(got, torch_pack(model, features, (300, 200)))
    assert got.shape[0] == plan.image_tokens == 17


def test_feature_window_by_hand():
    params = params_for("v16")
    plan = plan_anyres(1000, 500, params)
    # 1000x500 (w/h 2) -> pinpoint 336x672 (h, w): grid 1x2, features 24 x 48; the image
    # is as wide as the map (aspect 2 = 48/24): nothing to unpad.
    assert plan.grid == (1, 2) and anyres_feature_window(plan, params) == (0, 24, 0, 48)
    assert plan.image_tokens == 576 + 24 * 49
    plan = plan_anyres(1000, 400, params)
    # 1000x400 keeps most pixels in 336x1008 (grid 1x3, features 24 x 72); aspect 2.5 < 3:
    # columns kept = int(round(1000 * 24 / 400, 7)) = 60, padding (72 - 60) // 2 = 6 each side.
    assert plan.grid == (1, 3) and anyres_feature_window(plan, params) == (0, 24, 6, 66)
    assert plan.image_tokens == 576 + 24 * 61
    plan = plan_anyres(1000, 300, params)
    # aspect 3.33 > 3: rows kept = int(round(300 * 72 / 1000, 7)) = 21, padding (24 - 21) // 2 = 1
    assert plan.grid == (1, 3) and anyres_feature_window(plan, params) == (1, 23, 0, 72)


def test_bad_feature_shapes_raise():
    params = params_for("cheap")
    plan = plan_anyres(60, 40, params)
    with pytest.raises(InputError, match="do not match the plan"):
        pack_anyres_features(np.zeros((plan.tiles + 1, 16, 4), np.float32), plan, params, np.zeros(4, np.float32))
    with pytest.raises(InputError, match="newline"):
        pack_anyres_features(np.zeros((plan.tiles, 16, 4), np.float32), plan, params, np.zeros(5, np.float32))


# ---- budget ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (1000, 800), (800, 1000), (4000, 1), (2000, 600), (300, 1200)], ids=size_id)
def test_budget_restricts_pinpoints_like_hf(size):
    params = params_for("cheap")
    full = plan_anyres(*size, params)
    for max_tiles in range(1, full.tiles + 1):
        plan = plan_anyres(*size, params, max_tiles=max_tiles)
        assert plan.tiles <= max_tiles and plan.budget_applied == (full.tiles > max_tiles)
        features = np.ones((plan.tiles, 16, 4), np.float32)
        assert pack_anyres_features(features, plan, params, np.zeros(4, np.float32)).shape == (plan.image_tokens, 4)
        if plan.grid == (0, 0) or size[1] in (1, 3):
            continue
        # The same as HF's processor given only the pinpoints within the budget.
        allowed = [p for p in CHEAP["image_grid_pinpoints"] if (p[0] // 28) * (p[1] // 28) + 1 <= max_tiles]
        ref = hf_image_processor("cheap", image_grid_pinpoints=allowed)(
            random_image(*size), return_tensors="np", input_data_format="channels_last"
        )
        np.testing.assert_array_equal(apply_anyres(random_image(*size), plan, params), ref["pixel_values"][0])
    for max_tokens in (17, 40, 60, 80, 120, 1000):
        plan = plan_anyres(*size, params, max_image_tokens=max_tokens)
        assert plan.image_tokens <= max_tokens


@pytest.mark.parametrize("size", [(1, 1), (100, 100), (300, 200), (1000, 800), (4000, 1)], ids=size_id)
@pytest.mark.parametrize("max_upscale", [1.0, 2.0])
def test_max_upscale_is_respected(size, max_upscale):
    params = params_for("v16")
    plan = plan_anyres(*size, params, max_upscale=max_upscale)
    if plan.patch_boxes:
        assert plan.upscale <= max_upscale
        assert max(plan.resized[0] / size[0], plan.resized[1] / size[1]) <= max_upscale + 1 / min(size)


def test_budget_below_the_base_image_is_refused():
    with pytest.raises(InputError, match="below the 577 tokens"):
        plan_anyres(1000, 800, params_for("v16"), max_image_tokens=576)


# ---- parameters ------------------------------------------------------------------------


def test_params_from_config_and_json_round_trip():
    params = AnyresSlicing.from_processor_config({**hf_image_processor("v16").to_dict(), "patch_size": 14})
    assert params == AnyresSlicing()  # the defaults are llava-v1.6's
    assert params.tokens_per_tile == 576
    assert slicing_from_dict(json.loads(json.dumps(params.to_dict()))) == params


@pytest.mark.parametrize(
    "bad",
    [
        {"grid_pinpoints": []},
        {"grid_pinpoints": [[336, 600]]},
        {"grid_pinpoints": [[336]]},
        {"patch_size": 15},
        {"crop_size": 0},
        {"do_center_crop": False},
        {"resample": 3},
    ],
    ids=str,
)
def test_bad_params_raise(bad):
    with pytest.raises(InputError):
        AnyresSlicing(**bad)


def test_unsupported_configs_raise():
    d = hf_image_processor("v16").to_dict()
    with pytest.raises(InputError, match="shortest_edge"):
        AnyresSlicing.from_processor_config({**d, "size": {"height": 336, "width": 336}})
    with pytest.raises(InputError, match="square"):
        AnyresSlicing.from_processor_config({**d, "crop_size": {"height": 336, "width": 300}})
