// edge::projector: llama.cpp's clip encoder on tiles that edge preprocessed itself.
//
// clip.cpp (llama.cpp tools/mtmd, compiled into this library with hidden visibility) takes each image as a
// clip_image_f32: already normalised floats, interleaved RGB, row-major (clip-impl.h); clip_encode
// (clip.cpp) de-interleaves it into its planar `inp_raw` input. The ONNX vision graph takes the same
// pixels planar ([n, 3, H, W]) or, for Qwen2-VL, patchified in HF's order; the converters below undo
// those layouts exactly, so both encoders see the same numbers.
#include "projector.h"

#include "vision.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <sys/stat.h>
#include <utility>

#include "clip-impl.h"
#include "clip-model.h"
#include "clip.h"
#include "gguf.h"

namespace edge::projector {
namespace {

// clip_image_size::area() asserts sides up to this (clip.h).
constexpr int kMaxSide = 46000;

// clip logs through one process-wide logger (clip-impl.h g_logger_state). We keep its error lines, per
// thread, for the error message, and drop its info/debug chatter (the caller reports what it needs).
thread_local std::string t_clip_errors;
thread_local bool t_last_was_error = false;

void clip_log(enum ggml_log_level level, const char* text, void* /*user*/) {
    if (level == GGML_LOG_LEVEL_ERROR || (level == GGML_LOG_LEVEL_CONT && t_last_was_error)) {
        t_clip_errors += text;
        t_last_was_error = true;
    } else if (level != GGML_LOG_LEVEL_CONT) {
        t_last_was_error = false;
    }
}

void install_logger() {
    static std::once_flag once;
    std::call_once(once, [] {
        g_logger_state.log_callback = clip_log;
        g_logger_state.log_callback_user_data = nullptr;
    });
}

// The first error line clip logged since the last reset, without its "function: " prefix or newline.
std::string clip_error() {
    std::string s = t_clip_errors;
    const auto nl = s.find('\n');
    if (nl != std::string::npos) s.resize(nl);
    const auto colon = s.find(": ");
    if (colon != std::string::npos && colon < 40) s = s.substr(colon + 2);
    return s;
}

struct GgufFree {
    void operator()(gguf_context* c) const { gguf_free(c); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufFree>;

// Checks what clip's loader would otherwise abort on or read past: a GGUF header and tables that gguf's
// own reader accepts, every tensor's data inside the file, and a vision encoder in it.
bool validate(const std::string& path, std::string& error) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        error = "projector GGUF " + path + " does not exist";
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        error = "projector GGUF " + path + " is not a regular file";
        return false;
    }
    gguf_init_params params{/* no_alloc */ true, /* ctx */ nullptr};
    GgufPtr gguf(gguf_init_from_file(path.c_str(), params));
    if (!gguf) {
        error = "projector GGUF " + path + " is not a valid GGUF file (bad header, or truncated metadata)";
        return false;
    }
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    const uint64_t data = gguf_get_data_offset(gguf.get());
    const int64_t n_tensors = gguf_get_n_tensors(gguf.get());
    for (int64_t i = 0; i < n_tensors; ++i) {
        const uint64_t end = data + gguf_get_tensor_offset(gguf.get(), i) + gguf_get_tensor_size(gguf.get(), i);
        if (end > file_size) {
            error = "projector GGUF " + path + " is truncated: tensor '" + gguf_get_tensor_name(gguf.get(), i) +
                    "' ends at byte " + std::to_string(end) + " of a " + std::to_string(file_size) + "-byte file";
            return false;
        }
    }
    const int64_t key = gguf_find_key(gguf.get(), KEY_HAS_VISION_ENC);
    if (key < 0 || gguf_get_kv_type(gguf.get(), key) != GGUF_TYPE_BOOL || !gguf_get_val_bool(gguf.get(), key)) {
        error = "projector GGUF " + path + " has no vision encoder (" KEY_HAS_VISION_ENC " is not true)";
        return false;
    }
    for (const char* name : {KEY_PROJ_TYPE, KEY_VISION_PROJ_TYPE}) {
        const int64_t k = gguf_find_key(gguf.get(), name);
        if (k >= 0 && gguf_get_kv_type(gguf.get(), k) != GGUF_TYPE_STRING) {
            error = "projector GGUF " + path + ": " + name + " is not a string";
            return false;
        }
    }
    return true;
}

// Projectors whose tile size is free (a patch grid, Qwen2-VL's dynamic resolution).
bool is_dynamic(projector_type t) {
    return t == PROJECTOR_TYPE_QWEN2VL || t == PROJECTOR_TYPE_QWEN25VL || t == PROJECTOR_TYPE_QWEN3VL;
}

std::string type_name(projector_type t) {
    const auto it = PROJECTOR_TYPE_NAMES.find(t);
    return it == PROJECTOR_TYPE_NAMES.end() ? std::string("unknown") : it->second;
}

}  // namespace

struct Projector::Impl {
    clip_ctx* ctx = nullptr;
    int n_threads = 1;
    Info info;
    projector_type type = PROJECTOR_TYPE_UNKNOWN;

    ~Impl() { clip_free(ctx); }

    // Rows clip returns for one image of nx x ny (a placeholder image: only its size is read).
    int tokens(int nx, int ny) const {
        clip_image_f32 img;
        img.set_size({nx, ny}, /* is_placeholder */ true, /* is_audio */ false);
        return clip_n_output_tokens(ctx, &img);
    }

    // Runs one batch (one tile, or the frames of one Qwen2-VL temporal group) and appends its rows.
    bool run(const clip_image_f32_batch& batch, Embeddings& out, std::string& error) {
        const int rows = tokens(batch.entries[0].nx(), batch.entries[0].ny());
        if (rows <= 0) {
            error = "projector gives no rows for a " + std::to_string(batch.entries[0].nx()) + "x" +
                    std::to_string(batch.entries[0].ny()) + " image";
            return false;
        }
        std::vector<float> embd(static_cast<size_t>(rows) * info.n_embd);
        t_clip_errors.clear();
        if (!clip_image_batch_encode(ctx, n_threads, &batch, embd)) {
            const std::string why = clip_error();
            error = "projector encode failed" + (why.empty() ? std::string() : ": " + why);
            return false;
        }
        if (out.n > 0 && out.tokens != rows) {
            error = "projector tiles give different row counts (" + std::to_string(out.tokens) + " and " +
                    std::to_string(rows) + ")";
            return false;
        }
        out.tokens = rows;
        out.dim = info.n_embd;
        out.n += 1;
        out.data.insert(out.data.end(), embd.begin(), embd.end());
        return true;
    }
};

Projector::Projector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Projector::~Projector() = default;

std::unique_ptr<Projector> Projector::open(const std::string& path, int n_threads, std::string& error) noexcept {
    try {
        install_logger();
        if (!validate(path, error)) return nullptr;
        clip_context_params params{};
        params.use_gpu = false;
        params.device = nullptr;
        // Flash attention on, as libmtmd's default (AUTO resolves to it on the CPU): K and V in f16, 1.2x faster
        // tiles than the plain f32 softmax(QK^T)V path on a SigLIP-512 tower (docs/native.md), at the parity
        // the manifest records for the projector (measured through libmtmd, so with flash attention too).
        params.flash_attn_type = CLIP_FLASH_ATTN_TYPE_ENABLED;
        params.image_min_tokens = -1;
        params.image_max_tokens = -1;
        // No warm-up at open: the first encode reserves buffers for the size it is given (clip_encode).
        params.warmup = false;
        params.no_alloc = false;
        t_clip_errors.clear();
        clip_init_result res = clip_init(path.c_str(), params);
        clip_free(res.ctx_a);
        clip_free(res.ctx_gen_a);
        if (res.ctx_v == nullptr) {
            const std::string why = clip_error();
            error = "cannot load projector GGUF " + path + (why.empty() ? std::string() : ": " + why);
            return nullptr;
        }
        auto impl = std::make_unique<Impl>();
        impl->ctx = res.ctx_v;
        impl->n_threads = n_threads > 0 ? n_threads : 1;
        impl->type = clip_get_projector_type(impl->ctx);
        const clip_hparams* hp = clip_get_hparams(impl->ctx);
        impl->info.projector_type = type_name(impl->type);
        impl->info.n_embd = clip_n_mmproj_embd(impl->ctx);
        impl->info.image_size = hp->image_size;
        impl->info.patch_size = hp->patch_size;
        impl->info.dynamic_resolution = is_dynamic(impl->type);
        if (hp->patch_size <= 0 || hp->image_size <= 0 || hp->image_size > kMaxSide || impl->info.n_embd <= 0) {
            error = "projector GGUF " + path + " has no usable image_size/patch_size/projection width";
            return nullptr;
        }
        impl->info.tokens_per_tile =
            impl->info.dynamic_resolution ? 0 : impl->tokens(hp->image_size, hp->image_size);
        return std::unique_ptr<Projector>(new Projector(std::move(impl)));
    } catch (const std::bad_alloc&) {
        error = "out of memory loading projector GGUF " + path;
    } catch (const std::exception& e) {
        error = "cannot load projector GGUF " + path + ": " + e.what();
    } catch (...) {
        error = "cannot load projector GGUF " + path;
    }
    return nullptr;
}

const Info& Projector::info() const noexcept { return impl_->info; }

int Projector::tokens_for(int width, int height) const noexcept {
    const Info& in = impl_->info;
    if (in.dynamic_resolution) {
        const int unit = in.patch_size * 2;  // clip's Qwen2-VL graph merges 2x2 patches
        if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide || width % unit || height % unit) {
            return 0;
        }
    } else if (width != in.image_size || height != in.image_size) {
        return 0;
    }
    try {
        return impl_->tokens(width, height);
    } catch (...) {
        return 0;
    }
}

// Around each encode overload's body: nothing throws across edge's API, and a failed encode leaves no
// partial embeddings behind.
template <class Body>
static bool guarded_encode(Embeddings& out, std::string& error, Body&& body) noexcept {
    out = Embeddings{};
    try {
        if (body()) return true;
    } catch (const std::bad_alloc&) {
        error = "out of memory in the projector";
    } catch (const std::exception& e) {
        error = std::string("projector encode failed: ") + e.what();
    } catch (...) {
        error = "projector encode failed";
    }
    out = Embeddings{};
    return false;
}

bool Projector::encode(const PlanarTiles& tiles, Embeddings& out, std::string& error) noexcept {
    return guarded_encode(out, error, [&]() -> bool {
        const Info& in = impl_->info;
        if (in.dynamic_resolution) {
            error = "projector " + in.projector_type + " takes patchified pixels (PatchTiles), not [n, 3, H, W]";
            return false;
        }
        if (tiles.n < 0 || (tiles.n > 0 && tiles.data == nullptr)) {
            error = "projector input has no pixel data";
            return false;
        }
        if (tiles.height != in.image_size || tiles.width != in.image_size) {
            error = "projector " + in.projector_type + " takes " + std::to_string(in.image_size) + "x" +
                    std::to_string(in.image_size) + " tiles, got " + std::to_string(tiles.width) + "x" +
                    std::to_string(tiles.height);
            return false;
        }
        const size_t plane = static_cast<size_t>(tiles.width) * tiles.height;
        std::vector<float> rgb(plane * 3);
        for (int t = 0; t < tiles.n; ++t) {
            const float* src = tiles.data + static_cast<size_t>(t) * 3 * plane;
            for (size_t i = 0; i < plane; ++i) {  // planar CHW -> interleaved HWC
                rgb[i * 3 + 0] = src[i];
                rgb[i * 3 + 1] = src[plane + i];
                rgb[i * 3 + 2] = src[2 * plane + i];
            }
            clip_image_f32_batch batch;
            batch.entries.emplace_back();
            batch.entries[0].set_size({tiles.width, tiles.height}, false, false);
            batch.entries[0].cpy_buf(rgb);
            if (!impl_->run(batch, out, error)) return false;
        }
        out.dim = in.n_embd;
        if (out.n == 0) out.tokens = in.tokens_per_tile;
        return true;
    });
}

bool Projector::encode(const PatchTiles& tiles, Embeddings& out, std::string& error) noexcept {
    return guarded_encode(out, error, [&]() -> bool {
        const Info& in = impl_->info;
        if (!in.dynamic_resolution) {
            error = "projector " + in.projector_type + " takes [n, 3, H, W] tiles (PlanarTiles), not patches";
            return false;
        }
        const int p = tiles.patch, m = tiles.merge, tp = tiles.temporal_patch;
        if (tiles.data == nullptr || p != in.patch_size || m != 2 || tp != 2) {
            error = "projector " + in.projector_type + " takes patch " + std::to_string(in.patch_size) +
                    ", merge 2, temporal patch 2; got patch " + std::to_string(p) + ", merge " +
                    std::to_string(m) + ", temporal patch " + std::to_string(tp);
            return false;
        }
        if (tiles.grid_h <= 0 || tiles.grid_w <= 0 || tiles.grid_h % m || tiles.grid_w % m ||
            tiles.grid_h > kMaxSide / p || tiles.grid_w > kMaxSide / p) {
            error = "projector patch grid " + std::to_string(tiles.grid_h) + "x" + std::to_string(tiles.grid_w) +
                    " is not a positive multiple of the merge size within " + std::to_string(kMaxSide) + " pixels";
            return false;
        }
        const int nx = tiles.grid_w * p, ny = tiles.grid_h * p;
        // HF's row order (Qwen2VLImageProcessor._preprocess / slice_qwen2vl.patchify):
        // [bh, bw, mh, mw] rows of [c, t, py, px] values; pixel y = (bh*m + mh)*p + py, x = (bw*m + mw)*p + px.
        const size_t row = static_cast<size_t>(3) * tp * p * p;
        std::vector<std::vector<float>> frames(tp, std::vector<float>(static_cast<size_t>(nx) * ny * 3));
        size_t r = 0;
        for (int bh = 0; bh < tiles.grid_h / m; ++bh) {
            for (int bw = 0; bw < tiles.grid_w / m; ++bw) {
                for (int mh = 0; mh < m; ++mh) {
                    for (int mw = 0; mw < m; ++mw, ++r) {
                        const float* src = tiles.data + r * row;
                        for (int c = 0; c < 3; ++c) {
                            for (int t = 0; t < tp; ++t) {
                                for (int py = 0; py < p; ++py) {
                                    const size_t y = static_cast<size_t>((bh * m + mh) * p + py);
                                    for (int px = 0; px < p; ++px) {
                                        const size_t x = static_cast<size_t>((bw * m + mw) * p + px);
                                        frames[t][(y * nx + x) * 3 + c] = src[((c * tp + t) * p + py) * p + px];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // One entry: clip convolves the frame with both temporal kernel slices (an image: frames equal);
        // two entries: frame 0 with slice 0 and frame 1 with slice 1 (clip's qwen2vl temporal merge).
        clip_image_f32_batch batch;
        const bool same = frames[0] == frames[1];
        for (int t = 0; t < (same ? 1 : tp); ++t) {
            batch.entries.emplace_back();
            batch.entries.back().set_size({nx, ny}, false, false);
            batch.entries.back().cpy_buf(frames[t]);
        }
        if (!impl_->run(batch, out, error)) return false;
        return true;
    });
}

bool Projector::encode(const edge::vision::Tiles& tiles, Embeddings& out, std::string& error) noexcept {
    return guarded_encode(out, error, [&]() -> bool {
        const Info& in = impl_->info;
        const std::vector<int64_t>& s = tiles.shape;
        int64_t count = 1;
        for (const int64_t d : s) count = (d < 0 || (d > 0 && count > INT64_MAX / d)) ? -1 : count * d;
        if (count < 0 || static_cast<uint64_t>(count) != tiles.data.size()) {
            error = "projector input: the pixel shape does not match its " + std::to_string(tiles.data.size()) +
                    " floats";
            return false;
        }
        if (!in.dynamic_resolution) {
            if (s.size() != 4 || s[1] != 3 || s[0] > INT32_MAX || s[2] > kMaxSide || s[3] > kMaxSide) {
                error = "projector " + in.projector_type + " takes pixel values [n, 3, H, W]";
                return false;
            }
            PlanarTiles planar{tiles.data.data(), static_cast<int>(s[0]), static_cast<int>(s[2]),
                               static_cast<int>(s[3])};
            return encode(planar, out, error);
        }
        // qwen2vl: [grid_t, gh/m, gw/m, m*m, 3*T*P*P] (runtime/vision/slice_qwen2vl.apply_qwen2vl)
        const int64_t p = in.patch_size;
        if (s.size() != 5 || s[3] != 4 || s[4] % (3 * p * p) != 0 || s[1] > kMaxSide || s[2] > kMaxSide) {
            error = "projector " + in.projector_type + " takes patchified pixels [grid_t, gh/2, gw/2, 4, 3*T*" +
                    std::to_string(p) + "*" + std::to_string(p) + "]";
            return false;
        }
        PatchTiles patches;
        patches.grid_h = static_cast<int>(s[1] * 2);
        patches.grid_w = static_cast<int>(s[2] * 2);
        patches.patch = static_cast<int>(p);
        patches.merge = 2;
        patches.temporal_patch = static_cast<int>(s[4] / (3 * p * p));
        const size_t group = static_cast<size_t>(s[1] * s[2] * s[3] * s[4]);
        for (int64_t t = 0; t < s[0]; ++t) {
            patches.data = tiles.data.data() + static_cast<size_t>(t) * group;
            Embeddings one;
            if (!encode(patches, one, error)) {
                out = Embeddings{};
                return false;
            }
            if (out.n > 0 && one.tokens != out.tokens) {
                error = "projector temporal groups give different row counts";
                out = Embeddings{};
                return false;
            }
            out.tokens = one.tokens;
            out.dim = one.dim;
            out.n += 1;
            out.data.insert(out.data.end(), one.data.begin(), one.data.end());
        }
        if (out.n == 0) out.dim = in.n_embd;
        return true;
    });
}

}  // namespace edge::projector
