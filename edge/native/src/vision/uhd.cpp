// A port of runtime/vision/slice_uhd.py; see uhd.h. Python's round (half to even) in double precision.
#include "uhd.h"

#include <cmath>
#include <limits>

namespace edge::vision {

using nlohmann::json;

static int64_t ensure_divide(double length, int64_t patch) {  // _ensure_divide
  return std::max(py_int(py_round(length / patch)) * patch, patch);
}

// find_best_resize: about S^2 pixels, aspect kept, sides rounded to the patch; and the enlargement
static Size best_resize(double w, double h, const UhdParams& p, bool allow_upscale, double* upscale) {
  const double s = p.scale_resolution, w0 = w, h0 = h;
  if (w * h > s * s || allow_upscale) {
    const double r = w / h;
    h = static_cast<double>(py_int(s / std::sqrt(r)));
    w = static_cast<double>(py_int(h * r));
  }
  const int64_t sw = ensure_divide(w, p.patch_size), sh = ensure_divide(h, p.patch_size);
  if (sw > 1000000 || sh > 1000000) fail_input("the image's aspect ratio makes its UHD frames too large");
  *upscale = std::max(w / w0, h / h0);
  return {static_cast<int>(sw), static_cast<int>(sh)};
}

// get_sliced_grid: (cols, rows), or nothing when not sliced
static std::optional<std::array<int, 2>> best_grid(int w, int h, const UhdParams& p, int bound) {
  const double log_ratio = std::log(static_cast<double>(w) / h);
  const double area = static_cast<double>(int64_t{w} * h) / (int64_t{p.scale_resolution} * p.scale_resolution);
  const int64_t multiple = std::min<int64_t>(py_int(std::ceil(area)), bound);
  if (multiple <= 1) return std::nullopt;
  std::array<int, 2> best{1, 1};
  double best_error = std::numeric_limits<double>::infinity();
  for (int64_t n : {multiple - 1, multiple, multiple + 1}) {
    if (n == 1 || n > bound) continue;
    for (int64_t cols = 1; cols <= n; ++cols)
      if (n % cols == 0) {
        const double error = std::fabs(log_ratio - std::log(static_cast<double>(cols) / (n / cols)));
        if (error < best_error) {
          best = {static_cast<int>(cols), static_cast<int>(n / cols)};
          best_error = error;
        }
      }
  }
  return best;
}

static UhdPlan make(Size source, const UhdParams& p, Size overview, Size refine, std::optional<std::array<int, 2>> grid,
                    int bound, double upscale) {
  UhdPlan plan;
  plan.source = source;
  plan.overview = overview;
  plan.refine = refine;
  if (grid) {
    const int rows = (*grid)[0], cols = (*grid)[1], sw = refine[0] / cols, sh = refine[1] / rows;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) plan.slice_boxes.push_back({c * sw, r * sh, (c + 1) * sw, (r + 1) * sh});
    plan.grid = *grid;
  }
  plan.max_slice_nums = bound;
  plan.upscale = upscale;
  plan.tiles = 1 + static_cast<int64_t>(plan.slice_boxes.size());
  plan.image_tokens = plan.tiles * p.tokens_per_slice;
  return plan;
}

static UhdPlan uhd_plan(Size source, const UhdParams& p, int bound, std::optional<double> max_upscale) {
  const int w = source[0], h = source[1];
  if (!p.slice_mode) return make(source, p, source, {0, 0}, std::nullopt, bound, 1.0);
  const auto grid = best_grid(w, h, p, bound);
  double upscale = 0;
  if (!grid) {
    Size overview = best_resize(w, h, p, true, &upscale);
    if (max_upscale && upscale > *max_upscale + 1e-9) overview = best_resize(w, h, p, false, &upscale);
    return make(source, p, overview, {0, 0}, std::nullopt, bound, upscale);
  }
  const int cols = (*grid)[0], rows = (*grid)[1];
  double unused = 0, cell_scale = 0;
  const Size overview = best_resize(w, h, p, false, &unused);
  const double cell_w = static_cast<double>(ensure_divide(w, cols)) / cols;
  const double cell_h = static_cast<double>(ensure_divide(h, rows)) / rows;
  const Size b = best_resize(cell_w, cell_h, p, true, &cell_scale);
  upscale = cell_scale * std::max(cell_w * cols / w, cell_h * rows / h);
  return make(source, p, overview, {b[0] * cols, b[1] * rows}, std::array<int, 2>{rows, cols}, bound, upscale);
}

static bool same(const UhdPlan& a, const UhdPlan& b) {
  return a.source == b.source && a.overview == b.overview && a.refine == b.refine && a.grid == b.grid &&
         a.slice_boxes == b.slice_boxes && a.max_slice_nums == b.max_slice_nums && a.upscale == b.upscale &&
         a.tiles == b.tiles && a.image_tokens == b.image_tokens;
}

UhdPlan plan_uhd(int width, int height, const UhdParams& p, const Limits& l) {
  check_side("image width", width);
  check_side("image height", height);
  check_limits(l);
  check_minimum(p.tokens_per_slice, l, "the overview alone");
  const Size source{width, height};
  const UhdPlan natural = uhd_plan(source, p, p.max_slice_nums, std::nullopt);
  UhdPlan plan = natural;
  for (int bound = p.max_slice_nums; bound > 0; --bound) {
    plan = uhd_plan(source, p, bound, l.max_upscale);
    if (within(plan.tiles, plan.image_tokens, plan.slice_boxes.empty() ? 0.0 : plan.upscale, l)) break;
  }
  if (same(plan, natural)) return natural;
  auto x = [](const auto& a) { return std::to_string(a[0]) + "x" + std::to_string(a[1]); };
  plan.reason = limits_text(l) + ": max_slice_nums " + std::to_string(p.max_slice_nums) + " -> " +
                std::to_string(plan.max_slice_nums) + ", grid " + x(natural.grid) + " -> " + x(plan.grid);
  if (plan.overview != natural.overview && plan.slice_boxes.empty())
    plan.reason += ", overview " + x(natural.overview) + " -> " + x(plan.overview);
  plan.budget_applied = true;
  return plan;
}

void apply_uhd(const Rgb& rgb, const UhdPlan& plan, const UhdParams& p, std::vector<std::vector<float>>* frames,
               std::vector<Size>* sizes) {
  const Filter f = filter_of(p.resample);
  std::vector<Rgb> src;
  src.push_back(p.slice_mode ? pil_resize(rgb, plan.overview[0], plan.overview[1], f) : rgb);
  if (!plan.slice_boxes.empty()) {
    const Rgb refine = pil_resize(rgb, plan.refine[0], plan.refine[1], f);
    for (const Box& b : plan.slice_boxes) src.push_back(crop(refine, b[0], b[1], b[2], b[3]));
  }
  for (const Rgb& fr : src) {  // MiniCPM-V: float32(x) / 255, then (x - mean) / std in float32
    const size_t plane = static_cast<size_t>(fr.w) * fr.h;
    std::vector<float> v(plane * 3);
    for (int c = 0; c < 3; ++c) {
      const float mean = static_cast<float>(p.mean[c]), std = static_cast<float>(p.std[c]);
      for (size_t i = 0; i < plane; ++i) v[c * plane + i] = (static_cast<float>(fr.px[i * 3 + c]) / 255.0f - mean) / std;
    }
    frames->push_back(std::move(v));
    sizes->push_back({fr.w, fr.h});
  }
}

Layout uhd_layout(const UhdPlan& plan, const UhdParams& p, int image_index) {
  Layout l;
  if (p.use_image_id) add_text(&l, p.im_id_start + std::to_string(image_index) + p.im_id_end);
  add_text(&l, p.im_start);
  add_block(&l, 0);
  add_text(&l, p.im_end);
  for (int r = 0; r < plan.grid[0]; ++r) {
    if (r) add_text(&l, "\n");
    for (int c = 0; c < plan.grid[1]; ++c) {
      add_text(&l, p.slice_start);
      add_block(&l, 1 + r * plan.grid[1] + c);
      add_text(&l, p.slice_end);
    }
  }
  return l;
}

json to_json(const UhdPlan& p) {
  json boxes = json::array();
  for (const Box& b : p.slice_boxes) boxes.push_back({b[0], b[1], b[2], b[3]});
  return {{"source", p.source}, {"overview", p.overview}, {"refine", p.refine}, {"grid", p.grid}, {"slice_boxes", boxes},
          {"max_slice_nums", p.max_slice_nums}, {"upscale", p.upscale}, {"tiles", p.tiles}, {"image_tokens", p.image_tokens},
          {"budget_applied", p.budget_applied}, {"reason", p.reason}};
}

}  // namespace edge::vision
