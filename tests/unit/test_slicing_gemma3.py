"""Gemma 3 frames (the whole image + pan-and-scan crops) against transformers' slow
``Gemma3ImageProcessor`` and the ``Gemma3Processor`` prompt, with and without pan-and-scan.

Gemma 3's settings (``preprocessor_config.json`` of the 4B/12B/27B checkpoints and
``Gemma3ProcessorKwargs._defaults``): 896x896 bilinear, mean = std = 0.5, 256 rows per frame,
pan-and-scan crops from 256 pixels, at most 4, from an aspect ratio of 1.2. A cheap config with
the same structure (32 pixels, crops from 8) covers many more sizes.

Measured: every case below is bit-identical to HF (max |diff| 0.0).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from slicing_support import expand, random_image, size_id

from edge.errors import InputError
from edge.manifest import PromptLayout
from edge.preprocess import PREPROCESS_SCHEMES, Gemma3Preprocess
from edge.runtime.text.prompt import ImageSlot, splice_prompt
from edge.runtime.vision.slice_gemma3 import apply_gemma3, gemma3_layout, pan_and_scan_boxes, plan_gemma3

transformers = pytest.importorskip("transformers")

BOI, SOFT = "<start_of_image>", "<image_soft_token>"
GEMMA3 = dict(size={"height": 896, "width": 896}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
CHEAP = dict(size={"height": 32, "width": 32}, resample=2, image_mean=[0.48, 0.45, 0.41], image_std=[0.27, 0.26, 0.28])
PAS = {
    "gemma3": dict(
        pan_and_scan_min_crop_size=256, pan_and_scan_max_num_crops=4, pan_and_scan_min_ratio_to_activate=1.2
    ),
    "cheap": dict(pan_and_scan_min_crop_size=8, pan_and_scan_max_num_crops=4, pan_and_scan_min_ratio_to_activate=1.2),
}
SEQ = {"gemma3": 256, "cheap": 4}
CONFIGS = {"gemma3": GEMMA3, "cheap": CHEAP}

GEMMA3_SIZES = [(1, 1), (896, 896), (640, 480), (1920, 1080), (1080, 1920), (2000, 300), (300, 2000), (511, 1024)]
CHEAP_SIZES = [
    (1, 1), (2, 2), (5, 7), (7, 5), (8, 8), (11, 13), (12, 10), (13, 11), (15, 8), (16, 8), (8, 16),
    (17, 8), (19, 16), (20, 16), (24, 20), (31, 31), (32, 32), (33, 32), (40, 20), (20, 40), (47, 61),
    (61, 47), (64, 32), (32, 64), (90, 20), (20, 90), (100, 30), (30, 100), (96, 64), (128, 128),
    (129, 97), (160, 24), (24, 160), (200, 300), (300, 200), (333, 17), (17, 333), (640, 480),
    (480, 640), (997, 13), (13, 997), (1000, 8), (8, 1000), (4000, 50),
]  # fmt: skip


@functools.lru_cache(maxsize=1)
def tokenizer():
    from edge.export.builders.tiny_gemma3 import gemma3_tokenizer

    return gemma3_tokenizer()


def params_for(config: str, pas: bool) -> Gemma3Preprocess:
    proc = transformers.Gemma3ImageProcessor(**CONFIGS[config], do_pan_and_scan=pas, **(PAS[config] if pas else {}))
    return Gemma3Preprocess.from_processor_config(proc.to_dict(), tokens_per_image=SEQ[config])


def hf_run(config: str, dims, pas: bool, text: str = "User:\n<start_of_image>Describe it."):
    """Gemma3Processor on one image: pan-and-scan is a call argument there (its defaults win over the config)."""
    image_processor = transformers.Gemma3ImageProcessor(**CONFIGS[config])
    proc = transformers.Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer(), image_seq_length=SEQ[config]
    )
    kwargs = dict(do_pan_and_scan=True, **PAS[config]) if pas else {}
    return proc(
        images=[random_image(*dims)], text=text, return_tensors="np", input_data_format="channels_last", **kwargs
    )


def check_against_hf(config: str, dims, pas: bool) -> None:
    params = params_for(config, pas)
    plan = plan_gemma3(*dims, params)
    got = apply_gemma3(random_image(*dims), plan, params)
    ref = hf_run(config, dims, pas)
    assert got.dtype == np.float32 and got.shape == ref["pixel_values"].shape
    assert np.abs(got - ref["pixel_values"]).max() == 0.0  # bit-identical
    assert plan.tiles == got.shape[0] and plan.image_tokens == plan.tiles * SEQ[config]
    text = "User:\n" + expand(gemma3_layout(plan, params), params.tokens_per_image, SOFT) + "Describe it."
    assert tokenizer()(text)["input_ids"] == ref["input_ids"][0].tolist()


@pytest.mark.parametrize("pas", [False, True], ids=["whole", "pan-and-scan"])
@pytest.mark.parametrize("dims", CHEAP_SIZES, ids=size_id)
def test_cheap_config_matches_hf(dims, pas):
    check_against_hf("cheap", dims, pas)


@pytest.mark.parametrize("pas", [False, True], ids=["whole", "pan-and-scan"])
@pytest.mark.parametrize("dims", GEMMA3_SIZES, ids=size_id)
def test_gemma3_config_matches_hf(dims, pas):
    check_against_hf("gemma3", dims, pas)


def test_pan_and_scan_geometry():
    # 100x30 (ratio 3.33): floor(3.83) = 3 crops of ceil(100/3) = 34 pixels, the last cut at the edge
    assert pan_and_scan_boxes(100, 30, 8, 4, 1.2) == [(0, 0, 34, 30), (34, 0, 68, 30), (68, 0, 100, 30)]
    assert pan_and_scan_boxes(30, 100, 8, 4, 1.2) == [(0, 0, 30, 34), (0, 34, 30, 68), (0, 68, 30, 100)]
    assert pan_and_scan_boxes(35, 30, 8, 4, 1.2) == []  # ratio below 1.2
    assert pan_and_scan_boxes(1000, 7, 8, 4, 1.2) == []  # 4 crops of 250x7: narrower than 8
    assert len(pan_and_scan_boxes(4000, 500, 256, 4, 1.2)) == 4  # at most max_num_crops
    assert len(pan_and_scan_boxes(600, 400, 256, 4, 1.2)) == 2  # floor(1.5 + 0.5) = 2


def test_layout_text_is_the_processor_expansion():
    params = params_for("cheap", True)
    assert gemma3_layout(plan_gemma3(32, 32, params), params) == ["\n\n" + BOI, 0, "<end_of_image>\n\n"]
    lay = gemma3_layout(plan_gemma3(100, 30, params), params)
    assert lay[0] == "Here is the original image \n\n" + BOI and [p for p in lay if isinstance(p, int)] == [0, 1, 2, 3]
    assert lay[2] == "<end_of_image>\n\n and here are some crops to help you see better \n\n" + BOI
    assert lay[4] == "<end_of_image>\n\n \n\n" + BOI and lay[-1] == "<end_of_image>\n\n"


def test_budget_lowers_the_crops():
    params = params_for("cheap", True)
    full = plan_gemma3(100, 30, params)
    assert full.tiles == 4 and not full.budget_applied
    two = plan_gemma3(100, 30, params, max_tiles=3)
    assert two.tiles == 3 and two.budget_applied and "crops 3 -> 2" in two.reason
    assert plan_gemma3(100, 30, params, max_tiles=2).tiles == 1  # pan-and-scan never makes one crop
    assert plan_gemma3(100, 30, params, max_image_tokens=12).tiles == 3
    assert plan_gemma3(100, 30, params, max_image_tokens=9).tiles == 1
    with pytest.raises(InputError, match="max_image_tokens=3 is below the 4 tokens"):
        plan_gemma3(100, 30, params, max_image_tokens=3)


def test_splice_joins_layout_text_with_the_prompt_text():
    calls = []

    def tok(text, add_bos):
        calls.append((text, add_bos))
        return [len(text)] if text or add_bos else []

    layout = PromptLayout(image_marker=BOI)
    lay = ["\n\n" + BOI, 0, "<end_of_image>\n\n"]
    chunks = splice_prompt("user\n" + BOI + "Hi" + BOI, layout, [lay, lay], tok, True)
    assert calls[0] == ("user\n\n\n" + BOI, True)  # "user\n" + "\n\n" tokenized as one text, as HF does
    assert calls[1] == ("<end_of_image>\n\nHi\n\n" + BOI, False)
    assert [c for c in chunks if isinstance(c, ImageSlot)] == [ImageSlot(0, 0), ImageSlot(1, 0)]
    with pytest.raises(InputError, match="1 image placeholder"):
        splice_prompt("a" + BOI, layout, [lay, lay], tok, True)


def test_parameters_round_trip_and_refuse_bad_values():
    params = params_for("gemma3", True)
    assert PREPROCESS_SCHEMES["gemma3"] is Gemma3Preprocess
    assert Gemma3Preprocess.from_dict(params.to_dict()) == params and params.frame_size == (896, 896)
    # null pan-and-scan settings take Gemma3Processor's defaults
    d = transformers.Gemma3ImageProcessor(**GEMMA3).to_dict()
    assert d["pan_and_scan_min_crop_size"] is None
    p = Gemma3Preprocess.from_processor_config(d, tokens_per_image=256)
    assert (p.do_pan_and_scan, p.pan_and_scan_min_crop_size, p.pan_and_scan_max_num_crops) == (False, 256, 4)
    for bad, words in (
        ({"size": {"height": 32, "width": 64}}, "square size"),
        ({"resample": 9}, "unknown resample"),
        ({"do_resize": False}, "needs do_resize"),
        ({"pan_and_scan_max_num_crops": 0}, "pan_and_scan_max_num_crops must be an integer"),
    ):
        with pytest.raises(InputError, match=words) as info:
            Gemma3Preprocess.from_processor_config({**d, **bad}, tokens_per_image=256)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="bad gemma3 preprocessing parameters"):
        Gemma3Preprocess.from_dict({**params.to_dict(), "tile": 3})
    with pytest.raises(InputError, match="image width must be an integer"):
        plan_gemma3(0, 5, params)
