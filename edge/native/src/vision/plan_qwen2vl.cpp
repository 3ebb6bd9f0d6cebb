// Qwen2-VL / Qwen2.5-VL dynamic resolution: a port of runtime/vision/slice_qwen2vl.py (smart_resize,
// budget_max_pixels, plan_qwen2vl, apply_qwen2vl, patchify, patch_positions, window_index,
// vision_inputs, mrope_positions).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "plans.h"

namespace edge::vision {

using nlohmann::json;

constexpr int kMaxAspect = 200;  // slice_qwen2vl.MAX_ASPECT
constexpr float kMasked = -1e30f;  // slice_qwen2vl.MASKED

std::array<int64_t, 2> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels) {
  if (height < 1 || width < 1)
    fail_input("an image must be at least 1x1 pixels, got " + std::to_string(width) + "x" + std::to_string(height));
  if (static_cast<double>(std::max(height, width)) / std::min(height, width) > kMaxAspect)
    fail_input("the image is " + std::to_string(width) + "x" + std::to_string(height) + ": Qwen2-VL takes aspect ratios up to " +
               std::to_string(kMaxAspect) + ":1 (its sides cannot both reach the " + std::to_string(factor) + "-pixel minimum)");
  int64_t h_bar = py_int(py_round(static_cast<double>(height) / factor)) * factor;
  int64_t w_bar = py_int(py_round(static_cast<double>(width) / factor)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(height * width) / static_cast<double>(max_pixels));
    h_bar = std::max(factor, py_int(std::floor(height / beta / factor)) * factor);
    w_bar = std::max(factor, py_int(std::floor(width / beta / factor)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(height * width));
    h_bar = py_int(std::ceil(height * beta / factor)) * factor;
    w_bar = py_int(std::ceil(width * beta / factor)) * factor;
  }
  return {h_bar, w_bar};
}

static int64_t budget_max_pixels(const Qwen2VLParams& p, std::optional<int64_t> max_image_tokens) {
  if (!max_image_tokens) return p.max_pixels;
  const int64_t f2 = int64_t{p.factor()} * p.factor();
  const int64_t least = (p.min_pixels + f2 - 1) / f2;
  if (*max_image_tokens < least)
    fail_input("max_image_tokens=" + std::to_string(*max_image_tokens) + " is below the " + std::to_string(least) +
               " rows of the smallest image this model makes (min_pixels=" + std::to_string(p.min_pixels) + ", one row per " +
               std::to_string(p.factor()) + "x" + std::to_string(p.factor()) + " pixels)");
  return std::min(p.max_pixels, *max_image_tokens * f2);
}

Qwen2VLPlan plan_qwen2vl(int width, int height, const Qwen2VLParams& p, std::optional<int64_t> max_image_tokens) {
  const int64_t max_pixels = budget_max_pixels(p, max_image_tokens);
  int64_t h = height, w = width;
  if (p.do_resize) {
    const auto hw = smart_resize(height, width, p.factor(), p.min_pixels, max_pixels);
    h = hw[0];
    w = hw[1];
  } else if (height % p.factor() || width % p.factor()) {
    fail_input("with do_resize off, image sides must be multiples of " + std::to_string(p.factor()) + ", got " +
               std::to_string(width) + "x" + std::to_string(height));
  }
  if (h > 100000 || w > 100000) fail_input("the resized image is too large");
  Qwen2VLPlan plan;
  plan.source = {width, height};
  plan.resized = {static_cast<int>(w), static_cast<int>(h)};
  const int64_t grid_t = (1 + p.temporal_patch_size - 1) / p.temporal_patch_size;  // one frame per image
  plan.grid = {grid_t, h / p.patch_size, w / p.patch_size};
  plan.image_tokens = grid_t * plan.grid[1] * plan.grid[2] / (int64_t{p.merge_size} * p.merge_size);
  plan.max_pixels = max_pixels;
  plan.budget_applied = max_pixels < p.max_pixels;
  return plan;
}

void apply_qwen2vl(const Rgb& image, const Qwen2VLPlan& plan, const Qwen2VLParams& p, std::vector<float>* out) {
  const Rgb rgb = (image.w != plan.resized[0] || image.h != plan.resized[1] || p.do_resize)
                      ? pil_resize(image, plan.resized[0], plan.resized[1], filter_of(p.resample))
                      : image;
  std::vector<float> chw;
  append_values(rgb, p.norm, &chw);  // [3, H, W]; frames past the first repeat it (temporal padding)
  const int64_t T = p.temporal_patch_size, P = p.patch_size, m = p.merge_size;
  const int64_t gt = plan.grid[0], gh = plan.grid[1], gw = plan.grid[2], H = rgb.h, W = rgb.w;
  const int64_t width = 3 * T * P * P;
  out->resize(static_cast<size_t>(gt * gh * gw * width));
  float* o = out->data();
  // patchify: axes (gt, gh/m, gw/m, m, m, c, T, P, P) of HF's transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
  for (int64_t g = 0; g < gt; ++g)
    for (int64_t bh = 0; bh < gh / m; ++bh)
      for (int64_t bw = 0; bw < gw / m; ++bw)
        for (int64_t mh = 0; mh < m; ++mh)
          for (int64_t mw = 0; mw < m; ++mw)
            for (int64_t c = 0; c < 3; ++c)
              for (int64_t t = 0; t < T; ++t)
                for (int64_t ph = 0; ph < P; ++ph) {
                  const int64_t y = (bh * m + mh) * P + ph, x0 = (bw * m + mw) * P;
                  const float* src = chw.data() + (c * H + y) * W + x0;
                  for (int64_t pw = 0; pw < P; ++pw) *o++ = src[pw];
                }
}

std::vector<Tensor> qwen2vl_inputs(int64_t grid_h, int64_t grid_w, const Qwen2VLParams& p) {
  const int64_t m = p.merge_size, unit = m * m, units = p.window_units, slots = p.window_patches;
  const int64_t lh = grid_h / m, lw = grid_w / m, n = grid_h * grid_w;
  // window_index: merged units in window order, units per window (empty windows dropped)
  const int64_t ph = lh + (units - lh % units), pw = lw + (units - lw % units);
  std::vector<int64_t> order, lengths;
  for (int64_t wh = 0; wh < ph / units; ++wh)
    for (int64_t ww = 0; ww < pw / units; ++ww) {
      int64_t count = 0;
      for (int64_t uh = 0; uh < units; ++uh)
        for (int64_t uw = 0; uw < units; ++uw) {
          const int64_t r = wh * units + uh, c = ww * units + uw;
          if (r < lh && c < lw) {
            order.push_back(r * lw + c);
            ++count;
          }
        }
      if (count > 0) lengths.push_back(count);
    }
  // patch_positions in HF's order, grouped per merged unit, then taken in window order
  Tensor rope{p.rope_input, Tensor::DType::i64, {n, 2}, {}, {}};
  for (int64_t u : order) {
    const int64_t bh = u / lw, bw = u % lw;
    for (int64_t mh = 0; mh < m; ++mh)
      for (int64_t mw = 0; mw < m; ++mw) {
        rope.i64.push_back(bh * m + mh);
        rope.i64.push_back(bw * m + mw);
      }
  }
  Tensor index{p.window_index_input, Tensor::DType::i64, {static_cast<int64_t>(order.size())}, {}, order};
  Tensor reverse{p.reverse_index_input, Tensor::DType::i64, {static_cast<int64_t>(order.size())}, {}, {}};
  reverse.i64.resize(order.size());
  for (size_t k = 0; k < order.size(); ++k) reverse.i64[static_cast<size_t>(order[k])] = static_cast<int64_t>(k);
  const int64_t nwin = static_cast<int64_t>(lengths.size());
  Tensor gather{p.window_gather_input, Tensor::DType::i64, {nwin * slots}, {}, {}};
  Tensor scatter{p.window_scatter_input, Tensor::DType::i64, {n}, {}, {}};
  Tensor mask{p.window_mask_input, Tensor::DType::f32, {nwin, slots}, {}, {}};
  int64_t start = 0;
  for (int64_t wi = 0; wi < nwin; ++wi) {
    const int64_t size = lengths[wi] * unit;
    for (int64_t o = 0; o < slots; ++o) {
      gather.i64.push_back(o < size ? start + o : 0);
      mask.f32.push_back(o < size ? 0.0f : kMasked);
    }
    for (int64_t o = 0; o < size; ++o) scatter.i64.push_back(wi * slots + o);
    start += size;
  }
  return {rope, index, reverse, gather, scatter, mask};
}

std::vector<int64_t> mrope_positions(const std::array<int64_t, 3>& grid, int merge) {
  const int64_t gt = grid[0], lh = grid[1] / merge, lw = grid[2] / merge, rows = gt * lh * lw;
  std::vector<int64_t> pos(static_cast<size_t>(3 * rows));
  int64_t k = 0;
  for (int64_t t = 0; t < gt; ++t)
    for (int64_t h = 0; h < lh; ++h)
      for (int64_t w = 0; w < lw; ++w, ++k) {
        pos[k] = 0;  // int(group * t_step) with t_step 0 for images
        pos[rows + k] = h;
        pos[2 * rows + k] = w;
      }
  return pos;
}

json to_json(const Qwen2VLPlan& p) {
  return {{"source", p.source}, {"resized", p.resized}, {"grid", p.grid}, {"image_tokens", p.image_tokens},
          {"max_pixels", p.max_pixels}, {"budget_applied", p.budget_applied}};
}

}  // namespace edge::vision
