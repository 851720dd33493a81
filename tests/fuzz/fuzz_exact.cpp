// SPDX-License-Identifier: MIT
// libFuzzer target: exact_attention (streaming and materialised kernels, both overloads) and
// attention_matrix, against the contract of fuzz_common.hpp. Moderate inputs also check that
// the two kernels agree and that attention_matrix rows are probability distributions.
#include <attnx/exact.hpp>

#include <cmath>
#include <limits>

#include "fuzz_common.hpp"

namespace {

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::Index;
    using attnx::Matrix;
    const Index n_q = in.size(64), n_k = in.size(64), d = in.size(16), dv = in.size(16);
    attnx::ExactOptions o;
    const bool scale_ok = in.scale(o.scale);
    o.causal = in.flag();
    o.check_finite = in.byte() >= 16;
    o.query_tile = in.range(-1, 70);
    o.key_tile = in.range(-1, 70);
    o.decode_key_tile = o.key_tile;  // not a draw of its own: stored inputs keep their meaning
    o.key_padding_mask = in.mask(n_k);
    bool finite = true;
    double mx = 0;
    const Matrix<Scalar> q = fuzz::matrix<Scalar>(in, n_q, d, finite, mx);
    const Matrix<Scalar> k = fuzz::matrix<Scalar>(in, n_k, d, finite, mx);
    const Matrix<Scalar> v = fuzz::matrix<Scalar>(in, n_k, dv, finite, mx);
    const int mode = in.byte() % 4;

    fuzz::Case c;
    c.inputs_finite = finite;
    c.check_finite = o.check_finite;
    c.moderate = scale_ok && mx <= 8 && (!o.scale || *o.scale <= 1e30);

    Matrix<Scalar> streaming, materialized;
    c.what = "exact_attention(Streaming)";
    o.kernel = attnx::ExactKernel::Streaming;
    const bool ok_s = fuzz::call(c, [&] { streaming = attnx::exact_attention(q, k, v, o); });
    if (ok_s) fuzz::check_output(c, streaming, n_q, dv);

    c.what = "exact_attention(Materialized)";
    o.kernel = attnx::ExactKernel::Materialized;
    const bool ok_m = fuzz::call(c, [&] { materialized = attnx::exact_attention(q, k, v, o); });
    if (ok_m) fuzz::check_output(c, materialized, n_q, dv);
    if (ok_s != ok_m && c.moderate && finite && o.check_finite)
        fuzz::fail("exact_attention", "one kernel threw and the other did not");

    if (ok_s && ok_m && c.moderate && finite && o.check_finite && n_q > 0 && dv > 0) {
        // Both kernels compute the same softmax, but sum each logit s*q.k in a different order,
        // so they may differ by the rounding error of a dot product, d*eps*L with
        // L = s*d*max|q|*max|k|, and a softmax turns a logit error delta into at most 2*delta of
        // probability mass moved between rows of V. With a huge scale (1e30) that is of order
        // one: two keys whose logits tie in exact arithmetic can be ordered either way (a
        // fuzzer found this), so the allowance grows with L instead of assuming ties break alike.
        const double vmax = v.size() ? static_cast<double>(v.cwiseAbs().maxCoeff()) : 0.0;
        const double qmax = q.size() ? static_cast<double>(q.cwiseAbs().maxCoeff()) : 0.0;
        const double kmax = k.size() ? static_cast<double>(k.cwiseAbs().maxCoeff()) : 0.0;
        const double s = o.scale ? *o.scale : (d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0);
        const double eps = static_cast<double>(std::numeric_limits<Scalar>::epsilon());
        const double logit_error = static_cast<double>(d) * eps * s * static_cast<double>(d) * qmax * kmax;
        const double tol = ((std::is_same<Scalar, float>::value ? 1e-2 : 1e-8) + 2.0 * logit_error) * (1.0 + vmax);
        const double diff = (streaming.template cast<double>() - materialized.template cast<double>()).cwiseAbs().maxCoeff();
        if (!(diff <= tol))
            fuzz::fail("exact_attention", "streaming and materialized differ by " + std::to_string(diff));
    }

    if (mode == 1) {  // the caller-provided buffer, sometimes of the wrong shape
        const Index r = n_q + (in.flag() ? 1 : 0), cc = dv;
        Matrix<Scalar> out(r, cc);
        c.what = "exact_attention(out)";
        o.kernel = in.flag() ? attnx::ExactKernel::Materialized : attnx::ExactKernel::Streaming;
        if (fuzz::call(c, [&] { attnx::exact_attention(q, k, v, out, o); })) fuzz::check_output(c, out, n_q, dv);
    }
    if (mode == 2) {
        c.what = "attention_matrix";
        Matrix<Scalar> p;
        const attnx::AttentionOptions& ao = o;
        if (fuzz::call(c, [&] { p = attnx::attention_matrix(q, k, ao); })) {
            fuzz::check_output(c, p, n_q, n_k);
            if (c.inputs_finite && c.check_finite)
                for (Index i = 0; i < p.rows(); ++i) {
                    const double sum = p.row(i).template cast<double>().sum();
                    if (p.row(i).minCoeff() < Scalar(0) || !(sum < 1.001) || (sum > 1e-3 && !(sum > 0.999)))
                        fuzz::fail("attention_matrix", "row " + std::to_string(i) + " sums to " + std::to_string(sum));
                }
        }
    }
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
