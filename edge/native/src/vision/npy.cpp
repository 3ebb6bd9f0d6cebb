// .npy reading; see npy.h (numpy's lib/format.py defines the layout).
#include "npy.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common.h"

namespace edge::vision {

static float half_to_float(uint16_t h) {  // IEEE binary16 -> float32, exact
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(static_cast<float>(mant | 1024), exp - 25);
  return sign ? -v : v;
}

std::vector<float> load_npy_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_bundle("the vision extra " + path + " is missing");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  auto bad = [&](const std::string& why) { fail_bundle("the vision extra " + path + " is not a valid .npy file: " + why); };
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) bad("no .npy magic");
  const int major = static_cast<unsigned char>(data[6]);
  size_t hlen = 0, start = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) bad("truncated header");
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(data[8 + i])) << (8 * i);
    start = 12;
  } else {
    bad("unknown version " + std::to_string(major));
  }
  if (start + hlen > data.size()) bad("truncated header");
  const std::string header = data.substr(start, hlen);
  auto field = [&](const std::string& key) {
    const size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) bad("no " + key + " in the header");
    return header.substr(header.find(':', k) + 1);
  };
  const std::string descr = field("descr"), order = field("fortran_order"), shape = field("shape");
  int width = 0;
  if (descr.find("'<f4'") != std::string::npos) width = 4;
  else if (descr.find("'<f8'") != std::string::npos) width = 8;
  else if (descr.find("'<f2'") != std::string::npos) width = 2;
  else bad("dtype is not little-endian float16/32/64");
  if (order.find("False") != 0 && order.find(" False") != 0) bad("fortran order");
  // shape: "(N,)" for a 1-D array
  const size_t open = shape.find('('), close = shape.find(')');
  if (open == std::string::npos || close == std::string::npos) bad("no shape");
  const std::string dims = shape.substr(open + 1, close - open - 1);
  const size_t comma = dims.find(',');
  if (comma == std::string::npos || dims.find_first_not_of(" ", comma + 1) != std::string::npos) bad("the array is not 1-D");
  const long long n = std::atoll(dims.substr(0, comma).c_str());
  if (n < 1 || n > 100000000) bad("bad length");
  const size_t body = start + hlen;
  if (data.size() - body < static_cast<size_t>(n) * width) bad("truncated data");
  std::vector<float> out(static_cast<size_t>(n));
  const char* p = data.data() + body;
  for (long long i = 0; i < n; ++i) {
    if (width == 4) std::memcpy(&out[i], p + i * 4, 4);
    else if (width == 8) {
      double d;
      std::memcpy(&d, p + i * 8, 8);
      out[i] = static_cast<float>(d);
    } else {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      out[i] = half_to_float(h);
    }
  }
  return out;
}

}  // namespace edge::vision
