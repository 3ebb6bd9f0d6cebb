// The C ABI of edge.h: every entry point catches everything (std::bad_alloc included) and turns it into an
// edge_status plus a thread-local message, so no C++ exception or abort crosses into the app.
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "edge.h"
#include "errors.h"
#include "manifest.h"
#include "session.h"

struct edge_bundle {
  edge::core::Bundle bundle;
};

struct edge_session {
  std::unique_ptr<edge::core::Session> session;
};

namespace {

thread_local std::string g_error;

edge_status set_error(edge_status s, const std::string& message) {
  g_error = message;
  return s;
}

template <typename F>
edge_status guard(F&& body) {
  try {
    g_error.clear();
    body();
    return EDGE_OK;
  } catch (const edge::core::Error& e) {
    return set_error(e.status, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(EDGE_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(EDGE_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return set_error(EDGE_ERR_INTERNAL, "internal error");
  }
}

edge_status null_arg(const char* name) { return set_error(EDGE_ERR_INVALID_ARGUMENT, std::string(name) + " is NULL"); }

}  // namespace

extern "C" {

const char* edge_last_error(void) { return g_error.c_str(); }

const char* edge_status_name(edge_status s) {
  switch (s) {
    case EDGE_OK: return "EDGE_OK";
    case EDGE_ERR_INVALID_ARGUMENT: return "EDGE_ERR_INVALID_ARGUMENT";
    case EDGE_ERR_IO: return "EDGE_ERR_IO";
    case EDGE_ERR_BUNDLE: return "EDGE_ERR_BUNDLE";
    case EDGE_ERR_UNSUPPORTED: return "EDGE_ERR_UNSUPPORTED";
    case EDGE_ERR_IMAGE: return "EDGE_ERR_IMAGE";
    case EDGE_ERR_PROMPT: return "EDGE_ERR_PROMPT";
    case EDGE_ERR_CONTEXT: return "EDGE_ERR_CONTEXT";
    case EDGE_ERR_VISION: return "EDGE_ERR_VISION";
    case EDGE_ERR_BACKEND: return "EDGE_ERR_BACKEND";
    case EDGE_ERR_CANCELLED: return "EDGE_ERR_CANCELLED";
    case EDGE_ERR_OUT_OF_MEMORY: return "EDGE_ERR_OUT_OF_MEMORY";
    case EDGE_ERR_INTERNAL: return "EDGE_ERR_INTERNAL";
  }
  return "EDGE_ERR_UNKNOWN";
}

const char* edge_version(void) { return "0.1.0 (schema 2)"; }

edge_status edge_bundle_open(const char* dir, int verify_sha256, edge_bundle** out) {
  if (!out) return null_arg("out");
  *out = nullptr;
  if (!dir) return null_arg("dir");
  return guard([&] {
    auto b = std::make_unique<edge_bundle>();
    b->bundle = edge::core::open_bundle(dir, verify_sha256 != 0);
    *out = b.release();
  });
}

void edge_bundle_close(edge_bundle* bundle) { delete bundle; }

const char* edge_bundle_info(const edge_bundle* bundle) { return bundle ? bundle->bundle.info_json.c_str() : "{}"; }

void edge_session_params_default(edge_session_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof(*p));
  p->n_batch = 512;
  p->vision = EDGE_VISION_AUTO;
}

void edge_generate_params_default(edge_generate_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof(*p));
  p->max_tokens = 256;
  p->temperature = 0.0f;
  p->top_k = 40;
  p->top_p = 0.95f;
}

edge_status edge_session_create(const edge_bundle* bundle, const edge_session_params* params, edge_session** out) {
  if (!out) return null_arg("out");
  *out = nullptr;
  if (!bundle) return null_arg("bundle");
  edge_session_params p;
  edge_session_params_default(&p);
  if (params) p = *params;
  if (p.n_ctx < 0 || p.n_batch < 0 || p.threads < 0 || p.threads > 512 || p.max_tiles < 0 || p.max_image_tokens < 0 ||
      !(p.max_upscale >= 0) || p.vision < EDGE_VISION_AUTO || p.vision > EDGE_VISION_CALLBACK)
    return set_error(EDGE_ERR_INVALID_ARGUMENT, "session parameters out of range");
  return guard([&] {
    auto s = std::make_unique<edge_session>();
    s->session = std::make_unique<edge::core::Session>(bundle->bundle, p);
    *out = s.release();
  });
}

void edge_session_close(edge_session* session) { delete session; }

edge_status edge_session_add_image(edge_session* s, const uint8_t* rgb, size_t bytes, int32_t width, int32_t height,
                                   size_t stride) {
  if (!s) return null_arg("session");
  return guard([&] { s->session->add_image(rgb, bytes, width, height, stride); });
}

edge_status edge_session_add_text(edge_session* s, const char* text) {
  if (!s) return null_arg("session");
  if (!text) return null_arg("text");
  return guard([&] { s->session->add_text(text); });
}

edge_status edge_session_add_message(edge_session* s, const char* role, const char* content) {
  if (!s) return null_arg("session");
  if (!role || !content) return null_arg(role ? "content" : "role");
  return guard([&] { s->session->add_message(role, content); });
}

edge_status edge_session_reset(edge_session* s) {
  if (!s) return null_arg("session");
  return guard([&] { s->session->reset(); });
}

edge_status edge_session_generate(edge_session* s, const edge_generate_params* params, edge_token_fn on_token,
                                  void* user_data) {
  if (!s) return null_arg("session");
  edge_generate_params p;
  edge_generate_params_default(&p);
  if (params) p = *params;
  return guard([&] { s->session->generate(p, on_token, user_data); });
}

void edge_session_cancel(edge_session* s) {
  if (s) s->session->cancel.store(true);
}

const char* edge_session_finish_reason(const edge_session* s) { return s ? s->session->finish_reason.c_str() : ""; }

edge_status edge_session_timings(const edge_session* s, edge_timings* out) {
  if (!s) return null_arg("session");
  if (!out) return null_arg("out");
  *out = s->session->timings;
  return EDGE_OK;
}

size_t edge_session_tokens(const edge_session* s, int32_t* ids, size_t cap) {
  if (!s) return 0;
  const auto& t = s->session->tokens;
  if (ids)
    for (size_t i = 0; i < t.size() && i < cap; i++) ids[i] = t[i];
  return t.size();
}

const char* edge_session_result_json(const edge_session* s) { return s ? s->session->result_json.c_str() : "{}"; }

}  // extern "C"
