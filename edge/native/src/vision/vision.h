// edge::vision: the image preprocessing schemes of the Python runtime, in C++17.
//
// A port of runtime/vision/schemes.py (SCHEMES: clip, idefics3, anyres, gemma3, qwen2vl) with the
// planners and pixel work they use (runtime/vision/clip.py, slice_*.py; the UHD planner of
// slice_uhd.py is in uhd.h, as the Python runtime has no UHD Scheme). Plans, pixel values (bit-identical
// float32: Pillow's fixed-point resampler is ported exactly) and layouts equal the Python runtime's;
// tests/native/golden_vectors.py writes the golden vectors that `edge-vision-golden` checks.
//
// Errors: every function returns false (or null) with a one-line message in *err and never throws
// (exceptions are caught inside). ErrorKind tells which Python exception the message stands for.
//
// Thread-safety: a Scheme is immutable after create(); plan() and layout() may run concurrently on
// one Scheme. Tiles and Block are plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edge::vision {

// The Python exception a failure stands for (edge/errors.py).
enum class ErrorKind {
  none = 0,
  input,   // InputError: a bad budget, an image the scheme cannot take
  image,   // ImageError (an InputError): an image without pixels
  bundle,  // BundleError: the manifest's vision object is wrong, an extra file is missing
  internal // anything else (out of memory, a bug): RuntimeFailure
};

// An RGB8 image, interleaved, rows `stride` bytes apart (0: width * 3). Not owned.
struct Image {
  int width = 0, height = 0;
  const uint8_t* rgb = nullptr;
  size_t stride = 0;
};

// Limits on one image's cost (edge.options.Budget); 0 = not set. Negative values are refused.
struct Budget {
  int max_tiles = 0, max_image_tokens = 0;
  double max_upscale = 0;
};

// One tensor a vision-graph run takes besides the pixel values (qwen2vl's rope_pos, window_index, ...).
struct Tensor {
  enum class DType { f32, i64 };
  std::string name;  // the graph input's name, from the manifest (Qwen2VLPreprocess.*_input)
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<float> f32;    // when dtype == f32
  std::vector<int64_t> i64;  // when dtype == i64
};

// What Scheme::plan made of one image (TilePlan of runtime/vision/schemes.py).
struct Tiles {
  // pixel_values exactly as the Python TilePlan.pixel_values: [n, 3, H, W] for clip, idefics3, anyres,
  // gemma3; [grid_t, gh/m, gw/m, m*m, 3*T*P*P] for qwen2vl (one graph run per element of axis 0, fed
  // as the 2-D [gh*gw, 3*T*P*P], see run_shape).
  std::vector<int64_t> shape;
  std::vector<float> data;
  // the graph's pixel input of one run (one tile): [1, 3, H, W], or qwen2vl's [gh*gw, 3*T*P*P]
  std::vector<int64_t> run_shape;
  int runs = 0;             // vision-graph runs (== shape[0])
  int rows_per_run = 0;     // embedding rows each run returns
  std::vector<Tensor> extra_inputs;  // the other inputs of each run (qwen2vl: graph_feeds), else empty
  std::string info;         // the plan info as JSON text, as TilePlan.info (what --json reports)
  nlohmann::json plan;      // the same, parsed: what layout() reads
  // qwen2vl: the resized image (w, h) before patchify, for encoders that patchify themselves
  int frame_width = 0, frame_height = 0;
};

// One piece of the layout: text, or the embedding rows of one block (Python's Layout + blocks).
struct Block {
  enum class Kind { text, embeddings };
  Kind kind = Kind::text;
  std::string text;            // Kind::text
  int index = -1;              // Kind::embeddings: the block's index (the int of the Python layout)
  int64_t rows = 0, dim = 0;   // Kind::embeddings
  std::vector<float> data;     // rows * dim floats
  // M-RoPE (t, h, w) position offsets of each row relative to the first row, [3, rows] row-major
  // (Qwen2VLScheme.positions); empty for linear positions
  std::vector<int64_t> positions;
};

// One preprocessing scheme, built from the manifest's `vision` object.
class Scheme {
 public:
  virtual ~Scheme() = default;

  // The scheme the manifest's vision.preprocess.scheme names (schemes.py scheme_for), with the
  // parameters checked as edge/preprocess*.py and edge/checks.py check them. `bundle_dir` is where
  // vision.extras files (anyres: image_newline .npy) are read. Null with *err on failure.
  static std::unique_ptr<Scheme> create(const nlohmann::json& vision, const std::string& bundle_dir,
                                        std::string* err, ErrorKind* kind = nullptr);

  virtual const std::string& name() const = 0;      // "clip", "idefics3", ...
  virtual bool tiles_independent() const = 0;       // Scheme.tiles_independent
  virtual bool inline_text() const { return false; }// Gemma3Scheme.inline_text: join layout text to the prompt
  virtual bool mrope() const { return false; }      // blocks carry M-RoPE positions (qwen2vl)
  int embed_dim() const { return embed_dim_; }      // vision.embed_dim

  // Plan the tiles of `image` under `budget` and make their pixel values.
  virtual bool plan(const Image& image, const Budget& budget, Tiles* out, std::string* err,
                    ErrorKind* kind = nullptr) const = 0;

  // Lay out the vision graph's output for `tiles`: `embeds` is [runs, rows_per_run, embed_dim]
  // float32 (n_floats in all). Appends text pieces and embedding blocks in prompt order to *out.
  virtual bool layout(const Tiles& tiles, const float* embeds, size_t n_floats, std::vector<Block>* out,
                      std::string* err, ErrorKind* kind = nullptr) const = 0;

 protected:
  int embed_dim_ = 0;
};

}  // namespace edge::vision
