/* edge.h: the C API of edge's native library (libedge) for mobile apps.
 *
 * It runs the same bundle as the Python runtime: manifest.json, the LLM GGUF (llama.cpp), the image
 * schemes (C++ port), and vision either through the bundle's mmproj GGUF (llama.cpp's clip, "projector")
 * or through an app callback that runs the bundle's ONNX vision graph itself (onnxruntime + NPU).
 *
 * Errors: every function returns an edge_status (or NULL); nothing aborts and no C++ exception crosses
 * this boundary (out-of-memory included: EDGE_ERR_OUT_OF_MEMORY). edge_last_error() is the one-line
 * message of the last failed call on the calling thread.
 *
 * Thread safety:
 *  - an edge_bundle is read-only after edge_bundle_open: any number of sessions on any threads may share
 *    it; close it after every session made from it is closed.
 *  - an edge_session is used by one thread at a time (the app serialises its calls);
 *  - edge_session_cancel() may be called from any thread at any time while the session is open;
 *  - callbacks (token, encoder) run on the thread that called edge_session_generate;
 *  - edge_last_error() is per thread.
 */
#ifndef EDGE_H
#define EDGE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define EDGE_API __declspec(dllexport)
#else
#define EDGE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum edge_status {
  EDGE_OK = 0,
  EDGE_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a value out of range, a call out of order */
  EDGE_ERR_IO = 2,               /* a file is missing or cannot be read */
  EDGE_ERR_BUNDLE = 3,           /* the manifest is malformed, of an unknown schema_version, or a file
                                    does not match its entry (size, sha256) */
  EDGE_ERR_UNSUPPORTED = 4,      /* the bundle needs what this build cannot do (e.g. no vision part) */
  EDGE_ERR_IMAGE = 5,            /* an image is empty, too large, or does not fit its buffer */
  EDGE_ERR_PROMPT = 6,           /* markers and images do not pair up, an unknown role, ... */
  EDGE_ERR_CONTEXT = 7,          /* the prompt does not fit the context */
  EDGE_ERR_VISION = 8,           /* the vision encoder failed (the callback returned non-zero) */
  EDGE_ERR_BACKEND = 9,          /* llama.cpp failed (load, decode) */
  EDGE_ERR_CANCELLED = 10,       /* edge_session_cancel() stopped the call */
  EDGE_ERR_OUT_OF_MEMORY = 11,
  EDGE_ERR_INTERNAL = 12
} edge_status;

/* The message of the last failed call on this thread ("" after a success); valid until the next call. */
EDGE_API const char* edge_last_error(void);
/* A constant name for a status ("EDGE_ERR_BUNDLE"). */
EDGE_API const char* edge_status_name(edge_status status);
/* The library version and the manifest schema_version it reads, e.g. "0.1.0 (schema 2)". */
EDGE_API const char* edge_version(void);

typedef struct edge_bundle edge_bundle;
typedef struct edge_session edge_session;

/* Open a bundle directory: manifest.json is checked (size cap, nesting depth, types, ranges, the
 * schema_version this library knows), every files entry must exist inside the bundle with its recorded
 * size; verify_sha256 != 0 also hashes every file (slow for big GGUFs). */
EDGE_API edge_status edge_bundle_open(const char* dir, int verify_sha256, edge_bundle** out);
EDGE_API void edge_bundle_close(edge_bundle* bundle);
/* A JSON object about the bundle: {name, family, has_vision, has_projector, image_marker, n_ctx_train,
 * scheme, tokens_per_image, embed_dim}; owned by the bundle. */
EDGE_API const char* edge_bundle_info(const edge_bundle* bundle);

typedef enum edge_dtype { EDGE_DTYPE_F32 = 0, EDGE_DTYPE_I64 = 1 } edge_dtype;

/* A borrowed tensor: row-major values of `dtype`, valid during the callback only. */
typedef struct edge_tensor {
  const char* name;      /* the vision graph input it feeds */
  edge_dtype dtype;
  int32_t ndim;
  const int64_t* shape;
  const void* data;
} edge_tensor;

/* What the encoder callback gets: the tiles of one image, preprocessed by the bundle's scheme exactly as
 * the Python runtime's TilePlan.pixel_values ([tiles, 3, H, W]; qwen2vl: [groups, gh/m, gw/m, m*m,
 * 3*T*P*P]), to run through the bundle's ONNX vision graph `runs` times (one tile per run, input
 * shape run_shape, plus `extra` inputs for schemes whose graph takes more, e.g. qwen2vl's positions),
 * and the embeddings to write: [out_tiles, out_rows, out_dim] float32, the runs' outputs concatenated. */
typedef struct edge_tiles {
  edge_tensor pixels;        /* name: manifest vision.input.name */
  int64_t runs;
  int32_t run_ndim;
  const int64_t* run_shape;
  int32_t n_extra;
  const edge_tensor* extra;
  int64_t out_tiles, out_rows, out_dim;
  const char* info_json;     /* the plan (grid, tiles, ...) as JSON, as the Python plan's info */
} edge_tiles;

/* Fill out[out_tiles * out_rows * out_dim] with the vision graph's output for tiles; return 0, or
 * non-zero for an error (the generate call then fails with EDGE_ERR_VISION and that code). */
typedef int (*edge_encoder_fn)(void* user_data, const edge_tiles* tiles, float* out);

typedef enum edge_vision_path {
  EDGE_VISION_AUTO = 0,      /* the projector when the bundle has one and this build has it, else callback */
  EDGE_VISION_PROJECTOR = 1, /* the bundle's mmproj GGUF through llama.cpp's clip */
  EDGE_VISION_CALLBACK = 2   /* the app's encoder callback */
} edge_vision_path;

typedef struct edge_session_params {
  int32_t n_ctx;      /* context tokens; 0: the model's training context, at most 4096 (as `edge run`) */
  int32_t n_batch;    /* tokens per llama_decode; 0: 512 (raised to one image block for bidirectional) */
  int32_t threads;    /* 0: the number of online CPU cores, at most 4 */
  int32_t max_tiles;  /* image budget: 0 = the bundle's default */
  int32_t max_image_tokens;
  double max_upscale;
  edge_vision_path vision;
  edge_encoder_fn encoder; /* required for EDGE_VISION_CALLBACK */
  void* encoder_user_data;
} edge_session_params;

EDGE_API void edge_session_params_default(edge_session_params* params);
EDGE_API edge_status edge_session_create(const edge_bundle* bundle, const edge_session_params* params,
                                         edge_session** out);
EDGE_API void edge_session_close(edge_session* session);

/* An RGB8 image (an app's camera frame): rows of `stride` bytes (>= 3 * width), height rows; the buffer
 * holds buffer_bytes. The pixels are copied; they go with the next message (or the raw prompt) in order. */
EDGE_API edge_status edge_session_add_image(edge_session* session, const uint8_t* rgb, size_t buffer_bytes,
                                            int32_t width, int32_t height, size_t stride);
/* Raw prompt text, appended to the pending prompt (no chat template; the manifest's image marker, e.g.
 * "<image>", stands where each added image goes), as `edge run --no-template`. */
EDGE_API edge_status edge_session_add_text(edge_session* session, const char* text);
/* A chat turn (role "system" | "user" | "assistant"): the conversation is rendered with the bundle's chat
 * role affixes; images added since the last message belong to this one (at its image markers, else
 * before its text). Assistant answers from edge_session_generate are recorded by the session. */
EDGE_API edge_status edge_session_add_message(edge_session* session, const char* role, const char* content);
/* Forget the conversation and the KV cache. */
EDGE_API edge_status edge_session_reset(edge_session* session);

/* Streaming: called for each generated token with the text it completes (UTF-8, may be "" mid-character);
 * return non-zero to stop (finish reason "callback"). token -1: the held-back tail at the end. */
typedef int (*edge_token_fn)(void* user_data, int32_t token, const char* text, size_t text_len);

typedef struct edge_generate_params {
  int32_t max_tokens;  /* default 256 */
  float temperature;   /* 0 = greedy (argmax), the default */
  int32_t top_k;       /* default 40, 0 = all */
  float top_p;         /* default 0.95 */
  uint32_t seed;       /* sampling seed */
} edge_generate_params;

EDGE_API void edge_generate_params_default(edge_generate_params* params);

typedef struct edge_timings {
  double preprocess_ms, image_encode_ms, encode_ms_per_tile, prefill_ms, ttft_ms, decode_ms;
  double prefill_tokens_per_s, decode_tokens_per_s;
  int32_t prompt_tokens, reused_tokens, generated_tokens, images, tiles, image_tokens;
} edge_timings;

/* Evaluate what is new of the pending prompt (the KV cache keeps the longest common prefix with the last
 * request) and generate. The finish reason ("stop", "length", "context", "callback", "cancelled") goes to
 * the session (edge_session_finish_reason). A cancel (edge_session_cancel) returns EDGE_ERR_CANCELLED and
 * keeps what the KV cache validly holds. */
EDGE_API edge_status edge_session_generate(edge_session* session, const edge_generate_params* params,
                                           edge_token_fn on_token, void* user_data);
/* Ask the running (or next) generate call to stop at the next token or block; any thread. */
EDGE_API void edge_session_cancel(edge_session* session);
EDGE_API const char* edge_session_finish_reason(const edge_session* session);
EDGE_API edge_status edge_session_timings(const edge_session* session, edge_timings* out);
/* The last answer's token ids: copies at most cap of them into ids, returns how many there are. */
EDGE_API size_t edge_session_tokens(const edge_session* session, int32_t* ids, size_t cap);
/* The last answer's timings, tokens and text as one JSON object {text, tokens, finish_reason, timings}. */
EDGE_API const char* edge_session_result_json(const edge_session* session);

#ifdef __cplusplus
}
#endif
#endif /* EDGE_H */
