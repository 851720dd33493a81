// SPDX-License-Identifier: MIT
// Linformer attention: the exact limit E = F = I, an independent float64 reference, conformance
// with the PyTorch reference vectors, quality against k, the seeded projections, the padding
// mask, thread-count independence, and every documented error.
#include <attnx/exact.hpp>
#include <attnx/linformer.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::Index;
using attnx::LinformerProjection;
using attnx::LinformerSharing;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

template <typename Scalar>
struct Tol;
// float vs a float64 reference of the same formula. The projections sum n_k <= 1100 products;
// with E entries N(0, 1/k) and random signs the sums partially cancel, so their relative
// rounding error is ~ sqrt(n_k) * eps_float ~ 4e-6 at worst here; softmax and the d-long dot
// products add a few sqrt(d) * eps_float (as in test_exact). Measured <= 1.1e-6 on these inputs
// (and <= 1.6e-6 on the conformance cases): 1e-5 leaves ~10x headroom, while a dropped scale,
// a wrong column of E or a wrong mask give O(1) errors.
template <>
struct Tol<float> {
    static constexpr double rel = 1e-5;
};
// double: the same argument with eps_double gives ~1e-14 (measured <= 2.3e-15); 1e-12 leaves
// headroom for other compilers and vector widths.
template <>
struct Tol<double> {
    static constexpr double rel = 1e-12;
};

template <typename Scalar>
class LinformerTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LinformerTyped, Scalars, );

/// Independent reference: form K̄ = E K and V̄ = F V in double with padded keys left out of the
/// sums, then plain-loop softmax attention (tests/support/reference.hpp).
Eigen::MatrixXd reference(const Eigen::MatrixXd& q, const Eigen::MatrixXd& k, const Eigen::MatrixXd& v,
                          const Eigen::MatrixXd& e, const Eigen::MatrixXd& f, double scale,
                          const std::vector<bool>& padding = {}) {
    Eigen::MatrixXd kp = Eigen::MatrixXd::Zero(e.rows(), k.cols()), vp = Eigen::MatrixXd::Zero(f.rows(), v.cols());
    for (Index j = 0; j < k.rows(); ++j) {
        if (!padding.empty() && padding[static_cast<std::size_t>(j)]) continue;
        kp += e.col(j) * k.row(j);
        vp += f.col(j) * v.row(j);
    }
    return ref::attention(q, kp, vp, scale, ref::all_visible(q.rows(), e.rows()));
}

template <typename S>
Eigen::MatrixXd to_double(const Matrix<S>& m) {
    return m.template cast<double>();
}

/// Smooth low-rank inputs (the regime Linformer targets): tokens driven by `rank` latent factors
/// averaged over `window` neighbours, plus noise; logits have std ~2, so softmax rows are peaked.
Eigen::MatrixXd smooth(Index n, Index d, std::uint64_t seed, std::uint64_t stream, double gain) {
    constexpr Index rank = 8, window = 16;
    const Eigen::MatrixXd raw = attnx::random_normal<double>(n + window, rank, seed, 100);
    Eigen::MatrixXd z = Eigen::MatrixXd::Zero(n, rank);
    for (Index i = 0; i < n; ++i) z.row(i) = raw.middleRows(i, window).colwise().sum() / std::sqrt(double(window));
    const Eigen::MatrixXd w = attnx::random_normal<double>(rank, d, seed, stream, 0.0, gain / std::sqrt(double(rank)));
    return z * w + attnx::random_normal<double>(n, d, seed, stream + 10, 0.0, 0.3);
}

}  // namespace

TYPED_TEST(LinformerTyped, IdentityProjectionEqualsExactAttention) {
    using S = TypeParam;
    // E = F = I: K̄ = K and V̄ = V exactly (products with 1 and 0), so Linformer is exact attention.
    // Cross-attention shapes too (n_q != n_k, d_v != d), and n_k > 512 (several key tiles).
    const Index shapes[][4] = {{200, 200, 32, 32}, {77, 130, 16, 24}, {300, 700, 64, 8}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], s[2], s[3], 40 + static_cast<std::uint64_t>(s[1]));
        const auto id = LinformerProjection<S>::identity(s[1]);
        ASSERT_EQ(id.rank(), s[1]);
        ASSERT_EQ(id.sharing(), LinformerSharing::KeyValue);
        const Matrix<S> out = attnx::linformer_attention(x.q, x.k, x.v, id);
        const Matrix<S> raw = attnx::linformer_attention(x.q, x.k, x.v, id.e(), id.f());
        const Matrix<S> exact = attnx::exact_attention(x.q, x.k, x.v);
        ASSERT_EQ(out.rows(), s[0]);
        ASSERT_EQ(out.cols(), s[3]);
        const Eigen::MatrixXd r = ref::attention(to_double(x.q), to_double(x.k), to_double(x.v));
        // Both differ from exact only by the order of the same roundings (tiling): Tol applies;
        // the issue asks <= 1e-10 in double, Tol<double> is tighter.
        EXPECT_LE(attnx::compare(out, r).rel_fro, Tol<S>::rel) << s[0] << "x" << s[1];
        EXPECT_LE(attnx::compare(out, exact).rel_fro, Tol<S>::rel) << s[0] << "x" << s[1];
        EXPECT_TRUE(out == raw);  // the projection object and the raw overload run the same code
    }
}

TYPED_TEST(LinformerTyped, MatchesFloat64ReferenceForRandomProjections) {
    using S = TypeParam;
    // n_k below one key block, across several blocks and parts, ragged; k < and > 512.
    const Index shapes[][5] = {{64, 64, 32, 32, 16}, {150, 1100, 32, 48, 40}, {333, 600, 64, 64, 600}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], s[2], s[3], 70 + static_cast<std::uint64_t>(s[1]));
        const auto p = LinformerProjection<S>::gaussian(s[4], s[1], 5);
        const Matrix<S> out = attnx::linformer_attention(x.q, x.k, x.v, p);
        ASSERT_EQ(out.rows(), s[0]);
        ASSERT_EQ(out.cols(), s[3]);
        ASSERT_TRUE(out.allFinite());
        const double scale = 1.0 / std::sqrt(static_cast<double>(s[2]));
        const Eigen::MatrixXd r =
            reference(to_double(x.q), to_double(x.k), to_double(x.v), to_double(p.e()), to_double(p.f()), scale);
        EXPECT_LE(attnx::compare(out, r).rel_fro, Tol<S>::rel) << s[0] << "x" << s[1] << " k=" << s[4];
        // An explicit scale is honoured (not multiplied by 1/sqrt(d) again).
        attnx::AttentionOptions o;
        o.scale = 0.05;
        const Eigen::MatrixXd rs =
            reference(to_double(x.q), to_double(x.k), to_double(x.v), to_double(p.e()), to_double(p.f()), 0.05);
        EXPECT_LE(attnx::compare(attnx::linformer_attention(x.q, x.k, x.v, p, o), rs).rel_fro, Tol<S>::rel);
    }
}

TYPED_TEST(LinformerTyped, SlicesTheFirstColumnsOfALongerProjection) {
    using S = TypeParam;
    const auto x = random_qkv<S>(90, 300, 16, 16, 8);
    const auto p = LinformerProjection<S>::gaussian(32, 1000, 9);
    const Matrix<S> sliced = attnx::linformer_attention(x.q, x.k, x.v, p);
    const Matrix<S> e = p.e().leftCols(300), f = p.f().leftCols(300);
    // Same matrices, same code: bit-identical.
    EXPECT_TRUE(sliced == attnx::linformer_attention(x.q, x.k, x.v, e, f));
    // The columns are the first ones, not any others: the last 300 give a different result.
    const Matrix<S> e_last = p.e().rightCols(300), f_last = p.f().rightCols(300);
    EXPECT_GT(attnx::compare(attnx::linformer_attention(x.q, x.k, x.v, e_last, f_last), sliced).rel_fro, 0.1);
    // A projection drawn for exactly n_k = 300 keys has the same first columns (E(i, j) depends
    // on j * k + i only), hence the same output.
    EXPECT_TRUE(LinformerProjection<S>::gaussian(32, 300, 9).e() == e);
    EXPECT_TRUE(sliced == attnx::linformer_attention(x.q, x.k, x.v, LinformerProjection<S>::gaussian(32, 300, 9)));
}

TYPED_TEST(LinformerTyped, KeyValueSharingUsesEForValues) {
    using S = TypeParam;
    const auto x = random_qkv<S>(50, 120, 16, 16, 12);
    const auto shared = LinformerProjection<S>::gaussian(24, 120, 3, LinformerSharing::KeyValue);
    const auto separate = LinformerProjection<S>::gaussian(24, 120, 3, LinformerSharing::Separate);
    EXPECT_EQ(shared.sharing(), LinformerSharing::KeyValue);
    EXPECT_EQ(&shared.f(), &shared.e());
    EXPECT_TRUE(shared.e() == separate.e());  // E comes from the same stream either way
    EXPECT_FALSE(separate.f() == separate.e());
    const Matrix<S> a = attnx::linformer_attention(x.q, x.k, x.v, shared);
    EXPECT_TRUE(a == attnx::linformer_attention(x.q, x.k, x.v, shared.e(), shared.e()));
    const Eigen::MatrixXd r = reference(to_double(x.q), to_double(x.k), to_double(x.v), to_double(shared.e()),
                                        to_double(shared.e()), 0.25);
    EXPECT_LE(attnx::compare(a, r).rel_fro, Tol<S>::rel);
    // from_matrix shares, from_matrices does not.
    const auto learned = LinformerProjection<S>::from_matrix(separate.f());
    EXPECT_EQ(learned.sharing(), LinformerSharing::KeyValue);
    EXPECT_TRUE(learned.f() == separate.f());
    const auto both = LinformerProjection<S>::from_matrices(separate.e(), separate.f());
    EXPECT_EQ(both.sharing(), LinformerSharing::Separate);
    EXPECT_TRUE(attnx::linformer_attention(x.q, x.k, x.v, both) == attnx::linformer_attention(x.q, x.k, x.v, separate));
}

TYPED_TEST(LinformerTyped, PaddedKeysContributeNothing) {
    using S = TypeParam;
    const Index n_q = 70, n_k = 700, d = 16, kk = 48;
    auto x = random_qkv<S>(n_q, n_k, d, d, 14);
    // Scattered padding plus a padded tail, and one whole key block (256..511) padded.
    std::vector<bool> pad(static_cast<std::size_t>(n_k), false);
    for (Index j = 0; j < n_k; j += 5) pad[static_cast<std::size_t>(j)] = true;
    for (Index j = 256; j < 512; ++j) pad[static_cast<std::size_t>(j)] = true;
    for (Index j = 650; j < n_k; ++j) pad[static_cast<std::size_t>(j)] = true;
    attnx::AttentionOptions o;
    o.key_padding_mask = pad;
    const auto p = LinformerProjection<S>::gaussian(kk, 1024, 21);
    const Matrix<S> out = attnx::linformer_attention(x.q, x.k, x.v, p, o);
    ASSERT_TRUE(out.allFinite());

    // 1. Huge keys and values at the padded positions change nothing (they are zeroed, not
    //    multiplied by zero; 1e30 is finite in float and double).
    auto y = x;
    for (Index j = 0; j < n_k; ++j)
        if (pad[static_cast<std::size_t>(j)]) {
            y.k.row(j).setConstant(S(1e30));
            y.v.row(j).setConstant(S(-1e30));
        }
    EXPECT_TRUE(attnx::linformer_attention(y.q, y.k, y.v, p, o) == out);

    // 2. Equals Linformer on the sequence with the padded keys and their columns of E, F removed.
    Index kept = 0;
    for (bool b : pad) kept += b ? 0 : 1;
    Matrix<S> kc(kept, d), vc(kept, d), ec(kk, kept), fc(kk, kept);
    for (Index j = 0, c = 0; j < n_k; ++j)
        if (!pad[static_cast<std::size_t>(j)]) {
            kc.row(c) = x.k.row(j);
            vc.row(c) = x.v.row(j);
            ec.col(c) = p.e().col(j);
            fc.col(c) = p.f().col(j);
            ++c;
        }
    // The same sums in a different grouping (key blocks): rounding only.
    EXPECT_LE(attnx::compare(out, attnx::linformer_attention(x.q, kc, vc, ec, fc)).rel_fro, Tol<S>::rel);
    const Eigen::MatrixXd r = reference(to_double(x.q), to_double(x.k), to_double(x.v),
                                        to_double(Matrix<S>(p.e().leftCols(n_k))),
                                        to_double(Matrix<S>(p.f().leftCols(n_k))), 0.25, pad);
    EXPECT_LE(attnx::compare(out, r).rel_fro, Tol<S>::rel);

    // 3. The mask matters: without it the output is far away.
    EXPECT_GT(attnx::compare(attnx::linformer_attention(x.q, x.k, x.v, p), out).rel_fro, 0.1);

    // 4. A mask with no padded key is the same computation as no mask: bit-identical.
    attnx::AttentionOptions none;
    none.key_padding_mask.assign(static_cast<std::size_t>(n_k), false);
    EXPECT_TRUE(attnx::linformer_attention(x.q, x.k, x.v, p, none) == attnx::linformer_attention(x.q, x.k, x.v, p));

    // 5. Every key padded: K̄ = V̄ = 0, so every output row is exactly zero (documented), not NaN.
    attnx::AttentionOptions all;
    all.key_padding_mask.assign(static_cast<std::size_t>(n_k), true);
    const Matrix<S> zero = attnx::linformer_attention(x.q, x.k, x.v, p, all);
    ASSERT_TRUE(zero.allFinite());
    EXPECT_EQ(zero.cwiseAbs().maxCoeff(), S(0));
}

TYPED_TEST(LinformerTyped, LargeLogitsStayFinite) {
    using S = TypeParam;
    // Projected keys have norm ~ sqrt(n_k / k) |K|: with Q, K scaled by 30 the logits reach ~1e4,
    // where a softmax without max subtraction overflows to inf/NaN.
    auto x = random_qkv<S>(64, 256, 16, 16, 15, 1.0);
    x.q *= S(30);
    x.k *= S(30);
    const auto p = LinformerProjection<S>::gaussian(32, 256, 4);
    const Eigen::MatrixXd e = to_double(p.e()), f = to_double(p.f());
    const Eigen::MatrixXd logits = (to_double(x.q) * (e * to_double(x.k)).transpose()) * 0.25;
    ASSERT_GT(logits.cwiseAbs().maxCoeff(), 5e3);
    const Matrix<S> out = attnx::linformer_attention(x.q, x.k, x.v, p);
    ASSERT_TRUE(out.allFinite());
    // Rows are one-hot to within exp(-O(100)). Float logits of 1e4 carry an absolute rounding of
    // ~1e4 * 1e-6 = 1e-2 (they come from n_k-term projections), which matters only where the top
    // two logits of a row are within O(1e-2); measured 3e-7 here (no such near-tie), so 1e-4
    // leaves room for a near-tie of a few rows while an overflow or a missing max subtraction
    // gives inf/NaN (caught above) or O(1) errors. double: measured 0.
    const double tol = std::is_same<S, float>::value ? 1e-4 : 1e-11;
    EXPECT_LE(attnx::compare(out, reference(to_double(x.q), to_double(x.k), to_double(x.v), e, f, 0.25)).rel_fro, tol);
}

TEST(Linformer, ConformanceWithPyTorchReference) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "linformer_f64")) continue;
        const Eigen::MatrixXd q = testing_support::load(name, "q"), k = testing_support::load(name, "k"),
                              v = testing_support::load(name, "v"), e = testing_support::load(name, "linformer_E"),
                              f = testing_support::load(name, "linformer_F"),
                              want = testing_support::load(name, "linformer_f64");
        ASSERT_EQ(e.rows(), testing_support::manifest_case(name).at("linformer_k").get<Index>()) << name;
        // The stored inputs are float32, so these casts are exact.
        const Matrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>(), ef = e.cast<float>(),
                            ff = f.cast<float>();
        // manifest tolerance_guidance: rel_fro <= 1e-5 in float against the f64 reference
        // (torch float32 itself lands 3e-7 .. 1.6e-6 away).
        EXPECT_LE(attnx::compare(attnx::linformer_attention(qf, kf, vf, ef, ff), want).rel_fro, 1e-5) << name;
        const auto pf = LinformerProjection<float>::from_matrices(ef, ff);
        EXPECT_LE(attnx::compare(attnx::linformer_attention(qf, kf, vf, pf), want).rel_fro, 1e-5) << name;
        // double: same formula on the same inputs; only the summation order differs (n_k <= 1024
        // terms, logits up to ~50): ~1e-14 expected, 1e-10 as the issue asks.
        EXPECT_LE(attnx::compare(attnx::linformer_attention(q, k, v, e, f), want).rel_fro, 1e-10) << name;
        ++checked;
    }
    EXPECT_EQ(checked, 7);  // every case of tests/data with a linformer reference
}

TEST(Linformer, ErrorAgainstExactFallsAsKGrows) {
    // Gaussian projections are a Johnson–Lindenstrauss sketch along the sequence: the spread of
    // K̄ and V̄ around what the exact attention needs shrinks like 1/sqrt(k). The mean relative
    // error over 4 seeds must fall at each doubling of k, by a factor below 0.9 (1/sqrt(2) ~ 0.71
    // predicted; measured 0.64 .. 0.67: means 4.68, 3.13, 2.06, 1.31), and by more than 2.5x from
    // k = 64 to 512 (sqrt(8) ~ 2.8 predicted; measured 3.6). A bug that ignores part of E, F or of
    // the keys stalls the fall.
    const Index n = 1024, d = 64;
    const Index ks[] = {64, 128, 256, 512};
    double mean[4] = {0, 0, 0, 0};
    constexpr int seeds = 4;
    for (int s = 0; s < seeds; ++s) {
        const std::uint64_t seed = 100 + static_cast<std::uint64_t>(s);
        const Eigen::MatrixXd q = smooth(n, d, seed, 1, 1.5), k = smooth(n, d, seed, 2, 1.5),
                              v = smooth(n, d, seed, 3, 1.0);
        const Eigen::MatrixXd exact = attnx::exact_attention(q, k, v);
        for (int i = 0; i < 4; ++i) {
            const auto p = LinformerProjection<double>::gaussian(ks[i], n, 7 + static_cast<std::uint64_t>(s));
            mean[i] += attnx::compare(attnx::linformer_attention(q, k, v, p), exact).rel_fro / seeds;
        }
    }
    for (int i = 0; i + 1 < 4; ++i) EXPECT_LT(mean[i + 1], 0.9 * mean[i]) << "k = " << ks[i] << " -> " << ks[i + 1];
    EXPECT_LT(mean[3], mean[0] / 2.5);
}

TEST(Linformer, GaussianProjectionIsSeededAndHasTheRightStatistics) {
    const Index k = 64, n = 4096;
    const auto a = LinformerProjection<double>::gaussian(k, n, 42);
    const auto b = LinformerProjection<double>::gaussian(k, n, 42);
    const auto c = LinformerProjection<double>::gaussian(k, n, 43);
    ASSERT_EQ(a.rank(), k);
    ASSERT_EQ(a.max_length(), n);
    ASSERT_EQ(a.e().rows(), k);
    ASSERT_EQ(a.e().cols(), n);
    ASSERT_EQ(a.f().rows(), k);
    ASSERT_EQ(a.f().cols(), n);
    EXPECT_EQ(a.sharing(), LinformerSharing::Separate);
    // Same seed: bit-identical; another seed: different (all 2^18 entries equal by chance: never).
    EXPECT_TRUE(a.e() == b.e());
    EXPECT_TRUE(a.f() == b.f());
    EXPECT_FALSE(a.e() == c.e());
    // float draws the same doubles and rounds them.
    EXPECT_TRUE(LinformerProjection<float>::gaussian(k, n, 42).e() == a.e().cast<float>());

    // Entries N(0, 1/k): standardise by sqrt(k), then N = k * n = 262144 samples. The sample mean
    // has standard error 1/sqrt(N) ~ 2e-3, the sample variance 1 +- sqrt(2/N) ~ 2.8e-3, the
    // fraction within one standard deviation 0.6827 +- sqrt(p(1-p)/N) ~ 9e-4, the correlation
    // of E with F 0 +- 1/sqrt(N): bounds of 5 standard errors fail by chance with p < 1e-6, while
    // a wrong variance (1/k^2, 1) or a shared stream for E and F fails by orders of magnitude.
    const double N = static_cast<double>(k * n);
    for (const Eigen::MatrixXd* m : {&a.e(), &a.f()}) {
        const Eigen::ArrayXXd z = m->array() * std::sqrt(static_cast<double>(k));
        const double mean = z.mean();
        const double var = (z - mean).square().sum() / (N - 1);
        const double within = (z.abs() < 1.0).cast<double>().sum() / N;
        EXPECT_LT(std::abs(mean), 5.0 / std::sqrt(N));
        EXPECT_LT(std::abs(var - 1.0), 5.0 * std::sqrt(2.0 / N));
        EXPECT_LT(std::abs(within - 0.682689492), 5.0 * std::sqrt(0.2166 / N));
    }
    const double corr = (a.e().array() * a.f().array()).sum() * static_cast<double>(k) / N;
    EXPECT_LT(std::abs(corr), 5.0 / std::sqrt(N));
    // Neighbouring columns (keys) are uncorrelated too.
    const double lag = (a.e().leftCols(n - 1).array() * a.e().rightCols(n - 1).array()).sum() * k / (k * (n - 1.0));
    EXPECT_LT(std::abs(lag), 5.0 / std::sqrt(N));
}

TEST(Linformer, ResultDoesNotDependOnThreadCount) {
#ifdef _OPENMP
    // n_k = 5000: 10 key blocks of 512 in 10 parts, so the parallel projection really splits.
    const auto x = random_qkv<float>(300, 5000, 32, 32, 16);
    std::vector<bool> pad(5000, false);
    for (Index j = 0; j < 5000; j += 11) pad[static_cast<std::size_t>(j)] = true;
    attnx::AttentionOptions o;
    o.key_padding_mask = pad;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto p1 = LinformerProjection<float>::gaussian(64, 5000, 17);
    const Matrix<float> a = attnx::linformer_attention(x.q, x.k, x.v, p1);
    const Matrix<float> am = attnx::linformer_attention(x.q, x.k, x.v, p1, o);
    omp_set_num_threads(2);
    const auto p2 = LinformerProjection<float>::gaussian(64, 5000, 17);
    const Matrix<float> b = attnx::linformer_attention(x.q, x.k, x.v, p2);
    const Matrix<float> bm = attnx::linformer_attention(x.q, x.k, x.v, p2, o);
    omp_set_num_threads(saved);
    // The split depends on sizes only, so the results (and the drawn projections) are bit-identical.
    EXPECT_TRUE(p1.e() == p2.e());
    EXPECT_TRUE(a == b);
    EXPECT_TRUE(am == bm);
#else
    GTEST_SKIP() << "built without OpenMP: there is only one thread count";
#endif
}

TEST(Linformer, AcceptsRowMajorExpressionsAndOutBuffer) {
    const auto x = random_qkv<double>(40, 50, 8, 6, 9);
    const auto p = LinformerProjection<double>::gaussian(12, 64, 1);
    const Matrix<double> e = p.e().leftCols(50), f = p.f().leftCols(50);
    const Matrix<double> base = attnx::linformer_attention(x.q, x.k, x.v, e, f);
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> qr = x.q, er = e;
    EXPECT_LE(attnx::compare(attnx::linformer_attention(qr, x.k, x.v, er, f), base).rel_fro, 1e-15);
    // Expressions: 2*E with the scale halved gives the same logits; E's block of the projection.
    attnx::AttentionOptions o;
    o.scale = 0.5 / std::sqrt(8.0);
    const Matrix<double> two_e = attnx::linformer_attention(x.q, x.k, x.v, 2.0 * e, f, o);
    EXPECT_LE(attnx::compare(two_e, base).rel_fro, 1e-14);
    EXPECT_TRUE(attnx::linformer_attention(x.q, x.k, x.v, p.e().leftCols(50), p.f().leftCols(50)) == base);
    Matrix<double> out(40, 6);
    attnx::linformer_attention(x.q, x.k, x.v, e, f, out);
    EXPECT_TRUE(out == base);
    out.setZero();
    attnx::linformer_attention(x.q, x.k, x.v, p, out);
    EXPECT_TRUE(out == base);
}

TEST(Linformer, BadInputThrowsNamingArgumentAndSizes) {
    using M = Matrix<float>;
    const M q = M::Ones(8, 32), k = M::Ones(10, 32), v = M::Ones(10, 4), e = M::Ones(5, 10), f = M::Ones(5, 10);
    using E = attnx::invalid_argument;
    auto raw = [](const M& a, const M& b, const M& c, const M& ee, const M& ff, const attnx::AttentionOptions& o = {}) {
        return [=] { attnx::linformer_attention(a, b, c, ee, ff, o); };
    };
    EXPECT_NO_THROW(raw(q, k, v, e, f)());
    // E or F whose number of columns is not n_k: the raw overload does not slice.
    EXPECT_THAT(raw(q, k, v, M::Ones(5, 12), f),
                ThrowsMessage<E>(AllOf(HasSubstr("attnx::linformer_attention"),
                                       HasSubstr("e has 12 columns but there are n_k = k.rows() = 10 keys"))));
    EXPECT_THAT(raw(q, k, v, e, M::Ones(5, 9)),
                ThrowsMessage<E>(HasSubstr("f has 9 columns but there are n_k = k.rows() = 10 keys")));
    // E and F with different k; k = 0.
    EXPECT_THAT(raw(q, k, v, e, M::Ones(6, 10)),
                ThrowsMessage<E>(AllOf(HasSubstr("f has 6 rows but e has 5"), HasSubstr("e is 5x10, f is 6x10"))));
    EXPECT_THAT(raw(q, k, v, M(0, 10), M(0, 10)),
                ThrowsMessage<E>(HasSubstr("e has 0 rows: the number of projected keys k = e.rows() must be >= 1")));
    // Causal is not defined.
    attnx::AttentionOptions causal;
    causal.causal = true;
    EXPECT_THAT(raw(q, k, v, e, f, causal),
                ThrowsMessage<E>(HasSubstr("causal = true is not defined for Linformer attention")));
    // The common checks.
    EXPECT_THAT(raw(q, M::Ones(10, 16), v, e, f), ThrowsMessage<E>(HasSubstr("k has 16 columns but q has 32")));
    EXPECT_THAT(raw(q, k, M::Ones(9, 4), e, f), ThrowsMessage<E>(HasSubstr("v has 9 rows but k has 10")));
    EXPECT_THAT(raw(M(0, 32), k, v, e, f), ThrowsMessage<E>(HasSubstr("q is empty (0x32)")));
    attnx::AttentionOptions mask;
    mask.key_padding_mask.assign(7, false);
    EXPECT_THAT(raw(q, k, v, e, f, mask),
                ThrowsMessage<E>(HasSubstr("key_padding_mask has length 7 but there are n_k = k.rows() = 10 keys")));
    attnx::AttentionOptions scale;
    scale.scale = -1.0;
    EXPECT_THAT(raw(q, k, v, e, f, scale), ThrowsMessage<E>(HasSubstr("scale (-1) must be finite and > 0")));
    // Non-finite inputs, E and F included; the scan can be turned off.
    M kn = k;
    kn(3, 5) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT(raw(q, kn, v, e, f), ThrowsMessage<E>(HasSubstr("k (10x32) has a non-finite entry k(3, 5) = nan")));
    M en = e;
    en(4, 9) = std::numeric_limits<float>::infinity();
    EXPECT_THAT(raw(q, k, v, en, f), ThrowsMessage<E>(HasSubstr("e (5x10) has a non-finite entry e(4, 9) = inf")));
    EXPECT_THAT(raw(q, k, v, e, en), ThrowsMessage<E>(HasSubstr("f (5x10) has a non-finite entry f(4, 9) = inf")));
    attnx::AttentionOptions nocheck;
    nocheck.check_finite = false;
    EXPECT_NO_THROW(raw(q, k, v, en, f, nocheck)());
    M out(3, 3);
    EXPECT_THAT([&] { attnx::linformer_attention(q, k, v, e, f, out); },
                ThrowsMessage<E>(HasSubstr("out is 3x3 but must be n_q x d_v = 8x4")));

    // The projection overload: n_k > n_max; causal; out shape.
    const auto p = LinformerProjection<float>::gaussian(5, 9, 1);
    EXPECT_THAT([&] { attnx::linformer_attention(q, k, v, p); },
                ThrowsMessage<E>(HasSubstr("there are n_k = k.rows() = 10 keys but the projection covers at most "
                                           "n_max = 9 (projection.max_length())")));
    const auto p10 = LinformerProjection<float>::gaussian(5, 10, 1);
    EXPECT_NO_THROW(attnx::linformer_attention(q, k, v, p10));
    EXPECT_THAT([&] { attnx::linformer_attention(q, k, v, p10, causal); },
                ThrowsMessage<E>(HasSubstr("causal = true is not defined for Linformer attention")));
    EXPECT_THAT([&] { attnx::linformer_attention(q, k, v, p10, out); },
                ThrowsMessage<E>(HasSubstr("out is 3x3 but must be n_q x d_v = 8x4")));
    // A moved-from projection is empty.
    auto moved = LinformerProjection<float>::gaussian(5, 10, 1);
    const auto taken = std::move(moved);
    EXPECT_EQ(taken.rank(), 5);
    EXPECT_THAT([&] { attnx::linformer_attention(q, k, v, moved); },  // NOLINT(bugprone-use-after-move)
                ThrowsMessage<E>(HasSubstr("the projection is empty (k = 0")));

    // The factories.
    EXPECT_THAT([] { LinformerProjection<float>::gaussian(0, 10, 1); },
                ThrowsMessage<E>(HasSubstr("LinformerProjection::gaussian: k (0) must be >= 1")));
    EXPECT_THAT([] { LinformerProjection<float>::gaussian(4, 0, 1); },
                ThrowsMessage<E>(HasSubstr("LinformerProjection::gaussian: n_max (0) must be >= 1")));
    EXPECT_THAT([] { LinformerProjection<double>::identity(0); },
                ThrowsMessage<E>(HasSubstr("LinformerProjection::identity: n (0) must be >= 1")));
    EXPECT_THAT([&] { LinformerProjection<float>::from_matrices(e, M::Ones(5, 11)); },
                ThrowsMessage<E>(HasSubstr("from_matrices: e is 5x10 but f is 5x11 (E and F must both be k x n_max)")));
    EXPECT_THAT([&] { LinformerProjection<float>::from_matrices(M(0, 10), M(0, 10)); },
                ThrowsMessage<E>(HasSubstr("from_matrices: e is empty (0x10)")));
    EXPECT_THAT([&] { LinformerProjection<float>::from_matrices(e, en); },
                ThrowsMessage<E>(HasSubstr("from_matrices: f (5x10) has a non-finite entry f(4, 9) = inf")));
    EXPECT_THAT([&] { LinformerProjection<float>::from_matrix(en); },
                ThrowsMessage<E>(HasSubstr("from_matrix: e (5x10) has a non-finite entry e(4, 9) = inf")));
    // Derived from std::invalid_argument, so generic handlers catch it.
    EXPECT_THROW(raw(q, k, v, e, M::Ones(6, 10))(), std::invalid_argument);
}
