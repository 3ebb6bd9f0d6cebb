// edge-native-run: answer one prompt with a bundle through libedge (edge.h), as `edge run` does.
//
//   edge-native-run BUNDLE [--image PATH]... --prompt TEXT [--json] [--no-template] [--max-tokens N]
//                   [--seed S] [--temperature T] [--top-k K] [--top-p P] [--threads N] [--ctx N]
//                   [--max-tiles N] [--max-image-tokens N] [--vision auto|projector|callback-file]
//                   [--embeddings FILE] [--verify]
//
// Streamed text goes to stdout, diagnostics to stderr; --json prints {text, tokens, finish_reason, timings}
// at the end instead. `--vision callback-file --embeddings FILE` answers the encoder callback from FILE:
// raw little-endian float32 embeddings of every image, in order (what the Python runtime's VisionEncoder
// returned for them), to exercise the callback path without onnxruntime. Errors: one line, exit code 2.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>

#include "edge.h"

namespace {

int die(const std::string& message, int code = 2) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

struct FileEncoder {  // the callback-file encoder: hands out consecutive floats of one file
  FILE* f = nullptr;
};

int encode_from_file(void* user, const edge_tiles* tiles, float* out) {
  auto* enc = static_cast<FileEncoder*>(user);
  size_t n = size_t(tiles->out_tiles * tiles->out_rows * tiles->out_dim);
  return std::fread(out, sizeof(float), n, enc->f) == n ? 0 : 7;
}

int print_token(void* user, int32_t, const char* text, size_t len) {
  if (!*static_cast<bool*>(user)) {
    std::fwrite(text, 1, len, stdout);
    std::fflush(stdout);
  }
  return 0;
}

bool number(const char* s, double lo, double hi, double* out) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (!end || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bundle_dir, prompt, vision = "auto", embeddings;
  std::vector<std::string> images;
  bool as_json = false, raw = false, have_prompt = false, verify = false;
  edge_session_params sp;
  edge_session_params_default(&sp);
  edge_generate_params gp;
  edge_generate_params_default(&gp);
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](double lo, double hi, double* out) {
      if (i + 1 >= argc || !number(argv[i + 1], lo, hi, out)) return false;
      i++;
      return true;
    };
    double v = 0;
    if (a == "--json") as_json = true;
    else if (a == "--no-template") raw = true;
    else if (a == "--verify") verify = true;
    else if (a == "--image" && i + 1 < argc) images.push_back(argv[++i]);
    else if (a == "--prompt" && i + 1 < argc) prompt = argv[++i], have_prompt = true;
    else if (a == "--vision" && i + 1 < argc) vision = argv[++i];
    else if (a == "--embeddings" && i + 1 < argc) embeddings = argv[++i];
    else if (a == "--max-tokens" && value(1, 1e7, &v)) gp.max_tokens = int(v);
    else if (a == "--seed" && value(0, 4294967295.0, &v)) gp.seed = uint32_t(v);
    else if (a == "--temperature" && value(0, 100, &v)) gp.temperature = float(v);
    else if (a == "--top-k" && value(0, 1e7, &v)) gp.top_k = int(v);
    else if (a == "--top-p" && value(1e-9, 1, &v)) gp.top_p = float(v);
    else if (a == "--threads" && value(0, 512, &v)) sp.threads = int(v);
    else if (a == "--ctx" && value(0, 1e7, &v)) sp.n_ctx = int(v);
    else if (a == "--max-tiles" && value(1, 1e6, &v)) sp.max_tiles = int(v);
    else if (a == "--max-image-tokens" && value(1, 1e8, &v)) sp.max_image_tokens = int(v);
    else if (a.rfind("--", 0) != 0 && bundle_dir.empty()) bundle_dir = a;
    else return die("bad argument '" + a + "' (usage: edge-native-run BUNDLE --image PATH --prompt TEXT [--json])");
  }
  if (bundle_dir.empty() || !have_prompt) return die("usage: edge-native-run BUNDLE [--image PATH]... --prompt TEXT [--json]");
  FileEncoder file_encoder;
  if (vision == "projector") {
    sp.vision = EDGE_VISION_PROJECTOR;
  } else if (vision == "callback-file") {
    if (embeddings.empty()) return die("--vision callback-file needs --embeddings FILE");
    file_encoder.f = std::fopen(embeddings.c_str(), "rb");
    if (!file_encoder.f) return die("cannot read " + embeddings);
    sp.vision = EDGE_VISION_CALLBACK;
    sp.encoder = encode_from_file;
    sp.encoder_user_data = &file_encoder;
  } else if (vision != "auto") {
    return die("--vision must be auto, projector or callback-file");
  }
  // decode the images first: a bad file is the first thing to say, before the model loads (as `edge run`)
  struct Decoded { int w, h; unsigned char* px; };
  std::vector<Decoded> decoded;
  auto free_all = [&] {
    for (auto& d : decoded) stbi_image_free(d.px);
    if (file_encoder.f) std::fclose(file_encoder.f);
  };
  for (const auto& path : images) {
    int w = 0, h = 0, c = 0;
    unsigned char* px = stbi_load(path.c_str(), &w, &h, &c, 3);
    if (!px) {
      free_all();
      return die("cannot read the image " + path + ": " + stbi_failure_reason());
    }
    decoded.push_back({w, h, px});
  }
  edge_bundle* bundle = nullptr;
  edge_session* session = nullptr;
  edge_status st = edge_bundle_open(bundle_dir.c_str(), verify, &bundle);
  if (st == EDGE_OK) st = edge_session_create(bundle, &sp, &session);
  for (size_t i = 0; st == EDGE_OK && i < decoded.size(); i++)
    st = edge_session_add_image(session, decoded[i].px, size_t(decoded[i].w) * decoded[i].h * 3, decoded[i].w,
                                decoded[i].h, size_t(decoded[i].w) * 3);
  if (st == EDGE_OK) st = raw ? edge_session_add_text(session, prompt.c_str())
                              : edge_session_add_message(session, "user", prompt.c_str());
  if (st == EDGE_OK) st = edge_session_generate(session, &gp, print_token, &as_json);
  std::string message = st == EDGE_OK ? "" : edge_last_error();
  if (st == EDGE_OK) {
    if (as_json) std::printf("%s\n", edge_session_result_json(session));
    else std::printf("\n");
  }
  edge_session_close(session);
  edge_bundle_close(bundle);
  free_all();
  return st == EDGE_OK ? 0 : die(message + " [" + edge_status_name(st) + "]");
}
