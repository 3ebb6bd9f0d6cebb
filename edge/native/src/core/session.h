// One conversation over a bundle (runtime/pipeline.py Pipeline + runtime/chat.py ChatSession): pending
// images and text, the KV cache's items, prefix reuse, sampling and the streaming loop.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "edge.h"
#include "llm.h"
#include "manifest.h"
#include "media.h"
#include "prompt.h"

struct llama_sampler;

namespace edge::core {

class Session {
 public:
  Session(const Bundle& bundle, const edge_session_params& params);
  ~Session();

  void add_image(const uint8_t* rgb, size_t bytes, int32_t width, int32_t height, size_t stride);
  void add_text(const std::string& text);
  void add_message(const std::string& role, const std::string& content);
  void reset();
  void generate(const edge_generate_params& params, edge_token_fn on_token, void* user_data);

  std::atomic<bool> cancel{false};
  std::string finish_reason = "";
  std::vector<int32_t> tokens;
  std::string text;
  edge_timings timings{};
  std::string result_json;

 private:
  struct Turn {  // a chat message with its images (encoded once, kept for later turns)
    std::string role, content;
    std::vector<std::shared_ptr<RGBImage>> raw;     // pixels not encoded yet
    std::vector<std::shared_ptr<Encoded>> images;   // after the first generate that saw them
  };
  std::vector<Item> build(bool raw, ImageTimings& it);
  int prefill(const std::vector<Item>& target);
  int32_t sample(const edge_generate_params& p, llama_sampler* chain);
  void settle();
  void forget();
  void make_result();
  int width(const Item& item) const;

  const Bundle& bundle_;
  edge_session_params params_;
  std::unique_ptr<LLM> llm_;
  std::unique_ptr<ImageStage> images_;
  bool mrope_ = false, causal_media_ = true;
  std::vector<Item> seq_;                         // what the KV cache holds
  std::vector<std::shared_ptr<RGBImage>> pending_images_;  // for the next message or raw prompt
  Turn raw_;                                   // the raw prompt being built (edge_session_add_text)
  bool raw_mode_ = false;
  std::vector<Turn> history_;                  // chat turns
};

}  // namespace edge::core
