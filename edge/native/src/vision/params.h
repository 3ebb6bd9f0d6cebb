// The parameters of each scheme, read from the manifest's vision.preprocess object with the checks of
// edge/preprocess.py, edge/preprocess_gemma3.py, edge/preprocess_qwen2vl.py (__post_init__) and
// edge/checks.py. Field names and defaults are the dataclasses'.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "resample.h"

namespace edge::vision {

// rescale + normalise (slice_common.pixel_values)
struct Normalize {
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<double, 3> mean{0.5, 0.5, 0.5}, std{0.5, 0.5, 0.5};
};

struct ClipParams {  // ImagePreprocess
  int image_size = 0, shortest_edge = 0, crop_height = 0, crop_width = 0;
  bool do_resize = true, do_center_crop = true;
  std::string resample = "bicubic";
  Normalize norm{true, 1.0 / 255.0, true, {0, 0, 0}, {1, 1, 1}};
};

struct Idefics3Params {  // Idefics3Slicing
  int longest_edge = 4 * 364, tile_size = 364, tokens_per_tile = 169;
  std::string resample = "lanczos";
  bool do_resize = true, do_image_splitting = true, do_pad = true;
  Normalize norm;
  std::string fake_image_token = "<fake_token_around_image>", global_image_token = "<global-img>";
};

struct AnyresParams {  // AnyresSlicing
  std::vector<std::array<int, 2>> grid_pinpoints;  // [height, width]
  int shortest_edge = 336, crop_size = 336, patch_size = 14;
  std::string resample = "bicubic";
  bool do_resize = true, do_center_crop = true;
  Normalize norm;
  int tokens_per_tile() const { return (crop_size / patch_size) * (crop_size / patch_size); }
  ClipParams clip() const;  // slice_anyres._clip_params
};

struct UhdParams {  // UhdSlicing
  int scale_resolution = 448, patch_size = 14, max_slice_nums = 9, tokens_per_slice = 64;
  bool slice_mode = true, use_image_id = true;
  std::string resample = "bicubic";
  std::array<double, 3> mean{0.5, 0.5, 0.5}, std{0.5, 0.5, 0.5};
  std::string im_start = "<image>", im_end = "</image>", slice_start = "<slice>", slice_end = "</slice>",
              im_id_start = "<image_id>", im_id_end = "</image_id>";
};

struct Gemma3Params {  // Gemma3Preprocess
  int image_size = 896, tokens_per_image = 256;
  std::string resample = "bilinear";
  bool do_resize = true;
  Normalize norm;
  bool do_pan_and_scan = false;
  int pan_and_scan_min_crop_size = 256, pan_and_scan_max_num_crops = 4;
  double pan_and_scan_min_ratio_to_activate = 1.2;
  std::string boi_token = "<start_of_image>", eoi_token = "<end_of_image>";
};

struct Qwen2VLParams {  // Qwen2VLPreprocess
  int patch_size = 14, temporal_patch_size = 2, merge_size = 2;
  int64_t min_pixels = 56 * 56, max_pixels = 28 * 28 * 1280;
  std::string resample = "bicubic";
  bool do_resize = true;
  Normalize norm{true, 1.0 / 255.0, true, {0.48145466, 0.4578275, 0.40821073}, {0.26862954, 0.26130258, 0.27577711}};
  int window_patches = 64, window_units = 4;
  double tokens_per_second = 2.0;
  std::string rope_input = "rope_pos", window_index_input = "window_index", reverse_index_input = "reverse_index",
              window_gather_input = "window_gather", window_scatter_input = "window_scatter",
              window_mask_input = "window_mask";
  int factor() const { return patch_size * merge_size; }
};

// Each reads `pp` (vision.preprocess) and throws Failure(bundle) naming the field that is wrong.
ClipParams clip_params(const nlohmann::json& pp);
Idefics3Params idefics3_params(const nlohmann::json& pp);
AnyresParams anyres_params(const nlohmann::json& pp);
UhdParams uhd_params(const nlohmann::json& pp);
Gemma3Params gemma3_params(const nlohmann::json& pp);
Qwen2VLParams qwen2vl_params(const nlohmann::json& pp);

Filter filter_of(const std::string& resample);  // a checked name -> filter

}  // namespace edge::vision
