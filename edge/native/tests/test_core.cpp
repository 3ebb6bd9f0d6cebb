// Unit tests of the native core (no model needed): manifest.json on hostile inputs, sha256, UTF-8 streaming,
// the image checks, the chat renderer, and the C ABI's status codes and messages.
//   edge-core-tests SCRATCH_DIR
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "edge.h"
#include "errors.h"
#include "manifest.h"
#include "media.h"
#include "prompt.h"
#include "sha256.h"

using namespace edge::core;

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

// The status and message a call that throws Error gives (EDGE_OK when it does not throw).
template <typename F>
static edge_status status_of(F&& f, std::string* message = nullptr) {
  try {
    f();
    return EDGE_OK;
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.status;
  }
}

static const char* kGood = R"({"schema_version": 2, "name": "t", "family": "llama",
  "files": {"llm.gguf": {"path": "llm.gguf", "bytes": 4, "sha256": "b83633aa785344791618f2fddf131b010ea04912a60430760b070bad293f65bd"}},
  "llm": {"file": "llm.gguf", "arch": "llama", "dtype": "f32", "n_ctx_train": 64, "n_embd": 8, "n_vocab": 10,
          "bos_id": 1, "eos_ids": [2], "add_bos": true, "bos_token": "<s>", "eos_token": null},
  "prompt": {"image_marker": "<image>"}, "provenance": {}})";

static std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  size_t at = s.find(from);
  if (at == std::string::npos) return "MISSING:" + from;
  return s.replace(at, from.size(), to);
}

static void test_manifest() {
  Manifest m = parse_manifest(kGood);
  CHECK(m.llm && m.llm->n_embd == 8 && m.llm->bos_id && *m.llm->bos_id == 1 && m.llm->eos_token.empty());
  CHECK(m.files.at("llm.gguf").bytes == 4);
  std::string msg;
  CHECK(status_of([] { parse_manifest("{"); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest("[1, 2]"); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"schema_version\": 2", "\"schema_version\": 3")); }, &msg) == EDGE_ERR_BUNDLE);
  CHECK(msg.find("schema_version") != std::string::npos);
  CHECK(status_of([] { parse_manifest(with("\"schema_version\": 2", "\"schema_version\": \"2\"")); }) == EDGE_ERR_BUNDLE);
  // wrong types
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": \"8\"")); }, &msg) == EDGE_ERR_BUNDLE);
  CHECK(msg.find("manifest.llm.n_embd") != std::string::npos);
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": 8.5")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"add_bos\": true", "\"add_bos\": 1")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"eos_ids\": [2]", "\"eos_ids\": 2")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": true")); }) == EDGE_ERR_BUNDLE);
  // huge numbers
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": 99999999999999999999999")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": 18446744073709551615")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"bytes\": 4", "\"bytes\": -4")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"eos_ids\": [2]", "\"eos_ids\": [1e400]")); }) == EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"n_embd\": 8", "\"n_embd\": 1e308")); }) == EDGE_ERR_BUNDLE);
  // unknown enum values, missing fields
  CHECK(status_of([] { parse_manifest(with("\"dtype\": \"f32\",", "\"dtype\": \"f32\", \"media_attention\": \"x\",")); }) ==
        EDGE_ERR_BUNDLE);
  CHECK(status_of([] { parse_manifest(with("\"arch\": \"llama\",", "")); }, &msg) == EDGE_ERR_BUNDLE);
  CHECK(msg.find("arch is missing") != std::string::npos);
  // paths that leave the bundle
  for (const char* p : {"../llm.gguf", "/etc/passwd", "a/../../b", "a\\\\b", "", "a//b", "./x", "c:x"}) {
    std::string bad = with("\"path\": \"llm.gguf\"", std::string("\"path\": \"") + p + "\"");
    CHECK(status_of([&] { parse_manifest(bad); }) == EDGE_ERR_BUNDLE);
  }
  CHECK(safe_relative_path("sub/llm.gguf") && !safe_relative_path("sub/") && !safe_relative_path("x/./y"));
  // deep nesting is refused before parsing (nlohmann's parser recurses per level)
  std::string deep = with("\"provenance\": {}", "\"provenance\": " + std::string(100000, '[') + std::string(100000, ']'));
  CHECK(json_depth(deep) == 100001);
  CHECK(status_of([&] { parse_manifest(deep); }, &msg) == EDGE_ERR_BUNDLE);
  CHECK(msg.find("nesting") != std::string::npos);
  CHECK(json_depth("{\"a\": \"[[[[\"}") == 1);
  CHECK(json_depth("{\"a\": \"\\\"[[[[\"}") == 1);
  std::string big(kMaxManifestBytes + 1, ' ');
  CHECK(status_of([&] { parse_manifest(big); }) == EDGE_ERR_BUNDLE);
  // a component file that is not listed
  CHECK(status_of([] { parse_manifest(with("\"file\": \"llm.gguf\"", "\"file\": \"other.gguf\"")); }) == EDGE_ERR_BUNDLE);
  // messages stay one short line, even for hostile key names
  std::string longkey = with("\"llm.gguf\": {\"path\"", "\"" + std::string(5000, 'k') + "\": {\"path\": 1, \"x\"");
  CHECK(status_of([&] { parse_manifest(longkey); }, &msg) == EDGE_ERR_BUNDLE);
  CHECK(msg.size() <= 300 && msg.find('\n') == std::string::npos);
}

static void test_sha256() {
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char* two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two, std::strlen(two)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  CHECK(sha256_hex(million.data(), million.size()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_utf8() {
  Utf8Stream u;
  CHECK(u.push("a\xC3") == "a");
  CHECK(u.push("\xA9") == "\xC3\xA9");
  CHECK(u.push("\xE2\x82") == "");
  CHECK(u.push("\xAC!") == "\xE2\x82\xAC!");
  CHECK(u.push("\xFF") == "\xEF\xBF\xBD");
  CHECK(u.push("\xC3(") == "\xEF\xBF\xBD(");
  CHECK(u.push("\xF0\x9F") == "");
  CHECK(u.flush() == "\xEF\xBF\xBD");
  CHECK(u.push("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate, as Python replaces it
}

static void test_images() {
  uint8_t px[12] = {0};
  CHECK(status_of([&] { copy_image(px, sizeof(px), 0, 0, 0); }) == EDGE_ERR_IMAGE);
  CHECK(status_of([&] { copy_image(px, sizeof(px), -1, 2, 0); }) == EDGE_ERR_IMAGE);
  CHECK(status_of([&] { copy_image(nullptr, 0, 2, 2, 0); }) == EDGE_ERR_INVALID_ARGUMENT);
  CHECK(status_of([&] { copy_image(px, sizeof(px), 1 << 30, 1 << 30, 0); }) == EDGE_ERR_IMAGE);
  CHECK(status_of([&] { copy_image(px, sizeof(px), 30000, 30000, 0); }) == EDGE_ERR_IMAGE);
  CHECK(status_of([&] { copy_image(px, sizeof(px), 2, 3, 0); }) == EDGE_ERR_IMAGE);  // needs 18 bytes
  CHECK(status_of([&] { copy_image(px, sizeof(px), 2, 2, 5); }) == EDGE_ERR_IMAGE);  // stride < 3 * width
  CHECK(status_of([&] { copy_image(px, sizeof(px), 2, 2, SIZE_MAX / 2); }) == EDGE_ERR_IMAGE);
  RGBImage img = copy_image(px, sizeof(px), 2, 2, 0);
  CHECK(img.rgb.size() == 12);
  RGBImage strided = copy_image(px, 10, 1, 2, 7);  // last row needs only its 3 bytes
  CHECK(strided.rgb.size() == 6);
}

static void test_chat() {
  std::string text = kGood;
  text.replace(text.find("\"bos_token\""), 0,
               "\"chat_affixes\": {\"bos\": \"<s>\", \"system\": {\"prefix\": \"S:\", \"suffix\": \"|\"},"
               " \"user\": {\"prefix\": \"U:\", \"suffix\": \"|\", \"trim\": true},"
               " \"assistant\": {\"prefix\": \"A:\", \"suffix\": \"|\"}, \"generation_prompt\": \"A:\","
               " \"system_placement\": \"first_user\", \"no_system\": \"N|\"}, ");
  Manifest m = parse_manifest(text);
  CHECK(m.chat.present && m.chat.system_placement == "first_user");
  CHECK(render_chat(m, {{"user", " hi\n", 0}}) == "<s>N|U:hi|A:");
  CHECK(render_chat(m, {{"system", "be", 0}, {"user", "hi", 1}}) == "<s>U:S:be|<image>\nhi|A:");
  CHECK(status_of([&] { render_chat(m, {{"user", "a", 0}, {"system", "b", 0}}); }) == EDGE_ERR_PROMPT);
  CHECK(status_of([&] { render_chat(m, {{"tool", "a", 0}}); }) == EDGE_ERR_PROMPT);
  CHECK(status_of([&] { render_chat(parse_manifest(kGood), {{"user", "a", 0}}); }) == EDGE_ERR_UNSUPPORTED);
}

static void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

static void test_c_api(const std::string& scratch) {
  CHECK(std::strcmp(edge_status_name(EDGE_ERR_BUNDLE), "EDGE_ERR_BUNDLE") == 0);
  CHECK(std::strstr(edge_version(), "schema 2") != nullptr);
  edge_bundle* b = reinterpret_cast<edge_bundle*>(1);
  CHECK(edge_bundle_open(nullptr, 0, &b) == EDGE_ERR_INVALID_ARGUMENT && b == nullptr);
  CHECK(std::strlen(edge_last_error()) > 0);
  CHECK(edge_bundle_open("/nonexistent/bundle", 0, &b) == EDGE_ERR_IO && b == nullptr);
  CHECK(std::string(edge_last_error()).find("no manifest.json") != std::string::npos);
  mkdir(scratch.c_str(), 0755);
  const std::string dir = scratch + "/bundle";
  mkdir(dir.c_str(), 0755);
  write_file(dir + "/manifest.json", kGood);
  std::remove((dir + "/llm.gguf").c_str());
  CHECK(edge_bundle_open(dir.c_str(), 0, &b) == EDGE_ERR_IO);  // a missing file
  CHECK(std::string(edge_last_error()).find("llm.gguf is missing") != std::string::npos);
  write_file(dir + "/llm.gguf", "GGU");
  CHECK(edge_bundle_open(dir.c_str(), 0, &b) == EDGE_ERR_BUNDLE);  // truncated
  CHECK(std::string(edge_last_error()).find("truncated") != std::string::npos);
  write_file(dir + "/llm.gguf", "GGUX");
  CHECK(edge_bundle_open(dir.c_str(), 1, &b) == EDGE_ERR_BUNDLE);  // size right, sha256 wrong
  CHECK(std::string(edge_last_error()).find("sha256") != std::string::npos);
  write_file(dir + "/llm.gguf", "GGUF");
  CHECK(edge_bundle_open(dir.c_str(), 1, &b) == EDGE_OK && b != nullptr);
  CHECK(std::string(edge_last_error()).empty());
  CHECK(std::string(edge_bundle_info(b)).find("\"family\":\"llama\"") != std::string::npos);
  edge_session* s = nullptr;
  CHECK(edge_session_create(b, nullptr, &s) == EDGE_ERR_BACKEND && s == nullptr);  // "GGUF" is no model
  edge_session_params bad;
  edge_session_params_default(&bad);
  bad.threads = -1;
  CHECK(edge_session_create(b, &bad, &s) == EDGE_ERR_INVALID_ARGUMENT);
  edge_bundle_close(b);
  CHECK(edge_session_add_text(nullptr, "x") == EDGE_ERR_INVALID_ARGUMENT);
  CHECK(edge_session_generate(nullptr, nullptr, nullptr, nullptr) == EDGE_ERR_INVALID_ARGUMENT);
  edge_session_cancel(nullptr);
  edge_session_close(nullptr);
  edge_bundle_close(nullptr);
}

int main(int argc, char** argv) {
  const std::string scratch = argc > 1 ? argv[1] : "core-scratch";
  test_manifest();
  test_sha256();
  test_utf8();
  test_images();
  test_chat();
  test_c_api(scratch);
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("edge-core-tests: all checks passed\n");
  return failures ? 1 : 0;
}
