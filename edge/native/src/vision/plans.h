// The planners and pixel work of each scheme (pure geometry -> plan, then plan + image -> pixels),
// ported from runtime/vision/clip.py, slice_anyres.py, slice_idefics3.py, slice_gemma3.py and
// slice_qwen2vl.py (uhd.h has slice_uhd.py). Plans convert to the JSON of slice_common.plan_to_dict.
// Failures throw Failure (common.h); Scheme catches them.
#pragma once

#include <array>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "params.h"

namespace edge::vision {

using Size = std::array<int, 2>;  // (width, height)
using Box = std::array<int, 4>;   // (left, top, right, bottom)

// uint8 RGB frames -> float32 [3, H, W] each, appended to *out (slice_common.pixel_values)
void append_values(const Rgb& frame, const Normalize& n, std::vector<float>* out);

// ---- clip.py ----
struct ClipPlan {
  Size source{}, output{};
  std::optional<Size> resize;
  std::optional<Box> crop;
  Size canvas() const { return resize ? *resize : source; }
};
ClipPlan plan_clip(int width, int height, const ClipParams& pp);          // clip.plan_clip
void apply_clip(const Rgb& image, const ClipPlan& plan, const ClipParams& pp, std::vector<float>* out);

// ---- slice_anyres.py ----
struct AnyresPlan {
  Size source{}, canvas{}, resized{}, paste{};
  std::array<int, 2> grid{};  // rows, cols
  std::vector<Box> patch_boxes;
  Size base_size{};
  double upscale = 0;
  int64_t tiles = 0, image_tokens = 0;
  bool budget_applied = false;
  std::string reason;
};
AnyresPlan plan_anyres(int width, int height, const AnyresParams& p, const Limits& l);
void apply_anyres(const Rgb& image, const AnyresPlan& plan, const AnyresParams& p, std::vector<float>* out);
std::array<int, 4> anyres_feature_window(const AnyresPlan& plan, const AnyresParams& p);
nlohmann::json to_json(const AnyresPlan& plan);
AnyresPlan anyres_from_json(const nlohmann::json& j);

// ---- slice_idefics3.py ----
struct Idefics3Plan {
  Size source{}, resized{}, canvas{};
  std::array<int, 2> grid{};
  std::vector<Box> tile_boxes;
  Size global_size{};
  int64_t longest_edge = 0;
  double upscale = 1.0;
  int64_t tiles = 0, image_tokens = 0;
  bool budget_applied = false;
  std::string reason;
};
Idefics3Plan plan_idefics3(int width, int height, const Idefics3Params& p, const Limits& l);
void apply_idefics3(const Rgb& image, const Idefics3Plan& plan, const Idefics3Params& p, std::vector<float>* out);
nlohmann::json to_json(const Idefics3Plan& plan);

// ---- slice_gemma3.py ----
struct Gemma3Plan {
  Size source{};
  std::array<int, 2> grid{};
  std::vector<Box> crop_boxes;
  Size frame_size{};
  int64_t tiles = 0, image_tokens = 0;
  bool budget_applied = false;
  std::string reason;
};
Gemma3Plan plan_gemma3(int width, int height, const Gemma3Params& p, const Limits& l);
void apply_gemma3(const Rgb& image, const Gemma3Plan& plan, const Gemma3Params& p, std::vector<float>* out);
nlohmann::json to_json(const Gemma3Plan& plan);
std::vector<Box> pan_and_scan_boxes(int width, int height, int min_crop, int max_crops, double min_ratio);

// ---- slice_qwen2vl.py ----
struct Qwen2VLPlan {
  Size source{}, resized{};
  std::array<int64_t, 3> grid{};  // t, h, w (patches)
  int64_t image_tokens = 0, max_pixels = 0;
  bool budget_applied = false;
};
// smart_resize -> (height, width)
std::array<int64_t, 2> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels);
Qwen2VLPlan plan_qwen2vl(int width, int height, const Qwen2VLParams& p, std::optional<int64_t> max_image_tokens);
// resize, normalise, patchify: [grid_t, gh/m, gw/m, m*m, 3*T*P*P] (apply_qwen2vl + patchify)
void apply_qwen2vl(const Rgb& image, const Qwen2VLPlan& plan, const Qwen2VLParams& p, std::vector<float>* out);
// graph_feeds' precomputed inputs of one temporal group (vision_inputs)
std::vector<Tensor> qwen2vl_inputs(int64_t grid_h, int64_t grid_w, const Qwen2VLParams& p);
// mrope_positions for an image: [3, rows] row-major
std::vector<int64_t> mrope_positions(const std::array<int64_t, 3>& grid, int merge);
nlohmann::json to_json(const Qwen2VLPlan& plan);

// A Python layout: text pieces and block indices (slice_common.Layout), adjacent text merged.
struct Piece {
  bool is_text = true;
  std::string text;
  int index = -1;
};
using Layout = std::vector<Piece>;
void add_text(Layout* l, const std::string& text);  // merge_text, one piece at a time
void add_block(Layout* l, int index);
Layout idefics3_layout(int rows, int cols, const Idefics3Params& p);
Layout gemma3_layout(int64_t tiles, const Gemma3Params& p);

}  // namespace edge::vision
