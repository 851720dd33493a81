// SPDX-License-Identifier: MIT
// attnx's kernels for double, compiled once (attnx/instantiate.hpp); see attnx_kernels_float.cpp.
#define ATTNX_INSTANTIATE_KERNELS_DOUBLE
#include <attnx/instantiate.hpp>
