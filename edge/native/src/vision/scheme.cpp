// The Scheme classes of runtime/vision/schemes.py (ClipScheme, Idefics3Scheme, AnyresScheme,
// Gemma3Scheme, Qwen2VLScheme; scheme_for) over the planners of plans.h, with the image checks of
// runtime/vision/image_io.py (_check_size) that an RGB array goes through in Python.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <new>

#include "npy.h"
#include "plans.h"

namespace edge::vision {

using nlohmann::json;

namespace {

constexpr int64_t kMaxPixels = 64000000;  // image_io.DEFAULT_MAX_PIXELS

void check_image(const Image& im) {  // image_io._check_size for "the image array"
  const std::string size = std::to_string(im.width) + "x" + std::to_string(im.height);
  if (im.width < 1 || im.height < 1) fail_image("the image array has no pixels (size " + size + ")");
  const int64_t n = int64_t{im.width} * im.height;
  if (n > kMaxPixels)
    fail_image("the image array is " + size + " (" + std::to_string(n) + " pixels), more than the limit of " +
               std::to_string(kMaxPixels) + " pixels; downscale it or raise max_pixels");
  if (!im.rgb) fail_image("the image array has no pixel buffer");
  if (im.stride && im.stride < static_cast<size_t>(im.width) * 3)
    fail_image("the image array's row stride " + std::to_string(im.stride) + " is below width * 3");
}

// Runs `fn`, turning every exception into (false, *err, *kind).
template <class Fn>
bool guard(std::string* err, ErrorKind* kind, Fn&& fn) {
  ErrorKind k = ErrorKind::none;
  std::string msg;
  try {
    fn();
    if (kind) *kind = ErrorKind::none;
    return true;
  } catch (const Failure& e) {
    k = e.kind;
    msg = e.what();
  } catch (const std::bad_alloc&) {
    k = ErrorKind::internal;
    msg = "out of memory while preprocessing the image";
  } catch (const std::exception& e) {
    k = ErrorKind::internal;
    msg = std::string("image preprocessing failed: ") + e.what();
  }
  if (err) *err = msg;
  if (kind) *kind = k;
  return false;
}

void finish(Tiles* t, json info, std::vector<int64_t> shape, std::vector<int64_t> run_shape, int64_t rows) {
  t->shape = std::move(shape);
  t->run_shape = std::move(run_shape);
  t->runs = static_cast<int>(t->shape[0]);
  t->rows_per_run = static_cast<int>(rows);
  t->plan = std::move(info);
  t->info = t->plan.dump();
}

// embeds [runs, rows_per_run, dim] -> the block of `rows` rows starting at row `first`
Block block(const float* embeds, int64_t first, int64_t rows, int64_t dim, int index) {
  Block b;
  b.kind = Block::Kind::embeddings;
  b.index = index;
  b.rows = rows;
  b.dim = dim;
  b.data.assign(embeds + first * dim, embeds + (first + rows) * dim);
  return b;
}

void check_embeds(const Tiles& t, size_t n_floats, int dim) {
  const size_t want = static_cast<size_t>(t.runs) * t.rows_per_run * dim;
  if (n_floats != want)
    fail_input("the vision embeddings hold " + std::to_string(n_floats) + " floats; the plan expects [" +
               std::to_string(t.runs) + ", " + std::to_string(t.rows_per_run) + ", " + std::to_string(dim) + "]");
}

void emit(const Layout& layout, const Tiles& t, const float* embeds, int dim, std::vector<Block>* out) {
  for (const Piece& p : layout) {
    if (p.is_text) {
      Block b;
      b.text = p.text;
      out->push_back(std::move(b));
    } else {
      out->push_back(block(embeds, int64_t{p.index} * t.rows_per_run, t.rows_per_run, dim, p.index));
    }
  }
}

class Base : public Scheme {
 public:
  Base(std::string name, int dim, int tokens) : name_(std::move(name)), tokens_(tokens) { embed_dim_ = dim; }
  const std::string& name() const override { return name_; }
  bool tiles_independent() const override { return true; }
  bool plan(const Image& im, const Budget& b, Tiles* out, std::string* err, ErrorKind* kind) const override {
    return guard(err, kind, [&] {
      check_image(im);
      const Limits l = limits_of(b);
      *out = Tiles{};
      do_plan(copy_image(im), b, l, out);
    });
  }
  bool layout(const Tiles& t, const float* e, size_t n, std::vector<Block>* out, std::string* err,
              ErrorKind* kind) const override {
    return guard(err, kind, [&] {
      check_embeds(t, n, embed_dim_);
      if (n && !e) fail_input("the vision embeddings are missing");
      do_layout(t, e, out);
    });
  }

 protected:
  virtual void do_plan(const Rgb& rgb, const Budget& b, const Limits& l, Tiles* out) const = 0;
  virtual void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const = 0;
  std::string name_;
  int tokens_;  // vision.tokens_per_image
};

class Clip : public Base {  // schemes.ClipScheme
 public:
  Clip(const json& v, int dim, int tokens) : Base("clip", dim, tokens), p_(clip_params(v.at("preprocess"))) {}
  void do_plan(const Rgb& rgb, const Budget& b, const Limits&, Tiles* out) const override {
    if (b.max_image_tokens && b.max_image_tokens < tokens_)
      fail_input("max-image-tokens " + std::to_string(b.max_image_tokens) + " is below the " + std::to_string(tokens_) +
                 " tokens this model always uses per image");
    const ClipPlan plan = plan_clip(rgb.w, rgb.h, p_);
    apply_clip(rgb, plan, p_, &out->data);
    finish(out, {{"tiles", 1}, {"grid", {1, 1}}, {"budget_applied", false}}, {1, 3, plan.output[1], plan.output[0]},
           {1, 3, plan.output[1], plan.output[0]}, tokens_);
  }
  void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const override {
    out->push_back(block(e, 0, t.rows_per_run, embed_dim_, 0));
  }
  ClipParams p_;
};

class Idefics3 : public Base {  // schemes.Idefics3Scheme
 public:
  Idefics3(const json& v, int dim, int tokens) : Base("idefics3", dim, tokens), p_(idefics3_params(v.at("preprocess"))) {}
  void do_plan(const Rgb& rgb, const Budget&, const Limits& l, Tiles* out) const override {
    const Idefics3Plan plan = plan_idefics3(rgb.w, rgb.h, p_, l);
    apply_idefics3(rgb, plan, p_, &out->data);
    const int s = p_.tile_size;
    finish(out, to_json(plan), {plan.tiles, 3, s, s}, {1, 3, s, s}, tokens_);
  }
  void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const override {
    const auto grid = t.plan.at("grid");
    emit(idefics3_layout(grid[0].get<int>(), grid[1].get<int>(), p_), t, e, embed_dim_, out);
  }
  Idefics3Params p_;
};

class Anyres : public Base {  // schemes.AnyresScheme
 public:
  Anyres(const json& v, const std::string& dir, int dim, int tokens)
      : Base("anyres", dim, tokens), p_(anyres_params(v.at("preprocess"))) {
    const json extras = v.value("extras", json::object());
    if (!extras.is_object() || !extras.contains("image_newline") || !extras["image_newline"].is_string())
      fail_bundle("an anyres bundle needs the image_newline extra in its manifest");
    newline_ = load_npy_f32(dir + "/" + extras["image_newline"].get<std::string>());
  }
  void do_plan(const Rgb& rgb, const Budget&, const Limits& l, Tiles* out) const override {
    const AnyresPlan plan = plan_anyres(rgb.w, rgb.h, p_, l);
    apply_anyres(rgb, plan, p_, &out->data);
    const int s = p_.crop_size;
    finish(out, to_json(plan), {plan.tiles, 3, s, s}, {1, 3, s, s}, tokens_);
  }
  // slice_anyres.pack_anyres_features
  void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const override {
    const AnyresPlan plan = anyres_from_json(t.plan);
    const int64_t side = p_.crop_size / p_.patch_size, dim = embed_dim_;
    if (t.runs != plan.tiles || t.rows_per_run != side * side)
      fail_input("features of shape [" + std::to_string(t.runs) + ", " + std::to_string(t.rows_per_run) +
                 "] do not match the plan: expected [" + std::to_string(plan.tiles) + ", " + std::to_string(side * side) + ", D]");
    if (static_cast<int64_t>(newline_.size()) != dim)
      fail_input("newline must be a vector of " + std::to_string(dim) + " values, got " + std::to_string(newline_.size()));
    Block b;
    b.kind = Block::Kind::embeddings;
    b.index = 0;
    b.dim = dim;
    b.data.assign(e, e + side * side * dim);  // the base frame's features
    const int rows = plan.grid[0], cols = plan.grid[1];
    if (rows == 0) {
      b.data.insert(b.data.end(), newline_.begin(), newline_.end());
    } else {
      const auto [r0, r1, c0, c1] = anyres_feature_window(plan, p_);
      for (int64_t y = r0; y < r1; ++y) {  // the (rows*side) x (cols*side) map, unpadded, row by row
        for (int64_t x = c0; x < c1; ++x) {
          const int64_t tile = 1 + (y / side) * cols + x / side, row = (y % side) * side + x % side;
          const float* src = e + (tile * side * side + row) * dim;
          b.data.insert(b.data.end(), src, src + dim);
        }
        b.data.insert(b.data.end(), newline_.begin(), newline_.end());
      }
    }
    b.rows = static_cast<int64_t>(b.data.size()) / dim;
    out->push_back(std::move(b));
  }
  AnyresParams p_;
  std::vector<float> newline_;
};

class Gemma3 : public Base {  // schemes.Gemma3Scheme
 public:
  Gemma3(const json& v, int dim, int tokens) : Base("gemma3", dim, tokens), p_(gemma3_params(v.at("preprocess"))) {}
  bool inline_text() const override { return true; }
  void do_plan(const Rgb& rgb, const Budget&, const Limits& l, Tiles* out) const override {
    const Gemma3Plan plan = plan_gemma3(rgb.w, rgb.h, p_, l);
    apply_gemma3(rgb, plan, p_, &out->data);
    const int s = p_.image_size;
    finish(out, to_json(plan), {plan.tiles, 3, s, s}, {1, 3, s, s}, tokens_);
  }
  void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const override {
    emit(gemma3_layout(t.plan.at("tiles").get<int64_t>(), p_), t, e, embed_dim_, out);
  }
  Gemma3Params p_;
};

class Qwen2VL : public Base {  // schemes.Qwen2VLScheme
 public:
  Qwen2VL(const json& v, int dim, int tokens) : Base("qwen2vl", dim, tokens), p_(qwen2vl_params(v.at("preprocess"))) {}
  bool tiles_independent() const override { return false; }
  bool mrope() const override { return true; }
  void do_plan(const Rgb& rgb, const Budget& b, const Limits& l, Tiles* out) const override {
    const Qwen2VLPlan plan = plan_qwen2vl(rgb.w, rgb.h, p_, l.max_image_tokens);
    apply_qwen2vl(rgb, plan, p_, &out->data);
    json info = to_json(plan);
    info["tiles"] = plan.grid[0];
    json unused = json::array();
    if (b.max_tiles) unused.push_back("max_tiles");
    if (b.max_upscale != 0) unused.push_back("max_upscale");
    if (!unused.empty()) info["budget_not_applicable"] = unused;
    const int64_t m = p_.merge_size, gh = plan.grid[1], gw = plan.grid[2];
    const int64_t width = 3 * int64_t{p_.temporal_patch_size} * p_.patch_size * p_.patch_size;
    out->extra_inputs = qwen2vl_inputs(gh, gw, p_);
    out->frame_width = plan.resized[0];
    out->frame_height = plan.resized[1];
    finish(out, info, {plan.grid[0], gh / m, gw / m, m * m, width}, {gh * gw, width}, gh * gw / (m * m));
  }
  void do_layout(const Tiles& t, const float* e, std::vector<Block>* out) const override {
    Block b = block(e, 0, int64_t{t.runs} * t.rows_per_run, embed_dim_, 0);
    const auto g = t.plan.at("grid");
    b.positions = mrope_positions({g[0].get<int64_t>(), g[1].get<int64_t>(), g[2].get<int64_t>()}, p_.merge_size);
    out->push_back(std::move(b));
  }
  Qwen2VLParams p_;
};

// An integer field of at least `least` (1, or 0 where the count varies per image, as qwen2vl's rows do).
int count_field(const json& v, const char* name, int least) {
  auto it = v.find(name);
  if (it == v.end()) fail_bundle(std::string("manifest.json: vision.") + name + " is missing");
  if (!it->is_number_integer() || it->get<int64_t>() < least || it->get<int64_t>() > 100000000)
    fail_bundle(std::string("manifest.json: vision.") + name + " must be an integer of at least " +
                std::to_string(least) + ", got " + it->dump());
  return it->get<int>();
}

}  // namespace

std::unique_ptr<Scheme> Scheme::create(const json& vision, const std::string& dir, std::string* err, ErrorKind* kind) {
  std::unique_ptr<Scheme> out;
  guard(err, kind, [&] {
    if (!vision.is_object()) fail_bundle("manifest.json: vision must be an object");
    auto pp = vision.find("preprocess");
    if (pp == vision.end() || !pp->is_object()) fail_bundle("manifest.json: vision.preprocess must be an object");
    auto sch = pp->find("scheme");
    if (sch == pp->end()) fail_bundle("manifest.json: vision.preprocess.scheme is missing");
    const std::string name = sch->is_string() ? sch->get<std::string>() : sch->dump();
    const int dim = count_field(vision, "embed_dim", 1);
    const int tokens = count_field(vision, "tokens_per_image", name == "qwen2vl" ? 0 : 1);
    if (name == "clip") out = std::make_unique<Clip>(vision, dim, tokens);
    else if (name == "idefics3") out = std::make_unique<Idefics3>(vision, dim, tokens);
    else if (name == "anyres") out = std::make_unique<Anyres>(vision, dir, dim, tokens);
    else if (name == "gemma3") out = std::make_unique<Gemma3>(vision, dim, tokens);
    else if (name == "qwen2vl") out = std::make_unique<Qwen2VL>(vision, dim, tokens);
    else fail_bundle("unknown image preprocessing scheme '" + name + "' in the manifest");
  });
  return out;
}

}  // namespace edge::vision
