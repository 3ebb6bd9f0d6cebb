"""Qwen2-VL preprocessing (smart_resize, patchify, budget) against transformers' own
``Qwen2VLImageProcessor`` (the slow, numpy/PIL one): bit-identical pixel values and grids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.errors import InputError
from edge.preprocess import Qwen2VLPreprocess
from edge.runtime.vision.slice_qwen2vl import (
    apply_qwen2vl,
    mrope_positions,
    plan_qwen2vl,
    smart_resize,
)

transformers = pytest.importorskip("transformers")
from transformers.models.qwen2_vl.image_processing_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize  # noqa: E402

PP = Qwen2VLPreprocess()
F = PP.factor
MIN, MAX = PP.min_pixels, PP.max_pixels
# 40+ sizes (width, height): 1x1, tiny, extreme aspect ratios, around min_pixels and max_pixels
SIZES = [
    (1, 1),
    (2, 3),
    (13, 14),
    (14, 14),
    (27, 29),
    (28, 28),
    (55, 57),
    (56, 56),
    (57, 55),
    (56, 55),
    (100, 1),
    (1, 150),
    (199, 1),
    (1, 200),
    (600, 3),
    (3, 600),
    (1000, 5),
    (28, 5000),
    (5000, 28),
    (640, 480),
    (480, 640),
    (1024, 768),
    (768, 1024),
    (1920, 1080),
    (1080, 1920),
    (333, 777),
    (800, 800),
    (1003, 1001),
    (1002, 1002),
    (1008, 1008),
    (1009, 1009),
    (1036, 784),
    (1008, 1003),
    (1120, 896),
    (1121, 897),
    (1119, 895),
    (3000, 2000),
    (4032, 3024),
    (256, 4096),
    (60, 52),
    (42, 42),
    (70, 44),
    (1, 7),
    (99, 98),
]


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + w * 7 + h)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("w,h", SIZES)
def test_smart_resize_matches_hf(w, h):
    assert smart_resize(h, w, F, MIN, MAX) == hf_smart_resize(h, w, F, MIN, MAX)
    small = 28 * 28 * 64  # a budget-sized max_pixels
    assert smart_resize(h, w, F, MIN, small) == hf_smart_resize(h, w, F, MIN, small)


# the pixel work is slow for huge images on a shared machine: every size up to 1.3 MP
PIXEL_SIZES = [s for s in SIZES if s[0] * s[1] <= 1_300_000]


@pytest.mark.parametrize("w,h", PIXEL_SIZES)
def test_pixels_and_grid_bit_identical(w, h):
    img = _image(w, h)
    ref = Qwen2VLImageProcessor()(images=[img], return_tensors="np", input_data_format="channels_last")
    plan = plan_qwen2vl(w, h, PP)
    ours = apply_qwen2vl([img], plan, PP)
    assert list(ref["image_grid_thw"][0]) == list(plan.grid)
    flat = ours.reshape(-1, ours.shape[-1])
    assert flat.dtype == ref["pixel_values"].dtype == np.float32
    assert np.array_equal(flat, ref["pixel_values"])
    assert plan.image_tokens == int(np.prod(plan.grid)) // 4


def test_budget_is_max_pixels():
    w, h = 1920, 1080
    img = _image(w, h)
    plan = plan_qwen2vl(w, h, PP, max_image_tokens=100)
    assert plan.budget_applied and plan.image_tokens <= 100
    ref = Qwen2VLImageProcessor(max_pixels=100 * 28 * 28)(images=[img], return_tensors="np")
    assert list(ref["image_grid_thw"][0]) == list(plan.grid)
    assert np.array_equal(apply_qwen2vl([img], plan, PP).reshape(-1, 1176), ref["pixel_values"])
    assert not plan_qwen2vl(w, h, PP, max_image_tokens=10**6).budget_applied


def test_video_frames_grouped_like_hf():
    frames = [_image(90, 60, seed=i) for i in range(3)]  # odd count: the last frame is repeated
    ref = Qwen2VLImageProcessor()(images=None, videos=[frames], return_tensors="np")
    plan = plan_qwen2vl(90, 60, PP, frames=3)
    ours = apply_qwen2vl(frames, plan, PP)
    assert list(ref["video_grid_thw"][0]) == list(plan.grid) and plan.grid[0] == 2
    assert np.array_equal(ours.reshape(-1, 1176), ref["pixel_values_videos"])


def test_bad_inputs_are_clear():
    with pytest.raises(InputError, match="aspect ratio"):
        plan_qwen2vl(201, 1, PP)
    with pytest.raises(InputError, match="below the 4 rows"):
        plan_qwen2vl(640, 480, PP, max_image_tokens=3)
    with pytest.raises(InputError, match="below one 28x28"):
        Qwen2VLPreprocess(max_pixels=700)
    with pytest.raises(InputError, match="window_patches"):
        Qwen2VLPreprocess(window_patches=63)


def test_mrope_positions_of_an_image():
    pos = mrope_positions((1, 4, 6), 2)
    assert pos.shape == (3, 6)
    assert pos[0].tolist() == [0] * 6
    assert pos[1].tolist() == [0, 0, 0, 1, 1, 1] and pos[2].tolist() == [0, 1, 2, 0, 1, 2]


def test_roundtrip_dict():
    assert Qwen2VLPreprocess.from_dict(PP.to_dict()) == PP
