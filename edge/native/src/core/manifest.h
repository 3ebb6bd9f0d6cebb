// The bundle manifest (edge/manifest.py) as the native side reads it: the fields the core needs, typed and
// range-checked, plus the raw `vision` object for the image schemes (edge/native/src/vision).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edge::core {

// edge/manifest.py SCHEMA_VERSION: a manifest of another version is refused (Manifest.from_json).
constexpr int kSchemaVersion = 2;
// Hostile-input limits, checked before nlohmann parses anything (its parser recurses per nesting level).
constexpr size_t kMaxManifestBytes = 16u << 20;
constexpr int kMaxDepth = 64;

struct FileEntry {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;
};

struct LLMSpec {  // edge/manifest.py LLMSpec
  std::string file, arch, dtype;
  int64_t n_ctx_train = 0, n_embd = 0, n_vocab = 0;
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;
  bool add_bos = false;
  std::string bos_token, eos_token;  // "" when null
  std::string media_attention = "causal", media_positions = "linear", space_prefix = "gguf";
};

struct PromptLayout {  // edge/manifest.py PromptLayout
  std::string image_marker = "<image>", image_prefix, image_suffix, content_format = "string";
};

struct RoleAffixes {  // edge/manifest.py RoleAffixes
  std::string prefix, suffix;
  std::optional<std::string> image_first_prefix;
  bool trim = false;
};

struct ChatAffixes {  // edge/manifest.py ChatAffixes (llm.chat_affixes): the chat template as plain strings
  bool present = false;
  std::string bos;
  RoleAffixes system, user, assistant;
  std::string generation_prompt;
  std::string system_placement = "turn";  // or "first_user"
  std::string no_system, image_text;
  bool alternate = false;
};

struct VisionSpec {  // edge/manifest.py VisionSpec (the part the core needs; the scheme reads `json`)
  std::string file, scheme, input_name, output_name;
  int64_t tokens_per_image = 0, embed_dim = 0;
  std::vector<int64_t> input_shape;
  nlohmann::json json;  // the whole vision object
};

struct Manifest {
  std::string name, family;
  std::map<std::string, FileEntry> files;
  std::optional<LLMSpec> llm;
  PromptLayout prompt;
  std::optional<VisionSpec> vision;
  std::string projector_file;  // the mmproj GGUF (a files entry), "" when the bundle has none
  ChatAffixes chat;
};

// Parse manifest.json text; throws Error(EDGE_ERR_BUNDLE) naming the field that is wrong.
Manifest parse_manifest(const std::string& text);
// The deepest nesting of objects/arrays in JSON text (strings skipped), without parsing it.
int json_depth(const std::string& text);
// Whether a manifest path stays inside the bundle: relative, "/"-separated, no "..", no NUL or backslash.
bool safe_relative_path(const std::string& path);

struct Bundle {
  std::string root;
  Manifest manifest;
  std::string info_json;
  std::string path(const std::string& rel) const { return root + "/" + rel; }
};

// Read and check a bundle directory (manifest, each file's presence and size, optionally sha256).
Bundle open_bundle(const std::string& dir, bool verify_sha256);

}  // namespace edge::core
