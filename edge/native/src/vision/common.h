// Internal helpers of edge::vision: the error type thrown inside the library (caught at the API),
// an owned RGB8 image, Python-equal number formatting and rounding, and the budget checks of
// runtime/vision/slice_common.py.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vision.h"

namespace edge::vision {

// Thrown inside the library only; Scheme's public functions turn it into (false, *err, *kind).
struct Failure : std::runtime_error {
  ErrorKind kind;
  Failure(ErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};
[[noreturn]] void fail_input(const std::string& msg);
[[noreturn]] void fail_image(const std::string& msg);
[[noreturn]] void fail_bundle(const std::string& msg);

// An owned RGB8 image, rows packed (width * 3 bytes).
struct Rgb {
  int w = 0, h = 0;
  std::vector<uint8_t> px;
  uint8_t* row(int y) { return px.data() + static_cast<size_t>(y) * w * 3; }
  const uint8_t* row(int y) const { return px.data() + static_cast<size_t>(y) * w * 3; }
};
Rgb copy_image(const Image& image);
// PIL's crop to (l, t, r, b) inside the image (no padding: callers pass boxes inside it)
Rgb crop(const Rgb& src, int l, int t, int r, int b);

// Python's repr() of a float (shortest round trip, "1.0", "1e-05", "inf", "nan")
std::string py_float(double v);
// Python's round(x): half to even
double py_round(double x);
// Python's round(x, ndigits) for a float (correctly rounded decimal, then parsed back)
double py_round_digits(double x, int ndigits);
// Python's int(x) of a float (truncation); refuses non-finite values and overflow
int64_t py_int(double x);

// The optional limits of a budget (None = std::nullopt), after Budget.__post_init__'s checks.
struct Limits {
  std::optional<int64_t> max_tiles, max_image_tokens;
  std::optional<double> max_upscale;
};
// edge.options.Budget.__post_init__ then the C++ "0 = not set" rule
Limits limits_of(const Budget& budget);
void check_limits(const Limits& l);                                           // slice_common.check_limits
bool within(int64_t tiles, int64_t tokens, double upscale, const Limits& l);  // slice_common.within
std::string limits_text(const Limits& l);                                     // slice_common.limits_text
void check_minimum(int64_t min_tokens, const Limits& l, const std::string& what);  // slice_common.check_minimum
// edge.checks.check_int for an image side: "image width must be an integer >= 1, got 0"
void check_side(const char* name, int64_t value);

}  // namespace edge::vision
