// Idefics3 / SmolVLM splitting and Gemma 3 pan-and-scan: ports of runtime/vision/slice_idefics3.py
// (_longest_edge_size, _tile_multiple_size, _plan, _fits, _edge_steps, plan_idefics3, apply_idefics3,
// idefics3_layout) and runtime/vision/slice_gemma3.py (pan_and_scan_boxes, _plan, plan_gemma3,
// apply_gemma3, gemma3_layout), and slice_common.merge_text.
#include <cmath>
#include <set>

#include "plans.h"

namespace edge::vision {

using nlohmann::json;

void add_text(Layout* l, const std::string& text) {
  if (text.empty()) return;
  if (!l->empty() && l->back().is_text) {
    l->back().text += text;
    return;
  }
  l->push_back({true, text, -1});
}
void add_block(Layout* l, int index) { l->push_back({false, "", index}); }

static json boxes_json(const std::vector<Box>& boxes) {
  json a = json::array();
  for (const Box& b : boxes) a.push_back({b[0], b[1], b[2], b[3]});
  return a;
}

// ---- slice_idefics3.py ----

constexpr int kMaxImageSize = 4096;  // image_processing_idefics3.MAX_IMAGE_SIZE

static Size longest_edge_size(int64_t w, int64_t h, int64_t max_len) {
  double aspect = static_cast<double>(w) / h;
  if (w >= h) {
    w = max_len;
    h = py_int(w / aspect);
    h += h % 2;
  } else {
    h = max_len;
    w = py_int(h * aspect);
    w += w % 2;
  }
  h = std::max<int64_t>(h, 1);
  w = std::max<int64_t>(w, 1);
  aspect = static_cast<double>(w) / h;
  if (w >= h && w > kMaxImageSize) {
    w = kMaxImageSize;
    h = py_int(w / aspect);
  } else if (h > w && h > kMaxImageSize) {
    h = kMaxImageSize;
    w = py_int(h * aspect);
  }
  return {static_cast<int>(std::max<int64_t>(w, 1)), static_cast<int>(std::max<int64_t>(h, 1))};
}

static Size tile_multiple_size(int64_t w, int64_t h, int64_t tile) {  // resize_for_vision_encoder
  const double aspect = static_cast<double>(w) / h;
  if (w >= h) {
    w = py_int(std::ceil(static_cast<double>(w) / tile)) * tile;
    h = py_int(w / aspect);
    h = py_int(std::ceil(static_cast<double>(h) / tile)) * tile;
  } else {
    h = py_int(std::ceil(static_cast<double>(h) / tile)) * tile;
    w = py_int(h * aspect);
    w = py_int(std::ceil(static_cast<double>(w) / tile)) * tile;
  }
  if (w > 1000000 || h > 1000000) fail_input("the image's aspect ratio makes its tile canvas too large");
  return {static_cast<int>(w), static_cast<int>(h)};
}

static Idefics3Plan idefics3_plan(Size source, const Idefics3Params& p, std::optional<int64_t> edge) {
  const int tile = p.tile_size;
  Idefics3Plan plan;
  plan.source = source;
  plan.resized = edge ? longest_edge_size(source[0], source[1], *edge) : source;
  if (!p.do_image_splitting) {
    plan.canvas = {tile, tile};
  } else {
    plan.canvas = tile_multiple_size(plan.resized[0], plan.resized[1], tile);
    const int cw = plan.canvas[0], ch = plan.canvas[1];
    if (ch > tile || cw > tile) {  // split_image
      const int rows = static_cast<int>(std::ceil(static_cast<double>(ch) / tile));
      const int cols = static_cast<int>(std::ceil(static_cast<double>(cw) / tile));
      const int oh = static_cast<int>(std::ceil(static_cast<double>(ch) / rows));
      const int ow = static_cast<int>(std::ceil(static_cast<double>(cw) / cols));
      plan.grid = {rows, cols};
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
          const int x = c * ow, y = r * oh;
          plan.tile_boxes.push_back({x, y, std::min(x + ow, cw), std::min(y + oh, ch)});
        }
    }
  }
  plan.tiles = static_cast<int64_t>(plan.tile_boxes.size()) + 1;
  plan.global_size = {tile, tile};
  const int longest = std::max(source[0], source[1]);
  plan.longest_edge = edge ? *edge : longest;
  plan.upscale = edge ? static_cast<double>(*edge) / longest : 1.0;
  plan.image_tokens = plan.tiles * p.tokens_per_tile;
  return plan;
}

static bool idefics3_fits(const Idefics3Plan& plan, const Limits& l) {
  return within(plan.tiles, plan.image_tokens, plan.tile_boxes.empty() ? 0.0 : plan.upscale, l);
}

Idefics3Plan plan_idefics3(int width, int height, const Idefics3Params& p, const Limits& l) {
  check_side("image width", width);
  check_side("image height", height);
  check_limits(l);
  check_minimum(p.tokens_per_tile, l, "the global image alone");
  const Size source{width, height};
  const Idefics3Plan first = idefics3_plan(source, p, p.do_resize ? std::optional<int64_t>(p.longest_edge) : std::nullopt);
  if (idefics3_fits(first, l)) return first;
  const int64_t default_edge = p.do_resize ? p.longest_edge : std::max(width, height);
  std::vector<int64_t> steps;  // _edge_steps, below the default edge
  for (int64_t e = p.longest_edge; e > p.tile_size; e -= p.tile_size)
    if (e < default_edge) steps.push_back(e);
  if (p.tile_size < default_edge) steps.push_back(p.tile_size);
  if (steps.empty()) steps.push_back(p.tile_size);
  Idefics3Plan plan = first;
  for (int64_t e : steps) {
    plan = idefics3_plan(source, p, e);
    if (idefics3_fits(plan, l)) break;
  }
  plan.reason = limits_text(l) + ": longest edge " + std::to_string(default_edge) + " -> " + std::to_string(plan.longest_edge) +
                ", grid " + std::to_string(first.grid[0]) + "x" + std::to_string(first.grid[1]) + " -> " +
                std::to_string(plan.grid[0]) + "x" + std::to_string(plan.grid[1]);
  plan.budget_applied = true;
  return plan;
}

void apply_idefics3(const Rgb& image, const Idefics3Plan& plan, const Idefics3Params& p, std::vector<float>* out) {
  const Filter f = filter_of(p.resample);
  Rgb rgb = plan.resized != plan.source ? pil_resize(image, plan.resized[0], plan.resized[1], f) : image;
  Rgb canvas = pil_resize(rgb, plan.canvas[0], plan.canvas[1], f);
  for (const Box& b : plan.tile_boxes) append_values(crop(canvas, b[0], b[1], b[2], b[3]), p.norm, out);
  if (!plan.tile_boxes.empty() && plan.canvas != plan.global_size)
    append_values(pil_resize(canvas, plan.global_size[0], plan.global_size[1], f), p.norm, out);
  else
    append_values(canvas, p.norm, out);
}

json to_json(const Idefics3Plan& p) {
  return {{"source", p.source}, {"resized", p.resized}, {"canvas", p.canvas}, {"grid", p.grid},
          {"tile_boxes", boxes_json(p.tile_boxes)}, {"global_size", p.global_size}, {"longest_edge", p.longest_edge},
          {"upscale", p.upscale}, {"tiles", p.tiles}, {"image_tokens", p.image_tokens},
          {"budget_applied", p.budget_applied}, {"reason", p.reason}};
}

Layout idefics3_layout(int rows, int cols, const Idefics3Params& p) {
  Layout l;
  const std::string& fake = p.fake_image_token;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      add_text(&l, fake + "<row_" + std::to_string(r + 1) + "_col_" + std::to_string(c + 1) + ">");
      add_block(&l, r * cols + c);
    }
    add_text(&l, "\n");
  }
  add_text(&l, rows ? "\n" : "");
  add_text(&l, fake + p.global_image_token);
  add_block(&l, rows * cols);
  add_text(&l, fake);
  return l;
}

// ---- slice_gemma3.py ----

std::vector<Box> pan_and_scan_boxes(int width, int height, int min_crop, int max_crops, double min_ratio) {
  int64_t n_w = 1, n_h = 1;
  if (width >= height) {
    if (static_cast<double>(width) / height < min_ratio) return {};
    n_w = py_int(std::floor(static_cast<double>(width) / height + 0.5));
    n_w = std::min<int64_t>(std::max<int64_t>(2, std::min(py_int(std::floor(static_cast<double>(width) / min_crop)), n_w)), max_crops);
  } else {
    if (static_cast<double>(height) / width < min_ratio) return {};
    n_h = py_int(std::floor(static_cast<double>(height) / width + 0.5));
    n_h = std::min<int64_t>(std::max<int64_t>(2, std::min(py_int(std::floor(static_cast<double>(height) / min_crop)), n_h)), max_crops);
  }
  const int cw = static_cast<int>(py_int(std::ceil(static_cast<double>(width) / n_w)));
  const int ch = static_cast<int>(py_int(std::ceil(static_cast<double>(height) / n_h)));
  if (std::min(cw, ch) < min_crop) return {};
  std::vector<Box> boxes;
  for (int64_t i = 0; i < n_h; ++i)
    for (int64_t j = 0; j < n_w; ++j) {
      const int top = static_cast<int>(ch * i), left = static_cast<int>(cw * j);
      boxes.push_back({left, top, std::min(left + cw, width), std::min(top + ch, height)});
    }
  return boxes;
}

static Gemma3Plan gemma3_plan(Size source, const Gemma3Params& p, int max_crops) {
  Gemma3Plan plan;
  plan.source = source;
  if (p.do_pan_and_scan && max_crops >= 2)
    plan.crop_boxes = pan_and_scan_boxes(source[0], source[1], p.pan_and_scan_min_crop_size, max_crops,
                                         p.pan_and_scan_min_ratio_to_activate);
  std::set<int> tops, lefts;
  for (const Box& b : plan.crop_boxes) {
    lefts.insert(b[0]);
    tops.insert(b[1]);
  }
  plan.grid = {static_cast<int>(tops.size()), static_cast<int>(lefts.size())};
  plan.frame_size = {p.image_size, p.image_size};
  plan.tiles = 1 + static_cast<int64_t>(plan.crop_boxes.size());
  plan.image_tokens = plan.tiles * p.tokens_per_image;
  return plan;
}

Gemma3Plan plan_gemma3(int width, int height, const Gemma3Params& p, const Limits& l) {
  check_side("image width", width);
  check_side("image height", height);
  check_limits(l);
  check_minimum(p.tokens_per_image, l, "the image without crops");
  const Gemma3Plan first = gemma3_plan({width, height}, p, p.pan_and_scan_max_num_crops);
  Limits tl = l;
  tl.max_upscale.reset();  // max_upscale does not apply
  if (within(first.tiles, first.image_tokens, 1.0, tl)) return first;
  Gemma3Plan plan = first;
  for (int crops = p.pan_and_scan_max_num_crops - 1; crops >= 0; --crops) {
    plan = gemma3_plan(first.source, p, crops);
    if (within(plan.tiles, plan.image_tokens, 1.0, tl)) break;
  }
  plan.reason = limits_text(tl) + ": crops " + std::to_string(first.tiles - 1) + " -> " + std::to_string(plan.tiles - 1);
  plan.budget_applied = true;
  return plan;
}

void apply_gemma3(const Rgb& rgb, const Gemma3Plan& plan, const Gemma3Params& p, std::vector<float>* out) {
  const Filter f = filter_of(p.resample);
  append_values(pil_resize(rgb, plan.frame_size[0], plan.frame_size[1], f), p.norm, out);
  for (const Box& b : plan.crop_boxes) {
    if (b[2] <= b[0] || b[3] <= b[1]) fail_input("a pan-and-scan crop of this image is empty");
    append_values(pil_resize(crop(rgb, b[0], b[1], b[2], b[3]), plan.frame_size[0], plan.frame_size[1], f), p.norm, out);
  }
}

json to_json(const Gemma3Plan& p) {
  return {{"source", p.source}, {"grid", p.grid}, {"crop_boxes", boxes_json(p.crop_boxes)}, {"frame_size", p.frame_size},
          {"tiles", p.tiles}, {"image_tokens", p.image_tokens}, {"budget_applied", p.budget_applied}, {"reason", p.reason}};
}

Layout gemma3_layout(int64_t tiles, const Gemma3Params& p) {
  static const std::string kOriginal = "Here is the original image ", kCrops = " and here are some crops to help you see better ";
  const std::string &boi = p.boi_token, &eoi = p.eoi_token;
  const int64_t n = tiles - 1;
  std::string marker = boi;
  if (n > 0) {
    marker = kOriginal + boi + kCrops;
    for (int64_t i = 0; i < n; ++i) marker += (i ? " " : "") + boi;
  }
  Layout l;
  size_t pos = 0;
  for (int i = 0;; ++i) {  // marker_text.split(boi)
    const size_t next = marker.find(boi, pos);
    if (i) {
      add_text(&l, "\n\n" + boi);
      add_block(&l, i - 1);
      add_text(&l, eoi + "\n\n");
    }
    add_text(&l, marker.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + boi.size();
  }
  return l;
}

}  // namespace edge::vision
