// SPDX-License-Identifier: MIT
// attnx's kernels for float, compiled once (attnx/instantiate.hpp); the units that use them are
// compiled with -include attnx/instantiate.hpp. attnx_kernels_double.cpp does the same for double.
#define ATTNX_INSTANTIATE_KERNELS_FLOAT
#include <attnx/instantiate.hpp>
