// SPDX-License-Identifier: MIT
// Robustness at the edges of the floating-point range, for every mechanism: finite inputs whose
// logits (or projections, or outputs) would overflow the Scalar type throw attnx::invalid_argument
// naming the bound, never return NaN; large-but-safe inputs (1e15 in float, logits of ±1e4,
// scale 1e-30 or 1e20) give finite, correct results; Nyström on identical tokens (A of rank one)
// stays finite with the iterative pseudoinverse.
#include <attnx/attnx.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

template <typename Scalar>
class RobustTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RobustTyped, Scalars, );

template <typename Scalar>
bool all_finite(const Matrix<Scalar>& m) {
    return m.array().isFinite().all();
}

template <typename Scalar>
double rel(const Matrix<Scalar>& out, const Eigen::MatrixXd& reference) {
    return attnx::compare(out, reference).rel_fro;
}

template <typename Scalar>
constexpr double tol() {
    return std::is_same<Scalar, float>::value ? 2e-5 : 1e-12;
}

const auto logits_overflow_float = AllOf(HasSubstr("logits may overflow float: scale * d * max|q| * max|k| = "),
                                         HasSubstr("exceeds 2.1e+37"), HasSubstr("use double"));

attnx::ExactOptions materialized() {
    attnx::ExactOptions o;
    o.kernel = attnx::ExactKernel::Materialized;
    return o;
}

// ---- overflow is an error, named, before the work ----

TEST(Overflow, ExactHugeQK) {
    auto x = random_qkv<float>(32, 32, 16, 8, 1);
    x.q *= 1e30f;
    x.k *= 1e30f;
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::exact_attention: "), logits_overflow_float)));
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, materialized()); },
                ThrowsMessage<attnx::invalid_argument>(logits_overflow_float));
    Matrix<float> out(32, 8);
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, out); },
                ThrowsMessage<attnx::invalid_argument>(logits_overflow_float));
    EXPECT_THAT([&] { attnx::attention_matrix(x.q, x.k); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::attention_matrix: "), logits_overflow_float)));
}

TEST(Overflow, ExactHugeScale) {
    auto x = random_qkv<float>(16, 16, 16, 8, 2);
    x.q *= 1e4f;
    x.k *= 1e4f;
    attnx::ExactOptions o;
    o.scale = 1e30;
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, o); },
                ThrowsMessage<attnx::invalid_argument>(AllOf(logits_overflow_float, HasSubstr("= 1e+30 * 16 * "))));
    // A scale beyond float itself.
    o.scale = 1e300;
    x = random_qkv<float>(16, 16, 16, 8, 2);
    x.q.setZero();
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, o); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("logits may overflow float: scale = 1e+300 exceeds")));
    // In double the same inputs are fine.
    auto xd = random_qkv<double>(16, 16, 16, 8, 2);
    attnx::ExactOptions od;
    od.scale = 1e30;
    EXPECT_TRUE(all_finite<double>(attnx::exact_attention(xd.q, xd.k, xd.v, od)));
}

TEST(Overflow, ExactHugeValuesOverflowTheResult) {
    // Logits are fine, but the streaming kernel's unnormalised sums of 64 rows of 3e38 overflow.
    auto x = random_qkv<float>(8, 64, 8, 4, 3);
    x.v.setConstant(3e38f);
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::exact_attention: the result overflowed float"), HasSubstr("max|v| = 3e+38"))));
}

TEST(Overflow, Nystrom) {
    auto x = random_qkv<float>(64, 64, 16, 8, 4);
    attnx::NystromOptions o;
    o.num_landmarks = 8;
    auto big = x;
    big.q *= 1e30f;
    big.k *= 1e30f;
    EXPECT_THAT([&] { attnx::nystrom_attention(big.q, big.k, big.v, o); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::nystrom_attention: "), logits_overflow_float)));
    // Huge values: B V and F (Z W) stay within float only up to a point.
    big = x;
    big.v.setConstant(3e38f);
    big.v.col(0) *= -1.0f;
    attnx::NystromReport report;
    report.num_landmarks = -7;
    EXPECT_THAT([&] { attnx::nystrom_attention(big.q, big.k, big.v, o, &report); },
                ThrowsMessage<attnx::invalid_argument>(AllOf(
                    HasSubstr("attnx::nystrom_attention: the result overflowed float"), HasSubstr("max|v| = 3e+38"))));
    EXPECT_EQ(report.num_landmarks, -7);  // not written on error
    // A conv weight beyond float.
    o.conv_kernel = {0.25, 1e300, 0.25};
    EXPECT_THAT([&] { attnx::nystrom_attention(x.q, x.k, x.v, o); },
                ThrowsMessage<attnx::invalid_argument>(
                    HasSubstr("attnx::nystrom_attention: conv_kernel[1] = 1e+300 exceeds the range of float")));
    // A finite weight that makes the skip connection overflow.
    o.conv_kernel = {1e30, 1e30, 1e30};
    big = x;
    big.v *= 1e10f;
    EXPECT_THAT([&] { attnx::nystrom_attention(big.q, big.k, big.v, o); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("the result overflowed float")));
}

TEST(Overflow, Linformer) {
    auto x = random_qkv<float>(64, 64, 16, 8, 5);
    const auto id = attnx::LinformerProjection<float>::identity(64);
    auto big = x;
    big.q *= 1e30f;
    big.k *= 1e30f;
    EXPECT_THAT([&] { attnx::linformer_attention(big.q, big.k, big.v, id); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::linformer_attention: logits may overflow float: "
                                    "scale * d * max|q| * max|E K| = "),
                          HasSubstr("exceeds 2.1e+37"))));
    // E K stays finite (~1e37) but its logits against q do not.
    Matrix<float> e = Matrix<float>::Constant(4, 64, 1e36f), f = Matrix<float>::Constant(4, 64, 0.1f);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, e, f); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("logits may overflow float: scale * d * max|q| * max|E K|")));
    // E K itself overflows.
    e.setConstant(1e38f);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, e, f); },
                ThrowsMessage<attnx::invalid_argument>(AllOf(
                    HasSubstr("attnx::linformer_attention: the projection E K overflowed float (n_k = 64"),
                    HasSubstr("max|E| = 1e+38"))));
    // F V overflows.
    e.setConstant(0.1f);
    f.setConstant(1e38f);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, e, f); },
                ThrowsMessage<attnx::invalid_argument>(
                    HasSubstr("attnx::linformer_attention: the projection F V overflowed float")));
    const auto p = attnx::LinformerProjection<float>::from_matrices(e, f);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, p); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("the projection F V overflowed float")));
}

TEST(Overflow, BlockSparse) {
    auto x = random_qkv<float>(64, 64, 16, 8, 6);
    x.q *= 1e30f;
    x.k *= 1e30f;
    const auto layout = attnx::BlockLayout::bigbird(64, {16, 3, 1, 1, 0});
    EXPECT_THAT([&] { attnx::block_sparse_attention(x.q, x.k, x.v, layout); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::block_sparse_attention: "), logits_overflow_float)));
    EXPECT_THAT([&] { attnx::bigbird_attention(x.q, x.k, x.v, {16, 3, 1, 1, 0}); },
                ThrowsMessage<attnx::invalid_argument>(
                    AllOf(HasSubstr("attnx::bigbird_attention: "), logits_overflow_float)));
}

TEST(Overflow, CheckFiniteOffSkipsTheScans) {
    auto x = random_qkv<float>(16, 16, 8, 4, 7);
    x.q *= 1e30f;
    x.k *= 1e30f;
    attnx::ExactOptions o;
    o.check_finite = false;  // the caller's promise; the output is then unspecified, but no throw
    EXPECT_NO_THROW(attnx::exact_attention(x.q, x.k, x.v, o));
}

// ---- large but safe inputs are finite and correct ----

// q scaled up by 1e15 and k down by 1e15 leave the logits unchanged; v scaled by 1e15 scales
// the output of every mechanism by 1e15 (all are linear in V).
TYPED_TEST(RobustTyped, Magnitude1e15IsExact) {
    using Scalar = TypeParam;
    const auto x = random_qkv<Scalar>(64, 64, 16, 8, 8);
    const auto xd = random_qkv<double>(64, 64, 16, 8, 8);
    auto big = x;
    big.q *= Scalar(1e15);
    big.k *= Scalar(1e-15);
    big.v *= Scalar(1e15);
    const double s = 1e15;
    const double t = tol<Scalar>();

    const Eigen::MatrixXd ref = ref::attention(xd.q, xd.k, xd.v) * s;
    EXPECT_LE(rel(attnx::exact_attention(big.q, big.k, big.v), ref), t);
    EXPECT_LE(rel(attnx::exact_attention(big.q, big.k, big.v, materialized()), ref), t);
    EXPECT_LE(rel(attnx::block_sparse_attention(big.q, big.k, big.v, attnx::BlockLayout::dense(64, 16)), ref), t);
    EXPECT_LE(rel(attnx::linformer_attention(big.q, big.k, big.v, attnx::LinformerProjection<Scalar>::identity(64)), ref),
              t);

    attnx::NystromOptions no;
    no.num_landmarks = 8;
    const Eigen::MatrixXd ny = attnx::nystrom_attention(xd.q, xd.k, xd.v, no) * s;
    const double ny_tol = std::is_same<Scalar, float>::value ? 1e-3 : 1e-10;
    EXPECT_LE(rel(attnx::nystrom_attention(big.q, big.k, big.v, no), ny), ny_tol);
}

TEST(Large, FloatInputsOf1e15AreFinite) {
    // q, k, v all 1e15 in float: logits up to ~1e31 are within float; the softmax is one-hot.
    auto x = random_qkv<float>(32, 32, 16, 8, 9);
    x.q *= 1e15f;
    x.k *= 1e15f;
    x.v *= 1e15f;
    const Matrix<float> out = attnx::exact_attention(x.q, x.k, x.v);
    ASSERT_TRUE(all_finite(out));
    EXPECT_LE(rel(out, ref::attention(x.q.cast<double>(), x.k.cast<double>(), x.v.cast<double>())), 1e-5);
    EXPECT_TRUE(all_finite<float>(attnx::exact_attention(x.q, x.k, x.v, materialized())));
    EXPECT_TRUE(all_finite<float>(attnx::bigbird_attention(x.q, x.k, x.v, {8, 3, 1, 1, 0})));
    attnx::NystromOptions no;
    no.num_landmarks = 4;
    EXPECT_TRUE(all_finite<float>(attnx::nystrom_attention(x.q, x.k, x.v, no)));
    EXPECT_TRUE(all_finite<float>(attnx::linformer_attention(x.q, x.k, x.v, attnx::LinformerProjection<float>::identity(32))));
}

TYPED_TEST(RobustTyped, LogitsOfPlusMinus1e4) {
    using Scalar = TypeParam;
    // d = 1, scale 1: logits q_i k_j = ±1e4 exactly; each query picks the key with the largest logit.
    Matrix<Scalar> q(2, 1), k(3, 1), v(3, 2);
    q << 100, -100;
    k << 100, -100, 50;
    v << 1, 2, 3, 4, 5, 6;
    attnx::ExactOptions o;
    o.scale = 1.0;
    Matrix<Scalar> expect(2, 2);
    expect << 1, 2, 3, 4;
    for (auto kernel : {attnx::ExactKernel::Streaming, attnx::ExactKernel::Materialized}) {
        o.kernel = kernel;
        const Matrix<Scalar> out = attnx::exact_attention(q, k, v, o);
        ASSERT_TRUE(all_finite(out));
        EXPECT_LE((out - expect).cwiseAbs().maxCoeff(), Scalar(1e-6));
    }
    const Matrix<Scalar> bs = attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::dense(2, 3, 1), o);
    EXPECT_LE((bs - expect).cwiseAbs().maxCoeff(), Scalar(1e-6));
}

TYPED_TEST(RobustTyped, TinyScaleGivesTheMeanOfV) {
    using Scalar = TypeParam;
    const auto x = random_qkv<Scalar>(16, 40, 8, 6, 10);
    attnx::ExactOptions o;
    o.scale = 1e-30;
    const Matrix<Scalar> mean = x.v.colwise().mean().replicate(16, 1);
    const Scalar t = Scalar(std::is_same<Scalar, float>::value ? 1e-5 : 1e-13);
    EXPECT_LE((attnx::exact_attention(x.q, x.k, x.v, o) - mean).cwiseAbs().maxCoeff(), t);
    o.kernel = attnx::ExactKernel::Materialized;
    EXPECT_LE((attnx::exact_attention(x.q, x.k, x.v, o) - mean).cwiseAbs().maxCoeff(), t);
    EXPECT_LE((attnx::block_sparse_attention(x.q, x.k, x.v, attnx::BlockLayout::dense(16, 40, 8), o) - mean)
                  .cwiseAbs()
                  .maxCoeff(),
              t);
}

TYPED_TEST(RobustTyped, LargeButSafeScale) {
    using Scalar = TypeParam;
    // scale 1e20 with O(1) entries: logits ~1e20, far from float's range; softmax one-hot.
    const auto x = random_qkv<Scalar>(16, 24, 8, 4, 11);
    attnx::ExactOptions o;
    o.scale = 1e20;
    const Eigen::MatrixXd ref = ref::attention(x.q.template cast<double>(), x.k.template cast<double>(),
                                               x.v.template cast<double>(), 1e20, ref::all_visible(16, 24));
    for (auto kernel : {attnx::ExactKernel::Streaming, attnx::ExactKernel::Materialized}) {
        o.kernel = kernel;
        const Matrix<Scalar> out = attnx::exact_attention(x.q, x.k, x.v, o);
        ASSERT_TRUE(all_finite(out));
        EXPECT_LE(rel(out, ref), 1e-6);
    }
}

// ---- Nyström with A of rank one ----

TYPED_TEST(RobustTyped, NystromIdenticalTokens) {
    using Scalar = TypeParam;
    const Index n = 64, d = 16;
    const auto x = random_qkv<Scalar>(1, n, d, 8, 12);
    const Matrix<Scalar> tokens = x.q.replicate(n, 1);  // every token the same: A = 11ᵀ/m, rank one
    const Matrix<Scalar> mean = x.v.colwise().mean().replicate(n, 1);
    const double t = std::is_same<Scalar, float>::value ? 1e-5 : 1e-12;
    for (auto pinv : {attnx::PinvMethod::Iterative, attnx::PinvMethod::Exact}) {
        attnx::NystromOptions o;
        o.num_landmarks = 8;
        o.pinv = pinv;
        o.pinv_iterations = 20;
        attnx::NystromReport report;
        const Matrix<Scalar> out = attnx::nystrom_attention(tokens, tokens, x.v, o, &report);
        ASSERT_TRUE(all_finite(out));
        EXPECT_LE((out - mean).cwiseAbs().maxCoeff(), t * (1 + x.v.cwiseAbs().maxCoeff()));
        EXPECT_LE(report.pinv_residual_aza, 1e-5);
        EXPECT_TRUE(std::isfinite(report.pinv_residual));
    }
}

}  // namespace

// ---- the fused scans keep the order of errors: q, k, v, then a mechanism's own data ----

TEST(ErrorOrder, FusedScansReportQFirstAndNameTheRealCause) {
    using E = attnx::invalid_argument;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto x = random_qkv<float>(4, 600, 8, 4, 21);
    x.q(0, 0) = nan;
    const auto q_error = HasSubstr("q (4x8) has a non-finite entry q(0, 0) = nan");
    // Linformer reads q only in the attention, after the projection: a projection that overflows
    // (k of 3e38) must not hide the NaN in q.
    Matrix<float> big_k = x.k;
    big_k.setConstant(3e38f);
    const auto proj = attnx::LinformerProjection<float>::gaussian(7, 600, 3);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, big_k, x.v, proj); }, ThrowsMessage<E>(q_error));
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, big_k, x.v, proj.e(), proj.f()); }, ThrowsMessage<E>(q_error));
    // Raw E and F are scanned before the work, but reported after q, k and v.
    Matrix<float> bad_e = proj.e();
    bad_e(0, 0) = nan;
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, bad_e, proj.f()); }, ThrowsMessage<E>(q_error));
    Matrix<float> good_q = x.q, bad_k = x.k;
    good_q(0, 0) = 0.5f;
    bad_k(5, 1) = nan;
    EXPECT_THAT([&] { attnx::linformer_attention(good_q, bad_k, x.v, bad_e, proj.f()); },
                ThrowsMessage<E>(HasSubstr("k (600x8) has a non-finite entry k(5, 1) = nan")));
    EXPECT_THAT([&] { attnx::linformer_attention(good_q, x.k, x.v, bad_e, proj.f()); },
                ThrowsMessage<E>(HasSubstr("e (7x600) has a non-finite entry e(0, 0) = nan")));
}

TEST(ErrorOrder, ExactStreamingNamesAnOverflowedSumNotTheBound) {
    // Every logit is 0 (q and k meet in no column) although the bound s·d·max|q|·max|k| fails;
    // the sums of V overflow. The streaming kernel saw finite scores: the error is the result's.
    Matrix<float> q = Matrix<float>::Zero(1, 64), k = Matrix<float>::Zero(4, 64);
    q(0, 0) = 1e19f;
    k.col(1).setConstant(1e19f);
    const Matrix<float> v = Matrix<float>::Constant(4, 2, 3e38f);
    EXPECT_THAT([&] { attnx::exact_attention(q, k, v); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("the result overflowed float")));
}
