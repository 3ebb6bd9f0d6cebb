// The language model through llama.h only: one model + context, sequence 0, a position counter, tokens
// through llama_batch.token and media rows through llama_batch.embd (runtime/llama_backend.py LLM).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct ggml_threadpool;

namespace edge::core {

struct LLMParams {
  int n_ctx = 0;          // 0: min(n_ctx_train, 4096), as runtime/llama_backend.py LLM(default_ctx=4096)
  int n_batch = 512;      // edge/options.py LLMOptions.n_batch
  int threads = 0;        // 0: online cores, at most 4
  bool f32_kv = false;    // LLMOptions.kv_cache_dtype: f32 weights get an f32 KV cache (and no flash attention)
};

class LLM {
 public:
  LLM(const std::string& path, const LLMParams& params);
  ~LLM();
  LLM(const LLM&) = delete;
  LLM& operator=(const LLM&) = delete;

  // llama_tokenize as runtime/llama_backend.py LLM.tokenize: `special` parses control tokens written as text.
  std::vector<int32_t> tokenize(const std::string& text, bool add_bos, bool special = true) const;
  // The bytes a token stands for (control tokens render as nothing), LLM.piece.
  std::string piece(int32_t token) const;

  // Append tokens at the current position; the last one's logits are kept (logits()).
  void eval_tokens(const std::vector<int32_t>& ids);
  // Append n embedding rows [n, n_embd]: `causal` false decodes the block in one ubatch with causal
  // attention off (gemma3); `mrope` holds 3*n (t, h, w) positions relative to the current position.
  void eval_embeddings(const float* rows, int n, bool causal, const std::vector<int32_t>* mrope);
  // Forget positions from n_keep on (LLM.rewind); `force`: even at n_past (a cut decode may have written some).
  void rewind(int n_keep, bool force = false);

  const float* logits() const;  // of the last evaluated position
  int n_past() const { return n_past_; }
  int n_ctx() const { return n_ctx_; }
  int n_vocab() const { return n_vocab_; }
  int n_embd() const { return n_embd_; }
  int n_batch() const { return n_batch_; }
  int threads() const { return threads_; }
  llama_context* context() const { return ctx_; }
  const llama_vocab* vocab() const { return vocab_; }

 private:
  void decode(int n, const int32_t* tokens, const float* embd, const std::vector<int32_t>* mrope, int offset,
              bool causal);
  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  ggml_threadpool* pool_ = nullptr;
  int n_past_ = 0, n_ctx_ = 0, n_vocab_ = 0, n_embd_ = 0, n_batch_ = 512, threads_ = 1;
  int last_logits_ = -1;
};

// The last line llama.cpp logged (llama.cpp's log hook is process-global; edge keeps the recent lines).
std::string llama_last_log();

}  // namespace edge::core
