"""CLIP / LLaVA-1.5 image preprocessing, as plan then execute.

Reproduces the slow (PIL-based) ``transformers.CLIPImageProcessor.preprocess`` of
transformers 4.57 with numpy and Pillow only:

1. resize so the shortest edge is ``pp.shortest_edge``
   (``image_transforms.get_resize_output_image_size(default_to_square=False)``: the long
   side is ``int(shortest_edge * long / short)``, i.e. truncated, not rounded), done by
   Pillow on uint8 RGB data exactly as ``image_transforms.resize`` does;
2. ``image_transforms.center_crop``: ``top = (h - crop_h) // 2``, ``left = (w - crop_w) // 2``
   (floor division, so an odd surplus leaves the extra row/column at the bottom/right),
   zero padding (uint8 0, before rescaling) where the crop is larger than the image;
3. ``rescale``: ``(uint8 as float64 * rescale_factor)`` cast to float32;
4. ``normalize``: ``(x - mean) / std`` in float32, then channels first.

:func:`plan_clip` is the pure geometry (golden-tested), :func:`apply_clip` the pixel work.

Very elongated small images make step 1 produce a huge canvas (a 1x4000 image becomes
336x1344000, 1.35 GB and seconds of work, of which the crop keeps 336x336). When the
canvas is over ``_FULL_RESIZE_MAX_PIXELS`` and the resize does not shrink the height,
only the crop window is resampled, by a numpy port of Pillow's separable fixed-point
resampler (``libImaging/Resample.c``: ``precompute_coeffs``, ``normalize_coeffs_8bpc``,
22-bit accumulators, horizontal pass then vertical pass; nearest follows ``Geometry.c``
``ImagingScaleAffine``). It gives the same bytes as Pillow (tested against Pillow on
every filter). It is not used when the height shrinks, because Pillow 13 then may run
the vertical pass first (python-pillow/Pillow#9549) by a rule not reproduced here;
such canvases are smaller than the source anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from edge.errors import BundleError, ImageError, InputError
from edge.preprocess import ImagePreprocess

from .image_io import load_image

__all__ = ["ClipPlan", "plan_clip", "apply_clip", "clip_pixel_values", "RESAMPLE_FILTERS"]

# Names used in the manifest -> Pillow filters (HF stores PILImageResampling ints).
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# A resized canvas up to this size is made by Pillow in full (fast, <= 48 MB); above it,
# only the crop window is computed. Both give identical bytes.
_FULL_RESIZE_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class ClipPlan:
    """Geometry of one image through the CLIP pipeline. Sizes are ``(width, height)``.

    ``resize`` is None when the image keeps its size (``do_resize`` off, or already at
    the target: Pillow then returns a copy). ``crop`` is ``(left, top, right, bottom)``
    in the resized image; it may reach outside it, which means zero padding. ``output``
    is the size of the resulting ``pixel_values`` plane.
    """

    source: tuple[int, int]
    resize: Optional[tuple[int, int]]
    crop: Optional[tuple[int, int, int, int]]
    output: tuple[int, int]

    @property
    def canvas(self) -> tuple[int, int]:
        """Size of the image after the resize step (the source size if none)."""
        return self.resize if self.resize is not None else self.source


def plan_clip(width: int, height: int, pp: ImagePreprocess) -> ClipPlan:
    """Plan the resize and centre crop of a ``width`` x ``height`` image.

    Matches ``get_resize_output_image_size(size=shortest_edge, default_to_square=False)``
    and ``center_crop`` of ``transformers.image_transforms`` (4.57).

    Raises:
        ImageError: the image has no pixels.
        BundleError: ``pp`` holds an impossible value.
    """
    _check_params(pp)
    if width < 1 or height < 1:
        raise ImageError(f"cannot preprocess an image of size {width}x{height}")
    canvas = (int(width), int(height))
    resize = None
    if pp.do_resize:
        target = _shortest_edge_size(canvas[0], canvas[1], pp.shortest_edge)
        if target != canvas:
            resize = canvas = target
    crop = None
    output = canvas
    if pp.do_center_crop:
        left = (canvas[0] - pp.crop_width) // 2
        top = (canvas[1] - pp.crop_height) // 2
        crop = (left, top, left + pp.crop_width, top + pp.crop_height)
        output = (pp.crop_width, pp.crop_height)
    return ClipPlan(source=(int(width), int(height)), resize=resize, crop=crop, output=output)


def apply_clip(image: Image.Image, plan: ClipPlan, pp: ImagePreprocess) -> np.ndarray:
    """Run ``plan`` on ``image``: float32 ``pixel_values`` of shape ``[3, out_h, out_w]``.

    A non-RGB image is converted with ``convert("RGB")`` first, as HF's ``convert_to_rgb``.

    Raises:
        InputError: ``image`` is not the size the plan was made for.
    """
    if tuple(image.size) != plan.source:
        raise InputError(
            f"image is {image.width}x{image.height} but the plan was made for {plan.source[0]}x{plan.source[1]}"
        )
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = _resized_crop(rgb, plan, pp.resample.lower())
    if pp.do_rescale:
        values = (pixels.astype(np.float64) * pp.rescale_factor).astype(np.float32)
    else:
        values = pixels.astype(np.float32)
    if pp.do_normalize:
        values = (values - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(values.transpose(2, 0, 1))


def clip_pixel_values(images: Sequence[Any], pp: ImagePreprocess) -> np.ndarray:
    """Plan and apply each image; return float32 ``[n, 3, H, W]``.

    PIL images are used as given (like HF's processor: no EXIF transpose); anything
    else goes through :func:`edge.runtime.vision.image_io.load_image`.

    Raises:
        InputError: the images give planes of different sizes (no centre crop), or the
            list is empty and the output size is unknown.
    """
    planes = []
    for item in images:
        image = item if isinstance(item, Image.Image) else load_image(item)
        planes.append(apply_clip(image, plan_clip(image.width, image.height, pp), pp))
    if not planes:
        if not pp.do_center_crop:
            raise InputError("no images to preprocess")
        return np.zeros((0, 3, pp.crop_height, pp.crop_width), np.float32)
    if len({p.shape for p in planes}) > 1:
        raise InputError("images give pixel_values of different sizes; enable the centre crop")
    return np.stack(planes)


def _shortest_edge_size(width: int, height: int, size: int) -> tuple[int, int]:
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)  # float division then truncation, as HF
    return (size, new_long) if width <= height else (new_long, size)


def _check_params(pp: ImagePreprocess) -> None:
    if pp.resample.lower() not in RESAMPLE_FILTERS:
        raise BundleError(
            f"image preprocess resample {pp.resample!r} is unknown; use one of {', '.join(RESAMPLE_FILTERS)}"
        )
    if pp.do_resize and pp.shortest_edge < 1:
        raise BundleError(f"image preprocess shortest_edge must be >= 1, got {pp.shortest_edge}")
    if pp.do_center_crop and (pp.crop_width < 1 or pp.crop_height < 1):
        raise BundleError(f"image preprocess crop must be >= 1x1, got {pp.crop_width}x{pp.crop_height}")
    if pp.do_normalize and (len(pp.mean) != 3 or len(pp.std) != 3 or 0.0 in pp.std):
        raise BundleError("image preprocess mean and std must hold 3 values, std non-zero")


def _resized_crop(rgb: Image.Image, plan: ClipPlan, resample: str) -> np.ndarray:
    """uint8 ``[out_h, out_w, 3]``: the crop box of the resized image, zero padded."""
    canvas_w, canvas_h = plan.canvas
    left, top, right, bottom = plan.crop if plan.crop is not None else (0, 0, *plan.canvas)
    # The part of the crop box that lies inside the canvas.
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, canvas_w), min(bottom, canvas_h)
    if plan.resize is None:
        inside = np.asarray(rgb)[y0:y1, x0:x1]
    elif canvas_w * canvas_h > _FULL_RESIZE_MAX_PIXELS and canvas_h >= rgb.height:
        inside = _resample_window(np.asarray(rgb), plan.resize, (x0, y0, x1, y1), resample)
    else:
        resized = rgb.resize(plan.resize, resample=RESAMPLE_FILTERS[resample])
        inside = np.asarray(resized.crop((x0, y0, x1, y1)))
    if (x0, y0, x1, y1) == (left, top, right, bottom):
        return inside
    out = np.zeros((bottom - top, right - left, 3), np.uint8)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = inside
    return out


# ---- Pillow's resampler, restricted to a window of the output -----------------------

_PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8-bit result, 2 bits headroom
_F054 = float(np.float32(0.54))  # Resample.c writes 0.54f / 0.46f (float literals)
_F046 = float(np.float32(0.46))


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = -x if x < 0.0 else x
    return 1.0 - x if x < 1.0 else 0.0


def _hamming(x: float) -> float:
    x = -x if x < 0.0 else x
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x = x * math.pi
    return math.sin(x) / x * (_F054 + _F046 * math.cos(x))


def _bicubic(x: float) -> float:
    a = -0.5
    x = -x if x < 0.0 else x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


_KERNELS: dict[str, tuple[Callable[[float], float], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "hamming": (_hamming, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


def _coeffs(in_size: int, out_size: int, start: int, stop: int, kernel: str):
    """First tap and 22-bit integer weights of outputs ``start..stop-1`` (``precompute_coeffs``)."""
    filt, support = _KERNELS[kernel]
    # Pillow passes the box as C floats: in1 - in0 is float32(in_size).
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ss = 1.0 / filterscale
    firsts, rows = [], []
    for xx in range(start, stop):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [filt((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:  # sequential sum, as the C loop
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        one = 1 << _PRECISION_BITS
        rows.append([int(-0.5 + w * one) if w < 0 else int(0.5 + w * one) for w in weights])
        firsts.append(xmin)
    taps = max(len(r) for r in rows)
    table = np.zeros((len(rows), taps), np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return np.asarray(firsts, np.int64), table


def _pass(data: np.ndarray, axis: int, firsts: np.ndarray, table: np.ndarray) -> np.ndarray:
    """One separable 8-bit pass along ``axis`` (``ImagingResample{Horizontal,Vertical}_8bpc``)."""
    shape = [1, 1, 1]
    shape[axis] = len(firsts)
    acc = np.int64(1 << (_PRECISION_BITS - 1))
    for j in range(table.shape[1]):
        # Taps past a row's count have weight 0; clamp their index to stay in range.
        index = np.minimum(firsts + j, data.shape[axis] - 1)
        acc = acc + np.take(data, index, axis=axis).astype(np.int64) * table[:, j].reshape(shape)
    return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def _nearest(in_size: int, out_size: int, start: int, stop: int) -> np.ndarray:
    """Source index of outputs ``start..stop-1`` (-1: outside), as ``ImagingScaleAffine``."""
    step = float(np.float32(in_size)) / out_size
    increments = np.full(stop, step)
    increments[0] = step * 0.5
    position = np.cumsum(increments)[start:stop]  # C: xo += a[0], accumulated in order
    index = position.astype(np.int64)
    return np.where(index < in_size, index, -1)


def _resample_window(
    src: np.ndarray, size: tuple[int, int], window: tuple[int, int, int, int], kernel: str
) -> np.ndarray:
    """``np.asarray(Image.fromarray(src).resize(size, kernel))[y0:y1, x0:x1]``, computing
    only the window (same bytes as Pillow). Only for ``size[1] >= src.shape[0]``: there
    Pillow resamples horizontally first, which is the order used here."""
    in_h, in_w = src.shape[:2]
    out_w, out_h = size
    x0, y0, x1, y1 = window
    if out_h < in_h:
        raise ValueError("_resample_window cannot shrink the height (Pillow's pass order)")
    if kernel == "nearest":
        xs, ys = _nearest(in_w, out_w, x0, x1), _nearest(in_h, out_h, y0, y1)
        out = src[np.ix_(np.maximum(ys, 0), np.maximum(xs, 0))]
        out[ys < 0] = 0
        out[:, xs < 0] = 0
        return out
    rows = src[y0:y1]
    if out_h != in_h:  # Pillow skips a pass whose size does not change
        firsts, vtable = _coeffs(in_h, out_h, y0, y1, kernel)
        first, last = int(firsts.min()), int((firsts + vtable.shape[1]).max())
        rows = src[first : min(last, in_h)]
        firsts = firsts - first
    cols = rows[:, x0:x1]
    if out_w != in_w:
        hfirsts, htable = _coeffs(in_w, out_w, x0, x1, kernel)
        cols = _pass(rows, 1, hfirsts, htable)
    if out_h != in_h:
        cols = _pass(cols, 0, firsts, vtable)
    return cols
