"""Image loading and CLIP/LLaVA-1.5 preprocessing against transformers' slow CLIPImageProcessor.

The reference is ``transformers.CLIPImageProcessor`` (PIL-based) called with
``input_data_format="channels_last"``: without it HF guesses the channel axis and takes
images 1 or 3 pixels high (numpy shape (1|3, W, 3)) for channels-first, which is wrong.

Over 400 lines on purpose: one reference comparison per loading and resizing case, kept
side by side so a new case is checked the same way as the others.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from edge.errors import BundleError, ImageError, InputError
from edge.manifest import ImagePreprocess
from edge.runtime.vision import clip as preprocess
from edge.runtime.vision.clip import ClipPlan, apply_clip, clip_pixel_values, plan_clip
from edge.runtime.vision.image_io import load_image

transformers = pytest.importorskip("transformers")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
ATOL = 1e-6  # measured: 0.0 (bit-identical) on every case below


def hf_processor(shortest_edge: int, crop, resample: int = 3, **flags):
    """A slow CLIPImageProcessor; ``crop`` is an int or (height, width)."""
    crop_size = {"height": crop[0], "width": crop[1]} if isinstance(crop, tuple) else crop
    return transformers.CLIPImageProcessor(
        size={"shortest_edge": shortest_edge},
        crop_size=crop_size,
        resample=resample,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        **flags,
    )


def pp_from_hf(proc) -> ImagePreprocess:
    """The manifest's ImagePreprocess as an exporter would build it from the HF processor."""
    return ImagePreprocess(
        scheme="clip",
        image_size=proc.crop_size["height"],
        shortest_edge=proc.size["shortest_edge"],
        crop_height=proc.crop_size["height"],
        crop_width=proc.crop_size["width"],
        do_resize=proc.do_resize,
        do_center_crop=proc.do_center_crop,
        do_rescale=proc.do_rescale,
        do_normalize=proc.do_normalize,
        resample=Image.Resampling(proc.resample).name.lower(),
        rescale_factor=float(proc.rescale_factor),
        mean=[float(v) for v in proc.image_mean],
        std=[float(v) for v in proc.image_std],
    )


PROCS = {
    "llava": hf_processor(336, 336),
    "clip224": hf_processor(224, 224),
    "pad": hf_processor(200, 224),  # crop larger than the short side: zero padding
    "tiny": hf_processor(24, (20, 28)),  # cheap for extreme aspect ratios; non-square crop
}
_HF_CACHE: dict = {}


def random_image(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * 100_003 + height)
    channels = {"RGB": 3, "RGBA": 4, "L": None, "LA": 2}[mode]
    shape = (height, width) if channels is None else (height, width, channels)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def hf_pixels(config: str, width: int, height: int) -> np.ndarray:
    key = (config, width, height)
    if key not in _HF_CACHE:
        out = PROCS[config](random_image(width, height), return_tensors="np", input_data_format="channels_last")
        _HF_CACHE[key] = out["pixel_values"][0]
    return _HF_CACHE[key]


def ours(image: Image.Image, pp: ImagePreprocess) -> np.ndarray:
    return apply_clip(image, plan_clip(image.width, image.height, pp), pp)


def assert_matches(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)


LLAVA_SIZES = [
    (1, 1),
    (2, 3),
    (3, 2),
    (1, 2),
    (7, 13),
    (337, 211),
    (211, 337),
    (336, 336),
    (335, 337),
    (337, 335),
    (335, 335),
    (337, 337),
    (640, 480),
    (480, 640),
    (1024, 1024),
    (17, 1999),
    (1999, 17),
    (1280, 720),
    (720, 1280),
    (672, 336),
    (101, 103),
    (500, 50),
    (50, 500),
    (1, 100),
    (100, 1),
    (600, 3),
    (3, 250),
    (1500, 1125),
]
EXTREME_SIZES = [(1, 4000), (4000, 1), (2, 3001), (3001, 2), (5, 9999), (1, 1), (13, 7)]


@pytest.mark.parametrize("size", LLAVA_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_llava_matches_hf(size):
    assert_matches(ours(random_image(*size), pp_from_hf(PROCS["llava"])), hf_pixels("llava", *size))


@pytest.mark.parametrize("config", ["clip224", "pad"])
@pytest.mark.parametrize(
    "size",
    [(1, 1), (2, 3), (300, 280), (199, 201), (225, 223), (640, 480), (31, 900), (900, 31)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_other_configs_match_hf(config, size):
    assert_matches(ours(random_image(*size), pp_from_hf(PROCS[config])), hf_pixels(config, *size))


@pytest.mark.parametrize("size", EXTREME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_extreme_aspect_matches_hf(size):
    # 1x4000 under LLaVA's 336 means a 336x1344000 canvas: 8 s and 4.7 GB in HF. The
    # "tiny" config (shortest edge 24) runs the same arithmetic at a 1/196 of the cost.
    assert_matches(ours(random_image(*size), pp_from_hf(PROCS["tiny"])), hf_pixels("tiny", *size))


@pytest.mark.parametrize(
    "config,size",
    [("llava", s) for s in [(1, 1), (2, 3), (17, 1999), (1999, 17), (1, 100), (335, 335)]]
    + [("pad", (2, 3)), ("pad", (199, 201))]
    + [("tiny", s) for s in EXTREME_SIZES],
)
def test_windowed_resize_matches_hf(monkeypatch, config, size):
    # Force the crop-window resampler (normally used for canvases over 16 Mpx only).
    monkeypatch.setattr(preprocess, "_FULL_RESIZE_MAX_PIXELS", 0)
    assert_matches(ours(random_image(*size), pp_from_hf(PROCS[config])), hf_pixels(config, *size))


def test_llava_1x4000_is_cheap():
    # The window path: no 1.35 GB canvas. Checked against HF above at a smaller scale.
    plan = plan_clip(1, 4000, pp_from_hf(PROCS["llava"]))
    assert plan.resize == (336, 1_344_000)
    out = apply_clip(random_image(1, 4000), plan, pp_from_hf(PROCS["llava"]))
    assert out.shape == (3, 336, 336)


@pytest.mark.parametrize("resample", [0, 1, 2, 4, 5])
@pytest.mark.parametrize("size", [(3, 2), (333, 250), (250, 333), (1, 150)], ids=str)
def test_other_resample_filters_match_hf(resample, size):
    proc = hf_processor(224, 224, resample=resample)
    ref = proc(random_image(*size), return_tensors="np", input_data_format="channels_last")
    assert_matches(ours(random_image(*size), pp_from_hf(proc)), ref["pixel_values"][0])


@pytest.mark.parametrize("kernel", sorted(preprocess.RESAMPLE_FILTERS))
def test_window_resampler_equals_pillow(kernel):
    rng = np.random.default_rng(3)
    for _ in range(25):
        w, h = (int(v) for v in rng.integers(1, 60, 2))
        tw, th = int(rng.integers(1, 200)), h + int(rng.integers(0, 200))
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        full = np.asarray(Image.fromarray(src).resize((tw, th), preprocess.RESAMPLE_FILTERS[kernel]))
        x0, y0 = int(rng.integers(0, tw)), int(rng.integers(0, th))
        x1, y1 = int(rng.integers(x0 + 1, tw + 1)), int(rng.integers(y0 + 1, th + 1))
        got = preprocess._resample_window(src, (tw, th), (x0, y0, x1, y1), kernel)
        np.testing.assert_array_equal(got, full[y0:y1, x0:x1], err_msg=f"{(w, h)}->{(tw, th)}")


@pytest.mark.parametrize(
    "flags",
    [
        {"do_rescale": False},
        {"do_normalize": False},
        {"do_rescale": False, "do_normalize": False},
        {"do_center_crop": False},
        {"do_resize": False},
    ],
    ids=lambda f: ",".join(f),
)
@pytest.mark.parametrize("size", [(300, 200), (150, 401)], ids=str)
def test_flags_match_hf(flags, size):
    proc = hf_processor(224, 224, **flags)
    ref = proc(random_image(*size), return_tensors="np", input_data_format="channels_last")
    assert_matches(ours(random_image(*size), pp_from_hf(proc)), ref["pixel_values"][0].astype(np.float32))


def _palette_image() -> Image.Image:
    image = random_image(37, 23, "L").convert("P")
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    "make",
    [
        lambda: random_image(41, 29, "RGBA"),
        lambda: random_image(29, 41, "LA"),
        lambda: random_image(50, 3, "L"),
        _palette_image,
        lambda: random_image(30, 30, "L").convert("1"),
        lambda: random_image(33, 17).convert("CMYK"),
    ],
    ids=["RGBA", "LA", "L", "P-transparency", "1", "CMYK"],
)
def test_modes_through_load_image_match_hf(make):
    proc = PROCS["clip224"]
    ref = proc(make(), return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    loaded = load_image(make())
    assert loaded.mode == "RGB"
    assert_matches(ours(loaded, pp_from_hf(proc)), ref)


def test_clip_pixel_values_batches_like_hf(tmp_path):
    sizes = [(640, 480), (31, 900), (1, 1)]
    images = [random_image(*s) for s in sizes]
    path = tmp_path / "a.png"
    images[0].save(path)
    got = clip_pixel_values([path, images[1], np.asarray(images[2])], pp_from_hf(PROCS["llava"]))
    ref = PROCS["llava"](images, return_tensors="np", input_data_format="channels_last")
    assert_matches(got, ref["pixel_values"])
    empty = clip_pixel_values([], pp_from_hf(PROCS["llava"]))
    assert empty.shape == (0, 3, 336, 336)


# ---- the plan, golden ---------------------------------------------------------------


def _pp(shortest: int, crop_w: int, crop_h: int, **kw) -> ImagePreprocess:
    return ImagePreprocess("clip", crop_h, shortest, crop_h, crop_w, **kw)


@pytest.mark.parametrize(
    "pp,size,expected",
    [
        (_pp(336, 336, 336), (640, 480), ClipPlan((640, 480), (448, 336), (56, 0, 392, 336), (336, 336))),
        # the long side is truncated: 336 * 1999 / 17 = 39509.6 -> 39509
        (_pp(336, 336, 336), (17, 1999), ClipPlan((17, 1999), (336, 39509), (0, 19586, 336, 19922), (336, 336))),
        (_pp(336, 336, 336), (337, 211), ClipPlan((337, 211), (536, 336), (100, 0, 436, 336), (336, 336))),
        (_pp(336, 336, 336), (335, 337), ClipPlan((335, 337), (336, 338), (0, 1, 336, 337), (336, 336))),
        # odd surplus (261): the extra column is left on the right
        (_pp(336, 336, 336), (1280, 720), ClipPlan((1280, 720), (597, 336), (130, 0, 466, 336), (336, 336))),
        (_pp(336, 336, 336), (336, 336), ClipPlan((336, 336), None, (0, 0, 336, 336), (336, 336))),
        (_pp(336, 336, 336), (1, 1), ClipPlan((1, 1), (336, 336), (0, 0, 336, 336), (336, 336))),
        (_pp(336, 336, 336), (1, 4000), ClipPlan((1, 4000), (336, 1344000), (0, 671832, 336, 672168), (336, 336))),
        (_pp(224, 224, 224), (640, 480), ClipPlan((640, 480), (298, 224), (37, 0, 261, 224), (224, 224))),
        # crop larger than the resized image: the box reaches outside (zero padding)
        (_pp(200, 224, 224), (300, 280), ClipPlan((300, 280), (214, 200), (-5, -12, 219, 212), (224, 224))),
        (_pp(64, 64, 64, do_resize=False), (100, 50), ClipPlan((100, 50), None, (18, -7, 82, 57), (64, 64))),
        (_pp(336, 336, 336, do_center_crop=False), (640, 480), ClipPlan((640, 480), (448, 336), None, (448, 336))),
    ],
)
def test_plan_golden(pp, size, expected):
    assert plan_clip(*size, pp) == expected


def test_plan_rejects_bad_input():
    with pytest.raises(ImageError):
        plan_clip(0, 10, _pp(336, 336, 336))
    with pytest.raises(BundleError):
        plan_clip(10, 10, _pp(336, 336, 336, resample="cubic-ish"))
    with pytest.raises(BundleError):
        plan_clip(10, 10, _pp(0, 336, 336))
    with pytest.raises(InputError):
        apply_clip(random_image(10, 10), plan_clip(11, 10, _pp(8, 8, 8)), _pp(8, 8, 8))


# ---- load_image ---------------------------------------------------------------------


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(_png_bytes(Image.new("RGB", (1, 1))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _encoded(fmt: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    random_image(*size).save(buf, fmt)
    return buf.getvalue()


BAD_SOURCES = {
    "missing": lambda p: p / "nope.png",
    "directory": lambda p: p,
    "empty-file": lambda p: _write(p, "empty.png", b""),
    "text-file": lambda p: _write(p, "notes.png", b"hello, this is not an image\n" * 20),
    "truncated-png": lambda p: _write(p, "cut.png", _encoded("PNG")[: len(_encoded("PNG")) // 2]),
    "truncated-jpeg": lambda p: _write(p, "cut.jpg", _encoded("JPEG")[: len(_encoded("JPEG")) // 2]),
    "bomb-header": lambda p: _write(p, "bomb.png", _png_claiming(100_000, 100_000)),
    "over-max-pixels": lambda p: _write(p, "big.png", _png_claiming(9000, 9000)),
    "over-pil-warning": lambda p: _write(p, "bigger.png", _png_claiming(10_000, 10_000)),
    "zero-width-header": lambda p: _write(p, "zero.png", _png_claiming(0, 5)),
    "empty-bytes": lambda p: b"",
    "text-bytes": lambda p: b"GIF? no.",
    "truncated-bytes": lambda p: _encoded("JPEG")[:100],
    "float-array": lambda p: np.zeros((4, 4, 3), np.float32),
    "rgba-array": lambda p: np.zeros((4, 4, 4), np.uint8),
    "zero-array": lambda p: np.zeros((0, 5, 3), np.uint8),
    "zero-pil": lambda p: Image.new("RGB", (0, 3)),
    "wrong-type": lambda p: 42,
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_load_image_rejects(tmp_path, case):
    source = BAD_SOURCES[case](tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError) as info:
            load_image(source)
    message = str(info.value)
    assert message and "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_load_image_max_pixels_checked_before_decoding(tmp_path):
    path = _write(tmp_path, "ok.png", _png_bytes(random_image(20, 20)))
    with pytest.raises(ImageError, match="400 pixels"):
        load_image(path, max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)
    # A header claiming 81 Mpx is refused from the header alone (its data is 1 pixel).
    with pytest.raises(ImageError, match="more than the limit"):
        load_image(_png_claiming(9000, 9000))
    with pytest.raises(InputError):
        load_image(path, max_pixels=0)


def test_load_image_one_pixel_from_every_source(tmp_path):
    pixel = Image.new("RGB", (1, 1), (10, 20, 30))
    path = _write(tmp_path, "one.png", _png_bytes(pixel))
    sources = [path, str(path), _png_bytes(pixel), pixel, np.asarray(pixel), np.full((1, 1), 7, np.uint8)]
    for source in sources:
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (1, 1)
    assert load_image(path).getpixel((0, 0)) == (10, 20, 30)
    assert load_image(np.full((1, 1), 7, np.uint8)).getpixel((0, 0)) == (7, 7, 7)


def test_load_image_matches_hf_load_image(tmp_path):
    from transformers.image_utils import load_image as hf_load_image

    base = random_image(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    jpeg = tmp_path / "rotated.jpg"
    base.save(jpeg, "JPEG", exif=exif.tobytes())
    png = tmp_path / "rgba.png"
    random_image(17, 9, "RGBA").save(png)
    for path in (jpeg, png):
        ref = hf_load_image(str(path))
        got = load_image(path)
        assert got.size == ref.size and got.mode == ref.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    assert load_image(jpeg).size == (24, 40)  # EXIF orientation applied


def test_load_image_does_not_modify_a_given_image():
    image = random_image(8, 6, "RGBA")
    before = np.asarray(image).copy()
    out = load_image(image)
    assert out is not image and image.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(image), before)
