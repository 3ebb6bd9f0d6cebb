// edge-projector-encode: runs edge::projector on raw float32 pixel values, for the parity tests
// (tests/native/test_native_projector.py) and for trying a projector GGUF by hand.
//
//   edge-projector-encode GGUF --info                      print the projector's facts as JSON
//   edge-projector-encode GGUF INPUT.bin D0 D1 ... OUT.bin [--threads N]
//
// INPUT.bin holds little-endian float32 pixel values of shape D0 x D1 x ... in the layout of the
// bundle's vision graph input: [n, 3, H, W] or Qwen2-VL's [grid_t, gh/2, gw/2, 4, 3*T*P*P] (as
// edge::vision::Tiles holds them). OUT.bin gets the [n, tokens, dim] float32 rows; stdout one JSON line.
// Exit codes: 0 ok, 1 the projector refused (message on stderr), 2 bad usage.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "projector.h"
#include "vision.h"

namespace {

int usage() {
    std::fprintf(stderr,
                 "usage: edge-projector-encode GGUF --info | GGUF INPUT.bin D0 [D1 ...] OUT.bin [--threads N]\n");
    return 2;
}

void print_info(const edge::projector::Info& in) {
    std::printf("{\"projector_type\": \"%s\", \"n_embd\": %d, \"image_size\": %d, \"patch_size\": %d, "
                "\"tokens_per_tile\": %d, \"dynamic_resolution\": %s",
                in.projector_type.c_str(), in.n_embd, in.image_size, in.patch_size, in.tokens_per_tile,
                in.dynamic_resolution ? "true" : "false");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    int threads = 1;
    for (size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] == "--threads") {
            threads = std::atoi(args[i + 1].c_str());
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
            break;
        }
    }
    if (args.size() < 2) return usage();
    std::string err;
    auto proj = edge::projector::Projector::open(args[0], threads, err);
    if (!proj) {
        std::fprintf(stderr, "error: %s\n", err.c_str());
        return 1;
    }
    if (args[1] == "--info") {
        print_info(proj->info());
        std::printf("}\n");
        return 0;
    }
    if (args.size() < 4) return usage();
    edge::vision::Tiles tiles;
    for (size_t i = 2; i + 1 < args.size(); ++i) {
        char* end = nullptr;
        const long long d = std::strtoll(args[i].c_str(), &end, 10);
        if (end == args[i].c_str() || *end != '\0' || d < 0) return usage();
        tiles.shape.push_back(d);
    }
    std::ifstream in(args[1], std::ios::binary | std::ios::ate);
    if (!in) {
        std::fprintf(stderr, "error: cannot read %s\n", args[1].c_str());
        return 1;
    }
    const std::streamsize bytes = in.tellg();
    in.seekg(0);
    tiles.data.resize(static_cast<size_t>(bytes) / sizeof(float));
    const auto in_bytes = static_cast<std::streamsize>(tiles.data.size() * sizeof(float));
    in.read(reinterpret_cast<char*>(tiles.data.data()), in_bytes);
    edge::projector::Embeddings out;
    const auto t0 = std::chrono::steady_clock::now();
    if (!proj->encode(tiles, out, err)) {
        std::fprintf(stderr, "error: %s\n", err.c_str());
        return 1;
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::ofstream o(args.back(), std::ios::binary);
    const auto out_bytes = static_cast<std::streamsize>(out.data.size() * sizeof(float));
    o.write(reinterpret_cast<const char*>(out.data.data()), out_bytes);
    if (!o) {
        std::fprintf(stderr, "error: cannot write %s\n", args.back().c_str());
        return 1;
    }
    print_info(proj->info());
    std::printf(", \"n\": %d, \"tokens\": %d, \"dim\": %d, \"encode_ms\": %.3f}\n", out.n, out.tokens, out.dim, ms);
    return 0;
}
