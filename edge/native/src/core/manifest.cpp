// manifest.json -> Manifest, as edge/manifest.py Manifest.from_json reads it, hardened for hostile files:
// size and nesting are capped before parsing, every field is type- and range-checked, paths stay inside.
#include "manifest.h"

#include <sys/stat.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "errors.h"
#include "sha256.h"

namespace edge::core {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& what) {
  std::string m = "manifest.json: " + what;
  if (m.size() > 300) m = m.substr(0, 297) + "...";
  fail(EDGE_ERR_BUNDLE, m);
}

const json& object(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where + " must be an object");
  return j;
}

const json* field(const json& j, const char* key, const std::string& where, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) bad(where + "." + key + " is missing");
    return nullptr;
  }
  return &*it;
}

std::string text(const json& j, const char* key, const std::string& where, bool required,
                 const std::string& fallback = "", bool nullable = false) {
  const json* v = field(j, key, where, required);
  if (!v || (nullable && v->is_null())) return fallback;
  if (!v->is_string()) bad(where + "." + key + " must be a string");
  return v->get<std::string>();
}

// An integer in [lo, hi]: booleans, floats and numbers beyond int64 are refused (huge numbers in a hostile file).
int64_t integer(const json& v, const std::string& where, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(where + " must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(where + " is out of range");
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad(where + " is out of range (" + std::to_string(x) + ")");
  return x;
}

int64_t integer(const json& j, const char* key, const std::string& where, int64_t lo, int64_t hi) {
  return integer(*field(j, key, where, true), where + "." + key, lo, hi);
}

bool boolean(const json& j, const char* key, const std::string& where, bool required, bool fallback) {
  const json* v = field(j, key, where, required);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(where + "." + key + " must be a boolean");
  return v->get<bool>();
}

std::string one_of(const json& j, const char* key, const std::string& where, const std::vector<std::string>& allowed,
                   const std::string& fallback) {
  std::string v = text(j, key, where, false, fallback);
  for (const auto& a : allowed)
    if (v == a) return v;
  bad(where + "." + key + " has an unknown value '" + v.substr(0, 40) + "'");
}

constexpr int64_t kMaxTokenId = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxDim = int64_t(1) << 24;

LLMSpec parse_llm(const json& j) {
  const std::string w = "manifest.llm";
  object(j, w);
  LLMSpec s;
  s.file = text(j, "file", w, true);
  s.arch = text(j, "arch", w, true);
  s.dtype = text(j, "dtype", w, true);
  s.n_ctx_train = integer(j, "n_ctx_train", w, 1, kMaxTokenId);
  s.n_embd = integer(j, "n_embd", w, 1, kMaxDim);
  s.n_vocab = integer(j, "n_vocab", w, 1, kMaxTokenId);
  const json* bos = field(j, "bos_id", w, true);
  if (!bos->is_null()) s.bos_id = int32_t(integer(*bos, w + ".bos_id", 0, kMaxTokenId));
  const json* eos = field(j, "eos_ids", w, true);
  if (!eos->is_array()) bad(w + ".eos_ids must be a list");
  for (size_t i = 0; i < eos->size(); i++)
    s.eos_ids.push_back(int32_t(integer((*eos)[i], w + ".eos_ids[" + std::to_string(i) + "]", 0, kMaxTokenId)));
  s.add_bos = boolean(j, "add_bos", w, true, false);
  s.bos_token = text(j, "bos_token", w, false, "", true);
  s.eos_token = text(j, "eos_token", w, false, "", true);
  s.media_attention = one_of(j, "media_attention", w, {"causal", "bidirectional"}, "causal");
  s.media_positions = one_of(j, "media_positions", w, {"linear", "mrope"}, "linear");
  s.space_prefix = one_of(j, "space_prefix", w, {"gguf", "first"}, "gguf");
  return s;
}

PromptLayout parse_prompt(const json& j) {
  const std::string w = "manifest.prompt";
  object(j, w);
  PromptLayout p;
  p.image_marker = text(j, "image_marker", w, false, p.image_marker);
  if (p.image_marker.empty()) bad(w + ".image_marker must not be empty");
  p.image_prefix = text(j, "image_prefix", w, false);
  p.image_suffix = text(j, "image_suffix", w, false);
  p.content_format = one_of(j, "content_format", w, {"string", "parts"}, "string");
  return p;
}

VisionSpec parse_vision(const json& j) {
  const std::string w = "manifest.vision";
  object(j, w);
  VisionSpec v;
  v.file = text(j, "file", w, true);
  v.tokens_per_image = integer(j, "tokens_per_image", w, 0, kMaxDim);  // 0: varies per image (qwen2vl)
  v.embed_dim = integer(j, "embed_dim", w, 1, kMaxDim);
  const json& in = object(*field(j, "input", w, true), w + ".input");
  v.input_name = text(in, "name", w + ".input", true);
  const json* shape = field(in, "shape", w + ".input", true);
  if (!shape->is_array() || shape->size() > 8) bad(w + ".input.shape must be a list of at most 8 sizes");
  for (size_t i = 0; i < shape->size(); i++)
    v.input_shape.push_back(integer((*shape)[i], w + ".input.shape[" + std::to_string(i) + "]", -1, kMaxDim));
  const json& out = object(*field(j, "output", w, true), w + ".output");
  v.output_name = text(out, "name", w + ".output", true);
  const json& pre = object(*field(j, "preprocess", w, true), w + ".preprocess");
  v.scheme = text(pre, "scheme", w + ".preprocess", true);
  v.json = j;
  return v;
}

RoleAffixes parse_role(const json& j, const std::string& w) {
  object(j, w);
  RoleAffixes r;
  r.prefix = text(j, "prefix", w, true);
  r.suffix = text(j, "suffix", w, true);
  if (const json* v = field(j, "image_first_prefix", w, false); v && !v->is_null())
    r.image_first_prefix = text(j, "image_first_prefix", w, true);
  r.trim = boolean(j, "trim", w, false, false);
  return r;
}

// llm.chat_affixes: the chat template as role prefixes/suffixes, rendered from the HF template at export
ChatAffixes parse_chat(const json& j) {
  const std::string w = "manifest.llm.chat_affixes";
  object(j, w);
  ChatAffixes c;
  c.present = true;
  c.bos = text(j, "bos", w, true);
  c.system = parse_role(*field(j, "system", w, true), w + ".system");
  c.user = parse_role(*field(j, "user", w, true), w + ".user");
  c.assistant = parse_role(*field(j, "assistant", w, true), w + ".assistant");
  c.generation_prompt = text(j, "generation_prompt", w, true);
  c.system_placement = one_of(j, "system_placement", w, {"turn", "first_user"}, "turn");
  c.no_system = text(j, "no_system", w, false);
  c.image_text = text(j, "image_text", w, false);
  c.alternate = boolean(j, "alternate", w, false, false);
  return c;
}

}  // namespace

int json_depth(const std::string& s) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return deepest;
}

bool safe_relative_path(const std::string& p) {
  if (p.empty() || p.size() > 4096 || p[0] == '/' || p.find('\\') != std::string::npos ||
      p.find('\0') != std::string::npos || p.find(':') != std::string::npos)
    return false;
  std::stringstream parts(p);
  std::string part;
  while (std::getline(parts, part, '/'))
    if (part.empty() || part == "." || part == "..") return false;
  return p.back() != '/';
}

Manifest parse_manifest(const std::string& text_) {
  if (text_.size() > kMaxManifestBytes) bad("the file is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  if (json_depth(text_) > kMaxDepth) bad("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  json j = json::parse(text_, nullptr, false);
  if (j.is_discarded()) bad("not valid JSON");
  if (!j.is_object()) bad("must hold a JSON object");
  const json* version = field(j, "schema_version", "manifest", true);
  if (!version->is_number_integer() || version->get<int64_t>() != kSchemaVersion)
    bad("schema_version " + version->dump().substr(0, 30) + " is not the one this library reads (" +
        std::to_string(kSchemaVersion) + "); re-export the bundle or upgrade edge");
  Manifest m;
  m.name = text(j, "name", "manifest", true);
  m.family = text(j, "family", "manifest", true);
  const json& files = object(*field(j, "files", "manifest", true), "manifest.files");
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string w = "manifest.files." + it.key().substr(0, 80);
    object(it.value(), w);
    FileEntry f;
    f.path = text(it.value(), "path", w, true);
    f.bytes = uint64_t(integer(it.value(), "bytes", w, 0, std::numeric_limits<int64_t>::max()));
    f.sha256 = text(it.value(), "sha256", w, true);
    if (!safe_relative_path(f.path)) bad(w + ".path leaves the bundle or is not a plain relative path");
    m.files[it.key()] = f;
  }
  if (const json* llm = field(j, "llm", "manifest", false); llm && !llm->is_null()) {
    m.llm = parse_llm(*llm);
    if (const json* c = field(*llm, "chat_affixes", "manifest.llm", false); c && !c->is_null()) m.chat = parse_chat(*c);
  }
  if (const json* p = field(j, "prompt", "manifest", false)) m.prompt = parse_prompt(*p);
  if (const json* v = field(j, "vision", "manifest", false); v && !v->is_null()) {
    m.vision = parse_vision(*v);
    m.projector_file = text(*v, "projector_gguf", "manifest.vision", false, "", true);
  }
  std::vector<std::string> named;
  if (m.llm) named.push_back(m.llm->file);
  if (m.vision) named.push_back(m.vision->file);
  if (!m.projector_file.empty()) named.push_back(m.projector_file);
  for (const auto& n : named)
    if (!m.files.count(n)) bad("the component file '" + n.substr(0, 80) + "' is not listed in files");
  return m;
}

Bundle open_bundle(const std::string& dir, bool verify_sha256) {
  Bundle b;
  b.root = dir;
  while (b.root.size() > 1 && b.root.back() == '/') b.root.pop_back();
  std::string path = b.path("manifest.json");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) fail(EDGE_ERR_IO, dir + " is not a bundle (no manifest.json)");
  if (uint64_t(st.st_size) > kMaxManifestBytes) bad("the file is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  std::ifstream in(path, std::ios::binary);
  std::string text_((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) fail(EDGE_ERR_IO, "cannot read " + path);
  b.manifest = parse_manifest(text_);
  for (const auto& [key, f] : b.manifest.files) {
    std::string p = b.path(f.path);
    struct stat fs {};
    if (stat(p.c_str(), &fs) != 0 || !S_ISREG(fs.st_mode)) fail(EDGE_ERR_IO, "the bundle file " + f.path + " is missing");
    if (uint64_t(fs.st_size) != f.bytes)
      fail(EDGE_ERR_BUNDLE, "the bundle file " + f.path + " has " + std::to_string(fs.st_size) +
                                " bytes, the manifest says " + std::to_string(f.bytes) + " (truncated or replaced)");
    if (verify_sha256 && sha256_file(p) != f.sha256)
      fail(EDGE_ERR_BUNDLE, "the bundle file " + f.path + " does not match its sha256 in the manifest");
  }
  const Manifest& m = b.manifest;
  json info = {{"name", m.name}, {"family", m.family}, {"has_vision", bool(m.vision)},
               {"has_projector", !m.projector_file.empty()}, {"image_marker", m.prompt.image_marker},
               {"has_chat", m.chat.present}};
  if (m.llm) info["n_ctx_train"] = m.llm->n_ctx_train;
  if (m.vision) {
    info["scheme"] = m.vision->scheme;
    info["tokens_per_image"] = m.vision->tokens_per_image;
    info["embed_dim"] = m.vision->embed_dim;
  }
  b.info_json = info.dump();
  return b;
}

}  // namespace edge::core
