// Ports of runtime/text/prompt.py (split_prompt, splice_prompt, _content), runtime/text/space_prefix.py and
// runtime/text/generate.py TextDecoder; each function names the Python one it follows.
#include "prompt.h"

#include <optional>

#include "errors.h"

namespace edge::core {
namespace {

std::vector<std::string> split(const std::string& text, const std::string& sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t hit; (hit = text.find(sep, at)) != std::string::npos; at = hit + sep.size())
    out.push_back(text.substr(at, hit - at));
  out.push_back(text.substr(at));
  return out;
}

void append_tokens(std::vector<Item>& out, const std::vector<int32_t>& ids) {
  for (int32_t t : ids) out.push_back(Item{t, nullptr});
}

[[noreturn]] void mismatch(size_t found, size_t given, const std::string& marker) {
  fail(EDGE_ERR_PROMPT, "the prompt has " + std::to_string(found) + " image placeholder(s) '" + marker + "' but " +
                            std::to_string(given) + " image(s) were given");
}

const char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

std::vector<Item> build_items(const std::string& text, const PromptLayout& layout,
                              const std::vector<const Encoded*>& images, bool inline_text, const Tokenize& tokenize,
                              bool add_bos) {
  std::vector<std::string> pieces = split(text, layout.image_marker);
  if (pieces.size() - 1 != images.size()) mismatch(pieces.size() - 1, images.size(), layout.image_marker);
  std::vector<Item> out;
  if (!inline_text) {  // split_prompt, then Pipeline._run's expansion of each ImageSlot into its layout
    for (size_t i = 0; i < pieces.size(); i++) {
      if (i > 0) {
        if (!layout.image_prefix.empty()) append_tokens(out, tokenize(layout.image_prefix, false));
        for (const Piece& p : images[i - 1]->layout) {
          if (p.block) out.push_back(Item{-1, p.block});
          else append_tokens(out, tokenize(p.text, false));
        }
        if (!layout.image_suffix.empty()) append_tokens(out, tokenize(layout.image_suffix, false));
      }
      append_tokens(out, tokenize(pieces[i], add_bos && i == 0));
    }
    return out;
  }
  // splice_prompt: runs of text (prompt and layout text joined) tokenized whole, blocks between them
  std::vector<Piece> runs{Piece{pieces[0], nullptr}};
  auto add_text = [&](const std::string& s) {
    if (runs.back().block) runs.push_back(Piece{s, nullptr});
    else runs.back().text += s;
  };
  for (size_t k = 0; k < images.size(); k++) {
    add_text(layout.image_prefix);
    for (const Piece& p : images[k]->layout) {
      if (p.block) runs.push_back(p);
      else add_text(p.text);
    }
    add_text(layout.image_suffix);
    add_text(pieces[k + 1]);
  }
  for (size_t i = 0; i < runs.size(); i++) {
    if (runs[i].block) out.push_back(Item{-1, runs[i].block});
    else append_tokens(out, tokenize(runs[i].text, add_bos && i == 0));
  }
  return out;
}

std::string with_space_prefix(const std::string& text, const std::string& rule,
                              const std::function<std::vector<int32_t>(const std::string&, bool)>& tokenize_special) {
  if (rule != "first" || text.empty() || text[0] == ' ') return text;
  // the first 64 characters (space_prefix._HEAD), cut at a UTF-8 boundary
  size_t end = 0;
  for (int chars = 0; end < text.size() && chars < 64; chars++) {
    end++;
    while (end < text.size() && (uint8_t(text[end]) & 0xC0) == 0x80) end++;
  }
  const std::string head = text.substr(0, end);
  auto a = tokenize_special(head, true), b = tokenize_special(head, false);
  bool same_first = (a.empty() && b.empty()) || (!a.empty() && !b.empty() && a[0] == b[0]);
  return same_first ? " " + text : text;
}

namespace {

// Python's str.isspace() for one code point (what Jinja's trim, i.e. str.strip(), removes).
bool is_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// The code point at byte i of valid UTF-8 and its length (invalid bytes: themselves, length 1).
uint32_t code_at(const std::string& s, size_t i, size_t* len) {
  const uint8_t c = uint8_t(s[i]);
  size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (i + n > s.size()) n = 1;
  uint32_t v = n == 1 ? c : c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; k++) v = (v << 6) | (uint8_t(s[i + k]) & 0x3F);
  *len = n;
  return v;
}

std::string strip(const std::string& s) {
  size_t a = 0, len = 0;
  while (a < s.size() && is_space(code_at(s, a, &len))) a += len;
  size_t b = s.size();  // walk back over whole code points
  while (b > a) {
    size_t start = b - 1;
    while (start > a && (uint8_t(s[start]) & 0xC0) == 0x80) start--;
    if (!is_space(code_at(s, start, &len))) break;
    b = start;
  }
  return s.substr(a, b - a);
}

// A message's "parts" content (chat_affixes._parts): nullopt for an image part, text for a text part.
std::vector<std::optional<std::string>> parts_of(const ChatMessage& m, const std::string& marker) {
  std::vector<std::optional<std::string>> out;
  if (m.n_images > 0 && m.content.find(marker) != std::string::npos) {
    auto pieces = split(m.content, marker);
    for (size_t i = 0; i < pieces.size(); i++) {
      if (i) out.push_back(std::nullopt);
      if (!pieces[i].empty()) out.push_back(pieces[i]);
    }
    return out;
  }
  for (int i = 0; i < m.n_images; i++) out.push_back(std::nullopt);
  out.push_back(m.content);
  return out;
}

// chat_affixes._content_text
std::string content_text(const ChatMessage& m, const PromptLayout& layout, const ChatAffixes& c, const RoleAffixes& r) {
  if (layout.content_format == "parts") {
    std::string out;
    for (const auto& p : parts_of(m, layout.image_marker)) out += p ? (r.trim ? strip(*p) : *p) : c.image_text;
    return out;
  }
  std::string text = m.content;
  if (m.n_images > 0 && text.find(layout.image_marker) == std::string::npos) {
    std::string lead;
    for (int i = 0; i < m.n_images; i++) lead += layout.image_marker;
    text = lead + "\n" + text;
  }
  return r.trim ? strip(text) : text;
}

}  // namespace

// runtime/text/chat_affixes.py render_affixes (the rules of the ChatAffixes docstring in edge/manifest.py).
std::string render_chat(const Manifest& m, const std::vector<ChatMessage>& messages) {
  const ChatAffixes& c = m.chat;
  if (!c.present)
    fail(EDGE_ERR_UNSUPPORTED, "this bundle's manifest has no chat affixes (llm.chat_affixes); re-export it, or send "
                               "a raw prompt with edge_session_add_text");
  if (messages.empty()) fail(EDGE_ERR_PROMPT, "a conversation needs at least one message");
  std::vector<ChatMessage> msgs = messages;
  std::string out = c.bos;
  std::optional<std::string> block;
  if (msgs[0].role == "system") {
    ChatMessage system = msgs.front();
    msgs.erase(msgs.begin());
    if (system.n_images > 0) fail(EDGE_ERR_PROMPT, "a system message cannot hold images");
    block = c.system.prefix + content_text(system, m.prompt, c, c.system) + c.system.suffix;
    if (c.system_placement == "turn") out += *block, block.reset();
  } else {
    out += c.no_system;
  }
  for (size_t i = 0; i < msgs.size(); i++) {
    const ChatMessage& msg = msgs[i];
    if (msg.role == "system") fail(EDGE_ERR_PROMPT, "a system message can only be the first message");
    if (msg.role != "user" && msg.role != "assistant")
      fail(EDGE_ERR_PROMPT, "chat affixes know the roles system, user and assistant, not '" + msg.role.substr(0, 40) + "'");
    if (c.alternate && msg.role != (i % 2 == 0 ? "user" : "assistant"))
      fail(EDGE_ERR_PROMPT, "this chat template needs turns that alternate user/assistant, starting with user");
    const RoleAffixes& r = msg.role == "user" ? c.user : c.assistant;
    bool first_image = false;
    if (m.prompt.content_format == "parts") {
      auto parts = parts_of(msg, m.prompt.image_marker);
      first_image = !parts.empty() && !parts[0];
    }
    out += first_image && r.image_first_prefix ? *r.image_first_prefix : r.prefix;
    if (i == 0 && block) out += *block;
    out += content_text(msg, m.prompt, c, r) + r.suffix;
  }
  return out + c.generation_prompt;
}

std::string Utf8Stream::push(const std::string& bytes) {
  held_ += bytes;
  std::string out;
  size_t i = 0;
  while (i < held_.size()) {
    const uint8_t c = uint8_t(held_[i]);
    int len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (len == 0) {
      out += kReplacement;
      i++;
      continue;
    }
    int k = 1;
    for (; k < len && i + k < held_.size(); k++) {
      const uint8_t d = uint8_t(held_[i + k]);
      uint8_t lo = 0x80, hi = 0xBF;  // the first continuation byte's range rules out overlongs and surrogates
      if (k == 1 && c == 0xE0) lo = 0xA0;
      if (k == 1 && c == 0xED) hi = 0x9F;
      if (k == 1 && c == 0xF0) lo = 0x90;
      if (k == 1 && c == 0xF4) hi = 0x8F;
      if (d < lo || d > hi) break;
    }
    if (k == len) {
      out.append(held_, i, size_t(len));
      i += size_t(len);
    } else if (i + k == held_.size()) {
      break;  // incomplete so far: wait for the next token's bytes
    } else {
      out += kReplacement;  // the maximal invalid prefix becomes one U+FFFD
      i += size_t(k);
    }
  }
  held_.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out = held_.empty() ? "" : kReplacement;
  held_.clear();
  return out;
}

}  // namespace edge::core
