// SPDX-License-Identifier: MIT
// The shortest real program: exact attention two ways, and how far apart they are.
#include <attnx/attnx.hpp>

#include <cstdio>

int main() {
    using M = attnx::Matrix<float>;  // rows are tokens
    const M q = attnx::random_normal<float>(1024, 64, /*seed=*/42, /*stream=*/0);
    const M k = attnx::random_normal<float>(1024, 64, 42, 1);
    const M v = attnx::random_normal<float>(1024, 64, 42, 2);

    const M fast = attnx::exact_attention(q, k, v);  // streaming kernel, scale 1/sqrt(64)
    attnx::ExactOptions reference;
    reference.kernel = attnx::ExactKernel::Materialized;  // forms the 1024 x 1024 scores
    const M slow = attnx::exact_attention(q, k, v, reference);

    const attnx::ErrorMetrics e = attnx::compare(fast, slow);
    std::printf("streaming vs materialized: rel Frobenius %.2e, max abs %.2e\n", e.rel_fro, e.max_abs);
    return e.rel_fro < 1e-5 ? 0 : 1;
}
