// Errors inside the native core: one exception type carrying the C status, caught at the C boundary (api.cpp).
#pragma once

#include <stdexcept>
#include <string>

#include "edge.h"

namespace edge::core {

struct Error : std::runtime_error {
  edge_status status;
  Error(edge_status s, const std::string& message) : std::runtime_error(message), status(s) {}
};

[[noreturn]] inline void fail(edge_status status, const std::string& message) { throw Error(status, message); }

}  // namespace edge::core
