// SPDX-License-Identifier: MIT
// bench::token_loop compiled without auto-vectorisation (CMake gives this unit
// -fno-tree-vectorize, or -fno-vectorize -fno-slp-vectorize with clang): scalar plain loops, as
// in the reference CPU kernels. See token_loop.hpp.
#include "token_loop.hpp"

namespace bench {

void token_loop_scalar(const attnx::PositiveRandomFeatures<float>& map, const attnx::Matrix<float>& q,
                       const attnx::Matrix<float>& k, const attnx::Matrix<float>& v, attnx::Matrix<float>& out) {
    token_loop(map, q, k, v, out);
}

void token_loop_scalar(const attnx::EluPlusOne& map, const attnx::Matrix<float>& q, const attnx::Matrix<float>& k,
                       const attnx::Matrix<float>& v, attnx::Matrix<float>& out) {
    token_loop(map, q, k, v, out);
}

}  // namespace bench
