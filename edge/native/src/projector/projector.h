// edge::projector: llama.cpp's clip encoder (tools/mtmd/clip.cpp, compiled into this library with hidden
// symbols) run on tiles that edge's own native preprocessing made, so that the rows it returns are the
// rows the bundle's ONNX vision graph returns for the same pixel values.
//
// What the rows are: clip's graph for the GGUF's projector type, which for most families is exactly the ONNX
// graph's output (to f16-table GELU rounding, ~5e-4 relative). Known exceptions, fixed or not by the GGUF
// writer (tests/native/test_native_projector.py KNOWN_DIVERGENCE): LLaVA/LLaVA-NeXT ("mlp" with a class
// embedding) return HF's patch rows 1..n-1 and then the class row, never patch row 0 (the manifest's
// provenance.parity.mmproj_row_alignment is "cls_last"); clip's qwen2.5vl windows are always 112 pixels.
//
// Thread-safety: a Projector is not safe to use from two threads at once (clip keeps its compute
// buffers in the context); distinct Projectors are independent. Nothing here throws: errors come back as
// false/nullptr plus a one-line message. A missing, truncated, non-GGUF or non-vision file, a GGUF missing a
// hyper-parameter, and tiles of the wrong size/shape are errors. Still able to abort inside ggml (GGML_ASSERT,
// checked by clip/gguf, not here): a GGUF whose keys have another type than clip reads (gguf_get_val_*),
// tensors whose shapes contradict its hyper-parameters, or hyper-parameters clip asserts on (e.g. an
// idefics3 scale factor of 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace edge::vision {
struct Tiles;  // edge/native/src/vision/vision.h (helper native-vision)
}

namespace edge::projector {

/// What the projector GGUF says about itself.
struct Info {
    std::string projector_type;  // clip's name for it ("mlp", "idefics3", "gemma3", "qwen2.5vl_merger", ...)
    int n_embd = 0;              // width of an output row (the LLM's n_embd)
    int image_size = 0;          // side of the square tile the tower was trained on
    int patch_size = 0;          // side of a patch in pixels
    int tokens_per_tile = 0;     // rows one image_size x image_size tile gives (0: depends on the tile size)
    bool dynamic_resolution = false;  // Qwen2-VL style: tile size is free, given by the patch grid
};

/// Normalised pixels in the ONNX graph's layout: [n, 3, height, width] float32, planar (NCHW),
/// row-major. `data` is borrowed for the call.
struct PlanarTiles {
    const float* data = nullptr;
    int n = 0;
    int height = 0;
    int width = 0;
};

/// Qwen2-VL / Qwen2.5-VL patchified pixels of ONE temporal group (one image), in HF's order
/// (runtime/vision/slice_qwen2vl.patchify): [grid_h/merge, grid_w/merge, merge*merge,
/// 3*temporal_patch*patch*patch] float32; i.e. HF's pixel_values rows for image_grid_thw (1, grid_h, grid_w).
struct PatchTiles {
    const float* data = nullptr;
    int grid_h = 0;          // patch rows
    int grid_w = 0;          // patch columns
    int patch = 0;           // patch_size (14)
    int merge = 0;           // spatial merge size (2)
    int temporal_patch = 0;  // temporal_patch_size (2); the frames of a group must be equal (an image)
};

/// Encoder output: n tiles of `tokens` rows of `dim` floats, row-major [n, tokens, dim].
struct Embeddings {
    std::vector<float> data;
    int n = 0;
    int tokens = 0;
    int dim = 0;
};

class Projector {
  public:
    /// Opens an mmproj GGUF (llama.cpp's multimodal-projector format). The file is first checked with
    /// gguf's own reader (header, tensor table, data size) so that a missing, truncated or non-GGUF file
    /// is an error, not an abort. `n_threads` <= 0 means 1. Returns nullptr and sets `error` on failure.
    static std::unique_ptr<Projector> open(const std::string& path, int n_threads, std::string& error) noexcept;
    ~Projector();
    Projector(const Projector&) = delete;
    Projector& operator=(const Projector&) = delete;

    const Info& info() const noexcept;
    /// Rows the encoder returns for one tile of width x height pixels (0 if that size is not accepted).
    int tokens_for(int width, int height) const noexcept;

    /// Encodes tiles one at a time (as runtime/vision/encoder.py runs the ONNX graph) into `out`
    /// ([n, tokens, n_embd]). False + `error` on a shape the projector cannot take or a failed compute.
    bool encode(const PlanarTiles& tiles, Embeddings& out, std::string& error) noexcept;
    bool encode(const PatchTiles& tiles, Embeddings& out, std::string& error) noexcept;
    /// The same for the native preprocessing's output (picks the layout from the Tiles it is given).
    bool encode(const edge::vision::Tiles& tiles, Embeddings& out, std::string& error) noexcept;

  private:
    struct Impl;
    explicit Projector(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace edge::projector
