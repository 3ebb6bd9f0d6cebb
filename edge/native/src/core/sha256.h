// SHA-256 (FIPS 180-4) of a file, for edge_bundle_open(verify_sha256): the manifest records every file's hex digest.
#pragma once

#include <string>

namespace edge::core {

// Lower-case hex digest of the file's bytes; throws Error(EDGE_ERR_IO) when it cannot be read.
std::string sha256_file(const std::string& path);
// Lower-case hex digest of a byte string (unit tests check it against FIPS 180-4's examples).
std::string sha256_hex(const void* data, size_t size);

}  // namespace edge::core
