// Internal helpers; see common.h. Budget checks port runtime/vision/slice_common.py.
#include "common.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace edge::vision {

void fail_input(const std::string& msg) { throw Failure(ErrorKind::input, msg); }
void fail_image(const std::string& msg) { throw Failure(ErrorKind::image, msg); }
void fail_bundle(const std::string& msg) { throw Failure(ErrorKind::bundle, msg); }

Rgb copy_image(const Image& image) {
  Rgb out;
  out.w = image.width;
  out.h = image.height;
  const size_t row = static_cast<size_t>(image.width) * 3;
  const size_t stride = image.stride ? image.stride : row;
  out.px.resize(row * static_cast<size_t>(image.height));
  for (int y = 0; y < image.height; ++y) std::memcpy(out.row(y), image.rgb + stride * y, row);
  return out;
}

Rgb crop(const Rgb& src, int l, int t, int r, int b) {
  Rgb out;
  out.w = r - l;
  out.h = b - t;
  out.px.resize(static_cast<size_t>(out.w) * out.h * 3);
  for (int y = 0; y < out.h; ++y) std::memcpy(out.row(y), src.row(t + y) + static_cast<size_t>(l) * 3, out.w * 3);
  return out;
}

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // shortest digits that round-trip (float_repr_style 'short')
  char buf[64];
  int digits = 1;
  for (; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf is d.ddde[+-]XX: split mantissa digits and exponent
  std::string s(buf);
  bool neg = s[0] == '-';
  if (neg) s = s.substr(1);
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  std::string mant;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') mant += s[i];
  while (mant.size() > 1 && mant.back() == '0') mant.pop_back();
  std::string out;
  if (exp < -4 || exp >= 16) {  // repr's switch to scientific notation
    out = mant.substr(0, 1);
    if (mant.size() > 1) out += "." + mant.substr(1);
    char ex[16];
    std::snprintf(ex, sizeof ex, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += ex;
  } else if (exp < 0) {
    out = "0." + std::string(-exp - 1, '0') + mant;
  } else {
    if (static_cast<int>(mant.size()) <= exp + 1) {
      out = mant + std::string(exp + 1 - mant.size(), '0') + ".0";
    } else {
      out = mant.substr(0, exp + 1) + "." + mant.substr(exp + 1);
    }
  }
  return neg ? "-" + out : out;
}

double py_round(double x) { return std::nearbyint(x); }  // default FE_TONEAREST: half to even

double py_round_digits(double x, int ndigits) {
  if (!std::isfinite(x)) return x;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", ndigits, x);  // glibc: exact value, half to even
  return std::strtod(buf, nullptr);
}

int64_t py_int(double x) {
  if (!std::isfinite(x) || std::fabs(x) >= 9.2e18) fail_input("a size computation overflowed");
  return static_cast<int64_t>(x);
}

Limits limits_of(const Budget& b) {
  Limits l;
  if (b.max_tiles < 0) fail_input("max-tiles must be at least 1, got " + std::to_string(b.max_tiles));
  if (b.max_image_tokens < 0)
    fail_input("max-image-tokens must be at least 1, got " + std::to_string(b.max_image_tokens));
  if (b.max_upscale != 0 && !(b.max_upscale > 0)) fail_input("max-upscale must be positive, got " + py_float(b.max_upscale));
  if (b.max_tiles) l.max_tiles = b.max_tiles;
  if (b.max_image_tokens) l.max_image_tokens = b.max_image_tokens;
  if (b.max_upscale != 0) l.max_upscale = b.max_upscale;
  return l;
}

void check_limits(const Limits& l) {
  if (l.max_upscale && (!std::isfinite(*l.max_upscale) || *l.max_upscale < 1.0))
    fail_input("max_upscale must be a number >= 1.0 (1.0: never enlarge), got " + py_float(*l.max_upscale));
}

bool within(int64_t tiles, int64_t tokens, double upscale, const Limits& l) {
  return (!l.max_tiles || tiles <= *l.max_tiles) && (!l.max_image_tokens || tokens <= *l.max_image_tokens) &&
         (!l.max_upscale || upscale <= *l.max_upscale + 1e-9);
}

std::string limits_text(const Limits& l) {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (l.max_tiles) add("max_tiles=" + std::to_string(*l.max_tiles));
  if (l.max_image_tokens) add("max_image_tokens=" + std::to_string(*l.max_image_tokens));
  if (l.max_upscale) add("max_upscale=" + py_float(*l.max_upscale));
  return out;
}

void check_minimum(int64_t min_tokens, const Limits& l, const std::string& what) {
  if (l.max_image_tokens && *l.max_image_tokens < min_tokens)
    fail_input("max_image_tokens=" + std::to_string(*l.max_image_tokens) + " is below the " +
               std::to_string(min_tokens) + " tokens of the smallest possible plan (" + what + ")");
}

void check_side(const char* name, int64_t value) {
  if (value < 1) fail_input(std::string(name) + " must be an integer >= 1, got " + std::to_string(value));
}

}  // namespace edge::vision
