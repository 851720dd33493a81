// SPDX-License-Identifier: MIT
// libFuzzer target: feature-map attention (linear_attention with EluPlusOne, performer_attention
// with drawn or imported PositiveRandomFeatures), both overloads, causal with any n_q, n_k, any
// chunk and eps, and the decode state (prefill, step, query), against the contract of
// fuzz_common.hpp.
#include <attnx/feature_maps.hpp>
#include <attnx/linear_attention.hpp>

#include "fuzz_common.hpp"

namespace {

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::Index;
    using attnx::Matrix;
    const Index n_q = in.size(40), n_k = in.size(40), d = in.size(12), dv = in.size(12);
    attnx::LinearAttentionOptions o;
    const bool scale_ok = in.scale(o.scale);
    o.causal = in.flag();
    o.check_finite = in.byte() >= 16;
    o.key_padding_mask = in.mask(n_k);
    static const Index chunks[8] = {64, 1, 2, 3, 7, 16, 0, Index(1) << 62};
    o.chunk = chunks[in.byte() % 8];
    static const double eps[8] = {1e-6, 1e-6, 1.0, 1e-300, 0.0, -1.0, 1e30, std::numeric_limits<double>::quiet_NaN()};
    o.eps = eps[in.byte() % 8];
    const int mode = in.byte() % 4;  // 0: elu + 1; 1: drawn features; 2: imported W; 3: decode state
    const bool into_out = in.flag();

    bool finite = true;
    double mx = 0;
    const Matrix<Scalar> q = fuzz::matrix<Scalar>(in, n_q, d, finite, mx);
    const Matrix<Scalar> k = fuzz::matrix<Scalar>(in, n_k, d, finite, mx);
    const Matrix<Scalar> v = fuzz::matrix<Scalar>(in, n_k, dv, finite, mx);

    fuzz::Case c;
    c.check_finite = o.check_finite;
    c.inputs_finite = finite;
    c.moderate = scale_ok && mx <= 8 && (!o.scale || *o.scale <= 4);

    // The features: m in [0, 40] for d or a wrong width; orthogonal or iid; a stabilizer.
    attnx::PositiveRandomFeatures<Scalar> f;
    if (mode >= 1) {
        attnx::RandomFeatureOptions fo;
        fo.num_features = in.size(40);
        fo.orthogonal = in.flag();
        fo.norms = in.flag() ? attnx::FeatureNorms::Chi : attnx::FeatureNorms::SqrtD;
        fo.stabilizer = in.byte() >= 240 ? -1.0 : 1e-6;
        const Index fd = in.byte() >= 240 ? d + 1 : d;
        const std::uint64_t seed = in.u64();
        c.what = "PositiveRandomFeatures";
        bool built = false;
        if (mode == 2) {
            bool w_finite = true;
            double w_max = 0;
            const Matrix<Scalar> w = fuzz::matrix<Scalar>(in, fo.num_features, fd, w_finite, w_max);
            built = fuzz::call(c, [&] { f = attnx::PositiveRandomFeatures<Scalar>::from_matrix(w, fo.stabilizer); });
            if (built && !w_finite) fuzz::fail(c.what, "from_matrix accepted a non-finite W");
            c.moderate = c.moderate && w_max <= 8;
        } else {
            built = fuzz::call(c, [&] { f = attnx::PositiveRandomFeatures<Scalar>::draw(fd, seed, fo); });
            if (built && in.flag()) built = fuzz::call(c, [&] { f.redraw(); });
        }
        if (!built && in.flag()) return;  // else go on with the empty features: they must throw
    }

    if (mode == 3) {  // the decode state over FAVOR+ features
        c.what = "LinearAttentionState";
        using State = attnx::LinearAttentionState<Scalar, attnx::PositiveRandomFeatures<Scalar>>;
        std::optional<State> st;
        if (!fuzz::call(c, [&] { st.emplace(f, d, dv, o); })) return;
        if (n_k > 0 && n_q == n_k && in.flag()) {
            Matrix<Scalar> out;
            if (fuzz::call(c, [&] { out = st->prefill(q, k, v); })) fuzz::check_output(c, out, n_q, dv);
        } else if (n_k > 0) {
            fuzz::call(c, [&] { st->prefill(k, v); });
        }
        for (Index i = 0; i < std::min(n_q, n_k); ++i) {
            Eigen::Matrix<Scalar, 1, Eigen::Dynamic> row;
            if (fuzz::call(c, [&] { row = st->step(q.row(i), k.row(i), v.row(i)); }))
                fuzz::check_output(c, Matrix<Scalar>(row), 1, dv);
        }
        Matrix<Scalar> cross;
        if (fuzz::call(c, [&] { cross = st->query(q); })) fuzz::check_output(c, cross, n_q, dv);
        return;
    }

    auto compute = [&]() -> Matrix<Scalar> {
        if (mode == 0) return attnx::linear_attention(q, k, v, attnx::EluPlusOne{}, o);
        return attnx::performer_attention(q, k, v, f, o);
    };
    auto compute_into = [&](Matrix<Scalar>& out) {
        if (mode == 0)
            attnx::linear_attention(q, k, v, attnx::EluPlusOne{}, out, o);
        else
            attnx::performer_attention(q, k, v, f, out, o);
    };
    c.what = mode == 0 ? "linear_attention(EluPlusOne)" : "performer_attention";
    if (!into_out) {
        Matrix<Scalar> out;
        if (fuzz::call(c, [&] { out = compute(); })) fuzz::check_output(c, out, n_q, dv);
    } else {
        Matrix<Scalar> out(n_q + (in.byte() >= 240 ? 1 : 0), dv);
        if (fuzz::call(c, [&] { compute_into(out); })) fuzz::check_output(c, out, n_q, dv);
    }
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
