// Reading the small .npy arrays a bundle's vision.extras name (numpy's format 1.0/2.0/3.0 header,
// little-endian float16/float32/float64, C order), as np.load(...).astype(np.float32) gives them.
#pragma once

#include <string>
#include <vector>

namespace edge::vision {

// The 1-D array in `path` as float32; throws Failure(bundle) when it is missing, malformed or not 1-D.
std::vector<float> load_npy_f32(const std::string& path);

}  // namespace edge::vision
