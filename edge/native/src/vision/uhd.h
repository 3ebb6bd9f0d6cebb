// LLaVA-UHD / MiniCPM-V slicing: a port of runtime/vision/slice_uhd.py (plan_uhd, apply_uhd,
// uhd_layout). The Python runtime has no UHD Scheme (schemes.SCHEMES lacks it), so neither does
// Scheme::create; these functions are the planner, golden-tested as the Python one is.
#pragma once

#include "plans.h"

namespace edge::vision {

struct UhdPlan {
  Size source{}, overview{}, refine{};
  std::array<int, 2> grid{};  // rows, cols; (0, 0): overview only
  std::vector<Box> slice_boxes;
  int max_slice_nums = 0;
  double upscale = 1.0;
  int64_t tiles = 0, image_tokens = 0;
  bool budget_applied = false;
  std::string reason;
};

UhdPlan plan_uhd(int width, int height, const UhdParams& p, const Limits& l);
// float32 frames [3, h, w] each (sizes differ), overview first: appended to *frames with their sizes
void apply_uhd(const Rgb& image, const UhdPlan& plan, const UhdParams& p, std::vector<std::vector<float>>* frames,
               std::vector<Size>* sizes);
Layout uhd_layout(const UhdPlan& plan, const UhdParams& p, int image_index = 0);
nlohmann::json to_json(const UhdPlan& plan);

}  // namespace edge::vision
