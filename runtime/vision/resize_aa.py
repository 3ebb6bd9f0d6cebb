"""Antialiased uint8 resizing with torch's arithmetic, in numpy.

``torchvision.transforms.v2.functional.resize`` on a uint8 image tensor on the CPU runs torch's
native uint8 kernel for bilinear and bicubic (``torch.nn.functional.interpolate(...,
antialias=True)``; aten ``UpSampleKernel.cpp``: ``HelperInterpBase::_compute_index_ranges_weights``
and ``_compute_index_ranges_int16_weights``, ``separable_upsample_generic_Nd_kernel_impl``). Fast
HF processors (SmolVLM2's video processor among them) resize this way, and it differs from
Pillow's resize of the same filter by up to a dozen levels (Pillow keeps 22-bit coefficients,
torch int16 ones), so pixel parity with them needs this arithmetic:

* per output index ``i``: ``center = scale * (i + 0.5)``, support ``interp/2 * max(scale, 1)``,
  taps ``[int(center - support + 0.5), int(center + support + 0.5))`` clipped to the input,
  weights ``filter((j + xmin - center + 0.5) / max(scale, 1))`` normalised to sum 1 (float64);
* the weights become int16 at the largest precision ``p < 22`` whose doubled maximum still
  rounds below ``2**15``, each rounded half away from zero;
* a pass sums ``pixel * weight`` in integers from ``2**(p-1)``, shifts right by ``p`` and clips to
  0-255; the width is resized first, then the height, each pass only when its size changes.
"""

from __future__ import annotations

import math

import numpy as np

from edge.errors import InputError


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution with ``a = -0.5`` (``HelperInterpCubic::aa_filter``)."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    """``HelperInterpLinear::aa_filter``."""
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS = {"bicubic": (_cubic, 4), "bilinear": (_triangle, 2)}


def _weights(in_size: int, out_size: int, kernel: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Tap indices ``[out, K]``, int16-valued weights ``[out, K]`` (int64) and their precision."""
    fn, interp = _FILTERS[kernel]
    scale = in_size / out_size
    support = interp * 0.5 * scale if scale >= 1.0 else interp * 0.5
    k_max = int(math.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    idx = np.zeros((out_size, k_max), np.int64)
    w = np.zeros((out_size, k_max), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xsize = min(max(min(int(center + support + 0.5), in_size) - xmin, 0), k_max)
        j = np.arange(xsize)
        wi = fn((j + xmin - center + 0.5) * invscale)
        total = 0.0
        for v in wi:  # summed in order, as the C++ loop does
            total += float(v)
        if total != 0.0:
            wi = wi / total
        idx[i, :xsize] = xmin + j
        idx[i, xsize:] = xmin  # zero weights
        w[i, :xsize] = wi
    wt_max = float(w.max()) if w.size else 0.0
    precision = 0
    while precision < 22 and int(0.5 + wt_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    v = w * (1 << precision)
    wint = np.where(v < 0, np.trunc(v - 0.5), np.trunc(v + 0.5)).astype(np.int64)
    return idx, wint, precision


def _pass(arr: np.ndarray, out_size: int, axis: int, kernel: str) -> np.ndarray:
    idx, w, p = _weights(arr.shape[axis], out_size, kernel)
    src = np.moveaxis(arr, axis, -1).astype(np.int64)  # [..., in]
    acc = np.full(src.shape[:-1] + (out_size,), 1 << (p - 1), np.int64)
    for k in range(idx.shape[1]):
        acc += src[..., idx[:, k]] * w[:, k]
    out = np.clip(acc >> p, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def resize_uint8(arr: np.ndarray, size: tuple[int, int], kernel: str = "bicubic") -> np.ndarray:
    """``[H, W, C]`` uint8 -> ``[h, w, C]`` uint8 for ``size = (w, h)``, as torch resizes uint8 with
    ``antialias=True`` (width first, then height).

    Raises:
        InputError: a kernel other than bilinear or bicubic, or a size below 1.
    """
    if kernel not in _FILTERS:
        raise InputError(f"torch's uint8 resize has bilinear and bicubic only, not {kernel!r}")
    w, h = size
    if w < 1 or h < 1:
        raise InputError(f"cannot resize to {w}x{h}")
    out = arr
    if w != arr.shape[1]:
        out = _pass(out, w, 1, kernel)
    if h != arr.shape[0]:
        out = _pass(out, h, 0, kernel)
    return np.ascontiguousarray(out)
