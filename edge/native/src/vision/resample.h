// Resizing RGB8 images bit-identically to the Python runtime.
//
// pil_resize: Pillow 13's Image.resize on an RGB image (libImaging/Resample.c precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResample{Horizontal,Vertical}_8bpc, ImagingResampleInner's pass
// order; NEAREST is Geometry.c ImagingScaleAffine), which runtime/vision/clip.py also ports in numpy
// (_coeffs, _pass, _nearest). torch_resize_aa ports runtime/vision/resize_aa.py (torch's antialiased
// uint8 resize).
#pragma once

#include <string>

#include "common.h"

namespace edge::vision {

enum class Filter { nearest, box, bilinear, hamming, bicubic, lanczos };

// The manifest's resample name -> filter (edge.checks.RESAMPLE_NAMES); false when unknown.
bool filter_from_name(const std::string& name, Filter* out);

// Image.resize((w, h), filter) of Pillow 13 on `src` (a copy when the size is unchanged).
Rgb pil_resize(const Rgb& src, int w, int h, Filter f);

// The window [x0, x1) x [y0, y1) of pil_resize(src, w, h, f), computing only that window (same bytes:
// every output pixel depends only on its own taps; clip.py _resample_window).
Rgb pil_resize_window(const Rgb& src, int w, int h, Filter f, int x0, int y0, int x1, int y1);

// resize_aa.resize_uint8: torch's antialiased uint8 resize, width then height (bilinear, bicubic).
Rgb torch_resize_aa(const Rgb& src, int w, int h, Filter f);

}  // namespace edge::vision
