// runtime/llama_backend.py LLM, ported to llama.h: same context settings, same batches, same positions.
#include "llm.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>

#include "errors.h"
#include "ggml-cpu.h"
#include "llama.h"

namespace edge::core {
namespace {

std::mutex g_log_mutex;
std::string g_last_log;  // guarded by g_log_mutex

void on_log(ggml_log_level level, const char* text, void*) {
  if (!text || level < GGML_LOG_LEVEL_WARN) return;  // quiet by default, as the Python runtime's LogSink
  std::string line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  if (line.empty()) return;
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_last_log = line.substr(0, 200);
}

void init_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(on_log, nullptr);
    llama_backend_init();
  });
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return int(std::clamp(n == 0 ? 1u : n, 1u, 4u));
}

}  // namespace

std::string llama_last_log() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  return g_last_log.empty() ? "no details" : g_last_log;
}

LLM::LLM(const std::string& path, const LLMParams& p) {
  init_backend();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;  // the host build runs on the CPU; phones choose their backend at build time
  // ggml's AMX matmul kernels (an "extra buffer type") segfault on quantized weights on the AMX CPUs we run
  // on (ggml_backend_amx_mul_mat); a segfault cannot be reported, so AMX builds load without extra buffer
  // types, as runtime/llama_backend.py does (docs/design.md, "AMX").
  mp.use_extra_bufts = !ggml_cpu_has_amx_int8();
  model_ = llama_model_load_from_file(path.c_str(), mp);
  if (!model_) fail(EDGE_ERR_BACKEND, "llama.cpp cannot load " + path + ": " + llama_last_log());
  vocab_ = llama_model_get_vocab(model_);
  n_embd_ = llama_model_n_embd(model_);
  n_vocab_ = llama_vocab_n_tokens(vocab_);
  llama_context_params cp = llama_context_default_params();
  int n_train = llama_model_n_ctx_train(model_);
  cp.n_ctx = uint32_t(p.n_ctx > 0 ? p.n_ctx : std::min(n_train, 4096));
  n_batch_ = p.n_batch > 0 ? p.n_batch : 512;
  cp.n_batch = cp.n_ubatch = uint32_t(n_batch_);
  threads_ = p.threads > 0 ? p.threads : default_threads();
  cp.n_threads = cp.n_threads_batch = threads_;
  cp.no_perf = true;
  if (p.f32_kv) {
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  }
  ctx_ = llama_init_from_model(model_, cp);
  if (!ctx_) {
    llama_model_free(model_);
    model_ = nullptr;
    fail(EDGE_ERR_BACKEND, "llama.cpp cannot create a context: " + llama_last_log());
  }
  n_ctx_ = int(llama_n_ctx(ctx_));
  // one ggml threadpool that sleeps at once when out of work (poll 0), as runtime/llama_backend.py
  // _attach_threadpool does: a phone's cores are shared with the app (OpenMP builds compute in their own threads)
  ggml_threadpool_params tp = ggml_threadpool_params_default(threads_);
  tp.poll = 0;
  pool_ = ggml_threadpool_new(&tp);
  if (pool_) llama_attach_threadpool(ctx_, pool_, pool_);
}

LLM::~LLM() {
  if (ctx_ && pool_) llama_detach_threadpool(ctx_);
  if (ctx_) llama_free(ctx_);
  if (pool_) ggml_threadpool_free(pool_);
  if (model_) llama_model_free(model_);
}

std::vector<int32_t> LLM::tokenize(const std::string& text, bool add_bos, bool special) const {
  if (text.size() > size_t(INT32_MAX) / 2) fail(EDGE_ERR_PROMPT, "the prompt text is too long");
  std::vector<llama_token> out(text.size() + 8);
  int n = llama_tokenize(vocab_, text.data(), int32_t(text.size()), out.data(), int32_t(out.size()), add_bos, special);
  if (n < 0) {
    out.resize(size_t(-n));
    n = llama_tokenize(vocab_, text.data(), int32_t(text.size()), out.data(), int32_t(out.size()), add_bos, special);
  }
  if (n < 0) fail(EDGE_ERR_BACKEND, "llama.cpp failed to tokenize the prompt");
  out.resize(size_t(n));
  return out;
}

std::string LLM::piece(int32_t token) const {
  char buf[64];
  int n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, false);
  if (n >= 0) return std::string(buf, size_t(n));
  std::string big(size_t(-n), '\0');
  n = llama_token_to_piece(vocab_, token, big.data(), int32_t(big.size()), 0, false);
  return n > 0 ? big.substr(0, size_t(n)) : std::string();
}

void LLM::eval_tokens(const std::vector<int32_t>& ids) {
  for (int32_t t : ids)
    if (t < 0 || t >= n_vocab_)
      fail(EDGE_ERR_PROMPT, "token id " + std::to_string(t) + " is outside the vocabulary");
  if (!ids.empty()) decode(int(ids.size()), ids.data(), nullptr, nullptr, 0, true);
}

void LLM::eval_embeddings(const float* rows, int n, bool causal, const std::vector<int32_t>* mrope) {
  if (n <= 0) return;
  if (mrope && mrope->size() != size_t(3) * size_t(n))
    fail(EDGE_ERR_INTERNAL, "M-RoPE positions do not fit the block's rows");
  if (!causal && n > n_batch_)  // a block split over ubatches would let its first part miss the rest
    fail(EDGE_ERR_CONTEXT, "an image block of " + std::to_string(n) + " rows attends to itself both ways and must be "
                           "decoded in one batch of at most " + std::to_string(n_batch_) + " (raise n_batch)");
  decode(n, nullptr, rows, mrope, 0, causal);
}

// runtime/llama_backend.py LLM._eval: ubatches of n_batch at positions n_past.., logits of the last row only;
// M-RoPE blocks get 4 positions a row, section-major (t, h, w, 0), and advance n_past by the ids' span.
void LLM::decode(int n, const int32_t* tokens, const float* embd, const std::vector<int32_t>* mrope, int,
                 bool causal) {
  if (n_past_ + n > n_ctx_)
    fail(EDGE_ERR_CONTEXT, "the prompt needs " + std::to_string(n_past_ + n) + " positions but the context holds " +
                               std::to_string(n_ctx_) + " (shorten the prompt, use fewer images or raise n_ctx)");
  const int base = n_past_;
  int span = 0;
  if (mrope)
    for (int32_t v : *mrope) span = std::max(span, v + 1);
  for (int start = 0; start < n; start += n_batch_) {
    const int count = std::min(n_batch_, n - start);
    llama_batch batch = llama_batch_init(count, embd ? n_embd_ : 0, 1);
    std::vector<llama_pos> pos4;
    llama_pos* own_pos = batch.pos;
    batch.n_tokens = count;
    if (embd) std::memcpy(batch.embd, embd + size_t(start) * n_embd_, sizeof(float) * size_t(count) * n_embd_);
    for (int i = 0; i < count; i++) {
      if (tokens) batch.token[i] = tokens[start + i];
      batch.pos[i] = n_past_ + i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = (start + i == n - 1);
    }
    if (mrope) {  // llama_batch_init made n positions; M-RoPE reads pos[j * n_tokens + i] for j < 4
      pos4.assign(size_t(4) * count, 0);
      for (int j = 0; j < 3; j++)
        for (int i = 0; i < count; i++) pos4[size_t(j) * count + i] = (*mrope)[size_t(j) * n + start + i] + base;
      batch.pos = pos4.data();
    }
    if (!causal) llama_set_causal_attn(ctx_, false);
    int rc = llama_decode(ctx_, batch);
    if (!causal) llama_set_causal_attn(ctx_, true);
    batch.pos = own_pos;
    llama_batch_free(batch);
    if (rc != 0) fail(EDGE_ERR_BACKEND, "llama_decode failed with code " + std::to_string(rc) + ": " + llama_last_log());
    n_past_ = mrope ? base + span : n_past_ + count;
    last_logits_ = count - 1;
  }
}

const float* LLM::logits() const {
  if (last_logits_ < 0) fail(EDGE_ERR_INTERNAL, "no logits: nothing was evaluated");
  return llama_get_logits_ith(ctx_, last_logits_);
}

void LLM::rewind(int n_keep, bool force) {
  if (n_keep < n_past_ || (force && n_keep <= n_past_)) {
    llama_memory_t mem = llama_get_memory(ctx_);
    if (!llama_memory_seq_rm(mem, 0, n_keep, -1)) {
      llama_memory_clear(mem, true);
      n_keep = 0;
    }
    n_past_ = n_keep;
  }
}

}  // namespace edge::core
