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
    attnx::NystromOptions no;
    no.num_landmarks = 8;
    no.conv_kernel = {0.25, 0.5, 0.25};
    no.key_padding_mask.assign(64, false);
    no.query_padding_mask.assign(64, false);
    attnx::NystromReport report;
    acc += attnx::nystrom_attention(q, k, v, no, &report).sum();
    no.pinv = attnx::PinvMethod::Exact;
    attnx::Matrix<Scalar> out(64, 8);
    attnx::nystrom_attention(q, k, v, out, no);
    acc += out.sum() + static_cast<Scalar>(report.pinv_residual);
    return acc;
}

int main() { return instantiate<float>() + instantiate<double>() > 0 ? 0 : 1; }
