// SPDX-License-Identifier: MIT
// Randomized property tests: hundreds of small configurations per mechanism, drawn from
// attnx::CounterRng with fixed seeds (reproducible on every platform). Each failure prints the
// property, the seed and the configuration index plus the drawn sizes and options, so a single
// configuration can be replayed. Each test ends by printing one "[properties] ..." line per
// property with the number of configurations checked and the worst error seen.
//
// Properties:
//  - exact: streaming == materialized, both == a float64 loop reference (random causal / key
//    padding masks, tiles, n_q != n_k, d_v != d); outputs are convex combinations of the visible
//    V rows (or zero rows); permuting K, V (and the padding mask) together leaves the output
//    unchanged; permuting Q rows permutes the output rows.
//  - Nyström: m = (unpadded) n_k with PinvMethod::Exact equals exact attention; for random m,
//    masks and iterations the output is finite, n_q x d_v, with zero rows for padded queries.
//  - Linformer: the identity projection equals exact attention; the raw (E, F) overload equals
//    the projection overload bit for bit.
//  - block-sparse: random block masks, BigBird and Longformer layouts (partial last blocks,
//    causal, key padding) equal the masked softmax of to_dense_mask(); the dense layout equals
//    exact attention; outputs are convex combinations of the visible V rows (or zero rows).
#include <attnx/bigbird.hpp>
#include <attnx/exact.hpp>
#include <attnx/linformer.hpp>
#include <attnx/nystrom.hpp>

#include <gtest/gtest.h>

#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::AttentionOptions;
using attnx::BigBirdOptions;
using attnx::BlockLayout;
using attnx::BlockMask;
using attnx::ExactKernel;
using attnx::ExactOptions;
using attnx::Index;
using attnx::Matrix;
using attnx::PinvMethod;
using testing_support::random_qkv;

namespace {

/// Tolerances, relative Frobenius error against the float64 reference.
/// float: each output entry is a softmax-weighted mean; the d-long dot products (d <= 16) and
/// the n_k-long sums (n_k <= 96) each contribute a few eps_float = 6e-8 times a small factor, so
/// relative errors are ~1e-7..1e-6 (the worst seen over all configurations is printed in the
/// summary lines). 2e-5 is the bar of test_exact.cpp; wrong masks, a dropped scale or a missing
/// tile give errors of order 1e-1.
/// double: the same argument with eps_double = 1.1e-16; 1e-12 as in test_exact.cpp.
template <typename Scalar>
struct Tol;
template <>
struct Tol<float> {
    static constexpr double ref = 2e-5;
    /// Two attnx kernels against each other: the same float arithmetic in a different order
    /// (tiles, GEMM blocking), so the difference is bounded by the rounding of either against
    /// the exact value: a few eps * sqrt(n_k) ~ 1e-6 relative; 5e-6 (~40 eps) is tight.
    static constexpr double same = 5e-6;
    static const char* name() { return "float"; }
};
template <>
struct Tol<double> {
    static constexpr double ref = 1e-12;
    static constexpr double same = 1e-14;  // ~45 eps_double, same argument as for float
    static const char* name() { return "double"; }
};

/// Draws sizes and options: element i of CounterRng(seed, stream = configuration index).
class Draw {
public:
    Draw(std::uint64_t seed, std::uint64_t config) : m_rng(seed, config) {}
    /// Uniform in [lo, hi] (inclusive).
    Index range(Index lo, Index hi) {
        return lo + static_cast<Index>(m_rng.below(m_i++, static_cast<std::uint64_t>(hi - lo + 1)));
    }
    bool coin(double p = 0.5) { return m_rng.uniform(m_i++) < p; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * m_rng.uniform(m_i++); }
    std::uint64_t bits() { return m_rng.bits(m_i++); }

    /// A padding mask of length n: empty (no mask) with probability 1/2; otherwise each flag is
    /// set with probability p, p uniform in [0, 0.6], or all set with probability 1/10.
    std::vector<bool> padding(Index n) {
        if (coin(0.5)) return {};
        std::vector<bool> pad(static_cast<std::size_t>(n));
        const bool all = coin(0.1);
        const double p = uniform(0.0, 0.6);
        for (auto&& flag : pad) flag = all || coin(p);
        return pad;
    }

    /// A uniformly random permutation of 0..n-1 (Fisher–Yates).
    std::vector<Index> permutation(Index n) {
        std::vector<Index> p(static_cast<std::size_t>(n));
        std::iota(p.begin(), p.end(), Index(0));
        for (Index i = n - 1; i > 0; --i) std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(range(0, i))]);
        return p;
    }

private:
    attnx::CounterRng m_rng;
    std::uint64_t m_i = 0;
};

std::string bits_of(const std::vector<bool>& mask) {
    if (mask.empty()) return "none";
    std::string s;
    for (bool b : mask) s += b ? '1' : '0';
    return s;
}

/// "property seed=S config=C" — the prefix every failure message starts with.
std::string where(const char* property, std::uint64_t seed, int config) {
    std::ostringstream os;
    os << property << " seed=" << seed << " config=" << config;
    return os.str();
}

/// Rows [perm[0], perm[1], ...] of m.
template <typename Scalar>
Matrix<Scalar> rows_of(const Matrix<Scalar>& m, const std::vector<Index>& perm) {
    Matrix<Scalar> out(m.rows(), m.cols());
    for (Index i = 0; i < m.rows(); ++i) out.row(i) = m.row(perm[static_cast<std::size_t>(i)]);
    return out;
}

template <typename T>
std::vector<T> permuted(const std::vector<T>& v, const std::vector<Index>& perm) {
    if (v.empty()) return v;
    std::vector<T> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[static_cast<std::size_t>(perm[i])];
    return out;
}

template <typename Scalar>
Eigen::MatrixXd to_double(const Matrix<Scalar>& m) {
    return m.template cast<double>();
}

/// Every row of out is a convex combination of the rows of v that its query sees (vis), or a
/// zero row (exactly) when it sees none.
/// Slack: out_i = (Σ_j p_j v_j) / l with l the computed Σ_j p_j. Rounding the n_k-term sums of the
/// numerator and of l (standard bound γ_n ≈ n·eps each) and the online rescalings by
/// alpha = exp(m - m') (at most one per key tile, applied to both acc and l, eps each) make
/// the effective weights sum to 1 within about (2·n_k + 2·tiles) eps; they stay >= 0. So out_ic
/// lies in [min_j v_jc, max_j v_jc] widened by (4·n_k + 8)·eps·max_j |v_jc| (j visible).
template <typename Scalar>
::testing::AssertionResult rows_in_hull(const Matrix<Scalar>& out, const Matrix<Scalar>& v, const ref::Visible& vis,
                                        double* worst_excess) {
    const double eps = std::numeric_limits<Scalar>::epsilon();
    const double slack_factor = (4.0 * static_cast<double>(v.rows()) + 8.0) * eps;
    for (Index i = 0; i < out.rows(); ++i) {
        if (!vis.row(i).any()) {
            if (out.row(i).cwiseAbs().maxCoeff() != Scalar(0))
                return ::testing::AssertionFailure() << "row " << i << " sees no key but is not zero: " << out.row(i);
            continue;
        }
        for (Index c = 0; c < out.cols(); ++c) {
            double lo = std::numeric_limits<double>::infinity(), hi = -lo, big = 0;
            for (Index j = 0; j < v.rows(); ++j) {
                if (!vis(i, j)) continue;
                const double x = static_cast<double>(v(j, c));
                lo = std::min(lo, x);
                hi = std::max(hi, x);
                big = std::max(big, std::abs(x));
            }
            const double o = static_cast<double>(out(i, c));
            const double excess = std::max(lo - o, o - hi);
            if (big > 0) *worst_excess = std::max(*worst_excess, excess / (eps * big));
            if (!(excess <= slack_factor * big))  // also catches NaN
                return ::testing::AssertionFailure()
                       << "out(" << i << ", " << c << ") = " << o << " outside the visible values [" << lo << ", " << hi
                       << "] by " << excess << " > slack " << slack_factor * big;
        }
    }
    return ::testing::AssertionSuccess();
}

/// One summary line per property, for the lead's totals.
void summary(const std::string& property, int configs, const std::string& worst) {
    std::printf("[properties] %s: %d configurations%s%s\n", property.c_str(), configs, worst.empty() ? "" : ", worst ",
                worst.c_str());
    std::fflush(stdout);
}

std::string sci(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2e", x);
    return buf;
}

template <typename Scalar>
class Properties : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Properties, Scalars, );

}  // namespace

// ---------------------------------------------------------------------------------------------
// Exact attention.

TYPED_TEST(Properties, ExactKernelsAgreeAreConvexAndPermutationEquivariant) {
    using S = TypeParam;
    const std::string T = Tol<S>::name();
    constexpr std::uint64_t seed = 0xE8AC7;
    constexpr int configs = 300;
    int n_cross = 0, n_kv_perm = 0, n_q_perm = 0;
    double worst_same = 0, worst_ref = 0, worst_hull = 0, worst_kv = 0, worst_q = 0;
    for (int c = 0; c < configs; ++c) {
        Draw draw(seed, static_cast<std::uint64_t>(c));
        const Index n_q = draw.range(1, 96), n_k = draw.range(1, 96), d = draw.range(1, 16);
        const Index dv = draw.coin(0.3) ? d : draw.range(1, 16);
        ExactOptions o;
        o.causal = draw.coin(0.4);
        o.key_padding_mask = draw.padding(n_k);
        if (draw.coin(0.3)) o.scale = draw.uniform(0.05, 1.0);
        o.query_tile = draw.range(1, 100);
        o.key_tile = draw.range(1, 100);
        const double sigma = draw.uniform(0.3, 2.0);
        const std::uint64_t data_seed = draw.bits();
        std::ostringstream cfg;
        cfg << " [" << T << " n_q=" << n_q << " n_k=" << n_k << " d=" << d << " d_v=" << dv << " causal=" << o.causal
            << " scale=" << (o.scale ? std::to_string(*o.scale) : "default") << " tiles=" << o.query_tile << "x"
            << o.key_tile << " sigma=" << sigma << " pad=" << bits_of(o.key_padding_mask) << "]";
        const std::string at = where("exact", seed, c) + cfg.str();
        n_cross += n_q != n_k ? 1 : 0;

        const auto x = random_qkv<S>(n_q, n_k, d, dv, data_seed, sigma);
        ExactOptions om = o;
        om.kernel = ExactKernel::Materialized;
        const Matrix<S> st = attnx::exact_attention(x.q, x.k, x.v, o);
        const Matrix<S> mat = attnx::exact_attention(x.q, x.k, x.v, om);
        ASSERT_EQ(st.rows(), n_q) << at;
        ASSERT_EQ(st.cols(), dv) << at;
        ASSERT_TRUE(st.allFinite()) << at;
        ASSERT_TRUE(mat.allFinite()) << at;

        // streaming == materialized, and both == the float64 reference.
        const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(d));
        const ref::Visible vis = ref::masked(n_q, n_k, o.causal, o.key_padding_mask);
        const Eigen::MatrixXd r = ref::attention(to_double(x.q), to_double(x.k), to_double(x.v), scale, vis);
        const attnx::ErrorMetrics same = attnx::compare(st, mat);
        const attnx::ErrorMetrics e_st = attnx::compare(st, r), e_mat = attnx::compare(mat, r);
        worst_same = std::max(worst_same, same.rel_fro);
        worst_ref = std::max({worst_ref, e_st.rel_fro, e_mat.rel_fro});
        EXPECT_LE(same.rel_fro, Tol<S>::same) << at << " streaming vs materialized, max_abs " << same.max_abs;
        EXPECT_LE(e_st.rel_fro, Tol<S>::ref) << at << " streaming vs reference, max_abs " << e_st.max_abs;
        EXPECT_LE(e_mat.rel_fro, Tol<S>::ref) << at << " materialized vs reference, max_abs " << e_mat.max_abs;

        // Convex combinations of the visible V rows; zero rows where nothing is visible.
        EXPECT_TRUE(rows_in_hull(st, x.v, vis, &worst_hull)) << at << " (streaming)";
        EXPECT_TRUE(rows_in_hull(mat, x.v, vis, &worst_hull)) << at << " (materialized)";

        // Permuting K and V rows together (the padding flags travel with their keys) changes only
        // the order of the sums: the output is the same up to rounding (Tol::same). Not for causal,
        // where a key's position matters.
        if (!o.causal) {
            const std::vector<Index> perm = draw.permutation(n_k);
            ExactOptions op = o;
            op.key_padding_mask = permuted(o.key_padding_mask, perm);
            const Matrix<S> out_p = attnx::exact_attention(x.q, rows_of(x.k, perm), rows_of(x.v, perm), op);
            const attnx::ErrorMetrics e = attnx::compare(out_p, st);
            worst_kv = std::max(worst_kv, e.rel_fro);
            EXPECT_LE(e.rel_fro, Tol<S>::same) << at << " K/V rows permuted, max_abs " << e.max_abs;
            ++n_kv_perm;
        }
        // Permuting Q rows permutes the output rows (each query's row is computed on its own;
        // only its position inside a tile changes), so up to rounding (Tol::same). Not for causal.
        if (!o.causal) {
            const std::vector<Index> perm = draw.permutation(n_q);
            for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
                ExactOptions ok = o;
                ok.kernel = kernel;
                const Matrix<S> out_p = attnx::exact_attention(rows_of(x.q, perm), x.k, x.v, ok);
                const attnx::ErrorMetrics e = attnx::compare(out_p, rows_of(kernel == ExactKernel::Streaming ? st : mat, perm));
                worst_q = std::max(worst_q, e.rel_fro);
                EXPECT_LE(e.rel_fro, Tol<S>::same) << at << " Q rows permuted, max_abs " << e.max_abs;
            }
            ++n_q_perm;
        }
    }
    EXPECT_GT(n_cross, configs / 2);  // the draws really cover cross-attention
    summary("exact<" + T + "> streaming == materialized", configs, "rel_fro " + sci(worst_same));
    summary("exact<" + T + "> == float64 reference", configs, "rel_fro " + sci(worst_ref));
    summary("exact<" + T + "> convex combination of V rows", configs,
            "excess " + sci(worst_hull) + " eps*max|v|");
    summary("exact<" + T + "> K/V row permutation invariance", n_kv_perm, "rel_fro " + sci(worst_kv));
    summary("exact<" + T + "> Q row permutation equivariance", n_q_perm, "rel_fro " + sci(worst_q));
}


// ---------------------------------------------------------------------------------------------
// Nyström attention.

TYPED_TEST(Properties, NystromWithAllKeysAsLandmarksAndExactPinvIsExactAttention) {
    using S = TypeParam;
    const std::string T = Tol<S>::name();
    constexpr std::uint64_t seed = 0x4E7501;
    constexpr int configs = 200;
    // The identity F A⁺ A Ṽ = F Ṽ needs A invertible, and in floating point cond(A)·eps small.
    // A = softmax(s Q̃ K̃ᵀ) has a logit matrix of rank <= d, so m >> d makes it numerically
    // singular (d = 1, m = 64: cond ~ 1e18): d is drawn in [8, 16] and m <= 48, and the rare
    // configuration with cond(A) > max_cond is skipped (counted; at most 10% may be).
    constexpr double max_cond = 1e4;
    int checked = 0;
    double worst = 0, worst_cond = 0, worst_ratio = 0;
    for (int c = 0; c < configs; ++c) {
        Draw draw(seed, static_cast<std::uint64_t>(c));
        const Index n_k = draw.range(1, 48), d = draw.range(8, 16), dv = draw.range(1, 16);
        attnx::NystromOptions o;
        o.pinv = PinvMethod::Exact;
        o.key_padding_mask = draw.padding(n_k);
        if (!o.key_padding_mask.empty()) o.key_padding_mask[0] = false;  // at least one real key
        const Index m = attnx::detail::count_unpadded(o.key_padding_mask, n_k);
        o.num_landmarks = m;
        const Index n_q = draw.coin(0.5) ? n_k : draw.range(m, 96);
        o.query_padding_mask = draw.padding(n_q);
        if (attnx::detail::count_unpadded(o.query_padding_mask, n_q) < m) o.query_padding_mask.clear();
        if (draw.coin(0.3)) o.scale = draw.uniform(0.1, 1.0);
        const std::uint64_t data_seed = draw.bits();
        std::ostringstream cfg;
        cfg << " [" << T << " n_q=" << n_q << " n_k=" << n_k << " m=" << m << " d=" << d << " d_v=" << dv
            << " scale=" << (o.scale ? std::to_string(*o.scale) : "default") << " key_pad=" << bits_of(o.key_padding_mask)
            << " query_pad=" << bits_of(o.query_padding_mask) << "]";
        const std::string at = where("nystrom-limit", seed, c) + cfg.str();

        // sigma = 1 as in test_nystrom.cpp's limit test.
        const auto x = random_qkv<S>(n_q, n_k, d, dv, data_seed, 1.0);
        attnx::NystromReport rep;
        const Matrix<S> got = attnx::nystrom_attention(x.q, x.k, x.v, o, &rep);
        ASSERT_EQ(got.rows(), n_q) << at;
        ASSERT_EQ(got.cols(), dv) << at;
        // K̃ = the unpadded keys, so F = softmax(s Q K̃ᵀ) is exact attention's probabilities with the key
        // mask, B V = A Ṽ (Ṽ = unpadded values), and F A⁺ A Ṽ = F Ṽ whenever A is invertible.
        ExactOptions eo;
        eo.scale = o.scale;
        eo.key_padding_mask = o.key_padding_mask;
        Matrix<S> want = attnx::exact_attention(x.q, x.k, x.v, eo);
        for (Index i = 0; i < n_q; ++i)
            if (!o.query_padding_mask.empty() && o.query_padding_mask[static_cast<std::size_t>(i)]) want.row(i).setZero();
        // cond(A), A = softmax(s Q̃ K̃ᵀ) in double: inverting A loses about cond(A)·eps of accuracy.
        const double s = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(d));
        const Eigen::MatrixXd qd = to_double(x.q), kd = to_double(x.k);
        const Eigen::MatrixXd ql = attnx::detail::segment_means<double>(qd, o.query_padding_mask, m);
        const Eigen::MatrixXd kl = attnx::detail::segment_means<double>(kd, o.key_padding_mask, m);
        Eigen::MatrixXd a = s * ql * kl.transpose();
        for (Index i = 0; i < m; ++i) {
            a.row(i) = (a.row(i).array() - a.row(i).maxCoeff()).exp();
            a.row(i) /= a.row(i).sum();
        }
        const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(a).singularValues();
        const double cond = sv(0) / sv(m - 1);
        if (!(cond <= max_cond)) continue;
        ++checked;
        const attnx::ErrorMetrics e = attnx::compare(got, want);
        worst = std::max(worst, e.rel_fro);
        worst_cond = std::max(worst_cond, cond);
        worst_ratio = std::max(worst_ratio, e.rel_fro / (cond * std::numeric_limits<S>::epsilon()));
        // double: 1e-9 (the bar of test_nystrom.cpp; cond(A)·eps_double <= 2e-12 here). float: A is
        // formed in float (relative error ~ eps_float), then inverted, which amplifies that by up to
        // cond(A): 5·cond·eps_float (the measured worst is ~0.65·cond·eps, printed below) plus the
        // 2e-5 of ordinary float attention.
        const double tol = std::is_same<S, double>::value
                               ? 1e-9
                               : Tol<S>::ref + 5.0 * cond * static_cast<double>(std::numeric_limits<float>::epsilon());
        EXPECT_LE(e.rel_fro, tol) << at << " cond(A)=" << cond << " max_abs " << e.max_abs;
        EXPECT_EQ(rep.num_landmarks, m) << at;
        EXPECT_EQ(rep.pinv_iterations, 0) << at;
    }
    EXPECT_GE(checked, configs * 9 / 10) << "too many configurations with cond(A) > " << max_cond;
    summary("nystrom<" + T + "> m = n, exact pinv == exact attention", checked,
            "rel_fro " + sci(worst) + ", cond(A) up to " + sci(worst_cond) + ", rel_fro/(cond*eps) " + sci(worst_ratio));
}

TYPED_TEST(Properties, NystromIsFiniteWithZeroRowsForPaddedQueries) {
    using S = TypeParam;
    const std::string T = Tol<S>::name();
    constexpr std::uint64_t seed = 0x4E7502;
    constexpr int configs = 250;
    int padded_rows = 0;
    for (int c = 0; c < configs; ++c) {
        Draw draw(seed, static_cast<std::uint64_t>(c));
        const Index n_k = draw.range(1, 96), d = draw.range(1, 16), dv = draw.range(1, 16);
        const Index n_q = draw.coin(0.5) ? n_k : draw.range(1, 96);
        attnx::NystromOptions o;
        o.key_padding_mask = draw.padding(n_k);
        o.query_padding_mask = draw.padding(n_q);
        // At least one real key and one real query, so that some m >= 1 is valid.
        if (!o.key_padding_mask.empty()) o.key_padding_mask[static_cast<std::size_t>(draw.range(0, n_k - 1))] = false;
        if (!o.query_padding_mask.empty())
            o.query_padding_mask[static_cast<std::size_t>(draw.range(0, n_q - 1))] = false;
        const Index r_k = attnx::detail::count_unpadded(o.key_padding_mask, n_k);
        const Index r_q = attnx::detail::count_unpadded(o.query_padding_mask, n_q);
        o.num_landmarks = draw.range(1, std::min(r_k, r_q));
        o.pinv = draw.coin(0.3) ? PinvMethod::Exact : PinvMethod::Iterative;
        o.pinv_iterations = static_cast<int>(draw.range(0, 10));
        if (draw.coin(0.3)) o.scale = draw.uniform(0.05, 1.0);
        if (n_q == n_k && draw.coin(0.3)) {
            o.conv_kernel.resize(static_cast<std::size_t>(2 * draw.range(0, 3) + 1));
            for (double& w : o.conv_kernel) w = draw.uniform(-1.0, 1.0);
        }
        const double sigma = draw.uniform(0.3, 2.0);
        const std::uint64_t data_seed = draw.bits();
        std::ostringstream cfg;
        cfg << " [" << T << " n_q=" << n_q << " n_k=" << n_k << " m=" << o.num_landmarks << " d=" << d << " d_v=" << dv
            << " pinv=" << (o.pinv == PinvMethod::Exact ? "exact" : "iterative") << " iterations=" << o.pinv_iterations
            << " scale=" << (o.scale ? std::to_string(*o.scale) : "default") << " conv=" << o.conv_kernel.size()
            << " sigma=" << sigma << " key_pad=" << bits_of(o.key_padding_mask)
            << " query_pad=" << bits_of(o.query_padding_mask) << "]";
        const std::string at = where("nystrom-random", seed, c) + cfg.str();

        const auto x = random_qkv<S>(n_q, n_k, d, dv, data_seed, sigma);
        attnx::NystromReport rep;
        const Matrix<S> out = attnx::nystrom_attention(x.q, x.k, x.v, o, &rep);
        ASSERT_EQ(out.rows(), n_q) << at;
        ASSERT_EQ(out.cols(), dv) << at;
        EXPECT_TRUE(out.allFinite()) << at;
        EXPECT_TRUE(std::isfinite(rep.pinv_residual)) << at;
        EXPECT_EQ(rep.num_landmarks, o.num_landmarks) << at;
        for (Index i = 0; i < n_q; ++i)
            if (!o.query_padding_mask.empty() && o.query_padding_mask[static_cast<std::size_t>(i)]) {
                ++padded_rows;
                EXPECT_EQ(out.row(i).cwiseAbs().maxCoeff(), S(0)) << at << " padded query row " << i;
            }
        // The out-buffer overload runs the same code: bit-identical.
        Matrix<S> buf(n_q, dv);
        attnx::nystrom_attention(x.q, x.k, x.v, buf, o);
        EXPECT_TRUE(buf == out) << at << " out-buffer overload differs";
    }
    EXPECT_GT(padded_rows, 0);
    summary("nystrom<" + T + "> finite, n_q x d_v, padded query rows zero", configs,
            std::to_string(padded_rows) + " padded rows checked");
}

// ---------------------------------------------------------------------------------------------
// Linformer.

TYPED_TEST(Properties, LinformerIdentityIsExactAndRawEqualsProjectionOverload) {
    using S = TypeParam;
    const std::string T = Tol<S>::name();
    constexpr std::uint64_t seed = 0x11F0;
    constexpr int configs = 250;
    double worst_id = 0;
    for (int c = 0; c < configs; ++c) {
        Draw draw(seed, static_cast<std::uint64_t>(c));
        const Index n_q = draw.range(1, 96), n_k = draw.range(1, 96), d = draw.range(1, 16), dv = draw.range(1, 16);
        const Index rank = draw.range(1, 48), extra = draw.range(0, 40);
        const bool shared = draw.coin(0.3), trained = draw.coin(0.3);
        AttentionOptions o;
        if (draw.coin(0.3)) o.scale = draw.uniform(0.05, 1.0);
        const std::vector<bool> pad = draw.padding(n_k);
        const double sigma = draw.uniform(0.3, 2.0);
        const std::uint64_t data_seed = draw.bits(), proj_seed = draw.bits();
        std::ostringstream cfg;
        cfg << " [" << T << " n_q=" << n_q << " n_k=" << n_k << " d=" << d << " d_v=" << dv << " k=" << rank
            << " n_max=" << n_k + extra << " shared=" << shared << " trained=" << trained
            << " scale=" << (o.scale ? std::to_string(*o.scale) : "default") << " sigma=" << sigma
            << " pad=" << bits_of(pad) << "]";
        const std::string at = where("linformer", seed, c) + cfg.str();
        const auto x = random_qkv<S>(n_q, n_k, d, dv, data_seed, sigma);

        // E = F = I: K̄ = K and V̄ = V exactly (products with 1 and 0), so Linformer is exact attention
        // with the same rounding up to tiling: double <= 1e-10 (the bar), float Tol::ref.
        // (Without padding: a padded key becomes a zero key that the softmax still sees.)
        const auto id = attnx::LinformerProjection<S>::identity(n_k);
        const Matrix<S> out_id = attnx::linformer_attention(x.q, x.k, x.v, id, o);
        const Matrix<S> exact = attnx::exact_attention(x.q, x.k, x.v, ExactOptions(o));
        const attnx::ErrorMetrics e = attnx::compare(out_id, exact);
        worst_id = std::max(worst_id, e.rel_fro);
        const double tol_id = std::is_same<S, double>::value ? 1e-10 : Tol<S>::ref;
        EXPECT_LE(e.rel_fro, tol_id)
            << at << " identity projection vs exact, max_abs " << e.max_abs;
        EXPECT_TRUE(attnx::linformer_attention(x.q, x.k, x.v, id.e(), id.f(), o) == out_id)
            << at << " identity: raw overload differs from the projection overload";

        // A Gaussian (or caller-given) projection longer than n_k: the projection overload uses its
        // first n_k columns, and the raw overload with exactly those columns is the same computation.
        AttentionOptions op = o;
        op.key_padding_mask = pad;
        const attnx::LinformerSharing sharing =
            shared ? attnx::LinformerSharing::KeyValue : attnx::LinformerSharing::Separate;
        attnx::LinformerProjection<S> p = attnx::LinformerProjection<S>::gaussian(rank, n_k + extra, proj_seed, sharing);
        if (trained) {
            const Matrix<S> e_t = attnx::random_normal<S>(rank, n_k + extra, proj_seed, 7, 0.0, 0.5);
            if (shared)
                p = attnx::LinformerProjection<S>::from_matrix(e_t);
            else
                p = attnx::LinformerProjection<S>::from_matrices(e_t, attnx::random_normal<S>(rank, n_k + extra, proj_seed, 8));
        }
        const Matrix<S> e_nk = p.e().leftCols(n_k), f_nk = p.f().leftCols(n_k);
        const Matrix<S> via_proj = attnx::linformer_attention(x.q, x.k, x.v, p, op);
        const Matrix<S> via_raw = attnx::linformer_attention(x.q, x.k, x.v, e_nk, f_nk, op);
        ASSERT_EQ(via_proj.rows(), n_q) << at;
        ASSERT_EQ(via_proj.cols(), dv) << at;
        EXPECT_TRUE(via_proj.allFinite()) << at;
        EXPECT_TRUE(via_raw == via_proj) << at << " raw vs projection overload, max_abs "
                                         << attnx::compare(via_raw, via_proj).max_abs;
        Matrix<S> buf(n_q, dv);
        attnx::linformer_attention(x.q, x.k, x.v, p, buf, op);
        EXPECT_TRUE(buf == via_proj) << at << " out-buffer projection overload differs";
        attnx::linformer_attention(x.q, x.k, x.v, e_nk, f_nk, buf, op);
        EXPECT_TRUE(buf == via_proj) << at << " out-buffer raw overload differs";
    }
    summary("linformer<" + T + "> identity projection == exact attention", configs, "rel_fro " + sci(worst_id));
    summary("linformer<" + T + "> raw overload == projection overload (bit-identical)", configs, "");
}

// ---------------------------------------------------------------------------------------------
// Block-sparse attention (any layout, BigBird, Longformer).

TYPED_TEST(Properties, BlockSparseIsTheMaskedSoftmaxOfItsLayout) {
    using S = TypeParam;
    const std::string T = Tol<S>::name();
    constexpr std::uint64_t seed = 0xB16B1D;
    constexpr int configs = 400;
    int kinds[3] = {0, 0, 0}, partial = 0, empty_rows = 0;
    double worst_ref = 0, worst_hull = 0, worst_dense = 0;
    const char* kind_names[3] = {"from_block_mask", "bigbird", "longformer"};
    for (int c = 0; c < configs; ++c) {
        Draw draw(seed, static_cast<std::uint64_t>(c));
        const int kind = static_cast<int>(draw.range(0, 2));
        const Index b = draw.range(1, 40), d = draw.range(1, 16), dv = draw.range(1, 16);
        const Index n_q = draw.range(1, 96);
        const Index n_k = kind == 0 && draw.coin(0.5) ? draw.range(1, 96) : n_q;
        AttentionOptions o;
        o.causal = draw.coin(0.4);
        o.key_padding_mask = draw.padding(n_k);
        if (draw.coin(0.3)) o.scale = draw.uniform(0.05, 1.0);
        const double sigma = draw.uniform(0.3, 2.0);
        std::ostringstream cfg;
        cfg << " [" << T << " " << kind_names[kind] << " n_q=" << n_q << " n_k=" << n_k << " b=" << b << " d=" << d
            << " d_v=" << dv << " causal=" << o.causal << " scale=" << (o.scale ? std::to_string(*o.scale) : "default")
            << " sigma=" << sigma << " pad=" << bits_of(o.key_padding_mask);
        BlockLayout layout;
        BigBirdOptions bo;
        const Index nb_q = (n_q + b - 1) / b, nb_k = (n_k + b - 1) / b;
        if (kind == 0) {
            const double p = draw.uniform(0.0, 1.0);
            BlockMask mask(nb_q, nb_k);
            for (Index i = 0; i < nb_q; ++i)
                for (Index j = 0; j < nb_k; ++j) mask(i, j) = draw.coin(p);
            layout = BlockLayout::from_block_mask(mask, b, n_q, n_k);
            cfg << " p=" << p;
        } else if (kind == 1) {
            bo.block = b;
            bo.window = draw.range(1, 5);
            bo.global = draw.range(0, 3);
            bo.random = draw.range(0, 4);
            bo.seed = draw.bits();
            layout = BlockLayout::bigbird(n_q, bo);
            cfg << " window=" << bo.window << " global=" << bo.global << " random=" << bo.random << " seed=" << bo.seed;
        } else {
            const Index window = draw.range(1, 5), global_tokens = draw.range(0, n_q);
            layout = BlockLayout::longformer(n_q, b, window, global_tokens);
            cfg << " window=" << window << " global_tokens=" << global_tokens;
        }
        const std::uint64_t data_seed = draw.bits();
        cfg << "]";
        const std::string at = where("block-sparse", seed, c) + cfg.str();
        ++kinds[kind];
        partial += (n_q % b != 0 || n_k % b != 0) ? 1 : 0;

        const auto x = random_qkv<S>(n_q, n_k, d, dv, data_seed, sigma);
        const Matrix<S> out = attnx::block_sparse_attention(x.q, x.k, x.v, layout, o);
        ASSERT_EQ(out.rows(), n_q) << at;
        ASSERT_EQ(out.cols(), dv) << at;
        ASSERT_TRUE(out.allFinite()) << at;
        if (kind == 1) {
            EXPECT_TRUE(attnx::bigbird_attention(x.q, x.k, x.v, bo, o) == out)
                << at << " bigbird_attention differs from block_sparse_attention with BlockLayout::bigbird";
        }

        // The masked softmax over layout ∧ causal ∧ padding (float64 loops).
        const ref::Visible vis =
            layout.to_dense_mask().array() && ref::masked(n_q, n_k, o.causal, o.key_padding_mask).array();
        const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(d));
        const Eigen::MatrixXd r = ref::attention(to_double(x.q), to_double(x.k), to_double(x.v), scale, vis);
        const attnx::ErrorMetrics e = attnx::compare(out, r);
        worst_ref = std::max(worst_ref, e.rel_fro);
        EXPECT_LE(e.rel_fro, Tol<S>::ref) << at << " vs masked softmax reference, max_abs " << e.max_abs;
        EXPECT_TRUE(rows_in_hull(out, x.v, vis, &worst_hull)) << at;
        for (Index i = 0; i < n_q; ++i) empty_rows += vis.row(i).any() ? 0 : 1;

        // The dense layout with the same block size is exact attention: bit-identical to the
        // streaming kernel with b x b tiles (same kernel, same tiles), and within Tol::same of the
        // default tiling.
        const BlockLayout dense = BlockLayout::dense(n_q, n_k, b);
        const Matrix<S> out_dense = attnx::block_sparse_attention(x.q, x.k, x.v, dense, o);
        ExactOptions eo(o);
        eo.query_tile = b;
        eo.key_tile = b;
        eo.decode_key_tile = b;
        EXPECT_TRUE(out_dense == attnx::exact_attention(x.q, x.k, x.v, eo))
            << at << " dense layout vs streaming exact with " << b << "x" << b << " tiles";
        const attnx::ErrorMetrics ed = attnx::compare(out_dense, attnx::exact_attention(x.q, x.k, x.v, ExactOptions(o)));
        worst_dense = std::max(worst_dense, ed.rel_fro);
        EXPECT_LE(ed.rel_fro, Tol<S>::same) << at << " dense layout vs exact (default tiles), max_abs " << ed.max_abs;
    }
    EXPECT_GT(kinds[0], 0);
    EXPECT_GT(kinds[1], 0);
    EXPECT_GT(kinds[2], 0);
    EXPECT_GT(partial, configs / 2);
    EXPECT_GT(empty_rows, 0);
    summary("block-sparse<" + T + "> == masked softmax of to_dense_mask() (" + std::to_string(kinds[0]) +
                " block masks, " + std::to_string(kinds[1]) + " bigbird, " + std::to_string(kinds[2]) +
                " longformer; " + std::to_string(partial) + " with a partial block)",
            configs, "rel_fro " + sci(worst_ref));
    summary("block-sparse<" + T + "> convex combination of V rows (" + std::to_string(empty_rows) + " zero rows)",
            configs, "excess " + sci(worst_hull) + " eps*max|v|");
    summary("block-sparse<" + T + "> dense layout == exact attention", configs, "rel_fro " + sci(worst_dense));
}
