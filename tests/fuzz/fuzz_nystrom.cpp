// SPDX-License-Identifier: MIT
// libFuzzer target: nystrom_attention (both overloads) with reports, query/key padding masks,
// conv_kernel, iterative and exact pseudoinverses, against the contract of fuzz_common.hpp.
#include <attnx/nystrom.hpp>

#include <algorithm>

#include "fuzz_common.hpp"

namespace {

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::Index;
    using attnx::Matrix;
    const Index n_q = in.size(48);
    const Index n_k = in.flag() ? n_q : in.size(48);
    const Index d = in.size(16), dv = in.size(16);
    attnx::NystromOptions o;
    const bool scale_ok = in.scale(o.scale);
    o.causal = in.byte() >= 240;
    o.check_finite = in.byte() >= 16;
    o.num_landmarks = in.range(-1, std::max<Index>(n_q, n_k) + 2);
    o.pinv = in.flag() ? attnx::PinvMethod::Exact : attnx::PinvMethod::Iterative;
    o.pinv_iterations = static_cast<int>(in.range(-1, 12));
    o.key_padding_mask = in.mask(n_k);
    o.query_padding_mask = in.mask(n_q);
    bool conv_finite = true;
    if (in.byte() >= 160) {
        const Index len = in.range(0, 7);
        for (Index t = 0; t < len; ++t) {
            const double w = in.value();
            conv_finite = conv_finite && std::isfinite(w);
            o.conv_kernel.push_back(w);
        }
    }
    bool finite = true;
    double mx = 0;
    const Matrix<Scalar> q = fuzz::matrix<Scalar>(in, n_q, d, finite, mx);
    const Matrix<Scalar> k = fuzz::matrix<Scalar>(in, n_k, d, finite, mx);
    const Matrix<Scalar> v = fuzz::matrix<Scalar>(in, n_k, dv, finite, mx);
    double conv_max = 0;
    for (double w : o.conv_kernel) conv_max = std::max(conv_max, std::abs(w));

    fuzz::Case c;
    c.what = "nystrom_attention";
    c.inputs_finite = finite && conv_finite;
    c.check_finite = o.check_finite;
    c.moderate = scale_ok && mx <= 8 && conv_max <= 8 && (!o.scale || *o.scale <= 1e30);

    attnx::NystromReport report;
    attnx::NystromReport* rp = in.flag() ? &report : nullptr;
    if (in.flag()) {
        Matrix<Scalar> out;
        if (fuzz::call(c, [&] { out = attnx::nystrom_attention(q, k, v, o, rp); })) {
            fuzz::check_output(c, out, n_q, dv);
            // With every key padded no landmark exists: zero rows and an empty report (num_landmarks 0).
            const bool no_keys = !o.key_padding_mask.empty() &&
                                 std::find(o.key_padding_mask.begin(), o.key_padding_mask.end(), false) ==
                                     o.key_padding_mask.end();
            if (rp != nullptr && report.num_landmarks != (no_keys ? 0 : o.num_landmarks))
                fuzz::fail(c.what, "report.num_landmarks is wrong");
        }
    } else {
        const Index r = n_q + (in.byte() >= 240 ? 1 : 0);
        Matrix<Scalar> out(r, dv);
        c.what = "nystrom_attention(out)";
        if (fuzz::call(c, [&] { attnx::nystrom_attention(q, k, v, out, o, rp); })) fuzz::check_output(c, out, n_q, dv);
    }
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
