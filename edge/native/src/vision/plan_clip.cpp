// CLIP (LLaVA-1.5) and LLaVA-NeXT anyres: ports of runtime/vision/clip.py (plan_clip, apply_clip,
// _shortest_edge_size, _resized_crop) and runtime/vision/slice_anyres.py (select_best_resolution,
// plan_anyres, _plan, _fits, apply_anyres, anyres_feature_window), plus slice_common.pixel_values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "plans.h"

namespace edge::vision {

using nlohmann::json;

// slice_common.pixel_values / clip.apply_clip: float64 rescale cast to float32, float32 normalise
void append_values(const Rgb& f, const Normalize& n, std::vector<float>* out) {
  const size_t plane = static_cast<size_t>(f.w) * f.h, base = out->size();
  out->resize(base + plane * 3);
  float* o = out->data() + base;
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(n.mean[c]), std = static_cast<float>(n.std[c]);
    for (size_t i = 0; i < plane; ++i) {
      const uint8_t u = f.px[i * 3 + c];
      float v = n.do_rescale ? static_cast<float>(static_cast<double>(u) * n.rescale_factor) : static_cast<float>(u);
      if (n.do_normalize) v = (v - mean) / std;
      o[c * plane + i] = v;
    }
  }
}

// ---- clip.py ----

static Size shortest_edge_size(int width, int height, int size) {  // _shortest_edge_size
  const int shorter = width <= height ? width : height, longer = width <= height ? height : width;
  const double new_long = static_cast<double>(size) * longer / shorter;  // size * long / short, as Python
  if (new_long > 2e9) fail_input("the image's aspect ratio makes its resized side too long");
  const int nl = static_cast<int>(new_long);
  return width <= height ? Size{size, nl} : Size{nl, size};
}

ClipPlan plan_clip(int width, int height, const ClipParams& pp) {
  if (width < 1 || height < 1)
    fail_image("cannot preprocess an image of size " + std::to_string(width) + "x" + std::to_string(height));
  ClipPlan plan;
  plan.source = {width, height};
  Size canvas = plan.source;
  if (pp.do_resize) {
    Size target = shortest_edge_size(width, height, pp.shortest_edge);
    if (target != canvas) plan.resize = canvas = target;
  }
  plan.output = canvas;
  if (pp.do_center_crop) {
    const int left = static_cast<int>(std::floor((canvas[0] - pp.crop_width) / 2.0));  // floor division
    const int top = static_cast<int>(std::floor((canvas[1] - pp.crop_height) / 2.0));
    plan.crop = Box{left, top, left + pp.crop_width, top + pp.crop_height};
    plan.output = {pp.crop_width, pp.crop_height};
  }
  return plan;
}

void apply_clip(const Rgb& rgb, const ClipPlan& plan, const ClipParams& pp, std::vector<float>* out) {
  const Size canvas = plan.canvas();
  const Box box = plan.crop ? *plan.crop : Box{0, 0, canvas[0], canvas[1]};
  const int x0 = std::max(box[0], 0), y0 = std::max(box[1], 0);
  const int x1 = std::min(box[2], canvas[0]), y1 = std::min(box[3], canvas[1]);
  // the part of the crop box inside the canvas, resampled alone (_resized_crop / _resample_window)
  Rgb inside = plan.resize ? pil_resize_window(rgb, canvas[0], canvas[1], filter_of(pp.resample), x0, y0, x1, y1)
                           : crop(rgb, x0, y0, x1, y1);
  Rgb frame;
  frame.w = box[2] - box[0];
  frame.h = box[3] - box[1];
  frame.px.assign(static_cast<size_t>(frame.w) * frame.h * 3, 0);  // zero padding (uint8 0)
  for (int y = y0; y < y1; ++y)
    std::memcpy(frame.row(y - box[1]) + static_cast<size_t>(x0 - box[0]) * 3, inside.row(y - y0),
                static_cast<size_t>(x1 - x0) * 3);
  append_values(frame, pp.norm, out);
}

// ---- slice_anyres.py ----

static std::optional<std::array<int, 2>> select_best_resolution(int height, int width,
                                                                const std::vector<std::array<int, 2>>& pins) {
  std::optional<std::array<int, 2>> best;
  int64_t best_effective = 0;
  double best_waste = std::numeric_limits<double>::infinity();
  for (const auto& [h, w] : pins) {
    const double scale = std::min(static_cast<double>(w) / width, static_cast<double>(h) / height);
    const int64_t down_w = py_int(width * scale), down_h = py_int(height * scale);
    const int64_t effective = std::min(down_w * down_h, int64_t{width} * height);
    const double waste = static_cast<double>(int64_t{w} * h - effective);
    if (effective > best_effective || (effective == best_effective && waste < best_waste)) {
      best = std::array<int, 2>{h, w};
      best_effective = effective;
      best_waste = waste;
    }
  }
  return best;
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::array<int, 4> anyres_feature_window(const AnyresPlan& plan, const AnyresParams& p) {
  const int rows = plan.grid[0], cols = plan.grid[1];
  if (rows == 0) return {0, 0, 0, 0};
  const int side = p.crop_size / p.patch_size, cur_h = rows * side, cur_w = cols * side;
  const double ow = plan.source[0], oh = plan.source[1];
  if (ow / oh > static_cast<double>(cur_w) / cur_h) {
    const int64_t new_h = py_int(py_round_digits(oh * (cur_w / ow), 7));
    const int pad = static_cast<int>(floordiv(cur_h - new_h, 2));
    return {pad, cur_h - pad, 0, cur_w};
  }
  const int64_t new_w = py_int(py_round_digits(ow * (cur_h / oh), 7));
  const int pad = static_cast<int>(floordiv(cur_w - new_w, 2));
  return {0, cur_h, pad, cur_w - pad};
}

static AnyresPlan anyres_plan(Size source, const AnyresParams& p, std::optional<std::array<int, 2>> pin) {
  AnyresPlan plan;
  plan.source = source;
  plan.base_size = {p.shortest_edge, p.shortest_edge};
  if (!pin) {
    plan.tiles = 1;
    plan.image_tokens = p.tokens_per_tile() + 1;
    return plan;
  }
  const int th = (*pin)[0], tw = (*pin)[1], w = source[0], h = source[1];
  const double sw = static_cast<double>(tw) / w, sh = static_cast<double>(th) / h;  // get_patch_output_size
  int nw, nh;
  if (sw < sh) {
    nw = tw;
    nh = static_cast<int>(std::min<int64_t>(py_int(std::ceil(h * sw)), th));
  } else {
    nh = th;
    nw = static_cast<int>(std::min<int64_t>(py_int(std::ceil(w * sh)), tw));
  }
  plan.canvas = {tw, th};
  plan.resized = {nw, nh};
  plan.paste = {(tw - nw) / 2, (th - nh) / 2};
  const int crop = p.crop_size, rows = th / crop, cols = tw / crop;
  plan.grid = {rows, cols};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) plan.patch_boxes.push_back({c * crop, r * crop, (c + 1) * crop, (r + 1) * crop});
  plan.upscale = std::min(sw, sh);
  plan.tiles = 1 + static_cast<int64_t>(plan.patch_boxes.size());
  const auto [r0, r1, c0, c1] = anyres_feature_window(plan, p);
  plan.image_tokens = p.tokens_per_tile() + int64_t{r1 - r0} * (c1 - c0 + 1);
  return plan;
}

static bool anyres_fits(const AnyresPlan& plan, const Limits& l) { return within(plan.tiles, plan.image_tokens, plan.upscale, l); }

AnyresPlan plan_anyres(int width, int height, const AnyresParams& p, const Limits& l) {
  check_side("image width", width);
  check_side("image height", height);
  check_limits(l);
  check_minimum(p.tokens_per_tile() + 1, l, "the base image alone");
  const Size source{width, height};
  AnyresPlan first = anyres_plan(source, p, select_best_resolution(height, width, p.grid_pinpoints));
  if (anyres_fits(first, l)) return first;
  std::vector<std::array<int, 2>> allowed;
  for (const auto& pin : p.grid_pinpoints)
    if (anyres_fits(anyres_plan(source, p, pin), l)) allowed.push_back(pin);
  AnyresPlan plan = anyres_plan(source, p, allowed.empty() ? std::nullopt : select_best_resolution(height, width, allowed));
  plan.reason = limits_text(l) + ": grid " + std::to_string(first.grid[0]) + "x" + std::to_string(first.grid[1]) + " -> " +
                std::to_string(plan.grid[0]) + "x" + std::to_string(plan.grid[1]) + (allowed.empty() ? " (base image only)" : "");
  plan.budget_applied = true;
  return plan;
}

void apply_anyres(const Rgb& rgb, const AnyresPlan& plan, const AnyresParams& p, std::vector<float>* out) {
  const Filter f = filter_of(p.resample);
  std::vector<Rgb> frames;
  frames.push_back(pil_resize(rgb, plan.base_size[0], plan.base_size[1], f));
  if (!plan.patch_boxes.empty()) {
    Rgb resized = pil_resize(rgb, plan.resized[0], plan.resized[1], f);
    Rgb canvas;
    canvas.w = plan.canvas[0];
    canvas.h = plan.canvas[1];
    canvas.px.assign(static_cast<size_t>(canvas.w) * canvas.h * 3, 0);
    for (int y = 0; y < resized.h; ++y)
      std::memcpy(canvas.row(plan.paste[1] + y) + static_cast<size_t>(plan.paste[0]) * 3, resized.row(y), resized.w * 3);
    for (const Box& b : plan.patch_boxes) frames.push_back(crop(canvas, b[0], b[1], b[2], b[3]));
  }
  const ClipParams pp = p.clip();
  for (const Rgb& fr : frames) apply_clip(fr, plan_clip(fr.w, fr.h, pp), pp, out);
}

static json boxes_json(const std::vector<Box>& boxes) {
  json a = json::array();
  for (const Box& b : boxes) a.push_back({b[0], b[1], b[2], b[3]});
  return a;
}

json to_json(const AnyresPlan& p) {
  return {{"source", p.source},   {"canvas", p.canvas},         {"resized", p.resized},
          {"paste", p.paste},     {"grid", p.grid},             {"patch_boxes", boxes_json(p.patch_boxes)},
          {"base_size", p.base_size}, {"upscale", p.upscale},   {"tiles", p.tiles},
          {"image_tokens", p.image_tokens}, {"budget_applied", p.budget_applied}, {"reason", p.reason}};
}

AnyresPlan anyres_from_json(const json& j) {
  AnyresPlan p;
  p.source = j.at("source").get<Size>();
  p.grid = j.at("grid").get<std::array<int, 2>>();
  p.tiles = j.at("tiles").get<int64_t>();
  p.image_tokens = j.at("image_tokens").get<int64_t>();
  return p;
}

}  // namespace edge::vision
