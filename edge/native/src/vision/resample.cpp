// Pillow's and torch's uint8 resamplers; see resample.h. Built with -ffp-contract=off so that no
// multiply-add is fused (the C and numpy references round every operation).
#include "resample.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace edge::vision {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Resample.c PRECISION_BITS
constexpr double kPi = 3.14159265358979323846;

// Resample.c's filters (box_filter ... lanczos_filter), same operations in the same order
double box_f(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
double bilinear_f(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}
double hamming_f(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * kPi;
  return std::sin(x) / x * (static_cast<double>(0.54f) + static_cast<double>(0.46f) * std::cos(x));
}
double bicubic_f(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
double sinc_f(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}
double lanczos_f(double x) { return (-3.0 <= x && x < 3.0) ? sinc_f(x) * sinc_f(x / 3) : 0.0; }

struct Kernel {
  double (*fn)(double);
  double support;
};
Kernel kernel_of(Filter f) {
  switch (f) {
    case Filter::box: return {box_f, 0.5};
    case Filter::bilinear: return {bilinear_f, 1.0};
    case Filter::hamming: return {hamming_f, 1.0};
    case Filter::bicubic: return {bicubic_f, 2.0};
    case Filter::lanczos: return {lanczos_f, 3.0};
    default: return {bilinear_f, 1.0};
  }
}

// Taps of outputs [start, stop): first input index, count, and `ksize` integer weights each.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;
  int lo() const { return first.empty() ? 0 : first.front(); }  // first inputs are non-decreasing
  int hi() const {
    int h = 0;
    for (size_t i = 0; i < first.size(); ++i) h = std::max(h, first[i] + count[i]);
    return h;
  }
};

// precompute_coeffs + normalize_coeffs_8bpc for outputs [start, stop) only
Coeffs pil_coeffs(int in_size, int out_size, int start, int stop, Filter f) {
  const Kernel kern = kernel_of(f);
  const float in1 = static_cast<float>(in_size), in0 = 0.0f;  // the box is passed as C floats
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kern.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  const int n = stop - start;
  c.first.resize(n);
  c.count.resize(n);
  c.k.assign(static_cast<size_t>(n) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = start; xx < stop; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      w[x] = kern.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    int32_t* k = &c.k[static_cast<size_t>(xx - start) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx - start] = xmin;
    c.count[xx - start] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t ss, int bits) {
  int64_t v = ss >> bits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Horizontal pass: out(x, y) = taps of c over src columns (src column 0 is input column `col0`).
Rgb hpass(const Rgb& src, const Coeffs& c, int col0, int bits) {
  Rgb out;
  out.w = static_cast<int>(c.first.size());
  out.h = src.h;
  out.px.resize(static_cast<size_t>(out.w) * out.h * 3);
  const int64_t half = int64_t{1} << (bits - 1);
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* in = src.row(y);
    uint8_t* o = out.row(y);
    for (int xx = 0; xx < out.w; ++xx) {
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* p = in + static_cast<size_t>(c.first[xx] - col0) * 3;
      int64_t s0 = half, s1 = half, s2 = half;
      for (int x = 0; x < c.count[xx]; ++x) {
        s0 += p[x * 3 + 0] * int64_t{k[x]};
        s1 += p[x * 3 + 1] * int64_t{k[x]};
        s2 += p[x * 3 + 2] * int64_t{k[x]};
      }
      o[xx * 3 + 0] = clip8(s0, bits);
      o[xx * 3 + 1] = clip8(s1, bits);
      o[xx * 3 + 2] = clip8(s2, bits);
    }
  }
  return out;
}

// Vertical pass: out(x, y) = taps of c over src rows (src row 0 is input row `row0`).
Rgb vpass(const Rgb& src, const Coeffs& c, int row0, int bits) {
  Rgb out;
  out.w = src.w;
  out.h = static_cast<int>(c.first.size());
  out.px.resize(static_cast<size_t>(out.w) * out.h * 3);
  const int64_t half = int64_t{1} << (bits - 1);
  const size_t n = static_cast<size_t>(src.w) * 3;
  std::vector<int64_t> acc(n);
  for (int yy = 0; yy < out.h; ++yy) {
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), half);
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t* in = src.row(c.first[yy] - row0 + y);
      const int64_t ky = k[y];
      for (size_t i = 0; i < n; ++i) acc[i] += in[i] * ky;
    }
    uint8_t* o = out.row(yy);
    for (size_t i = 0; i < n; ++i) o[i] = clip8(acc[i], bits);
  }
  return out;
}

// rows [y0, y1) and columns [x0, x1) of src
Rgb sub(const Rgb& src, int x0, int y0, int x1, int y1) { return crop(src, x0, y0, x1, y1); }

// Geometry.c ImagingScaleAffine's source index per output (COORD; -1 outside)
std::vector<int> nearest_index(int in_size, int out_size) {
  const double a = static_cast<double>(static_cast<float>(in_size)) / out_size;
  std::vector<int> idx(out_size);
  double xo = 0.0 + a * 0.5;
  for (int x = 0; x < out_size; ++x) {
    int xin = xo < 0.0 ? -1 : static_cast<int>(xo);
    idx[x] = (xin >= 0 && xin < in_size) ? xin : -1;
    xo += a;
  }
  return idx;
}

Rgb nearest_window(const Rgb& src, int w, int h, int x0, int y0, int x1, int y1) {
  std::vector<int> xs = nearest_index(src.w, w), ys = nearest_index(src.h, h);
  int xmin = w, xmax = 0;  // ImagingScaleAffine copies columns [xmin, xmax); xintab is 0 elsewhere
  for (int x = 0; x < w; ++x)
    if (xs[x] >= 0) {
      xmax = x + 1;
      xmin = std::min(xmin, x);
    }
  Rgb out;
  out.w = x1 - x0;
  out.h = y1 - y0;
  out.px.assign(static_cast<size_t>(out.w) * out.h * 3, 0);
  for (int y = y0; y < y1; ++y) {
    if (ys[y] < 0) continue;
    const uint8_t* in = src.row(ys[y]);
    uint8_t* o = out.row(y - y0);
    for (int x = std::max(x0, xmin); x < std::min(x1, xmax); ++x) {
      const int xi = xs[x] < 0 ? 0 : xs[x];
      std::memcpy(o + static_cast<size_t>(x - x0) * 3, in + static_cast<size_t>(xi) * 3, 3);
    }
  }
  return out;
}

}  // namespace

bool filter_from_name(const std::string& name, Filter* out) {
  static const std::pair<const char*, Filter> names[] = {
      {"nearest", Filter::nearest}, {"bilinear", Filter::bilinear}, {"bicubic", Filter::bicubic},
      {"lanczos", Filter::lanczos}, {"box", Filter::box},           {"hamming", Filter::hamming}};
  for (const auto& [n, f] : names)
    if (name == n) {
      *out = f;
      return true;
    }
  return false;
}

Rgb pil_resize(const Rgb& src, int w, int h, Filter f) { return pil_resize_window(src, w, h, f, 0, 0, w, h); }

Rgb pil_resize_window(const Rgb& src, int w, int h, Filter f, int x0, int y0, int x1, int y1) {
  if (w == src.w && h == src.h) return sub(src, x0, y0, x1, y1);  // Image.resize: a copy
  if (f == Filter::nearest) return nearest_window(src, w, h, x0, y0, x1, y1);
  const bool need_h = w != src.w, need_v = h != src.h;
  // ImagingResampleInner (Pillow 13): the vertical pass goes first when the height shrinks more than
  // twice as much as the width
  const bool horizontal_first = !((src.h - h) > 0 && (src.h - h) > (src.w - w) * 2);
  if (horizontal_first) {
    Coeffs cv;
    int r0 = y0, r1 = y1;
    if (need_v) {
      cv = pil_coeffs(src.h, h, y0, y1, f);
      r0 = cv.lo();
      r1 = cv.hi();
    }
    Rgb tmp;
    if (need_h) {
      Coeffs ch = pil_coeffs(src.w, w, x0, x1, f);
      int c0 = ch.lo(), c1 = ch.hi();
      tmp = hpass(sub(src, c0, r0, std::max(c1, c0), r1), ch, c0, kPrecisionBits);
    } else {
      tmp = sub(src, x0, r0, x1, r1);
    }
    return need_v ? vpass(tmp, cv, r0, kPrecisionBits) : tmp;
  }
  // vertical first (need_v holds here)
  Coeffs cv = pil_coeffs(src.h, h, y0, y1, f);
  int c0 = x0, c1 = x1;
  Coeffs ch;
  if (need_h) {
    ch = pil_coeffs(src.w, w, x0, x1, f);
    c0 = ch.lo();
    c1 = std::max(ch.hi(), c0);
  }
  Rgb tmp = vpass(sub(src, c0, cv.lo(), c1, cv.hi()), cv, cv.lo(), kPrecisionBits);
  return need_h ? hpass(tmp, ch, c0, kPrecisionBits) : tmp;
}

// ---- torch's antialiased uint8 resize (runtime/vision/resize_aa.py) ------------------------

namespace {

double aa_cubic(double x) {  // resize_aa._cubic
  const double a = -0.5;
  x = std::fabs(x);
  const double near = ((a + 2) * x - (a + 3)) * x * x + 1;
  const double far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return x < 1.0 ? near : (x < 2.0 ? far : 0.0);
}
double aa_triangle(double x) {  // resize_aa._triangle
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// resize_aa._weights: taps per output, int16-valued weights and their precision
Coeffs aa_coeffs(int in_size, int out_size, Filter f, int* precision) {
  double (*fn)(double) = f == Filter::bicubic ? aa_cubic : aa_triangle;
  const int interp = f == Filter::bicubic ? 4 : 2;
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? interp * 0.5 * scale : interp * 0.5;
  const int k_max = static_cast<int>(std::ceil(support)) * 2 + 1;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  Coeffs c;
  c.ksize = k_max;
  c.first.resize(out_size);
  c.count.resize(out_size);
  std::vector<double> w(static_cast<size_t>(out_size) * k_max, 0.0);
  double wt_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const int xmin = std::max(static_cast<int>(py_int(center - support + 0.5)), 0);
    const int xsize = std::min(std::max(std::min(static_cast<int>(py_int(center + support + 0.5)), in_size) - xmin, 0), k_max);
    double* wi = &w[static_cast<size_t>(i) * k_max];
    double total = 0.0;
    for (int j = 0; j < xsize; ++j) {
      wi[j] = fn((static_cast<double>(j + xmin) - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0)
      for (int j = 0; j < xsize; ++j) wi[j] = wi[j] / total;
    for (int j = 0; j < k_max; ++j) wt_max = std::max(wt_max, wi[j]);
    c.first[i] = xmin;
    c.count[i] = xsize;
  }
  int p = 0;
  while (p < 22 && static_cast<int64_t>(0.5 + wt_max * static_cast<double>(int64_t{1} << (p + 1))) < (1 << 15)) ++p;
  c.k.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double v = w[i] * static_cast<double>(int64_t{1} << p);
    c.k[i] = static_cast<int32_t>(v < 0 ? std::trunc(v - 0.5) : std::trunc(v + 0.5));
  }
  *precision = p;
  return c;
}

}  // namespace

Rgb torch_resize_aa(const Rgb& src, int w, int h, Filter f) {
  if (f != Filter::bilinear && f != Filter::bicubic) fail_input("torch's uint8 resize has bilinear and bicubic only");
  if (w < 1 || h < 1) fail_input("cannot resize to " + std::to_string(w) + "x" + std::to_string(h));
  Rgb out = src;
  int p = 0;
  if (w != src.w) {
    Coeffs c = aa_coeffs(out.w, w, f, &p);
    out = hpass(out, c, 0, p);
  }
  if (h != src.h) {
    Coeffs c = aa_coeffs(out.h, h, f, &p);
    out = vpass(out, c, 0, p);
  }
  return out;
}

}  // namespace edge::vision
