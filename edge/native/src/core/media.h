// What an image becomes for the LLM (runtime/vision/images.py Encoded): layout pieces (text, or one
// embedding block) in prompt order, and how the image stage turns an RGB buffer into them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edge.h"
#include "manifest.h"

namespace edge::core {

// One embedding block in the sequence, keyed by content (runtime/text/sequence.py MediaBlock).
struct MediaBlock {
  std::string key;
  std::vector<float> rows;         // n * n_embd
  int n = 0;
  std::vector<int32_t> positions;  // mrope: [3, n] (t, h, w) relative to the block's first position; else empty
};

struct Piece {  // a layout piece: text (block == nullptr) or an embedding block
  std::string text;
  std::shared_ptr<MediaBlock> block;
};

struct Encoded {
  std::vector<Piece> layout;
  int tiles = 0;
  int image_tokens = 0;
  std::string info_json;
};

struct ImageTimings {
  double preprocess_ms = 0, encode_ms = 0;
  int tiles = 0;
};

struct RGBImage {  // a copy of the app's pixels, tightly packed
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// The most pixels one image may claim (a 16k x 16k photo is already 768 MiB of RGB8).
constexpr int64_t kMaxImagePixels = int64_t(1) << 28;
constexpr int kMaxImageSide = 1 << 15;

// Check an app's RGB buffer and copy it: 0 sizes, strides under 3*width, buffers smaller than the claimed
// size and images over kMaxImagePixels are EDGE_ERR_IMAGE / EDGE_ERR_INVALID_ARGUMENT.
RGBImage copy_image(const uint8_t* rgb, size_t buffer_bytes, int32_t width, int32_t height, size_t stride);

// Images -> Encoded for one bundle: the bundle's scheme (edge::vision) and a vision encoder (the projector,
// or the app's callback). Built only when the library has the vision part (EDGE_HAVE_VISION).
class ImageStage {
 public:
  virtual ~ImageStage() = default;
  virtual Encoded encode(const RGBImage& image, const edge_session_params& budget, ImageTimings& t) = 0;
  virtual bool inline_text() const = 0;  // Gemma3Scheme.inline_text
  virtual const char* path() const = 0;  // "projector" or "callback"
  virtual const std::string& unavailable() const = 0;  // why images cannot be encoded ("" when they can)
};

// The image stage for a bundle with vision, or an error naming why it cannot be made.
std::unique_ptr<ImageStage> make_image_stage(const Bundle& bundle, const edge_session_params& params);

}  // namespace edge::core
