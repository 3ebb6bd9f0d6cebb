// edge-projector-errors: bad projector files give an error message, never an abort (ctest; also run in
// the EDGE_SANITIZE=ON build, where a leak or an out-of-bounds read fails it).
//
//   edge-projector-errors WORK_DIR
//
// Writes small GGUF files with gguf's own writer into WORK_DIR, then damaged copies of them.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "projector.h"

namespace {

int failures = 0;

// Opening `path` must fail with a message containing `want`.
void expect_error(const std::string& what, const std::string& path, const std::string& want) {
    std::string err;
    auto p = edge::projector::Projector::open(path, 1, err);
    const bool ok = !p && !err.empty() && err.find(want) != std::string::npos && err.find('\n') == std::string::npos;
    std::printf("%s %s: %s\n", ok ? "ok  " : "FAIL", what.c_str(), err.c_str());
    if (!ok) ++failures;
}

// A GGUF with one 1024-float tensor and, when `vision`, the clip.has_vision_encoder flag.
void write_gguf(const std::string& path, bool vision) {
    ggml_init_params ip{/* mem_size */ 1 << 20, /* mem_buffer */ nullptr, /* no_alloc */ false};
    ggml_context* ctx = ggml_init(ip);
    ggml_tensor* t = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1024);
    ggml_set_name(t, "v.patch_embd.weight");
    float* v = static_cast<float*>(t->data);
    for (int i = 0; i < 1024; ++i) v[i] = 0.5f;
    gguf_context* g = gguf_init_empty();
    if (vision) {
        gguf_set_val_bool(g, "clip.has_vision_encoder", true);
        gguf_set_val_str(g, "clip.projector_type", "mlp");
    }
    gguf_add_tensor(g, t);
    gguf_write_to_file(g, path.c_str(), false);
    gguf_free(g);
    ggml_free(ctx);
}

std::vector<char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<char>& bytes, size_t n) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(n));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: edge-projector-errors WORK_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    ::mkdir(dir.c_str(), 0755);
    const std::string good = dir + "/vision.gguf", plain = dir + "/plain.gguf";
    write_gguf(good, true);
    write_gguf(plain, false);
    const std::vector<char> bytes = read_all(good);
    if (bytes.size() < 4096) {
        std::fprintf(stderr, "could not write %s\n", good.c_str());
        return 1;
    }

    expect_error("missing file", dir + "/no-such.gguf", "does not exist");
    expect_error("a directory", dir, "not a regular file");
    write_bytes(dir + "/empty.gguf", bytes, 0);
    expect_error("empty file", dir + "/empty.gguf", "not a valid GGUF");
    {
        std::ofstream out(dir + "/text.gguf");
        out << "this is not a GGUF file, just text that is long enough to be read as a header\n";
    }
    expect_error("not a GGUF", dir + "/text.gguf", "not a valid GGUF");
    write_bytes(dir + "/header.gguf", bytes, 20);
    expect_error("truncated header", dir + "/header.gguf", "not a valid GGUF");
    write_bytes(dir + "/meta.gguf", bytes, 60);
    expect_error("truncated metadata", dir + "/meta.gguf", "not a valid GGUF");
    write_bytes(dir + "/data.gguf", bytes, bytes.size() - 100);
    expect_error("truncated tensor data", dir + "/data.gguf", "truncated");
    expect_error("no vision encoder", plain, "no vision encoder");
    // gguf accepts it; clip's loader throws on its first missing hyperparameter (caught inside clip_init)
    expect_error("vision GGUF without hyperparameters", good, "cannot load projector GGUF");

    if (failures) {
        std::printf("%d case(s) failed\n", failures);
        return 1;
    }
    std::printf("all projector error cases give an error\n");
    return 0;
}
