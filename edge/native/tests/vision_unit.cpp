// Unit tests of edge::vision's edge cases (ctest edge_vision_unit): images without pixels or of an
// enormous claimed size, budgets below the smallest plan, bad manifests, row strides, layout input
// checks. The golden vectors (edge-vision-golden) cover plans and pixels.
#include <cstdio>
#include <string>
#include <vector>

#include "vision.h"

using nlohmann::json;
namespace ev = edge::vision;

static int failures = 0;
#define CHECK(cond, what)                                             \
  do {                                                                \
    if (!(cond)) {                                                    \
      ++failures;                                                     \
      std::printf("FAIL %s:%d %s\n", __FILE__, __LINE__, what);       \
    }                                                                 \
  } while (0)

static json vision(json pp, int tokens = 16) { return {{"embed_dim", 4}, {"tokens_per_image", tokens}, {"preprocess", pp}}; }

static std::unique_ptr<ev::Scheme> make(const json& v, std::string* err = nullptr, ev::ErrorKind* kind = nullptr) {
  std::string e;
  return ev::Scheme::create(v, ".", err ? err : &e, kind);
}

int main() {
  const json idefics3 = {{"scheme", "idefics3"}, {"longest_edge", 96}, {"tile_size", 32}, {"tokens_per_tile", 16}};
  const json gemma3 = {{"scheme", "gemma3"}, {"image_size", 32}, {"tokens_per_image", 16}};
  const json qwen = {{"scheme", "qwen2vl"}, {"patch_size", 4}, {"min_pixels", 256}, {"max_pixels", 16384}};
  const json clip = {{"scheme", "clip"}, {"image_size", 8}, {"shortest_edge", 8}, {"crop_height", 8}, {"crop_width", 8}};
  std::vector<uint8_t> px(64 * 48 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 31 % 251);
  const ev::Image img{64, 48, px.data(), 0};

  for (const json& pp : {idefics3, gemma3, qwen, clip}) {
    auto s = make(vision(pp));
    CHECK(s != nullptr, "scheme created");
    if (!s) continue;
    ev::Tiles t;
    std::string err;
    ev::ErrorKind kind;
    // 0x0 and a null buffer: an ImageError, nothing read
    CHECK(!s->plan({0, 0, px.data(), 0}, {}, &t, &err, &kind) && kind == ev::ErrorKind::image, "0x0 refused");
    CHECK(err == "the image array has no pixels (size 0x0)", err.c_str());
    CHECK(!s->plan({4, 4, nullptr, 0}, {}, &t, &err, &kind) && kind == ev::ErrorKind::image, "null buffer refused");
    CHECK(!s->plan({1 << 30, 1 << 30, px.data(), 0}, {}, &t, &err, &kind) && kind == ev::ErrorKind::image, "huge claimed size");
    CHECK(!s->plan({8, 8, px.data(), 5}, {}, &t, &err, &kind) && kind == ev::ErrorKind::image, "stride below width*3");
    // budgets: below the smallest plan, negative
    ev::Budget tiny;
    tiny.max_image_tokens = 1;
    CHECK(!s->plan(img, tiny, &t, &err, &kind) && kind == ev::ErrorKind::input, "max_image_tokens=1 refused");
    CHECK(err.find("below") != std::string::npos, err.c_str());
    ev::Budget neg;
    neg.max_tiles = -3;
    CHECK(!s->plan(img, neg, &t, &err, &kind) && err == "max-tiles must be at least 1, got -3", err.c_str());
    // a plan, then a layout with the wrong number of floats
    CHECK(s->plan(img, {}, &t, &err, &kind), err.c_str());
    std::vector<float> e(static_cast<size_t>(t.runs) * t.rows_per_run * 4, 0.5f);
    std::vector<ev::Block> blocks;
    CHECK(!s->layout(t, e.data(), e.size() - 1, &blocks, &err, &kind) && kind == ev::ErrorKind::input, "short embeds refused");
    CHECK(s->layout(t, e.data(), e.size(), &blocks, &err, &kind) && !blocks.empty(), err.c_str());
    // a padded row stride gives the pixels of the packed image
    std::vector<uint8_t> padded(48 * (64 * 3 + 7));
    for (int y = 0; y < 48; ++y)
      for (int x = 0; x < 64 * 3; ++x) padded[y * (64 * 3 + 7) + x] = px[y * 64 * 3 + x];
    ev::Tiles t2;
    CHECK(s->plan({64, 48, padded.data(), 64 * 3 + 7}, {}, &t2, &err, &kind) && t2.data == t.data, "stride honoured");
  }
  // max_upscale below 1 where the scheme applies it; qwen2vl reports it as not applicable
  {
    ev::Budget b;
    b.max_upscale = 0.5;
    ev::Tiles t;
    std::string err;
    ev::ErrorKind kind;
    CHECK(!make(vision(idefics3))->plan(img, b, &t, &err, &kind) &&
              err == "max_upscale must be a number >= 1.0 (1.0: never enlarge), got 0.5", err.c_str());
    CHECK(make(vision(qwen))->plan(img, b, &t, &err, &kind) && t.plan.at("budget_not_applicable")[0] == "max_upscale", "qwen");
  }
  // bad manifests: a BundleError each, never a crash
  const std::vector<json> bad = {
      json::array(),
      vision({{"scheme", "nope"}}),
      vision({{"scheme", 3}}),
      {{"preprocess", idefics3}},
      vision({{"scheme", "idefics3"}, {"tile_size", "big"}}),
      vision({{"scheme", "idefics3"}, {"tile_size", -1}}),
      vision({{"scheme", "idefics3"}, {"tile_size", 1e300}}),
      vision({{"scheme", "idefics3"}, {"tile_size", 99999999999999}}),
      vision({{"scheme", "idefics3"}, {"mean", {1, 2}}}),
      vision({{"scheme", "idefics3"}, {"std", {1, 0, 1}}}),
      vision({{"scheme", "idefics3"}, {"resample", "cubic"}}),
      vision({{"scheme", "idefics3"}, {"surprise", true}}),
      vision({{"scheme", "anyres"}}),  // no image_newline extra
      {{"embed_dim", 4}, {"tokens_per_image", 4}, {"preprocess", {{"scheme", "anyres"}}}, {"extras", {{"image_newline", "missing.npy"}}}},
      vision({{"scheme", "anyres"}, {"grid_pinpoints", {{336, 500}}}}),
      vision({{"scheme", "qwen2vl"}, {"max_pixels", 10}}),
      vision({{"scheme", "qwen2vl"}, {"window_patches", 3}}),
      vision({{"scheme", "gemma3"}, {"do_resize", false}}),
      vision({{"scheme", "clip"}, {"image_size", 8}}),
      vision({{"scheme", "uhd"}}),  // the Python runtime has no UHD scheme either
  };
  for (const json& v : bad) {
    std::string err;
    ev::ErrorKind kind = ev::ErrorKind::none;
    auto s = make(v, &err, &kind);
    CHECK(!s && kind == ev::ErrorKind::bundle && !err.empty() && err.find('\n') == std::string::npos, v.dump().c_str());
  }
  std::printf("%s\n", failures ? "edge_vision_unit: FAILED" : "edge_vision_unit: ok");
  return failures ? 1 : 0;
}
