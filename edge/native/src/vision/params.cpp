// Scheme parameters from the manifest; see params.h. The checks follow edge/checks.py (check_int,
// check_bool, check_str, check_float, check_mean_std, check_resample, check_pixel_range) and each
// dataclass's __post_init__; a failure is a BundleError "manifest.json: vision.preprocess...".
#include "params.h"

#include <cmath>
#include <set>

#include "common.h"

namespace edge::vision {
namespace {

using nlohmann::json;

const char* kResampleNames = "nearest, bilinear, bicubic, lanczos, box, hamming";

// Reads the fields of one preprocess object; unknown fields are refused (from_dict's TypeError).
class Reader {
 public:
  Reader(const json& pp, const char* cls) : pp_(pp), cls_(cls) {
    if (!pp.is_object()) fail_bundle("manifest.json: vision.preprocess must be an object");
  }
  [[noreturn]] void bad(const std::string& msg) const { fail_bundle("manifest.json: vision.preprocess: " + msg); }
  const json* get(const char* name) {
    seen_.insert(name);
    auto it = pp_.find(name);
    return it == pp_.end() ? nullptr : &*it;
  }
  void i(const char* name, int* out, bool required = false, int minimum = 1) {
    int64_t v = *out;
    i64(name, &v, required, minimum);
    if (v > 1000000000) bad(std::string(name) + " must be at most 1000000000, got " + std::to_string(v));
    *out = static_cast<int>(v);
  }
  void i64(const char* name, int64_t* out, bool required = false, int minimum = 1) {
    const json* v = get(name);
    if (!v) {
      if (required) fail_bundle(std::string("manifest.json: vision.preprocess.") + name + " is missing");
    } else if (!v->is_number_integer()) {
      bad(std::string(name) + " must be an integer >= " + std::to_string(minimum) + ", got " + v->dump());
    } else {
      *out = v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
    }
    if (*out < minimum) bad(std::string(name) + " must be an integer >= " + std::to_string(minimum) + ", got " + std::to_string(*out));
  }
  void b(const char* name, bool* out) {
    const json* v = get(name);
    if (!v) return;
    if (!v->is_boolean()) bad(std::string(name) + " must be true or false, got " + v->dump());
    *out = v->get<bool>();
  }
  void s(const char* name, std::string* out) {
    const json* v = get(name);
    if (!v) return;
    if (!v->is_string()) bad(std::string(name) + " must be a string, got " + v->dump());
    *out = v->get<std::string>();
  }
  void f(const char* name, double* out, bool positive = true) {
    const json* v = get(name);
    if (v) {
      if (!v->is_number()) bad(std::string(name) + " must be a finite number, got " + v->dump());
      *out = v->get<double>();
    }
    if (!std::isfinite(*out)) bad(std::string(name) + " must be a finite number, got " + py_float(*out));
    if (positive && *out <= 0) bad(std::string(name) + " must be > 0, got " + py_float(*out));
  }
  void resample(std::string* out) {
    s("resample", out);
    Filter f;
    if (!filter_from_name(*out, &f)) bad(std::string("resample must be one of ") + kResampleNames + ", got '" + *out + "'");
  }
  void triple(const char* name, std::array<double, 3>* out) {
    const json* v = get(name);
    if (!v) return;
    if (!v->is_array() || v->size() != 3) bad(std::string(name) + " must be a list of 3 numbers, got " + v->dump());
    for (int k = 0; k < 3; ++k) {
      if (!(*v)[k].is_number()) bad(std::string(name) + " must be a finite number, got " + (*v)[k].dump());
      (*out)[k] = (*v)[k].get<double>();
      if (!std::isfinite((*out)[k])) bad(std::string(name) + " must be a finite number, got " + (*v)[k].dump());
    }
  }
  void mean_std(std::array<double, 3>* mean, std::array<double, 3>* std) {
    triple("mean", mean);
    triple("std", std);
    for (double v : *std)
      if (v == 0) bad("std must be non-zero");
  }
  void norm(Normalize* n) {
    b("do_rescale", &n->do_rescale);
    f("rescale_factor", &n->rescale_factor);
    b("do_normalize", &n->do_normalize);
    mean_std(&n->mean, &n->std);
  }
  void done(const char* tag) {
    seen_.insert("scheme");
    const json* sch = &pp_["scheme"];
    if (!sch->is_string() || sch->get<std::string>() != tag) bad(std::string("scheme must be '") + tag + "'");
    for (auto it = pp_.begin(); it != pp_.end(); ++it)
      if (!seen_.count(it.key())) bad(std::string("bad ") + tag + " parameters: " + cls_ + " got an unexpected field '" + it.key() + "'");
  }

 private:
  const json& pp_;
  const char* cls_;
  std::set<std::string> seen_;
};

}  // namespace

Filter filter_of(const std::string& resample) {
  Filter f = Filter::bicubic;
  if (!filter_from_name(resample, &f)) fail_bundle("unknown resample filter '" + resample + "'");
  return f;
}

ClipParams clip_params(const json& pp) {
  Reader r(pp, "ImagePreprocess");
  ClipParams p;
  r.i("image_size", &p.image_size, true, 0);
  r.i("shortest_edge", &p.shortest_edge, true, 0);
  r.i("crop_height", &p.crop_height, true, 0);
  r.i("crop_width", &p.crop_width, true, 0);
  r.b("do_resize", &p.do_resize);
  r.b("do_center_crop", &p.do_center_crop);
  r.s("resample", &p.resample);
  r.norm(&p.norm);
  r.done("clip");
  // clip.py _check_params (a BundleError at plan time in Python; checked once here)
  Filter f;
  if (!filter_from_name(p.resample, &f))
    fail_bundle("image preprocess resample '" + p.resample + "' is unknown; use one of " + kResampleNames);
  if (p.do_resize && p.shortest_edge < 1)
    fail_bundle("image preprocess shortest_edge must be >= 1, got " + std::to_string(p.shortest_edge));
  if (p.do_center_crop && (p.crop_width < 1 || p.crop_height < 1))
    fail_bundle("image preprocess crop must be >= 1x1, got " + std::to_string(p.crop_width) + "x" + std::to_string(p.crop_height));
  if (p.crop_width > 100000 || p.crop_height > 100000 || p.shortest_edge > 100000)
    fail_bundle("image preprocess sizes must be at most 100000");
  return p;
}

ClipParams AnyresParams::clip() const {
  ClipParams c;
  c.image_size = crop_size;
  c.shortest_edge = shortest_edge;
  c.crop_height = c.crop_width = crop_size;
  c.do_resize = do_resize;
  c.do_center_crop = do_center_crop;
  c.resample = resample;
  c.norm = norm;
  return c;
}

Idefics3Params idefics3_params(const json& pp) {
  Reader r(pp, "Idefics3Slicing");
  Idefics3Params p;
  r.i("longest_edge", &p.longest_edge);
  r.i("tile_size", &p.tile_size);
  r.i("tokens_per_tile", &p.tokens_per_tile);
  r.resample(&p.resample);
  r.b("do_resize", &p.do_resize);
  r.b("do_image_splitting", &p.do_image_splitting);
  r.b("do_pad", &p.do_pad);
  r.norm(&p.norm);
  r.s("fake_image_token", &p.fake_image_token);
  r.s("global_image_token", &p.global_image_token);
  r.done("idefics3");
  return p;
}

AnyresParams anyres_params(const json& pp) {
  Reader r(pp, "AnyresSlicing");
  AnyresParams p;
  p.grid_pinpoints = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};  // LLAVA_V16_PINPOINTS
  r.i("shortest_edge", &p.shortest_edge);
  r.i("crop_size", &p.crop_size);
  r.i("patch_size", &p.patch_size);
  r.resample(&p.resample);
  r.b("do_resize", &p.do_resize);
  r.b("do_center_crop", &p.do_center_crop);
  r.norm(&p.norm);
  if (p.crop_size % p.patch_size)
    r.bad("crop_size " + std::to_string(p.crop_size) + " is not a multiple of patch_size " + std::to_string(p.patch_size));
  if (const json* g = r.get("grid_pinpoints")) {
    if (!g->is_array() || g->empty()) r.bad("grid_pinpoints must be a non-empty list of [height, width] pairs");
    p.grid_pinpoints.clear();
    for (const json& pair : *g) {
      if (!pair.is_array() || pair.size() != 2) r.bad("grid_pinpoints entries must be [height, width], got " + pair.dump());
      std::array<int, 2> hw{};
      for (int k = 0; k < 2; ++k) {
        if (!pair[k].is_number_integer() || pair[k].get<int64_t>() < 1 || pair[k].get<int64_t>() > 1000000)
          r.bad("grid pinpoint must be an integer >= 1, got " + pair[k].dump());
        hw[k] = pair[k].get<int>();
        if (hw[k] % p.crop_size) r.bad("grid pinpoint " + pair.dump() + " is not a multiple of crop_size " + std::to_string(p.crop_size));
      }
      p.grid_pinpoints.push_back(hw);
    }
  }
  if (!p.do_center_crop) r.bad("anyres slicing needs do_center_crop: frames must all be crop_size");
  r.done("anyres");
  return p;
}

UhdParams uhd_params(const json& pp) {
  Reader r(pp, "UhdSlicing");
  UhdParams p;
  r.i("scale_resolution", &p.scale_resolution);
  r.i("patch_size", &p.patch_size);
  r.i("max_slice_nums", &p.max_slice_nums);
  r.i("tokens_per_slice", &p.tokens_per_slice);
  r.b("slice_mode", &p.slice_mode);
  r.b("use_image_id", &p.use_image_id);
  r.resample(&p.resample);
  r.mean_std(&p.mean, &p.std);
  for (auto [n, s] : {std::pair{"im_start", &p.im_start}, {"im_end", &p.im_end}, {"slice_start", &p.slice_start},
                      {"slice_end", &p.slice_end}, {"im_id_start", &p.im_id_start}, {"im_id_end", &p.im_id_end}})
    r.s(n, s);
  r.done("uhd");
  return p;
}

Gemma3Params gemma3_params(const json& pp) {
  Reader r(pp, "Gemma3Preprocess");
  Gemma3Params p;
  r.i("image_size", &p.image_size);
  r.i("tokens_per_image", &p.tokens_per_image);
  r.i("pan_and_scan_min_crop_size", &p.pan_and_scan_min_crop_size);
  r.i("pan_and_scan_max_num_crops", &p.pan_and_scan_max_num_crops);
  r.resample(&p.resample);
  r.b("do_resize", &p.do_resize);
  r.b("do_pan_and_scan", &p.do_pan_and_scan);
  r.norm(&p.norm);
  r.f("pan_and_scan_min_ratio_to_activate", &p.pan_and_scan_min_ratio_to_activate);
  r.s("boi_token", &p.boi_token);
  r.s("eoi_token", &p.eoi_token);
  if (!p.do_resize) r.bad("gemma3 preprocessing needs do_resize: every frame must be image_size x image_size");
  if (p.boi_token.empty()) r.bad("boi_token must not be empty (it is the prompt's image marker)");
  r.done("gemma3");
  return p;
}

Qwen2VLParams qwen2vl_params(const json& pp) {
  Reader r(pp, "Qwen2VLPreprocess");
  Qwen2VLParams p;
  r.i("patch_size", &p.patch_size);
  r.i("temporal_patch_size", &p.temporal_patch_size);
  r.i("merge_size", &p.merge_size);
  r.i64("min_pixels", &p.min_pixels);
  r.i64("max_pixels", &p.max_pixels);
  r.i("window_patches", &p.window_patches);
  r.i("window_units", &p.window_units);
  r.resample(&p.resample);
  r.b("do_resize", &p.do_resize);
  r.norm(&p.norm);
  r.f("tokens_per_second", &p.tokens_per_second);
  for (auto [n, s] : {std::pair{"rope_input", &p.rope_input}, {"window_index_input", &p.window_index_input},
                      {"reverse_index_input", &p.reverse_index_input}, {"window_gather_input", &p.window_gather_input},
                      {"window_scatter_input", &p.window_scatter_input}, {"window_mask_input", &p.window_mask_input}})
    r.s(n, s);
  const int64_t f = p.factor();
  if (p.max_pixels < f * f) r.bad("max_pixels " + std::to_string(p.max_pixels) + " is below one " + std::to_string(f) + "x" + std::to_string(f) + " merged patch");
  if (p.max_pixels < p.min_pixels) r.bad("max_pixels " + std::to_string(p.max_pixels) + " is below min_pixels " + std::to_string(p.min_pixels));
  if (p.max_pixels > (int64_t{1} << 40)) r.bad("max_pixels is implausibly large");
  const int64_t wp = int64_t{p.window_units} * p.merge_size * p.window_units * p.merge_size;
  if (p.window_patches != wp)
    r.bad("window_patches " + std::to_string(p.window_patches) + " is not (window_units * merge_size) ** 2 = " + std::to_string(wp));
  r.done("qwen2vl");
  return p;
}

}  // namespace edge::vision
