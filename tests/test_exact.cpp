// SPDX-License-Identifier: MIT
// Exact attention: both kernels against an independent float64 reference, masks,
// stability, conformance with the PyTorch reference vectors, and every documented error.
#include <attnx/exact.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::ExactKernel;
using attnx::ExactOptions;
using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

template <typename Scalar>
struct Tol;
// float vs the double reference: softmax and the two d-long dot products each add a few
// eps_float * sqrt(d) of relative error (d <= 64 here): 2e-5 leaves ~10x headroom over
// the ~1e-6 measured, while a dropped scale or a wrong mask gives O(1) errors.
template <>
struct Tol<float> {
    static constexpr double rel = 2e-5;
};
// double: same argument with eps_double: 1e-13 covers sqrt(d) * n-term sums.
template <>
struct Tol<double> {
    static constexpr double rel = 1e-12;
};

template <typename Scalar>
class ExactTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ExactTyped, Scalars, );

ExactOptions with_kernel(ExactKernel kernel, Index qt = 16, Index kt = 32) {
    ExactOptions o;
    o.kernel = kernel;
    o.query_tile = qt;
    o.key_tile = kt;
    return o;
}

template <typename Scalar>
double rel_vs_ref(const Matrix<Scalar>& out, const Eigen::MatrixXd& reference) {
    return attnx::compare(out, reference).rel_fro;
}

}  // namespace

TYPED_TEST(ExactTyped, BothKernelsMatchFloat64Reference) {
    using S = TypeParam;
    // Shapes: tile multiples, ragged last tiles, single query (split path), cross-attention d_v != d.
    const Index shapes[][4] = {{64, 64, 32, 32}, {100, 77, 16, 24}, {1, 300, 8, 5}, {3, 1000, 32, 32}, {257, 33, 64, 7}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], s[2], s[3], 11 + static_cast<std::uint64_t>(s[0]));
        const Eigen::MatrixXd r = ref::attention(x.q.template cast<double>(), x.k.template cast<double>(),
                                                 x.v.template cast<double>());
        for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
            const Matrix<S> out = attnx::exact_attention(x.q, x.k, x.v, with_kernel(kernel));
            ASSERT_EQ(out.rows(), s[0]);
            ASSERT_EQ(out.cols(), s[3]);
            EXPECT_LE(rel_vs_ref(out, r), Tol<S>::rel) << "n_q=" << s[0] << " n_k=" << s[1];
        }
    }
}

TYPED_TEST(ExactTyped, StreamingEqualsMaterializedForAnyTiling) {
    using S = TypeParam;
    const auto x = random_qkv<S>(150, 210, 32, 32, 5);
    const Matrix<S> mat = attnx::exact_attention(x.q, x.k, x.v, with_kernel(ExactKernel::Materialized));
    for (Index qt : {1, 7, 64, 128, 500})
        for (Index kt : {1, 13, 128, 1000}) {
            const Matrix<S> st = attnx::exact_attention(x.q, x.k, x.v, with_kernel(ExactKernel::Streaming, qt, kt));
            EXPECT_LE(attnx::compare(st, mat).rel_fro, Tol<S>::rel) << "tiles " << qt << "x" << kt;
        }
}

TYPED_TEST(ExactTyped, DefaultOptionsUseStreamingAndDefaultScale) {
    using S = TypeParam;
    const auto x = random_qkv<S>(300, 300, 64, 64, 6);
    const Matrix<S> out = attnx::exact_attention(x.q, x.k, x.v);
    const Eigen::MatrixXd r =
        ref::attention(x.q.template cast<double>(), x.k.template cast<double>(), x.v.template cast<double>());
    EXPECT_LE(rel_vs_ref(out, r), Tol<S>::rel);
    // An explicit scale is honoured (and 1/sqrt(d) is not applied on top of it).
    attnx::AttentionOptions o;
    o.scale = 0.3;
    const Matrix<S> scaled = attnx::exact_attention(x.q, x.k, x.v, o);
    const Eigen::MatrixXd rs = ref::attention(x.q.template cast<double>(), x.k.template cast<double>(),
                                              x.v.template cast<double>(), 0.3, ref::all_visible(300, 300));
    EXPECT_LE(rel_vs_ref(scaled, rs), Tol<S>::rel);
}

TYPED_TEST(ExactTyped, CausalAndPaddingMasksMatchMaskedReference) {
    using S = TypeParam;
    // n_q == n_k, n_q < n_k (decoding: bottom-right aligned), n_q > n_k (first rows see nothing).
    const Index shapes[][2] = {{96, 96}, {40, 130}, {130, 40}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], 16, 16, 21);
        std::vector<bool> pad(static_cast<std::size_t>(s[1]), false);
        for (Index j = 0; j < s[1]; j += 3) pad[static_cast<std::size_t>(j)] = true;
        for (bool causal : {false, true})
            for (bool use_pad : {false, true}) {
                ExactOptions o;
                o.causal = causal;
                if (use_pad) o.key_padding_mask = pad;
                const ref::Visible vis = ref::masked(s[0], s[1], causal, o.key_padding_mask);
                const Eigen::MatrixXd r = ref::attention(x.q.template cast<double>(), x.k.template cast<double>(),
                                                         x.v.template cast<double>(), 0.25, vis);
                for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
                    ExactOptions ok = o;
                    ok.kernel = kernel;
                    ok.query_tile = 16;
                    ok.key_tile = 16;
                    const Matrix<S> out = attnx::exact_attention(x.q, x.k, x.v, ok);
                    ASSERT_TRUE(out.allFinite());
                    EXPECT_LE(rel_vs_ref(out, r), Tol<S>::rel)
                        << s[0] << "x" << s[1] << " causal=" << causal << " pad=" << use_pad;
                    // Rows with no visible key are exactly zero.
                    for (Index i = 0; i < s[0]; ++i)
                        if (!vis.row(i).any()) {
                            EXPECT_EQ(out.row(i).cwiseAbs().maxCoeff(), S(0)) << "row " << i;
                        }
                }
            }
    }
}

TYPED_TEST(ExactTyped, FullyMaskedRowsAreZeroNeverNaN) {
    using S = TypeParam;
    const auto x = random_qkv<S>(20, 50, 8, 8, 3);
    ExactOptions o;
    o.key_padding_mask.assign(50, true);
    for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
        o.kernel = kernel;
        const Matrix<S> out = attnx::exact_attention(x.q, x.k, x.v, o);
        EXPECT_TRUE(out.allFinite());
        EXPECT_EQ(out.cwiseAbs().maxCoeff(), S(0));
        const Matrix<S> p = attnx::attention_matrix(x.q, x.k, o);
        EXPECT_EQ(p.cwiseAbs().maxCoeff(), S(0));
    }
}

TYPED_TEST(ExactTyped, LargeLogitsStayFiniteAndCorrect) {
    using S = TypeParam;
    // Logits of order 1e4: a softmax without max subtraction overflows to inf/NaN.
    auto x = random_qkv<S>(64, 64, 16, 16, 8, 1.0);
    x.q *= S(50);
    x.k *= S(50);
    const Eigen::MatrixXd qd = x.q.template cast<double>(), kd = x.k.template cast<double>();
    const double max_logit = ((qd * kd.transpose()) * 0.25).cwiseAbs().maxCoeff();
    ASSERT_GT(max_logit, 5e3);
    const Eigen::MatrixXd r = ref::attention(qd, kd, x.v.template cast<double>());
    for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
        const Matrix<S> out = attnx::exact_attention(x.q, x.k, x.v, with_kernel(kernel));
        ASSERT_TRUE(out.allFinite());
        // The softmax is one-hot to within exp(-O(100)); float logits of 1e4 carry absolute
        // rounding ~1e4 * 6e-8 = 6e-4, which can only reorder near-ties: 1e-3 bounds that.
        const double tol = std::is_same<S, float>::value ? 1e-3 : 1e-12;
        EXPECT_LE(rel_vs_ref(out, r), tol);
    }
}

TYPED_TEST(ExactTyped, AttentionMatrixRowsAreProbabilities) {
    using S = TypeParam;
    const auto x = random_qkv<S>(30, 45, 8, 8, 4);
    attnx::AttentionOptions o;
    o.causal = true;
    const Matrix<S> p = attnx::attention_matrix(x.q, x.k, o);
    ASSERT_EQ(p.rows(), 30);
    ASSERT_EQ(p.cols(), 45);
    for (Index i = 0; i < 30; ++i) {
        EXPECT_NEAR(static_cast<double>(p.row(i).sum()), 1.0, 1e-5);
        for (Index j = i + 15 + 1; j < 45; ++j) EXPECT_EQ(p(i, j), S(0));
    }
    // P V equals exact attention.
    const Matrix<S> pv = p * x.v;
    EXPECT_LE(attnx::compare(pv, attnx::exact_attention(x.q, x.k, x.v, ExactOptions(o))).rel_fro, Tol<S>::rel);
}

TEST(Exact, AcceptsRowMajorAndExpressionsAndOutBuffer) {
    const auto x = random_qkv<double>(40, 50, 8, 6, 9);
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> qr = x.q;
    const Matrix<double> base = attnx::exact_attention(x.q, x.k, x.v);
    EXPECT_LE(attnx::compare(attnx::exact_attention(qr, x.k, x.v), base).rel_fro, 1e-15);
    // An expression: 2*q with scale halved gives the same logits.
    attnx::AttentionOptions o;
    o.scale = 0.5 / std::sqrt(8.0);
    EXPECT_LE(attnx::compare(attnx::exact_attention(2.0 * x.q, x.k, x.v, o), base).rel_fro, 1e-14);
    Matrix<double> out(40, 6);
    attnx::exact_attention(x.q, x.k, x.v, out);
    EXPECT_LE(attnx::compare(out, base).rel_fro, 1e-15);
}

TEST(Exact, ResultDoesNotDependOnThreadCount) {
#ifdef _OPENMP
    const auto x = random_qkv<float>(700, 900, 32, 32, 12);
    const auto x1 = random_qkv<float>(5, 3000, 32, 32, 13);  // few queries: the split-key path
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Matrix<float> a = attnx::exact_attention(x.q, x.k, x.v);
    const Matrix<float> a1 = attnx::exact_attention(x1.q, x1.k, x1.v);
    omp_set_num_threads(2);
    const Matrix<float> b = attnx::exact_attention(x.q, x.k, x.v);
    const Matrix<float> b1 = attnx::exact_attention(x1.q, x1.k, x1.v);
    omp_set_num_threads(saved);
    // The work split depends on sizes only, so the results are bit-identical.
    EXPECT_TRUE(a == b);
    EXPECT_TRUE(a1 == b1);
#else
    GTEST_SKIP() << "built without OpenMP: there is only one thread count";
#endif
}

TEST(Exact, ConformanceWithPyTorchReference) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "exact_f64")) continue;
        const Eigen::MatrixXd q = testing_support::load(name, "q"), k = testing_support::load(name, "k"),
                              v = testing_support::load(name, "v"), want = testing_support::load(name, "exact_f64");
        const Matrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
        for (ExactKernel kernel : {ExactKernel::Streaming, ExactKernel::Materialized}) {
            ExactOptions o;
            o.kernel = kernel;
            // manifest tolerance_guidance: rel_fro <= 1e-5 in float against the f64 reference.
            EXPECT_LE(attnx::compare(attnx::exact_attention(qf, kf, vf, o), want).rel_fro, 1e-5) << name;
            EXPECT_LE(attnx::compare(attnx::exact_attention(q, k, v, o), want).rel_fro, 1e-12) << name;
        }
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}

TEST(Exact, CompareMetrics) {
    Eigen::MatrixXd r(2, 2), a(2, 2);
    r << 1, 0, 0, 2;
    a << 1, 0, 0, 0;
    const attnx::ErrorMetrics e = attnx::compare(a, r);
    EXPECT_DOUBLE_EQ(e.rel_fro, 2.0 / std::sqrt(5.0));
    EXPECT_DOUBLE_EQ(e.max_abs, 2.0);
    EXPECT_DOUBLE_EQ(e.mean_row_cosine, 0.5);  // row 0 identical, row 1 zero against non-zero
    EXPECT_THAT([&] { attnx::compare(a, Eigen::MatrixXd(3, 2)); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("approx is 2x2 but reference is 3x2")));
}

TEST(Exact, BadInputThrowsNamingArgumentAndSizes) {
    using M = Matrix<float>;
    const M q = M::Ones(8, 32), k = M::Ones(10, 32), v = M::Ones(10, 4);
    auto call = [](const M& a, const M& b, const M& c, const ExactOptions& o = {}) {
        return [=] { attnx::exact_attention(a, b, c, o); };
    };
    using E = attnx::invalid_argument;
    EXPECT_THAT(call(q, M::Ones(10, 64), v),
                ThrowsMessage<E>(AllOf(HasSubstr("attnx::exact_attention"), HasSubstr("k has 64 columns but q has 32"))));
    EXPECT_THAT(call(q, k, M::Ones(9, 4)), ThrowsMessage<E>(HasSubstr("v has 9 rows but k has 10")));
    EXPECT_THAT(call(M(0, 32), k, v), ThrowsMessage<E>(HasSubstr("q is empty (0x32)")));
    EXPECT_THAT(call(q, M(10, 0), v), ThrowsMessage<E>(HasSubstr("k is empty (10x0)")));
    ExactOptions o;
    o.key_padding_mask.assign(7, false);
    EXPECT_THAT(call(q, k, v, o),
                ThrowsMessage<E>(HasSubstr("key_padding_mask has length 7 but there are n_k = k.rows() = 10 keys")));
    for (double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(), std::nan("")}) {
        ExactOptions s;
        s.scale = bad;
        EXPECT_THAT(call(q, k, v, s), ThrowsMessage<E>(HasSubstr("must be finite and > 0")));
    }
    ExactOptions t;
    t.key_tile = 0;
    EXPECT_THAT(call(q, k, v, t), ThrowsMessage<E>(HasSubstr("key_tile (0) must be >= 1")));
    ExactOptions dt;
    dt.decode_key_tile = -3;
    EXPECT_THAT(call(q, k, v, dt), ThrowsMessage<E>(HasSubstr("decode_key_tile (-3) must be >= 1")));
    M kn = k;
    kn(3, 5) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT(call(q, kn, v), ThrowsMessage<E>(HasSubstr("k (10x32) has a non-finite entry k(3, 5) = nan")));
    M vi = v;
    vi(9, 0) = std::numeric_limits<float>::infinity();
    EXPECT_THAT(call(q, k, vi), ThrowsMessage<E>(HasSubstr("v(9, 0) = inf")));
    ExactOptions nocheck;
    nocheck.check_finite = false;
    EXPECT_NO_THROW(attnx::exact_attention(q, k, vi, nocheck));
    M out(3, 3);
    EXPECT_THAT([&] { attnx::exact_attention(q, k, v, out); },
                ThrowsMessage<E>(HasSubstr("out is 3x3 but must be n_q x d_v = 8x4")));
    EXPECT_THAT([&] { attnx::attention_matrix(q, M::Ones(4, 3)); },
                ThrowsMessage<E>(HasSubstr("attention_matrix: k has 3 columns but q has 32")));
    // Derived from std::invalid_argument, so generic handlers catch it.
    EXPECT_THROW(attnx::exact_attention(q, M::Ones(10, 64), v), std::invalid_argument);
}

// One query row uses decode_key_tile, more rows key_tile: any decode tile gives float64's result
// within rounding, and key_tile does not change a one-row result (nor decode_key_tile a two-row one).
TYPED_TEST(ExactTyped, OneQueryUsesTheDecodeKeyTile) {
    using S = TypeParam;
    const auto x = random_qkv<S>(2, 1100, 40, 24, 77);
    const Matrix<S> q1 = x.q.topRows(1);
    const Eigen::MatrixXd r = ref::attention(q1.template cast<double>().eval(), x.k.template cast<double>().eval(),
                                             x.v.template cast<double>().eval());
    ExactOptions o;
    for (const Index tile : {Index(1), Index(7), Index(128), Index(256), Index(1100), Index(5000)}) {
        o.decode_key_tile = tile;
        EXPECT_LE(rel_vs_ref(attnx::exact_attention(q1, x.k, x.v, o), r), 20 * Tol<S>::rel) << "tile " << tile;
    }
    // The kernel itself with 7-key tiles: the bits of decode_key_tile = 7.
    ExactOptions u;
    u.check_finite = false;
    u.decode_key_tile = 7;
    Matrix<S> direct(1, 24);
    attnx::detail::dense_online_attention<S>(q1, x.k, x.v, attnx::detail::resolve_scale<S>(u, 40),
                                             attnx::detail::make_mask(u, 1, 1100), 128, 7, direct);
    EXPECT_EQ(attnx::exact_attention(q1, x.k, x.v, u), direct);
    ExactOptions a, b;
    b.key_tile = 7;
    EXPECT_EQ(attnx::exact_attention(q1, x.k, x.v, a), attnx::exact_attention(q1, x.k, x.v, b));
    b = ExactOptions{};
    b.decode_key_tile = 7;
    EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, a), attnx::exact_attention(x.q, x.k, x.v, b));
}
