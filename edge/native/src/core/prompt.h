// Prompt text -> chunks (runtime/text/prompt.py split_prompt / splice_prompt), the "first" space rule
// (runtime/text/space_prefix.py), chat rendering from the manifest's role affixes, and UTF-8 streaming
// (runtime/text/generate.py TextDecoder).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "manifest.h"
#include "media.h"

namespace edge::core {

using Tokenize = std::function<std::vector<int32_t>(const std::string& text, bool add_bos)>;

// One item of the sequence the KV cache holds: a token id, or a media block.
struct Item {
  int32_t token = -1;
  std::shared_ptr<MediaBlock> block;
};

// The sequence items of `text` with `images` at its image markers: split_prompt (each marker replaced by
// image_prefix, the image's whole layout, image_suffix), or with `inline_text` splice_prompt (the layout
// text joins the prompt text around it before tokenizing). Throws EDGE_ERR_PROMPT when markers and images
// do not pair up.
std::vector<Item> build_items(const std::string& text, const PromptLayout& layout, const std::vector<const Encoded*>& images,
                              bool inline_text, const Tokenize& tokenize, bool add_bos);

// with_space_prefix: `text` with the "first" rule's space in front; tokenize_special(head, special) has no BOS.
std::string with_space_prefix(const std::string& text, const std::string& rule,
                              const std::function<std::vector<int32_t>(const std::string&, bool)>& tokenize_special);

struct ChatMessage {
  std::string role, content;
  int n_images = 0;
};

// The conversation rendered with the manifest's chat affixes (as render_chat renders the HF template), an
// image marker per image where the content has none (prompt.py _content). Throws EDGE_ERR_UNSUPPORTED when
// the bundle has no affixes, EDGE_ERR_PROMPT for a role they do not know.
std::string render_chat(const Manifest& m, const std::vector<ChatMessage>& messages);

// Token bytes -> text deltas holding back an incomplete UTF-8 sequence; invalid bytes become U+FFFD
// (Python's codecs "utf-8" incremental decoder with errors="replace").
class Utf8Stream {
 public:
  std::string push(const std::string& bytes);
  std::string flush();

 private:
  std::string held_;
};

}  // namespace edge::core
