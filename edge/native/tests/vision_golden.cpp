// edge-vision-golden DIR: recomputes every case of the golden vectors that tests/native/golden_vectors.py
// wrote into DIR (index.json, arrays.bin, *.rgb) with edge::vision and compares: plans and layouts
// exactly (JSON equality), pixel values, feeds and layout blocks bit for bit (float32 bit patterns),
// errors by kind and message. Prints one line per failure and a JSON summary; exit 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "uhd.h"
#include "vision.h"

using nlohmann::json;
namespace ev = edge::vision;

namespace {

std::string dir;
std::string blob;
std::map<std::string, std::map<std::string, int>> stats;  // group -> counter -> n
int failures = 0;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void fail(const json& c, const std::string& what) {
  ++failures;
  if (failures <= 40) std::printf("FAIL %s: %s\n", c.value("id", "?").c_str(), what.c_str());
}

size_t count(const json& a) {
  size_t n = 1;
  for (const auto& d : a.at("shape")) n *= d.get<size_t>();
  return n;
}
template <class T>
const T* data(const json& a) {
  return reinterpret_cast<const T*>(blob.data() + a.at("offset").get<size_t>());
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

uint64_t digest(const float* v, size_t n) {  // golden_vectors.digest
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    const uint64_t w = (static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) | 1ull;
    sum += static_cast<uint64_t>(bits) * w;
  }
  return sum;
}

// float32 arrays bit for bit; on a mismatch the max abs difference
bool same_floats(const json& c, const std::string& what, const json& want, const float* got, size_t n) {
  std::vector<int64_t> shape = want.at("shape").get<std::vector<int64_t>>();
  size_t wn = 1;
  for (auto d : shape) wn *= static_cast<size_t>(d);
  if (wn != n) {
    fail(c, what + ": " + std::to_string(n) + " values, expected " + std::to_string(wn));
    return false;
  }
  if (want.contains("digest")) {
    const size_t step = want.at("sample_step").get<size_t>();
    const float* s = data<float>(want);
    double diff = 0;
    for (size_t i = 0, k = 0; i < n; i += step, ++k) diff = std::max(diff, std::fabs(double(s[k]) - double(got[i])));
    if (std::to_string(digest(got, n)) != want.at("digest").get<std::string>()) {
      fail(c, what + ": digest differs (max abs diff on the sample " + fmt(diff) + ")");
      return false;
    }
    return true;
  }
  const float* w = data<float>(want);
  if (std::memcmp(w, got, n * 4) == 0) return true;
  double diff = 0;
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(&w[i], &got[i], 4)) {
      ++bad;
      diff = std::max(diff, std::fabs(double(w[i]) - double(got[i])));
    }
  fail(c, what + ": " + std::to_string(bad) + " of " + std::to_string(n) + " values differ, max abs diff " + fmt(diff));
  return false;
}

bool same_error(const json& c, bool ok, const std::string& err, ev::ErrorKind kind) {
  static const char* names[] = {"none", "input", "image", "bundle", "internal"};
  const json& e = c.at("error");
  if (ok) return fail(c, "expected the error: " + e.at("message").get<std::string>()), false;
  if (names[static_cast<int>(kind)] != e.at("kind").get<std::string>())
    return fail(c, std::string("error kind ") + names[static_cast<int>(kind)] + ", expected " + e.at("kind").get<std::string>()), false;
  if (err != e.at("message").get<std::string>())
    return fail(c, "message '" + err + "', expected '" + e.at("message").get<std::string>() + "'"), false;
  return true;
}

ev::Budget budget_of(const json& b) {
  ev::Budget out;
  out.max_tiles = b.value("max_tiles", 0);
  out.max_image_tokens = b.value("max_image_tokens", 0);
  out.max_upscale = b.value("max_upscale", 0.0);
  return out;
}

std::vector<float> fake_embeds(int64_t runs, int64_t rows, int64_t dim) {  // golden_vectors.fake_embeds
  std::vector<float> e(static_cast<size_t>(runs * rows * dim));
  for (size_t k = 0; k < e.size(); ++k) e[k] = static_cast<float>((k * 7919) % 1000) / 997.0f;
  return e;
}

void check_scheme(const json& c, const std::string& group) {
  auto& st = stats[group];
  std::string err;
  ev::ErrorKind kind = ev::ErrorKind::none;
  auto scheme = ev::Scheme::create(c.at("vision"), dir, &err, &kind);
  if (!scheme) return fail(c, "create: " + err);
  const std::string rgb = read_file(dir + "/" + c.at("image").get<std::string>());
  ev::Image im{c.at("width").get<int>(), c.at("height").get<int>(), reinterpret_cast<const uint8_t*>(rgb.data()), 0};
  ev::Tiles t;
  const bool ok = scheme->plan(im, budget_of(c.at("budget")), &t, &err, &kind);
  if (c.contains("error")) {
    st["errors"]++;
    if (same_error(c, ok, err, kind)) st["errors_same"]++;
    return;
  }
  if (!ok) return fail(c, "plan: " + err);
  st["plans"]++;
  if (t.plan != c.at("info")) return fail(c, "plan info " + t.plan.dump() + ", expected " + c.at("info").dump());
  if (t.shape != c.at("shape").get<std::vector<int64_t>>()) return fail(c, "pixel_values shape differs");
  st["plans_same"]++;
  if (c.contains("pixels")) {
    st["pixel_arrays"]++;
    if (same_floats(c, "pixels", c.at("pixels"), t.data.data(), t.data.size())) st["pixel_arrays_same"]++;
  }
  if (c.contains("feeds")) {
    st["feeds"]++;
    bool all = t.run_shape == c.at("run_shape").get<std::vector<int64_t>>();
    if (!all) fail(c, "run_shape differs");
    for (const auto& x : t.extra_inputs) {
      const json& want = c.at("feeds").at(x.name);
      if (x.shape != want.at("shape").get<std::vector<int64_t>>()) {
        all = false;
        fail(c, "feed " + x.name + " shape differs");
      } else if (x.dtype == ev::Tensor::DType::i64) {
        if (want.at("dtype") != "i64" || std::memcmp(data<int64_t>(want), x.i64.data(), x.i64.size() * 8)) {
          all = false;
          fail(c, "feed " + x.name + " values differ");
        }
      } else {
        all = same_floats(c, "feed " + x.name, want, x.f32.data(), x.f32.size()) && all;
      }
    }
    if (t.extra_inputs.size() != c.at("feeds").size()) all = false, fail(c, "feed count differs");
    if (all) st["feeds_same"]++;
  }
  // layout over the fake embeddings
  if (t.runs != c.at("runs").get<int>() || t.rows_per_run != c.at("rows_per_run").get<int>())
    return fail(c, "runs/rows_per_run differ");
  const int64_t dim = scheme->embed_dim();
  const auto e = fake_embeds(t.runs, t.rows_per_run, dim);
  std::vector<ev::Block> blocks;
  if (!scheme->layout(t, e.data(), e.size(), &blocks, &err, &kind)) return fail(c, "layout: " + err);
  st["layouts"]++;
  const json& want = c.at("layout");
  if (blocks.size() != want.size()) return fail(c, "layout has " + std::to_string(blocks.size()) + " pieces, expected " + std::to_string(want.size()));
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& b = blocks[i];
    const json& w = want[i];
    if (w.contains("text")) {
      if (b.kind != ev::Block::Kind::text || b.text != w.at("text").get<std::string>()) return fail(c, "layout text piece " + std::to_string(i) + " differs");
      continue;
    }
    if (b.kind != ev::Block::Kind::embeddings || b.index != w.at("block").get<int>()) return fail(c, "layout piece " + std::to_string(i) + " is not the right block");
    const auto shape = w.at("shape").get<std::vector<int64_t>>();
    if (shape.size() != 2 || shape[0] != b.rows || shape[1] != b.dim) return fail(c, "block shape differs");
    if (!same_floats(c, "block", w, b.data.data(), b.data.size())) return;
    if (w.contains("positions")) {
      const json& p = w.at("positions");
      if (b.positions.size() != count(p) || std::memcmp(data<int64_t>(p), b.positions.data(), b.positions.size() * 8))
        return fail(c, "M-RoPE positions differ");
    } else if (!b.positions.empty()) {
      return fail(c, "unexpected positions");
    }
  }
  st["layouts_same"]++;
}

void check_uhd(const json& c) {
  auto& st = stats["uhd"];
  try {
    const ev::UhdParams p = ev::uhd_params(c.at("params"));
    ev::Budget b = budget_of(c.at("budget"));
    ev::UhdPlan plan;
    try {
      plan = ev::plan_uhd(c.at("width"), c.at("height"), p, ev::limits_of(b));
    } catch (const ev::Failure& f) {
      if (!c.contains("error")) return fail(c, std::string("plan: ") + f.what());
      st["errors"]++;
      if (same_error(c, false, f.what(), f.kind)) st["errors_same"]++;
      return;
    }
    if (c.contains("error")) return fail(c, "expected an error");
    st["plans"]++;
    if (ev::to_json(plan) != c.at("plan")) return fail(c, "plan " + ev::to_json(plan).dump() + ", expected " + c.at("plan").dump());
    st["plans_same"]++;
    const ev::Layout l = ev::uhd_layout(plan, p, c.at("image_index"));
    json got = json::array();
    for (const auto& piece : l) got.push_back(piece.is_text ? json{{"text", piece.text}} : json{{"block", piece.index}});
    st["layouts"]++;
    if (got != c.at("layout")) return fail(c, "layout " + got.dump());
    st["layouts_same"]++;
    if (!c.contains("frames")) return;
    const std::string rgb = read_file(dir + "/" + c.at("image").get<std::string>());
    ev::Rgb im = ev::copy_image({c.at("width"), c.at("height"), reinterpret_cast<const uint8_t*>(rgb.data()), 0});
    std::vector<std::vector<float>> frames;
    std::vector<ev::Size> sizes;
    ev::apply_uhd(im, plan, p, &frames, &sizes);
    if (frames.size() != c.at("frames").size()) return fail(c, "frame count differs");
    for (size_t i = 0; i < frames.size(); ++i) {
      st["pixel_arrays"]++;
      if (same_floats(c, "frame " + std::to_string(i), c.at("frames")[i], frames[i].data(), frames[i].size())) st["pixel_arrays_same"]++;
    }
  } catch (const std::exception& e) {
    fail(c, std::string("exception: ") + e.what());
  }
}

void check_resize(const json& c) {
  auto& st = stats[c.at("engine").get<std::string>() + "_resize"];
  const std::string rgb = read_file(dir + "/" + c.at("image").get<std::string>());
  ev::Rgb im = ev::copy_image({c.at("width"), c.at("height"), reinterpret_cast<const uint8_t*>(rgb.data()), 0});
  ev::Filter f;
  ev::filter_from_name(c.at("filter"), &f);
  const int w = c.at("out")[0], h = c.at("out")[1];
  const ev::Rgb out = c.at("engine") == "pil" ? ev::pil_resize(im, w, h, f) : ev::torch_resize_aa(im, w, h, f);
  st["arrays"]++;
  const json& want = c.at("expect");
  if (out.px.size() != count(want) || std::memcmp(data<uint8_t>(want), out.px.data(), out.px.size())) {
    size_t bad = 0;
    int diff = 0;
    for (size_t i = 0; i < out.px.size() && i < count(want); ++i)
      if (out.px[i] != data<uint8_t>(want)[i]) ++bad, diff = std::max(diff, std::abs(int(out.px[i]) - int(data<uint8_t>(want)[i])));
    return fail(c, std::to_string(bad) + " bytes differ, max " + std::to_string(diff));
  }
  st["arrays_same"]++;
}

void check_image_error(const json& c) {
  auto& st = stats["image_errors"];
  const json vision = {{"embed_dim", 4}, {"tokens_per_image", 4},
                       {"preprocess", {{"scheme", "clip"}, {"image_size", 8}, {"shortest_edge", 8}, {"crop_height", 8}, {"crop_width", 8}}}};
  std::string err;
  ev::ErrorKind kind;
  auto scheme = ev::Scheme::create(vision, dir, &err, &kind);
  if (!scheme) return fail(c, "create: " + err);
  static const uint8_t byte = 0;
  ev::Tiles t;
  const bool ok = scheme->plan({c.at("width"), c.at("height"), &byte, 0}, {}, &t, &err, &kind);
  st["errors"]++;
  if (same_error(c, ok, err, kind)) st["errors_same"]++;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: edge-vision-golden DIR\n");
    return 2;
  }
  dir = argv[1];
  json index;
  try {
    index = json::parse(read_file(dir + "/index.json"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot read %s/index.json: %s\n", dir.c_str(), e.what());
    return 2;
  }
  blob = read_file(dir + "/arrays.bin");
  for (const json& c : index.at("cases")) {
    const std::string kind = c.at("kind");
    try {
      if (kind == "scheme") check_scheme(c, c.at("vision").at("preprocess").at("scheme").get<std::string>());
      else if (kind == "uhd") check_uhd(c);
      else if (kind == "resize") check_resize(c);
      else if (kind == "image_error") check_image_error(c);
      else fail(c, "unknown case kind " + kind);
    } catch (const std::exception& e) {
      fail(c, std::string("checker exception: ") + e.what());
    }
  }
  json summary = {{"failures", failures}, {"groups", stats}};
  std::printf("%s\n", summary.dump().c_str());
  return failures ? 1 : 0;
}
