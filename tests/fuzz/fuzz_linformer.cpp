// SPDX-License-Identifier: MIT
// libFuzzer target: linformer_attention with raw E/F (separate or the same matrix) and with a
// LinformerProjection (gaussian with both sharing modes, from_matrices, from_matrix, identity),
// both overloads, against the contract of fuzz_common.hpp.
#include <attnx/linformer.hpp>

#include "fuzz_common.hpp"

namespace {

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::Index;
    using attnx::Matrix;
    const Index n_q = in.size(64), n_k = in.size(64), d = in.size(16), dv = in.size(16);
    attnx::AttentionOptions o;
    const bool scale_ok = in.scale(o.scale);
    o.causal = in.byte() >= 240;
    o.check_finite = in.byte() >= 16;
    o.key_padding_mask = in.mask(n_k);
    const Index rank = in.range(0, 10);
    const int mode = in.byte() % 6;
    const bool into_out = in.flag();

    bool finite = true;
    double mx = 0;
    const Matrix<Scalar> q = fuzz::matrix<Scalar>(in, n_q, d, finite, mx);
    const Matrix<Scalar> k = fuzz::matrix<Scalar>(in, n_k, d, finite, mx);
    const Matrix<Scalar> v = fuzz::matrix<Scalar>(in, n_k, dv, finite, mx);

    fuzz::Case c;
    c.check_finite = o.check_finite;

    auto finish = [&](const char* what, bool ef_finite, double ef_max, auto&& compute, auto&& compute_into) {
        c.what = what;
        c.inputs_finite = finite && ef_finite;
        c.moderate = scale_ok && mx <= 8 && ef_max <= 8 && (!o.scale || *o.scale <= 1e30);
        if (!into_out) {
            Matrix<Scalar> out;
            if (fuzz::call(c, [&] { out = compute(); })) fuzz::check_output(c, out, n_q, dv);
        } else {
            Matrix<Scalar> out(n_q + (in.byte() >= 240 ? 1 : 0), dv);
            if (fuzz::call(c, [&] { compute_into(out); })) fuzz::check_output(c, out, n_q, dv);
        }
    };

    if (mode <= 1) {  // raw E and F, k x n_k (sometimes of the wrong width); F = E in mode 1
        const Index cols = in.byte() >= 240 ? n_k + 1 : n_k;
        bool ef_finite = true;
        double ef_max = 0;
        const Matrix<Scalar> e = fuzz::matrix<Scalar>(in, rank, cols, ef_finite, ef_max);
        const Matrix<Scalar> f = mode == 0 ? fuzz::matrix<Scalar>(in, rank, cols, ef_finite, ef_max) : Matrix<Scalar>();
        const Matrix<Scalar>& fr = mode == 0 ? f : e;
        finish(
            "linformer_attention(E, F)", ef_finite, ef_max, [&] { return attnx::linformer_attention(q, k, v, e, fr, o); },
            [&](Matrix<Scalar>& out) { attnx::linformer_attention(q, k, v, e, fr, out, o); });
        return;
    }
    // A LinformerProjection; building it may throw too (bad k, n_max, non-finite matrices).
    attnx::LinformerProjection<Scalar> p = attnx::LinformerProjection<Scalar>::identity(1);
    bool ef_finite = true;
    double ef_max = 0;
    const Index n_max = in.flag() ? n_k : in.size(70);
    c.what = "LinformerProjection";
    c.inputs_finite = true;
    bool built = false;
    if (mode == 2 || mode == 3) {
        const auto sharing = mode == 2 ? attnx::LinformerSharing::Separate : attnx::LinformerSharing::KeyValue;
        const std::uint64_t seed = in.u64();
        built = fuzz::call(c, [&] { p = attnx::LinformerProjection<Scalar>::gaussian(rank, n_max, seed, sharing); });
        ef_max = 8;  // N(0, 1/k) entries: moderate in practice
    } else if (mode == 4) {
        const Matrix<Scalar> e = fuzz::matrix<Scalar>(in, rank, n_max, ef_finite, ef_max);
        if (in.flag()) {
            const Matrix<Scalar> f = fuzz::matrix<Scalar>(in, rank, in.flag() ? n_max : n_max + 1, ef_finite, ef_max);
            built = fuzz::call(c, [&] { p = attnx::LinformerProjection<Scalar>::from_matrices(e, f); });
        } else {
            built = fuzz::call(c, [&] { p = attnx::LinformerProjection<Scalar>::from_matrix(e); });
        }
        if (built && !ef_finite) fuzz::fail(c.what, "accepted non-finite E or F");
    } else {
        built = fuzz::call(c, [&] { p = attnx::LinformerProjection<Scalar>::identity(n_max); });
        ef_max = 1;
    }
    if (!built) return;
    if (p.e().rows() != p.rank() || p.e().cols() != p.max_length() || p.f().rows() != p.rank() ||
        p.f().cols() != p.max_length())
        fuzz::fail("LinformerProjection", "E or F has the wrong shape");
    finish(
        "linformer_attention(projection)", ef_finite, ef_max, [&] { return attnx::linformer_attention(q, k, v, p, o); },
        [&](Matrix<Scalar>& out) { attnx::linformer_attention(q, k, v, p, out, o); });
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
