// The image stage (runtime/vision/images.py ImageStage.encode): plan by the bundle's scheme, encode the tiles
// (projector GGUF or the app's callback), lay the rows out; each block keyed by its pixels for KV reuse.
#include <chrono>
#include <cstring>

#include "errors.h"
#include "media.h"
#include "sha256.h"

#ifdef EDGE_HAVE_VISION
#include "vision.h"
#endif
#ifdef EDGE_HAVE_PROJECTOR
#include "projector.h"
#endif

namespace edge::core {

RGBImage copy_image(const uint8_t* rgb, size_t buffer_bytes, int32_t width, int32_t height, size_t stride) {
  if (!rgb) fail(EDGE_ERR_INVALID_ARGUMENT, "the image buffer is NULL");
  if (width <= 0 || height <= 0)
    fail(EDGE_ERR_IMAGE, "the image is " + std::to_string(width) + "x" + std::to_string(height) + ": it has no pixels");
  if (width > kMaxImageSide || height > kMaxImageSide || int64_t(width) * height > kMaxImagePixels)
    fail(EDGE_ERR_IMAGE, "the image is " + std::to_string(width) + "x" + std::to_string(height) +
                             ", larger than this library takes (at most " + std::to_string(kMaxImageSide) +
                             " a side and " + std::to_string(kMaxImagePixels) + " pixels)");
  const size_t row = size_t(width) * 3;
  if (stride == 0) stride = row;
  if (stride < row) fail(EDGE_ERR_IMAGE, "the image stride " + std::to_string(stride) + " is below 3 * width");
  // the last row needs only its pixels, not a whole stride; no product here can overflow (sides <= 2^15)
  const size_t need = stride * size_t(height - 1) + row;
  if (stride > (SIZE_MAX - row) / size_t(height) || buffer_bytes < need)
    fail(EDGE_ERR_IMAGE, "the image claims " + std::to_string(width) + "x" + std::to_string(height) +
                             " pixels but its buffer holds " + std::to_string(buffer_bytes) + " bytes (needs " +
                             std::to_string(need) + ")");
  RGBImage out;
  out.width = width;
  out.height = height;
  out.rgb.resize(row * size_t(height));
  for (int y = 0; y < height; y++) std::memcpy(out.rgb.data() + row * y, rgb + stride * size_t(y), row);
  return out;
}

#ifndef EDGE_HAVE_VISION

std::unique_ptr<ImageStage> make_image_stage(const Bundle&, const edge_session_params&) {
  fail(EDGE_ERR_UNSUPPORTED, "this build of libedge has no image schemes (edge/native/src/vision)");
}

#else

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

edge_status status_of(vision::ErrorKind kind) {
  switch (kind) {
    case vision::ErrorKind::input: return EDGE_ERR_IMAGE;
    case vision::ErrorKind::image: return EDGE_ERR_IMAGE;
    case vision::ErrorKind::bundle: return EDGE_ERR_BUNDLE;
    default: return EDGE_ERR_INTERNAL;
  }
}

class SchemeStage : public ImageStage {
 public:
  SchemeStage(const Bundle& b, const edge_session_params& p) : params_(p), spec_(*b.manifest.vision) {
    std::string err;
    vision::ErrorKind kind = vision::ErrorKind::none;
    scheme_ = vision::Scheme::create(spec_.json, b.root, &err, &kind);
    if (!scheme_) fail(status_of(kind) == EDGE_ERR_IMAGE ? EDGE_ERR_BUNDLE : status_of(kind), err);
    bool want_projector = p.vision == EDGE_VISION_PROJECTOR ||
                          (p.vision == EDGE_VISION_AUTO && (!b.manifest.projector_file.empty() && !p.encoder));
    if (want_projector) {
#ifdef EDGE_HAVE_PROJECTOR
      if (b.manifest.projector_file.empty())
        fail(EDGE_ERR_UNSUPPORTED, "the bundle has no projector GGUF (vision.projector_gguf); use the encoder callback");
      projector_ = projector::Projector::open(b.path(b.manifest.files.at(b.manifest.projector_file).path),
                                              p.threads, err);
      if (!projector_) fail(EDGE_ERR_BUNDLE, err);
#else
      fail(EDGE_ERR_UNSUPPORTED, "this build of libedge has no projector (edge/native/src/projector)");
#endif
    } else if (!p.encoder) {  // text-only prompts still run; an image is refused when it is added
      unavailable_ = "the vision path is the encoder callback but the session was made without an encoder";
    }
  }

  bool inline_text() const override { return scheme_->inline_text(); }
  const std::string& unavailable() const override { return unavailable_; }
  const char* path() const override { return projector_ ? "projector" : "callback"; }

  Encoded encode(const RGBImage& image, const edge_session_params& p, ImageTimings& t) override {
    if (!unavailable_.empty()) fail(EDGE_ERR_INVALID_ARGUMENT, unavailable_);
    auto t0 = Clock::now();
    vision::Image img{image.width, image.height, image.rgb.data(), size_t(image.width) * 3};
    vision::Budget budget{p.max_tiles, p.max_image_tokens, p.max_upscale};
    vision::Tiles tiles;
    std::string err;
    vision::ErrorKind kind = vision::ErrorKind::none;
    if (!scheme_->plan(img, budget, &tiles, &err, &kind)) fail(status_of(kind), err);
    t.preprocess_ms += ms_since(t0);
    const int64_t dim = scheme_->embed_dim();
    std::vector<float> embeds;
    auto t1 = Clock::now();
    run_encoder(tiles, dim, embeds);
    t.encode_ms += ms_since(t1);
    t.tiles += tiles.runs;
    std::vector<vision::Block> blocks;
    if (!scheme_->layout(tiles, embeds.data(), embeds.size(), &blocks, &err, &kind)) fail(status_of(kind), err);
    // a block's key follows the pixels it came from (sequence.py same(): blocks compare by content key)
    const std::string key = sha256_hex(tiles.data.data(), tiles.data.size() * sizeof(float)).substr(0, 32) + ":" +
                            sha256_hex(tiles.info.data(), tiles.info.size()).substr(0, 16);
    Encoded enc;
    enc.tiles = tiles.runs;
    enc.info_json = tiles.info;
    for (auto& b : blocks) {
      Piece piece;
      if (b.kind == vision::Block::Kind::text) {
        piece.text = std::move(b.text);
      } else {
        if (b.dim != dim || b.rows <= 0 || b.data.size() != size_t(b.rows * b.dim))
          fail(EDGE_ERR_INTERNAL, "the scheme laid out a block that does not fit the LLM's width");
        auto mb = std::make_shared<MediaBlock>();
        mb->key = key + ":" + std::to_string(b.index);
        mb->n = int(b.rows);
        mb->rows = std::move(b.data);
        for (int64_t v : b.positions) mb->positions.push_back(int32_t(v));
        enc.image_tokens += mb->n;
        piece.block = std::move(mb);
      }
      enc.layout.push_back(std::move(piece));
    }
    return enc;
  }

 private:
  void run_encoder(const vision::Tiles& tiles, int64_t dim, std::vector<float>& out) {
    const size_t want = size_t(tiles.runs) * size_t(tiles.rows_per_run) * size_t(dim);
#ifdef EDGE_HAVE_PROJECTOR
    if (projector_) {
      projector::Embeddings e;
      std::string err;
      if (!projector_->encode(tiles, e, err)) fail(EDGE_ERR_VISION, "the projector failed: " + err);
      if (e.data.size() != want)
        fail(EDGE_ERR_VISION, "the projector returned " + std::to_string(e.data.size()) + " floats, the scheme needs " +
                                  std::to_string(want));
      out = std::move(e.data);
      return;
    }
#endif
    out.assign(want, 0.0f);
    std::vector<edge_tensor> extra;
    for (const auto& x : tiles.extra_inputs) {
      edge_tensor t{};
      t.name = x.name.c_str();
      t.dtype = x.dtype == vision::Tensor::DType::f32 ? EDGE_DTYPE_F32 : EDGE_DTYPE_I64;
      t.ndim = int32_t(x.shape.size());
      t.shape = x.shape.data();
      t.data = t.dtype == EDGE_DTYPE_F32 ? static_cast<const void*>(x.f32.data()) : x.i64.data();
      extra.push_back(t);
    }
    edge_tiles arg{};
    arg.pixels.name = spec_.input_name.c_str();
    arg.pixels.dtype = EDGE_DTYPE_F32;
    arg.pixels.ndim = int32_t(tiles.shape.size());
    arg.pixels.shape = tiles.shape.data();
    arg.pixels.data = tiles.data.data();
    arg.runs = tiles.runs;
    arg.run_ndim = int32_t(tiles.run_shape.size());
    arg.run_shape = tiles.run_shape.data();
    arg.n_extra = int32_t(extra.size());
    arg.extra = extra.data();
    arg.out_tiles = tiles.runs;
    arg.out_rows = tiles.rows_per_run;
    arg.out_dim = dim;
    arg.info_json = tiles.info.c_str();
    int rc = params_.encoder(params_.encoder_user_data, &arg, out.data());
    if (rc != 0) fail(EDGE_ERR_VISION, "the encoder callback returned " + std::to_string(rc));
  }

  edge_session_params params_;
  VisionSpec spec_;
  std::string unavailable_;
  std::unique_ptr<vision::Scheme> scheme_;
#ifdef EDGE_HAVE_PROJECTOR
  std::unique_ptr<projector::Projector> projector_;
#else
  void* projector_ = nullptr;
#endif
};

}  // namespace

std::unique_ptr<ImageStage> make_image_stage(const Bundle& bundle, const edge_session_params& params) {
  if (!bundle.manifest.vision) fail(EDGE_ERR_UNSUPPORTED, "this bundle has no vision encoder; it cannot take images");
  return std::make_unique<SchemeStage>(bundle, params);
}

#endif

}  // namespace edge::core
