// SPDX-License-Identifier: MIT
// Instantiates every public entry point for float and double, so that -Werror sees the
// template bodies, not just their declarations.
#include <attnx/attnx.hpp>

template <typename Scalar>
Scalar instantiate() {
    const attnx::Matrix<Scalar> q = attnx::random_normal<Scalar>(64, 16, 1, 1);
    const attnx::Matrix<Scalar> k = attnx::random_normal<Scalar>(64, 16, 1, 2);
    const attnx::Matrix<Scalar> v = attnx::random_normal<Scalar>(64, 8, 1, 3);
    Scalar acc = 0;
    attnx::ExactOptions eo;
    acc += attnx::exact_attention(q, k, v, eo).sum();
    eo.kernel = attnx::ExactKernel::Materialized;
    acc += attnx::exact_attention(q, k, v, eo).sum();
    acc += attnx::attention_matrix(q, k).sum();
    acc += static_cast<Scalar>(attnx::compare(q, k).rel_fro);
    return acc;
}

int main() { return instantiate<float>() + instantiate<double>() > 0 ? 0 : 1; }
