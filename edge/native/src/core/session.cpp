// runtime/pipeline.py Pipeline._run / _generate / _prefill / _settle and runtime/text/generate.py steps(),
// over llama.h; runtime/chat.py ChatSession for the turns.
#include "session.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "errors.h"
#include "llama.h"

namespace edge::core {
namespace {

using Clock = std::chrono::steady_clock;
double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

bool same(const Item& a, const Item& b) {  // runtime/text/sequence.py same()
  if (a.block || b.block) return a.block && b.block && a.block->key == b.block->key;
  return a.token == b.token;
}

int rows(const Item& item) { return item.block ? item.block->n : 1; }  // sequence.py rows()

}  // namespace

Session::Session(const Bundle& bundle, const edge_session_params& params) : bundle_(bundle), params_(params) {
  const Manifest& m = bundle.manifest;
  if (!m.llm) fail(EDGE_ERR_UNSUPPORTED, "this bundle (" + m.family + ") has no language model; it cannot generate text");
  const LLMSpec& spec = *m.llm;
  mrope_ = spec.media_positions == "mrope";
  causal_media_ = spec.media_attention == "causal";
  LLMParams lp;
  lp.n_ctx = params.n_ctx;
  lp.n_batch = params.n_batch > 0 ? params.n_batch : 512;
  if (!causal_media_ && m.vision && lp.n_batch < m.vision->tokens_per_image)  // sequence.py media_batch()
    lp.n_batch = int(m.vision->tokens_per_image);
  lp.threads = params.threads;
  lp.f32_kv = spec.dtype == "f32";  // edge/options.py LLMOptions.kv_cache_dtype("auto")
  if (m.vision) {
    if (m.vision->embed_dim != spec.n_embd)
      fail(EDGE_ERR_BUNDLE, "the vision output width does not match the LLM's embedding width");
    images_ = make_image_stage(bundle, params);  // before the LLM loads: a bundle it cannot run fails fast
  }
  llm_ = std::make_unique<LLM>(bundle.path(m.files.at(spec.file).path), lp);
  if (llm_->n_embd() != spec.n_embd)
    fail(EDGE_ERR_BUNDLE, spec.file + " has n_embd " + std::to_string(llm_->n_embd()) + ", the manifest says " +
                              std::to_string(spec.n_embd));
}

Session::~Session() = default;

void Session::add_image(const uint8_t* rgb, size_t bytes, int32_t width, int32_t height, size_t stride) {
  auto img = std::make_shared<RGBImage>(copy_image(rgb, bytes, width, height, stride));
  if (!images_) fail(EDGE_ERR_UNSUPPORTED, "this bundle has no vision encoder; it cannot take images");
  if (!images_->unavailable().empty()) fail(EDGE_ERR_INVALID_ARGUMENT, images_->unavailable());
  pending_images_.push_back(std::move(img));
}

void Session::add_text(const std::string& t) {
  if (!history_.empty()) fail(EDGE_ERR_INVALID_ARGUMENT, "raw text cannot join a chat; reset the session first");
  raw_mode_ = true;
  raw_.content += t;
  for (auto& img : pending_images_) raw_.raw.push_back(img);
  pending_images_.clear();
}

void Session::add_message(const std::string& role, const std::string& content) {
  if (raw_mode_) fail(EDGE_ERR_INVALID_ARGUMENT, "a chat message cannot join a raw prompt; reset the session first");
  if (role != "system" && role != "user" && role != "assistant")
    fail(EDGE_ERR_PROMPT, "the role must be system, user or assistant, got '" + role.substr(0, 40) + "'");
  if (!bundle_.manifest.chat.present) render_chat(bundle_.manifest, {});  // says why there is no chat
  Turn turn{role, content, std::move(pending_images_), {}};
  pending_images_.clear();
  history_.push_back(std::move(turn));
}

void Session::reset() {
  history_.clear();
  pending_images_.clear();
  raw_ = Turn{};
  raw_mode_ = false;
  forget();
}

int Session::width(const Item& item) const {  // runtime/text/sequence.py width()
  if (!item.block) return 1;
  if (!mrope_) return item.block->n;
  if (item.block->positions.empty()) fail(EDGE_ERR_INTERNAL, "an image block has no (t, h, w) positions");
  int32_t top = 0;
  for (int32_t v : item.block->positions) top = std::max(top, v);
  return int(top) + 1;
}

std::vector<Item> Session::build(bool raw, ImageTimings& it) {
  const Manifest& m = bundle_.manifest;
  std::vector<Turn*> turns;
  if (raw) turns.push_back(&raw_);
  else
    for (Turn& t : history_) turns.push_back(&t);
  std::vector<ChatMessage> messages;
  size_t n_images = 0;
  for (Turn* t : turns) {
    const size_t n = t->images.size() + t->raw.size();
    messages.push_back(ChatMessage{t->role, t->content, int(n)});
    n_images += n;
  }
  std::string prompt = raw ? raw_.content : render_chat(m, messages);
  size_t markers = 0;  // split_prompt's check, before any vision work (as Pipeline._run)
  for (size_t at = 0; (at = prompt.find(m.prompt.image_marker, at)) != std::string::npos; at += m.prompt.image_marker.size())
    markers++;
  if (markers != n_images)
    fail(EDGE_ERR_PROMPT, "the prompt has " + std::to_string(markers) + " image placeholder(s) '" + m.prompt.image_marker +
                              "' but " + std::to_string(n_images) + " image(s) were given");
  std::vector<const Encoded*> encoded;
  for (Turn* t : turns) {
    for (auto& img : t->raw) t->images.push_back(std::make_shared<Encoded>(images_->encode(*img, params_, it)));
    t->raw.clear();  // the pixels are not needed again: later turns reuse the encoded blocks
    for (auto& e : t->images) encoded.push_back(e.get());
  }
  const LLMSpec& spec = *m.llm;
  // Pipeline._run: BOS unless a rendered template already starts with the BOS text (starts_with_bos)
  bool add_bos = spec.add_bos && (raw || spec.bos_token.empty() || prompt.rfind(spec.bos_token, 0) != 0);
  prompt = with_space_prefix(prompt, spec.space_prefix,
                             [&](const std::string& t, bool special) { return llm_->tokenize(t, false, special); });
  Tokenize tok = [&](const std::string& t, bool bos) { return llm_->tokenize(t, bos, true); };
  return build_items(prompt, m.prompt, encoded, images_ && images_->inline_text(), tok, add_bos);
}

void Session::generate(const edge_generate_params& p, edge_token_fn on_token, void* user_data) {
  const auto t0 = Clock::now();
  tokens.clear();
  text.clear();
  finish_reason.clear();
  timings = edge_timings{};
  if (p.max_tokens < 1) fail(EDGE_ERR_INVALID_ARGUMENT, "max_tokens must be at least 1");
  if (!(p.temperature >= 0) || !(p.top_p > 0 && p.top_p <= 1) || p.top_k < 0)
    fail(EDGE_ERR_INVALID_ARGUMENT, "sampling needs temperature >= 0, 0 < top_p <= 1 and top_k >= 0");
  const bool raw = raw_mode_;
  if (!raw && history_.empty()) fail(EDGE_ERR_INVALID_ARGUMENT, "nothing to answer: add text or a message first");
  if (!pending_images_.empty()) fail(EDGE_ERR_PROMPT, "images were added after the last text or message");
  ImageTimings it;
  std::vector<Item> target = build(raw, it);
  timings.preprocess_ms = it.preprocess_ms;
  timings.image_encode_ms = it.encode_ms;
  timings.tiles = it.tiles;
  timings.encode_ms_per_tile = it.tiles ? it.encode_ms / it.tiles : 0;
  int n_pos = 0, n_rows = 0;
  for (const Item& x : target) {
    n_pos += width(x);
    n_rows += rows(x);
    if (x.block) timings.image_tokens += rows(x);
  }
  timings.images = int32_t(raw ? raw_.images.size() : 0);
  for (const Turn& t : history_) timings.images += int32_t(t.images.size());
  timings.prompt_tokens = n_pos;
  if (std::max(n_pos, n_rows) + 1 > llm_->n_ctx())
    fail(EDGE_ERR_CONTEXT, "the prompt needs " + std::to_string(n_pos) + " positions but the context holds " +
                               std::to_string(llm_->n_ctx()) + " (shorten the prompt, use fewer images or raise n_ctx)");
  if (raw) {  // Pipeline.stream(raw): the prompt is answered once; the KV cache keeps it for the next one
    raw_ = Turn{};
    raw_mode_ = false;
  }
  const auto tp = Clock::now();
  int evaluated = 0;
  try {
    evaluated = prefill(target);
  } catch (...) {
    forget();
    throw;
  }
  const auto tp_end = Clock::now();
  timings.prefill_ms = ms(tp, tp_end);
  timings.prefill_tokens_per_s = evaluated > 0 ? evaluated / std::max(1e-9, timings.prefill_ms / 1000) : 0;
  if (cancel.exchange(false)) {
    settle();
    finish_reason = "cancelled";
    make_result();
    fail(EDGE_ERR_CANCELLED, "cancelled");
  }

  llama_sampler* chain = nullptr;
  if (p.temperature > 0) {  // sampling.py Sampler: temperature, then top-k, then top-p, then a seeded draw
    chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(chain, llama_sampler_init_temp(p.temperature));
    if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
    if (p.top_p < 1) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
    llama_sampler_chain_add(chain, llama_sampler_init_dist(p.seed));
  }
  struct Free { llama_sampler* s; ~Free() { if (s) llama_sampler_free(s); } } free_chain{chain};

  const auto& eos = bundle_.manifest.llm->eos_ids;
  int room = llm_->n_ctx();
  for (const Item& x : seq_) room -= rows(x);
  Utf8Stream utf8;
  std::string reason = "length";
  Clock::time_point t_first{};
  bool first = true;
  try {
    for (int i = 0; i < p.max_tokens; i++) {  // runtime/text/generate.py steps()
      int32_t token = sample(p, chain);
      if (std::find(eos.begin(), eos.end(), token) != eos.end()) {
        reason = "stop";
        break;
      }
      if (first) {
        t_first = Clock::now();
        timings.ttft_ms = ms(t0, t_first);
        first = false;
      }
      tokens.push_back(token);
      std::string delta = utf8.push(llm_->piece(token));
      text += delta;
      if (on_token && on_token(user_data, token, delta.c_str(), delta.size()) != 0) {
        reason = "callback";
        break;
      }
      if (i == p.max_tokens - 1) break;
      if (i >= room - 1) {
        reason = "context";
        break;
      }
      if (cancel.exchange(false)) {
        reason = "cancelled";
        break;
      }
      llm_->eval_tokens({token});
      seq_.push_back(Item{token, nullptr});
    }
  } catch (...) {
    forget();
    throw;
  }
  std::string tail = utf8.flush();
  if (!tail.empty()) {
    text += tail;
    if (on_token && reason != "cancelled") on_token(user_data, -1, tail.c_str(), tail.size());
  }
  const auto t_end = Clock::now();
  timings.generated_tokens = int32_t(tokens.size());
  if (!first) {
    timings.decode_ms = ms(t_first, t_end);
    if (tokens.size() > 1) timings.decode_tokens_per_s = (tokens.size() - 1) / std::max(1e-9, timings.decode_ms / 1000);
  }
  finish_reason = reason;
  if (!raw) history_.push_back(Turn{"assistant", text, {}, {}});  // ChatSession.send records the answer
  make_result();
  if (reason == "cancelled") {
    settle();
    fail(EDGE_ERR_CANCELLED, "cancelled");
  }
}

int32_t Session::sample(const edge_generate_params& p, llama_sampler* chain) {
  if (p.temperature <= 0) {  // sampling.py: np.argmax (the first of equal maxima)
    const float* logits = llm_->logits();
    int best = 0;
    for (int i = 1; i < llm_->n_vocab(); i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  return llama_sampler_sample(chain, llm_->context(), -1);
}

// Pipeline._prefill: keep the longest common prefix with what the cache holds, evaluate the rest.
int Session::prefill(const std::vector<Item>& target) {
  size_t keep = 0;
  while (keep < std::min(target.size(), seq_.size()) && same(target[keep], seq_[keep])) keep++;
  keep = std::min(keep, target.size() - 1);  // the last item must be evaluated to get logits
  int kept_pos = 0;
  for (size_t i = 0; i < keep; i++) kept_pos += width(target[i]);
  llm_->rewind(kept_pos);
  if (llm_->n_past() != kept_pos) keep = 0, kept_pos = 0;  // the cache could not be cut: start over
  timings.reused_tokens = kept_pos;
  seq_.assign(target.begin(), target.begin() + long(keep));
  const int start_pos = llm_->n_past();
  size_t i = keep;
  while (i < target.size()) {
    if (cancel.load()) return llm_->n_past() - start_pos;
    if (target[i].block) {
      const MediaBlock& b = *target[i].block;
      llm_->eval_embeddings(b.rows.data(), b.n, causal_media_, mrope_ ? &b.positions : nullptr);
      seq_.push_back(target[i++]);
      continue;
    }
    std::vector<int32_t> ids;
    size_t j = i;
    for (; j < target.size() && !target[j].block; j++) ids.push_back(target[j].token);
    llm_->eval_tokens(ids);
    seq_.insert(seq_.end(), target.begin() + long(i), target.begin() + long(j));
    i = j;
  }
  return llm_->n_past() - start_pos;
}

// Pipeline._settle: keep the items whose positions the cache fully holds, clear every position after them.
void Session::settle() {
  int pos = 0;
  size_t n = 0;
  for (const Item& x : seq_) {
    int w = width(x);
    if (pos + w > llm_->n_past()) break;
    pos += w;
    n++;
  }
  seq_.resize(n);
  llm_->rewind(pos, true);
}

void Session::forget() {
  seq_.clear();
  if (llm_) llm_->rewind(0);
}

void Session::make_result() {
  nlohmann::json t = {{"preprocess_ms", timings.preprocess_ms}, {"image_encode_ms", timings.image_encode_ms},
                      {"encode_ms_per_tile", timings.encode_ms_per_tile}, {"prefill_ms", timings.prefill_ms},
                      {"ttft_ms", timings.ttft_ms}, {"decode_ms", timings.decode_ms},
                      {"prefill_tokens_per_s", timings.prefill_tokens_per_s},
                      {"decode_tokens_per_s", timings.decode_tokens_per_s}, {"prompt_tokens", timings.prompt_tokens},
                      {"reused_tokens", timings.reused_tokens}, {"generated_tokens", timings.generated_tokens},
                      {"images", timings.images}, {"tiles", timings.tiles}, {"image_tokens", timings.image_tokens}};
  for (auto& [k, v] : t.items())
    if (v.is_number_float()) v = std::round(v.get<double>() * 1000) / 1000;  // Timings.as_dict rounds to 3 places
  nlohmann::json out = {{"text", text}, {"tokens", tokens}, {"finish_reason", finish_reason}, {"timings", t},
                        {"vision_path", images_ ? images_->path() : "none"}};
  result_json = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace edge::core
