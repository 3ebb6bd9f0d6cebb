"""The cases of the native vision golden vectors (:mod:`golden_vectors`): parameter sets, image sizes and
budgets. Parameters follow the tiny builders' processor settings (export/builders/tiny*.py) and the real
families' defaults (export/builders/full_size.py, edge/preprocess*.py)."""

from __future__ import annotations

from typing import Any

from edge.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    AnyresSlicing,
    Gemma3Preprocess,
    Idefics3Slicing,
    ImagePreprocess,
    Qwen2VLPreprocess,
    UhdSlicing,
)

TINY_PINPOINTS = [[24, 48], [48, 24], [48, 48], [72, 24], [24, 72]]  # tiny_parts.anyres_pinpoints(24)


def _clip(size: int, crop: int, resample: str = "bicubic", **kw: Any) -> ImagePreprocess:
    return ImagePreprocess(
        scheme="clip",
        image_size=crop,
        shortest_edge=size,
        crop_height=crop,
        crop_width=crop,
        resample=resample,
        mean=list(CLIP_MEAN),
        std=list(CLIP_STD),
        **kw,
    )


# (name, params, tokens per run, sizes: "tiny" = many sizes, "real" = a few)
PARAMS: list[tuple[str, Any, int, str]] = [
    ("clip-tiny", _clip(30, 30), 25, "tiny"),  # tiny_llava: image_size 30, patch 6
    ("clip-llava15", _clip(336, 336), 576, "real"),
    ("clip-bilinear-nocrop", _clip(20, 20, "bilinear", do_center_crop=False), 4, "square"),
    ("clip-lanczos-crop-larger", _clip(16, 24, "lanczos"), 4, "tiny"),
    ("clip-box", _clip(18, 18, "box"), 4, "tiny"),
    ("clip-hamming", _clip(18, 18, "hamming"), 4, "tiny"),
    ("clip-nearest-norescale", _clip(18, 18, "nearest", do_rescale=False, do_normalize=False), 4, "tiny"),
    (
        "idefics3-tiny",
        Idefics3Slicing(longest_edge=96, tile_size=32, tokens_per_tile=16, resample="lanczos"),
        16,
        "tiny",
    ),
    (
        "idefics3-nosplit",
        Idefics3Slicing(
            longest_edge=96, tile_size=32, tokens_per_tile=16, do_image_splitting=False, resample="bilinear"
        ),
        16,
        "tiny",
    ),
    (
        "idefics3-noresize",
        Idefics3Slicing(longest_edge=96, tile_size=32, tokens_per_tile=16, do_resize=False),
        16,
        "tiny",
    ),
    ("smolvlm-real", Idefics3Slicing(longest_edge=2048, tile_size=512, tokens_per_tile=64), 64, "real"),
    (
        "anyres-tiny",
        AnyresSlicing(grid_pinpoints=TINY_PINPOINTS, shortest_edge=24, crop_size=24, patch_size=6),
        16,
        "tiny",
    ),
    ("llava-next-real", AnyresSlicing(), 576, "real"),
    (
        "gemma3-tiny-pas",
        Gemma3Preprocess(image_size=32, tokens_per_image=16, do_pan_and_scan=True, pan_and_scan_min_crop_size=8),
        16,
        "tiny",
    ),
    ("gemma3-tiny", Gemma3Preprocess(image_size=32, tokens_per_image=16), 16, "tiny"),
    ("gemma3-real-pas", Gemma3Preprocess(do_pan_and_scan=True), 256, "real"),
    ("qwen2vl-tiny", Qwen2VLPreprocess(patch_size=4, min_pixels=8 * 8 * 4, max_pixels=8 * 8 * 256), 0, "tiny"),
    ("qwen2vl-real", Qwen2VLPreprocess(), 0, "real"),
    (
        "qwen2vl-noresize",
        Qwen2VLPreprocess(patch_size=4, min_pixels=64, max_pixels=64 * 256, do_resize=False),
        0,
        "mult8",
    ),
    ("uhd-minicpmv", UhdSlicing(), 64, "uhd"),
    (
        "uhd-tiny",
        UhdSlicing(
            scale_resolution=28,
            patch_size=4,
            max_slice_nums=4,
            tokens_per_slice=4,
            use_image_id=False,
            resample="bilinear",
        ),
        4,
        "tiny",
    ),
]

TINY_SIZES = [
    (1, 1),
    (2, 3),
    (7, 5),
    (10, 500),
    (500, 10),
    (50, 1),
    (1, 50),
    (31, 32),
    (32, 33),
    (33, 32),
    (63, 64),
    (65, 64),
    (95, 97),
    (97, 95),
    (23, 24),
    (25, 24),
    (47, 48),
    (49, 24),
    (73, 24),
    (24, 73),
    (100, 30),
    (30, 100),
    (37, 23),
    (255, 200),
    (640, 480),
    (2000, 1500),
]
# (1, 4000) and (3000, 2): clip.py resamples only the crop window of their huge canvases
REAL_SIZES = [(1, 1), (337, 335), (640, 480), (500, 10), (2000, 1500), (1, 4000), (3000, 2)]
UHD_SIZES = [(1, 1), (448, 448), (449, 448), (1000, 300), (300, 1000), (1344, 896), (2000, 1500), (50, 2500)]
SQUARE_SIZES = [(20, 20), (7, 7), (64, 64)]
MULT8_SIZES = [(8, 8), (64, 32), (120, 16)]
SIZES = {"tiny": TINY_SIZES, "real": REAL_SIZES, "uhd": UHD_SIZES, "square": SQUARE_SIZES, "mult8": MULT8_SIZES}

BUDGETS: list[dict] = [
    {},
    {"max_tiles": 2},
    {"max_tiles": 1},
    {"max_image_tokens": 40},
    {"max_upscale": 1.0},
    {"max_tiles": 3, "max_upscale": 1.5, "max_image_tokens": 100},
]
BAD_BUDGETS: list[dict] = [{"max_image_tokens": 1}, {"max_upscale": 0.5}, {"max_tiles": -1}, {"max_upscale": -2.0}]
