// edge-core-robust BUNDLE [IMAGE_W IMAGE_H]: the C ABI on a real bundle under hostile use, run by
// tests/native/test_native_core.py in the sanitizer build: each case must give its error code and a message,
// and nothing may crash or leak (ASan's leak check fails the process). Prints one line per case.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "edge.h"

static int failures = 0;

static void expect(const char* name, edge_status got, edge_status want) {
  const char* msg = edge_last_error();
  bool ok = got == want && (want == EDGE_OK || std::strlen(msg) > 0);
  std::printf("%s %s: %s (%s)\n", ok ? "ok" : "FAIL", name, edge_status_name(got), msg);
  if (!ok) failures++;
}

static int failing_encoder(void*, const edge_tiles* tiles, float*) { return tiles->out_dim > 0 ? 42 : 43; }
static int zero_encoder(void*, const edge_tiles* tiles, float* out) {
  std::memset(out, 0, sizeof(float) * size_t(tiles->out_tiles * tiles->out_rows * tiles->out_dim));
  return 0;
}
static int stop_after_two(void* user, int32_t, const char*, size_t) { return ++*static_cast<int*>(user) >= 2; }

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  edge_bundle* b = nullptr;
  expect("open", edge_bundle_open(argv[1], 1, &b), EDGE_OK);
  if (!b) return 1;
  const bool vision = std::strstr(edge_bundle_info(b), "\"has_vision\":true") != nullptr;
  edge_session_params sp;
  edge_session_params_default(&sp);
  sp.threads = 2;
  sp.vision = EDGE_VISION_CALLBACK;
  sp.encoder = failing_encoder;
  edge_session* s = nullptr;
  expect("create", edge_session_create(b, &sp, &s), EDGE_OK);
  if (!s) return 1;
  std::vector<uint8_t> px(64 * 64 * 3, 128);
  if (vision) {
    expect("image 0x0", edge_session_add_image(s, px.data(), px.size(), 0, 0, 0), EDGE_ERR_IMAGE);
    expect("image huge claim", edge_session_add_image(s, px.data(), px.size(), 30000, 30000, 0), EDGE_ERR_IMAGE);
    expect("image short buffer", edge_session_add_image(s, px.data(), px.size(), 64, 65, 0), EDGE_ERR_IMAGE);
    expect("image null", edge_session_add_image(s, nullptr, 0, 64, 64, 0), EDGE_ERR_INVALID_ARGUMENT);
    expect("image", edge_session_add_image(s, px.data(), px.size(), 64, 64, 0), EDGE_OK);
    expect("text", edge_session_add_text(s, "x"), EDGE_OK);  // no marker for the image
    edge_generate_params gp;
    edge_generate_params_default(&gp);
    gp.max_tokens = 4;
    expect("markers do not pair up", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_ERR_PROMPT);
    edge_session_reset(s);
    const char* info = edge_bundle_info(b);
    std::string marker = "<image>";
    if (const char* at = std::strstr(info, "\"image_marker\":\"")) {
      at += 16;
      marker.assign(at, std::strchr(at, '"') - at);
    }
    expect("image", edge_session_add_image(s, px.data(), px.size(), 64, 64, 0), EDGE_OK);
    expect("text", edge_session_add_text(s, (marker + "\nWhat is this?").c_str()), EDGE_OK);
    expect("callback error", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_ERR_VISION);
    edge_session_close(s);
    sp.encoder = zero_encoder;
    s = nullptr;
    expect("create", edge_session_create(b, &sp, &s), EDGE_OK);
    expect("image", edge_session_add_image(s, px.data(), px.size(), 64, 64, 0), EDGE_OK);
    expect("text", edge_session_add_text(s, (marker + "\nWhat is this?").c_str()), EDGE_OK);
    int count = 0;
    expect("generate (zero embeddings)", edge_session_generate(s, &gp, stop_after_two, &count), EDGE_OK);
    std::printf("finish %s\n", edge_session_finish_reason(s));
  }
  edge_generate_params gp;
  edge_generate_params_default(&gp);
  gp.max_tokens = 0;
  expect("text", edge_session_add_text(s, "hello"), EDGE_OK);
  expect("max_tokens 0", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_ERR_INVALID_ARGUMENT);
  gp.max_tokens = 100000;
  // cancel from another thread while generating: the call ends with EDGE_ERR_CANCELLED, the session stays usable
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    edge_session_cancel(s);
  });
  edge_status st = edge_session_generate(s, &gp, nullptr, nullptr);
  canceller.join();
  std::printf("%s cancel: %s (%s)\n", st == EDGE_ERR_CANCELLED || st == EDGE_OK ? "ok" : "FAIL", edge_status_name(st),
              edge_session_finish_reason(s));
  if (!(st == EDGE_ERR_CANCELLED || st == EDGE_OK)) failures++;
  gp.max_tokens = 3;
  expect("text", edge_session_add_text(s, "hello again"), EDGE_OK);
  expect("generate after cancel", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_OK);
  gp.temperature = 0.8f;
  gp.seed = 7;
  expect("text", edge_session_add_text(s, "hello"), EDGE_OK);
  expect("sampled", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_OK);
  std::vector<int32_t> first(64), again(64);
  first.resize(edge_session_tokens(s, first.data(), first.size()));
  expect("text", edge_session_add_text(s, "hello"), EDGE_OK);
  expect("sampled again", edge_session_generate(s, &gp, nullptr, nullptr), EDGE_OK);
  again.resize(edge_session_tokens(s, again.data(), again.size()));
  std::printf("%s seeded sampling repeats (%zu tokens)\n", first == again ? "ok" : "DIFF", again.size());
  expect("chat role", edge_session_add_message(s, "robot", "x"), EDGE_ERR_PROMPT);
  edge_session_close(s);
  edge_bundle_close(b);
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
