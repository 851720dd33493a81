// SPDX-License-Identifier: MIT
// Feature-map attention (linear attention, Performer FAVOR+): the dense oracle D⁻¹(φ(Q)φ(K)ᵀ)V
// and its causal tril form in double with the same map and W; the feature maps against their
// formulas; decode = causal batch; padding; chunk size and thread count; FAVOR+ statistics
// (Lemma 2, Theorem 2, the m^(−1/2) error); the seeded W; the mechanism values; every
// documented error.
#include <attnx/exact.hpp>
#include <attnx/feature_maps.hpp>
#include <attnx/linear_attention.hpp>
#include <attnx/mechanisms.hpp>
#include <attnx/metrics.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "support/inputs.hpp"

using attnx::EluPlusOne;
using attnx::Index;
using attnx::LinearAttentionOptions;
using attnx::LinearAttentionState;
using attnx::Matrix;
using attnx::PositiveRandomFeatures;
using attnx::RandomFeatureOptions;
using attnx::Vector;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

// float against the float64 oracle of the same formula: the features round once per entry
// (elu: exact or one exp; FAVOR+: a d-long dot product and one exp, ~sqrt(d)·eps_float), and
// the sums over n_k <= 1500 keys of positive terms add ~sqrt(n_k)·eps_float relative error;
// the causal chunks reorder the same sums. Measured <= 5e-7 on these inputs: 1e-5 leaves 20x
// headroom, while a dropped exp(c_j − R_i), a wrong tril or a wrong mask give O(1e-2..1).
template <typename Scalar>
struct Tol;
template <>
struct Tol<float> {
    static constexpr double rel = 1e-5;
};
// double: the same argument with eps_double (measured <= 1e-15).
template <>
struct Tol<double> {
    static constexpr double rel = 1e-12;
};

template <typename Scalar>
class FeatureMapTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FeatureMapTyped, Scalars, );

/// The same feature map in double: EluPlusOne as is, FAVOR+ with W converted exactly.
inline EluPlusOne in_double(const EluPlusOne& m) { return m; }
template <typename S>
PositiveRandomFeatures<double> in_double(const PositiveRandomFeatures<S>& f) {
    return PositiveRandomFeatures<double>::from_matrix(f.matrix().template cast<double>().eval(), f.stabilizer());
}

/// The dense oracle, in double: A_ij = φ̂(q_i)ᵀ phi(k_j) · exp(c_j − R_i) over the visible keys
/// (R_i their largest log scale), out = (A V) / (A 1 + eps) row by row; the causal form keeps
/// j <= i + n_k − n_q (tril, aligned bottom-right). Features from the map's queries() and
/// keys(), the definition the header documents.
template <typename Map>
Eigen::MatrixXd oracle(const Map& map, const Eigen::MatrixXd& q, const Eigen::MatrixXd& k, const Eigen::MatrixXd& v,
                       double scale, bool causal, double eps = 1e-6, const std::vector<bool>& pad = {}) {
    const Index c_dim = map.feature_dim(q.cols());
    Eigen::MatrixXd pq(q.rows(), c_dim), pk(k.rows(), c_dim);
    Eigen::VectorXd c(k.rows());
    map.queries(Eigen::Ref<const Eigen::MatrixXd>(q), scale, Eigen::Ref<Eigen::MatrixXd>(pq));
    map.keys(Eigen::Ref<const Eigen::MatrixXd>(k), scale, Eigen::Ref<Eigen::MatrixXd>(pk), Eigen::Ref<Eigen::VectorXd>(c));
    const Index off = k.rows() - q.rows();
    Eigen::MatrixXd out = Eigen::MatrixXd::Zero(q.rows(), v.cols());
    for (Index i = 0; i < q.rows(); ++i) {
        auto visible = [&](Index j) {
            return !(causal && j > i + off) && !(!pad.empty() && pad[static_cast<std::size_t>(j)]);
        };
        double r = -std::numeric_limits<double>::infinity();
        for (Index j = 0; j < k.rows(); ++j)
            if (visible(j)) r = std::max(r, c(j));
        double den = 0;
        Eigen::RowVectorXd num = Eigen::RowVectorXd::Zero(v.cols());
        for (Index j = 0; j < k.rows(); ++j) {
            if (!visible(j)) continue;
            const double a = pq.row(i).dot(pk.row(j)) * std::exp(c(j) - r);
            den += a;
            num += a * v.row(j);
        }
        out.row(i) = num / (den + eps);
    }
    return out;
}

template <typename S>
Eigen::MatrixXd to_double(const Matrix<S>& m) {
    return m.template cast<double>();
}

/// Rows rescaled to norms in [0.5, 1]·d^(1/4), so that x = d^(−1/4)·q has ‖x‖ <= 1: the regime
/// where FAVOR+'s variance (Lemma 2) is small.
Eigen::MatrixXd bounded_rows(Eigen::MatrixXd x, int period) {
    const double r = std::pow(static_cast<double>(x.cols()), 0.25);
    for (Index i = 0; i < x.rows(); ++i)
        x.row(i) *= r * (0.5 + 0.5 * static_cast<double>(i % period) / period) / x.row(i).norm();
    return x;
}

template <typename S>
PositiveRandomFeatures<S> favor(Index d, Index m, std::uint64_t seed, bool orthogonal = true) {
    RandomFeatureOptions o;
    o.num_features = m;
    o.orthogonal = orthogonal;
    return PositiveRandomFeatures<S>::draw(d, seed, o);
}

}  // namespace

TYPED_TEST(FeatureMapTyped, MatchesTheDenseOracleAndItsCausalTrilForm) {
    using S = TypeParam;
    // {n_q, n_k, d, d_v, chunk}: one token; ragged; several key blocks and parts (n_k > 512);
    // several causal windows (chunk 16: 19 chunks); cross-attention both ways (causal
    // bottom-right, n_q > n_k gives leading zero rows); chunk 128: 4 to 16 row blocks of the
    // tril product (2 packets each: 32 rows with AVX-512, 8 with SSE2), each against the keys
    // its last row sees, with the queries offset in a chunk.
    const Index shapes[][5] = {{1, 1, 8, 3, 64},     {37, 37, 16, 8, 64},  {300, 300, 16, 8, 16},
                               {90, 700, 16, 12, 64}, {77, 130, 8, 5, 16}, {130, 77, 8, 5, 16},
                               {200, 333, 8, 5, 128}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], s[2], s[3], 10 + static_cast<std::uint64_t>(s[1]), 1.0);
        const auto prf = favor<S>(s[2], 48, 3);
        const Eigen::MatrixXd qd = to_double(x.q), kd = to_double(x.k), vd = to_double(x.v);
        const double scale = 1.0 / std::sqrt(static_cast<double>(s[2]));
        for (const bool causal : {false, true}) {
            LinearAttentionOptions o;
            o.causal = causal;
            o.chunk = s[4];
            const Matrix<S> lin = attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o);
            const Matrix<S> perf = attnx::performer_attention(x.q, x.k, x.v, prf, o);
            ASSERT_EQ(lin.rows(), s[0]);
            ASSERT_EQ(lin.cols(), s[3]);
            EXPECT_LE(attnx::compare(lin, oracle(EluPlusOne{}, qd, kd, vd, scale, causal)).rel_fro, Tol<S>::rel)
                << s[0] << "x" << s[1] << " causal " << causal;
            EXPECT_LE(attnx::compare(perf, oracle(in_double(prf), qd, kd, vd, scale, causal)).rel_fro, Tol<S>::rel)
                << s[0] << "x" << s[1] << " causal " << causal;
            if (causal && s[0] > s[1]) {  // the first n_q − n_k queries see no key
                EXPECT_TRUE(lin.topRows(s[0] - s[1]).isZero(0));
                EXPECT_TRUE(perf.topRows(s[0] - s[1]).isZero(0));
            }
            // The mechanism values and the out-buffer overloads run the same code.
            Matrix<S> buf(s[0], s[3]);
            attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, buf, o);
            EXPECT_TRUE(buf == lin);
            attnx::Linear<> mech;
            mech.options = o;
            EXPECT_TRUE(mech(x.q, x.k, x.v) == lin);
            attnx::Performer<S> pm{prf, o};
            pm(x.q, x.k, x.v, buf);
            EXPECT_TRUE(buf == perf);
            EXPECT_TRUE(attnx::linear_attention(x.q, x.k, x.v, prf, o) == perf);
        }
    }
}

TEST(FeatureMaps, EluPlusOneAndFavorFeaturesMatchTheirFormulas) {
    // elu + 1 against its definition (paper 1, eq. 7), through the attention of a plain loop.
    const auto x = random_qkv<double>(40, 50, 8, 4, 5, 2.0);
    Eigen::MatrixXd fq = x.q, fk = x.k;
    for (Eigen::MatrixXd* f : {&fq, &fk})
        for (Index j = 0; j < f->cols(); ++j)
            for (Index i = 0; i < f->rows(); ++i) (*f)(i, j) = (*f)(i, j) > 0 ? (*f)(i, j) + 1 : std::exp((*f)(i, j));
    const Eigen::MatrixXd a = fq * fk.transpose();
    const Eigen::MatrixXd plain = (a * x.v).array().colwise() / (a.rowwise().sum().array() + 1e-6);
    EXPECT_LE(attnx::compare(attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}), plain).rel_fro, 1e-13);

    // FAVOR+ (paper 2, eq. 7): φ(x) = exp(Wx − ‖x‖²/2)/√m with x = √s·q; keys() returns it exactly as
    // phi·exp(log_scale) (stabilizer 0), queries() up to a positive factor per row.
    RandomFeatureOptions o;
    o.num_features = 24;
    o.stabilizer = 0;
    const auto f = PositiveRandomFeatures<double>::draw(8, 9, o);
    const double s = 0.3;
    Eigen::MatrixXd formula(x.q.rows(), 24);
    for (Index i = 0; i < x.q.rows(); ++i) {
        const Eigen::RowVectorXd xi = std::sqrt(s) * x.q.row(i);
        for (Index t = 0; t < 24; ++t)
            formula(i, t) = std::exp(f.matrix().row(t).dot(xi) - xi.squaredNorm() / 2) / std::sqrt(24.0);
    }
    Eigen::MatrixXd phi(x.q.rows(), 24), phq(x.q.rows(), 24);
    Eigen::VectorXd c(x.q.rows());
    f.keys(Eigen::Ref<const Eigen::MatrixXd>(x.q), s, Eigen::Ref<Eigen::MatrixXd>(phi), Eigen::Ref<Eigen::VectorXd>(c));
    f.queries(Eigen::Ref<const Eigen::MatrixXd>(x.q), s, Eigen::Ref<Eigen::MatrixXd>(phq));
    const Eigen::MatrixXd exact_keys = c.array().exp().matrix().asDiagonal() * phi;
    EXPECT_LE(attnx::compare(exact_keys, formula).rel_fro, 1e-13);
    EXPECT_LE(attnx::compare(phq, phi).rel_fro, 1e-15);  // the same rows
    EXPECT_NEAR(phi.maxCoeff(), 1 / std::sqrt(24.0), 1e-15);
    // With the default stabilizer every feature is (exp(·) + 1e-6)/√m.
    const auto fs = PositiveRandomFeatures<double>::from_matrix(f.matrix());
    Eigen::MatrixXd phs(x.q.rows(), 24);
    fs.queries(Eigen::Ref<const Eigen::MatrixXd>(x.q), s, Eigen::Ref<Eigen::MatrixXd>(phs));
    EXPECT_LE((phs - phi).cwiseAbs().maxCoeff(), 1e-6 / std::sqrt(24.0) * (1 + 1e-9));
    EXPECT_GE((phs - phi).minCoeff(), 1e-6 / std::sqrt(24.0) * (1 - 1e-9));
}

TYPED_TEST(FeatureMapTyped, DecodingTokenByTokenEqualsTheCausalBatch) {
    using S = TypeParam;
    const Index n = 150, d = 16, dv = 6;
    const auto x = random_qkv<S>(n, n, d, dv, 21, 1.0);
    const auto prf = favor<S>(d, 64, 4);
    LinearAttentionOptions o;
    o.causal = true;
    o.chunk = 16;
    const Matrix<S> batch_lin = attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o);
    const Matrix<S> batch_perf = attnx::performer_attention(x.q, x.k, x.v, prf, o);

    LinearAttentionState<S, EluPlusOne> lin(EluPlusOne{}, d, dv, o);
    LinearAttentionState<S, PositiveRandomFeatures<S>> perf(prf, d, dv, o);
    Matrix<S> step_lin(n, dv), step_perf(n, dv);
    for (Index i = 0; i < n; ++i) {
        step_lin.row(i) = lin.step(x.q.row(i), x.k.row(i), x.v.row(i));
        perf.step(x.q.row(i).transpose(), x.k.row(i), x.v.row(i), step_perf.row(i));  // column vectors work too
    }
    EXPECT_EQ(lin.tokens(), n);
    EXPECT_LE(attnx::compare(step_lin, batch_lin).rel_fro, Tol<S>::rel);
    EXPECT_LE(attnx::compare(step_perf, batch_perf).rel_fro, Tol<S>::rel);

    // prefill(q, k, v) for a prompt, then steps; and prefill(k, v) alone.
    perf.reset();
    EXPECT_EQ(perf.tokens(), 0);
    Matrix<S> mixed(n, dv);
    mixed.topRows(70) = perf.prefill(x.q.topRows(70), x.k.topRows(70), x.v.topRows(70));
    for (Index i = 70; i < n; ++i) mixed.row(i) = perf.step(x.q.row(i), x.k.row(i), x.v.row(i));
    EXPECT_LE(attnx::compare(mixed, batch_perf).rel_fro, Tol<S>::rel);
    perf.reset();
    perf.prefill(x.k.topRows(100), x.v.topRows(100));
    Matrix<S> tail(n - 100, dv);
    perf.prefill(x.q.bottomRows(n - 100), x.k.bottomRows(n - 100), x.v.bottomRows(n - 100), tail);
    EXPECT_LE(attnx::compare(tail, batch_perf.bottomRows(n - 100)).rel_fro, Tol<S>::rel);
    EXPECT_EQ(perf.tokens(), n);

    // The frozen cross-attention form: query() over a prefilled memory = non-causal attention.
    LinearAttentionState<S, PositiveRandomFeatures<S>> memory(prf, d, dv);
    memory.prefill(x.k, x.v);
    const auto& frozen = memory;
    const Matrix<S> cross = frozen.query(x.q.topRows(33));
    EXPECT_LE(attnx::compare(cross, attnx::performer_attention(x.q.topRows(33), x.k, x.v, prf)).rel_fro, Tol<S>::rel);
    EXPECT_EQ(frozen.tokens(), n);
    EXPECT_TRUE(frozen.query(x.q.topRows(33)) == cross);  // unchanged by query
}

TYPED_TEST(FeatureMapTyped, PaddedKeysContributeNothing) {
    using S = TypeParam;
    const Index n = 260, d = 16, dv = 5;
    auto x = random_qkv<S>(n, n, d, dv, 31, 1.0);
    std::vector<bool> pad(static_cast<std::size_t>(n), false);
    for (Index j = 0; j < n; ++j) pad[static_cast<std::size_t>(j)] = (j % 7 == 3) || (j >= 200 && j < 240);
    const auto prf = favor<S>(d, 32, 5);
    const Eigen::MatrixXd qd = to_double(x.q), kd = to_double(x.k), vd = to_double(x.v);
    for (const bool causal : {false, true}) {
        LinearAttentionOptions o;
        o.causal = causal;
        o.chunk = 16;
        o.key_padding_mask = pad;
        const Matrix<S> lin = attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o);
        const Matrix<S> perf = attnx::performer_attention(x.q, x.k, x.v, prf, o);
        const double scale = 0.25;
        EXPECT_LE(attnx::compare(lin, oracle(EluPlusOne{}, qd, kd, vd, scale, causal, 1e-6, pad)).rel_fro, Tol<S>::rel);
        EXPECT_LE(attnx::compare(perf, oracle(in_double(prf), qd, kd, vd, scale, causal, 1e-6, pad)).rel_fro,
                  Tol<S>::rel);
        // Padded keys and values set to 1e6 change nothing, bit for bit: they are zeroed first.
        auto y = x;
        for (Index j = 0; j < n; ++j)
            if (pad[static_cast<std::size_t>(j)]) {
                y.k.row(j).setConstant(S(1e6));
                y.v.row(j).setConstant(S(-1e6));
            }
        EXPECT_TRUE(attnx::linear_attention(y.q, y.k, y.v, EluPlusOne{}, o) == lin);
        EXPECT_TRUE(attnx::performer_attention(y.q, y.k, y.v, prf, o) == perf);
        if (!causal) {
            // Non-causal: the same as the sequence with the padded keys cut out.
            std::vector<Index> keep;
            for (Index j = 0; j < n; ++j)
                if (!pad[static_cast<std::size_t>(j)]) keep.push_back(j);
            Matrix<S> kc(static_cast<Index>(keep.size()), d), vc(static_cast<Index>(keep.size()), dv);
            for (std::size_t t = 0; t < keep.size(); ++t) {
                kc.row(static_cast<Index>(t)) = x.k.row(keep[t]);
                vc.row(static_cast<Index>(t)) = x.v.row(keep[t]);
            }
            EXPECT_LE(attnx::compare(perf, attnx::performer_attention(x.q, kc, vc, prf)).rel_fro, Tol<S>::rel);
        }
    }
    // Every key padded: zero rows, never NaN.
    LinearAttentionOptions all;
    all.key_padding_mask.assign(static_cast<std::size_t>(n), true);
    EXPECT_TRUE(attnx::performer_attention(x.q, x.k, x.v, prf, all).isZero(0));
    all.causal = true;
    EXPECT_TRUE(attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, all).isZero(0));
}

// detail::small_gemm, the engine's products (every causal chunk, every state): against the
// float64 product, for shapes around the tile (2 packets x 6 columns) and its remainders, a, b
// and c as blocks of larger matrices (outer stride > rows), b as such a block or a transpose,
// c overwritten (filled with NaN first) or added to. Each entry is a k-term dot product: its
// error is at most k·eps·Σ|a_il||b_lj| (the standard bound, with FMA or without).
template <typename Scalar>
void expect_small_gemm_matches_double() {
    const double eps = std::numeric_limits<Scalar>::epsilon();
    for (const Index m : {1, 3, 4, 8, 15, 16, 17, 23, 33, 47, 64, 70})
        for (const Index n : {1, 5, 6, 7, 13, 65})
            for (const Index k : {0, 1, 7, 64}) {
                const Matrix<Scalar> a_big = attnx::random_normal<Scalar>(m + 3, k + 2, 1, static_cast<std::uint64_t>(m * 1000 + k));
                const Matrix<Scalar> b_big = attnx::random_normal<Scalar>(k + 5, n + 1, 2, static_cast<std::uint64_t>(n * 1000 + k));
                const Matrix<Scalar> bt_big = attnx::random_normal<Scalar>(n + 4, k + 1, 3, static_cast<std::uint64_t>(n * 1000 + k));
                const auto a = a_big.block(2, 1, m, k);
                const auto b = b_big.block(3, 1, k, n);
                const auto bt = bt_big.block(1, 0, n, k);
                const Matrix<Scalar> c0 = attnx::random_normal<Scalar>(m, n, 4, static_cast<std::uint64_t>(m * n + k));
                for (const bool transposed : {false, true})
                    for (const bool accumulate : {false, true}) {
                        Matrix<Scalar> c_big = Matrix<Scalar>::Constant(m + 2, n + 1, std::numeric_limits<Scalar>::quiet_NaN());
                        auto c = c_big.block(1, 1, m, n);
                        if (accumulate) c = c0;
                        const Eigen::MatrixXd bd = transposed ? Eigen::MatrixXd(bt.template cast<double>().transpose())
                                                              : Eigen::MatrixXd(b.template cast<double>());
                        Eigen::MatrixXd ref = a.template cast<double>() * bd;
                        const Eigen::MatrixXd bound = a.template cast<double>().cwiseAbs() * bd.cwiseAbs();
                        if (accumulate) ref += c0.template cast<double>();
                        if (transposed && accumulate) attnx::detail::small_gemm<true>(c, a, bt.transpose());
                        if (transposed && !accumulate) attnx::detail::small_gemm<false>(c, a, bt.transpose());
                        if (!transposed && accumulate) attnx::detail::small_gemm<true>(c, a, b);
                        if (!transposed && !accumulate) attnx::detail::small_gemm<false>(c, a, b);
                        const std::string what = "m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
                                                  std::to_string(k) + (transposed ? " b transposed" : "") +
                                                  (accumulate ? " accumulate" : "");
                        for (Index j = 0; j < n; ++j)
                            for (Index i = 0; i < m; ++i) {
                                const double got = static_cast<double>(c(i, j));
                                ASSERT_NEAR(got, ref(i, j), (k + 1) * eps * (bound(i, j) + std::abs(ref(i, j))) + 1e-300)
                                    << what << " at " << i << "," << j;
                            }
                        // The rows and columns around c are untouched (still NaN).
                        EXPECT_TRUE(c_big.row(0).array().isNaN().all() && c_big.row(m + 1).array().isNaN().all() &&
                                    c_big.col(0).array().isNaN().all())
                            << what;
                    }
            }
}

// The operand types of the engine's calls (leftCols of a Matrix, Map, Ref) and empty operands:
// k = 0 gives zeros (or leaves c), with a and b that own no storage.
template <typename Scalar>
void expect_small_gemm_operand_types() {
    const Matrix<Scalar> a_full = attnx::random_normal<Scalar>(40, 30, 6, 1);
    const Matrix<Scalar> b_full = attnx::random_normal<Scalar>(20, 9, 6, 2);
    const Eigen::Map<const Matrix<Scalar>> b(b_full.data(), 20, 9);
    Matrix<Scalar> c_store(40, 9);
    Eigen::Ref<Matrix<Scalar>> c(c_store);
    attnx::detail::small_gemm<false>(c, a_full.leftCols(20), b);
    const Eigen::MatrixXd ref = a_full.leftCols(20).template cast<double>() * b_full.template cast<double>();
    const Eigen::MatrixXd bound = a_full.leftCols(20).template cast<double>().cwiseAbs() * b_full.template cast<double>().cwiseAbs();
    EXPECT_TRUE(((c_store.template cast<double>() - ref).array().abs() <=
                 21 * std::numeric_limits<Scalar>::epsilon() * bound.array()).all());
    const Matrix<Scalar> a0(40, 0), b0(0, 9);
    c_store.setConstant(std::numeric_limits<Scalar>::quiet_NaN());
    attnx::detail::small_gemm<false>(c, a0, b0);
    EXPECT_TRUE(c_store.isZero(0));
    c_store.setOnes();
    attnx::detail::small_gemm<true>(c, a0, b0);
    EXPECT_TRUE(c_store.isOnes(0));
}

TEST(FeatureMaps, SmallGemmMatchesTheDoubleProductForEveryRemainder) {
    expect_small_gemm_matches_double<float>();
    expect_small_gemm_matches_double<double>();
    expect_small_gemm_operand_types<float>();
    expect_small_gemm_operand_types<double>();
}

// detail::block_finite reads blocks with unit inner stride by runs of four packets: a NaN or
// Inf at any position (main loop, packet remainder, scalar remainder, any run) is found, on
// column-major blocks of larger matrices, row-major maps (the runs are rows), Refs with an
// outer stride, and row segments (strided: Eigen's reduction), in float and double.
template <typename Scalar>
void expect_block_finite_finds_every_entry() {
    using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Matrix<Scalar> big = attnx::random_normal<Scalar>(80, 9, 5, 1);
    for (const Index rows : {1, 3, 8, 31, 32, 37, 64, 77})
        for (const Index cols : {1, 2, 7}) {
            EXPECT_TRUE(attnx::detail::block_finite(big.block(2, 1, rows, cols)));
            for (const Scalar bad : {std::numeric_limits<Scalar>::quiet_NaN(), std::numeric_limits<Scalar>::infinity(),
                                     -std::numeric_limits<Scalar>::infinity()})
                for (Index j = 0; j < cols; ++j)
                    for (Index i = 0; i < rows; ++i) {
                        Matrix<Scalar> m = big;
                        m(2 + i, 1 + j) = bad;
                        ASSERT_FALSE(attnx::detail::block_finite(m.block(2, 1, rows, cols)))
                            << rows << "x" << cols << " at " << i << "," << j;
                        ASSERT_FALSE(attnx::detail::block_finite(m.row(2 + i).segment(1, cols)));
                        const Eigen::Ref<const Matrix<Scalar>> ref(m.block(2, 1, rows, cols));
                        ASSERT_FALSE(attnx::detail::block_finite(ref));
                        // The same entries as a row-major cols x rows map: runs of rows entries.
                        const RowMajor t = m.block(2, 1, rows, cols).transpose();
                        const Eigen::Map<const RowMajor> tm(t.data(), cols, rows);
                        ASSERT_FALSE(attnx::detail::block_finite(tm));
                        ASSERT_TRUE(attnx::detail::block_finite(tm.topRows(j)));  // the rows before the bad one
                    }
        }
}

TEST(FeatureMaps, BlockFiniteFindsANonFiniteEntryAnywhere) {
    expect_block_finite_finds_every_entry<float>();
    expect_block_finite_finds_every_entry<double>();
    const Matrix<float> big = attnx::random_normal<float>(80, 9, 5, 1);
    Matrix<float> m = big;
    m(0, 0) = std::numeric_limits<float>::quiet_NaN();  // outside the block
    EXPECT_TRUE(attnx::detail::block_finite(m.block(2, 1, 10, 3)));
}

TEST(FeatureMaps, FastExpIsWithinTwoUlpAndKeepsTheSpecialValues) {
    // detail::exp_op<float> (the feature maps' exp): packets through pexp_float_shift, a tail
    // (size not a multiple of the packet) through std::exp. Against the double exp: 2 ulp for
    // x in [−87.33, 88.376), where the result is a normal float (1.25–1.28 ulp measured with SSE2,
    // AVX2 and AVX-512: Cephes' polynomial after a two-part Cody–Waite reduction).
#ifdef EIGEN_VECTORIZE
    static_assert(Eigen::internal::functor_traits<attnx::detail::exp_op<float>>::PacketAccess,
                  "exp_op<float> must reach Eigen's vectorised loops");
    {
        // Whole packets only (an aligned array, 64 entries): the packet path gives +0 for −88
        // (m = −127), where std::exp gives a subnormal (about 6e-39).
        const Eigen::ArrayXf x88 = Eigen::ArrayXf::Constant(64, -88.0f);
        const Eigen::ArrayXf y88 = x88.unaryExpr(attnx::detail::exp_op<float>());
        EXPECT_TRUE((y88 == 0.0f).all()) << "the packet path was not taken: " << y88(0);
        EXPECT_GT(std::exp(-88.0f), 0.0f);
    }
#endif
    const Index n = (Index(1) << 20) + 3;
    Eigen::ArrayXf x(n);
    for (Index i = 0; i < n; ++i) x(i) = -88.5f + 177.0f * static_cast<float>(i) / static_cast<float>(n - 1);
    const Eigen::ArrayXf y = x.unaryExpr(attnx::detail::exp_op<float>());
    const double min_normal = std::numeric_limits<float>::min();
    double worst_ulp = 0, worst_below = 0;
    for (Index i = 0; i < n; ++i) {
        const double exact = std::exp(static_cast<double>(x(i)));
        if (x(i) > 88.37f) {
            // m = 128 from 88.3763 on: +inf, where the true result overflows from 88.7228.
            EXPECT_TRUE(y(i) == std::numeric_limits<float>::infinity() || std::abs(y(i) - exact) <= 2e-7 * exact)
                << "x = " << x(i);
        } else if (exact >= min_normal) {
            const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(exact)) - 23);
            worst_ulp = std::max(worst_ulp, std::abs(y(i) - exact) / ulp);
        } else {
            worst_below = std::max(worst_below, std::abs(y(i) - exact));  // subnormal or flushed
        }
    }
    EXPECT_LE(worst_ulp, 2.0);
    EXPECT_LE(worst_below, min_normal);
    // The special values, in every position of a packet and in the scalar tail.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<std::pair<float, float>> cases = {{-inf, 0.0f}, {-1000.0f, 0.0f}, {-120.0f, 0.0f}, {0.0f, 1.0f},
                                                        {-0.0f, 1.0f}, {89.0f, inf},   {inf, inf}};
    for (const Index size : {Index(1), Index(3), Index(16), Index(35)}) {
        for (Index at = 0; at < size; ++at) {
            for (const auto& [in, want] : cases) {
                Eigen::ArrayXf v = Eigen::ArrayXf::Constant(size, -1.0f);
                v(at) = in;
                const Eigen::ArrayXf out = v.unaryExpr(attnx::detail::exp_op<float>());
                EXPECT_EQ(out(at), want) << "exp(" << in << ") at " << at << " of " << size;
                if (size > 1) {
                    EXPECT_NEAR(out((at + 1) % size), std::exp(-1.0f), 1e-7f);
                }
            }
            Eigen::ArrayXf v = Eigen::ArrayXf::Zero(size);
            v(at) = nan;
            EXPECT_TRUE(std::isnan(v.unaryExpr(attnx::detail::exp_op<float>())(at))) << "NaN at " << at << " of " << size;
        }
    }
    // Double: Eigen's exp.
    const Eigen::ArrayXd xd = Eigen::ArrayXd::LinSpaced(1001, -700.0, 700.0);
    const Eigen::ArrayXd yd = xd.unaryExpr(attnx::detail::exp_op<double>());
    for (Index i = 0; i < xd.size(); ++i) EXPECT_NEAR(yd(i) / std::exp(xd(i)), 1.0, 1e-15) << "x = " << xd(i);
}

TEST(FeatureMaps, ChunkSizeAndThreadCountChangeOnlyRounding) {
    // chunk 64: 24 chunks, in windows of 8 per thread (3, 2 and 1 windows for 1, 2 and 3
    // threads); non-causal: 6 key blocks.
    const Index n = 1500, d = 16, dv = 8;
    const auto x = random_qkv<float>(n, n, d, dv, 41, 1.0);
    const auto prf = favor<float>(d, 64, 6);
    const Eigen::MatrixXd ref = oracle(in_double(prf), to_double(x.q), to_double(x.k), to_double(x.v), 0.25, true);
    LinearAttentionOptions o;
    o.causal = true;
    for (const Index chunk : {1, 7, 64, 1000, 4000}) {
        o.chunk = chunk;
        EXPECT_LE(attnx::compare(attnx::performer_attention(x.q, x.k, x.v, prf, o), ref).rel_fro, Tol<float>::rel)
            << "chunk " << chunk;
    }
#ifdef _OPENMP
    // Bit-identical for 1, 2 and 3 threads: chunk and part bounds depend on n only, and the causal
    // prefix runs over the chunks in order whatever the window.
    const int saved = omp_get_max_threads();
    std::vector<Matrix<float>> results;
    for (const int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        for (const bool causal : {false, true}) {
            o.causal = causal;
            o.chunk = 64;
            results.push_back(attnx::performer_attention(x.q, x.k, x.v, prf, o));
            results.push_back(attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o));
        }
        LinearAttentionState<float, PositiveRandomFeatures<float>> st(prf, d, dv);
        results.push_back(st.prefill(x.q, x.k, x.v));
        results.push_back(st.query(x.q.topRows(300)));
    }
    omp_set_num_threads(saved);
    const std::size_t per = results.size() / 3;
    for (std::size_t t = 1; t < 3; ++t)
        for (std::size_t r = 0; r < per; ++r) EXPECT_TRUE(results[t * per + r] == results[r]) << "thread set " << t << ", result " << r;
#endif
}

#ifdef _OPENMP
TEST(FeatureMaps, CausalRunsOfChunksPerThreadChangeNoBit) {
    // The causal windows give each thread one run of consecutive chunks (the same in both
    // passes), ceil(window / threads) long: sizes where the runs are uneven, where a window has
    // fewer chunks than the team, and where the last window is short. Every case does enough
    // work to run in parallel (min_parallel_flops); results must be bit-identical for 1, 2 and
    // 3 threads, and the one-thread result within rounding of the double oracle.
    struct Case {
        Index n, d, dv, m, chunk;  // m = 0: elu + 1
    };
    const Case cases[] = {
        {100, 64, 64, 256, 50},  // 2 chunks: fewer than 3 threads
        {2363, 16, 8, 64, 64},   // 37 chunks: windows of 16 (2 threads) or 24 (3), the last short
        {2363, 32, 16, 0, 64},   // the same with elu + 1
        {2363, 16, 8, 64, 7},    // 338 chunks: many windows, runs of 8 and a short last one
    };
    const int saved = omp_get_max_threads();
    for (const Case& c : cases) {
        const auto x = random_qkv<float>(c.n, c.n, c.d, c.dv, 43 + static_cast<std::uint64_t>(c.chunk), 1.0);
        LinearAttentionOptions o;
        o.causal = true;
        o.chunk = c.chunk;
        const auto prf = favor<float>(c.d, std::max<Index>(c.m, 1), 8);
        const auto run = [&] {
            return c.m > 0 ? attnx::performer_attention(x.q, x.k, x.v, prf, o)
                           : attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o);
        };
        std::vector<Matrix<float>> results;
        for (const int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            results.push_back(run());
        }
        omp_set_num_threads(saved);
        for (std::size_t t = 1; t < results.size(); ++t)
            EXPECT_TRUE(results[t] == results[0]) << "n " << c.n << ", chunk " << c.chunk << ", m " << c.m << ", "
                                                  << t + 1 << " threads";
        const Eigen::MatrixXd ref =
            c.m > 0 ? oracle(in_double(prf), to_double(x.q), to_double(x.k), to_double(x.v), 1.0 / std::sqrt(double(c.d)), true)
                    : oracle(EluPlusOne{}, to_double(x.q), to_double(x.k), to_double(x.v), 1.0, true);
        EXPECT_LE(attnx::compare(results[0], ref).rel_fro, Tol<float>::rel) << "n " << c.n << ", chunk " << c.chunk;
    }
}
#endif

TEST(FeatureMaps, FavorKernelEstimateFollowsLemma2AndTheorem2) {
    // φ(x)ᵀφ(y) estimates SM(x, y) = exp(xᵀy) (Lemma 1) with MSE (1/m)·exp(‖x+y‖²)·SM²·(1 − exp(−‖x+y‖²))
    // for iid rows (Lemma 2, eq. 8); orthogonal rows lower it by at least
    // 2(m−1)/(m(d+2))·(SM − exp(−(‖x‖² + ‖y‖²)/2))² (Theorem 2, eq. 10). 400 seeded draws (redraw()).
    const Index d = 16, m = 32;
    const int draws = 400;
    auto estimate = [](const PositiveRandomFeatures<double>& f, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
        Eigen::MatrixXd pa(1, f.num_features()), pb(1, f.num_features());
        Eigen::VectorXd ca(1), cb(1);
        f.keys(Eigen::Ref<const Eigen::MatrixXd>(a), 1.0, Eigen::Ref<Eigen::MatrixXd>(pa), Eigen::Ref<Eigen::VectorXd>(ca));
        f.keys(Eigen::Ref<const Eigen::MatrixXd>(b), 1.0, Eigen::Ref<Eigen::MatrixXd>(pb), Eigen::Ref<Eigen::VectorXd>(cb));
        return pa.row(0).dot(pb.row(0)) * std::exp(ca(0) + cb(0));
    };
    for (const double norm : {0.3, 0.5, 0.8}) {
        Eigen::MatrixXd a = attnx::random_normal<double>(1, d, 5, 1), b = attnx::random_normal<double>(1, d, 5, 2);
        a *= norm / a.norm();
        b *= norm / b.norm();
        const double sm = std::exp(a.row(0).dot(b.row(0))), sum_sq = (a + b).squaredNorm();
        const double lemma2 = std::exp(sum_sq) * sm * sm * (1 - std::exp(-sum_sq)) / m;
        const double gain =
            2.0 * (m - 1) / (m * (d + 2.0)) * std::pow(sm - std::exp(-(a.squaredNorm() + b.squaredNorm()) / 2), 2);
        double mse[2] = {0, 0}, se[2] = {0, 0}, bias[2] = {0, 0};
        for (const bool orthogonal : {false, true}) {
            RandomFeatureOptions o;
            o.num_features = m;
            o.orthogonal = orthogonal;
            o.stabilizer = 0;  // the estimator of the lemmas
            auto f = PositiveRandomFeatures<double>::draw(d, 11, o);
            double sum2 = 0, sum4 = 0, sum1 = 0;
            for (int t = 0; t < draws; ++t) {
                const double e = estimate(f, a, b) - sm;
                sum1 += e;
                sum2 += e * e;
                sum4 += e * e * e * e;
                f.redraw();
            }
            const int i = orthogonal ? 1 : 0;
            mse[i] = sum2 / draws;
            se[i] = std::sqrt((sum4 / draws - mse[i] * mse[i]) / draws);  // standard error of the MSE
            bias[i] = sum1 / draws;
        }
        // iid: the MSE within 4 standard errors of Lemma 2 (measured |z| <= 0.7), and unbiased.
        EXPECT_LE(std::abs(mse[0] - lemma2), 4 * se[0]) << "norm " << norm << ": " << mse[0] << " vs " << lemma2;
        EXPECT_LE(std::abs(bias[0]), 4 * std::sqrt(lemma2 / draws)) << "norm " << norm;
        EXPECT_LE(std::abs(bias[1]), 4 * std::sqrt(lemma2 / draws)) << "norm " << norm;
        // Orthogonal: no worse than iid, and within 4 standard errors of Theorem 2's bound or below.
        EXPECT_LE(mse[1], mse[0] + 2 * se[0]) << "norm " << norm;
        EXPECT_LE(mse[1], lemma2 - gain + 4 * se[1]) << "norm " << norm;
    }
}

TEST(FeatureMaps, FavorErrorFallsAsInverseSqrtMOnBoundedInputs) {
    // ‖x‖ <= 1 after the d^(−1/4) scaling: error against exact softmax attention, mean of 4 draws,
    // falls about as m^(−1/2) (measured 0.155 → 0.074 → 0.036 for m = 64 → 256 → 1024 at d = 64; ratio 0.5 per 4x).
    const Index n = 128, d = 64;
    const Eigen::MatrixXd q = bounded_rows(attnx::random_normal<double>(n, d, 3, 1), 7);
    const Eigen::MatrixXd k = bounded_rows(attnx::random_normal<double>(n, d, 3, 2), 5);
    const Eigen::MatrixXd v = attnx::random_normal<double>(n, 8, 3, 3);
    const Eigen::MatrixXd exact = attnx::exact_attention(q, k, v);
    double err[3] = {0, 0, 0};
    const Index ms[3] = {64, 256, 1024};
    for (int i = 0; i < 3; ++i)
        for (std::uint64_t seed = 0; seed < 4; ++seed)
            err[i] += attnx::compare(attnx::performer_attention(q, k, v, favor<double>(d, ms[i], 100 + seed)), exact).rel_fro / 4;
    EXPECT_LT(err[0], 0.3);
    for (int i = 0; i < 2; ++i) {
        EXPECT_GT(err[i + 1] / err[i], 0.3) << "m = " << ms[i];
        EXPECT_LT(err[i + 1] / err[i], 0.7) << "m = " << ms[i];
    }
}

TEST(FeatureMaps, RandomFeaturesAreSeededOrthogonalBlocksWithChiNorms) {
    const Index d = 16, m = 88;  // 5 full blocks and a partial one of 8 rows
    RandomFeatureOptions o;
    o.num_features = m;
    const auto f = PositiveRandomFeatures<double>::draw(d, 7, o);
    ASSERT_EQ(f.num_features(), m);
    ASSERT_EQ(f.dim(), d);
    const Eigen::MatrixXd& w = f.matrix();
    for (Index b = 0; b * d < m; ++b) {
        const Index rows = std::min(d, m - b * d);
        const Eigen::MatrixXd blk = w.middleRows(b * d, rows);
        const Eigen::VectorXd norms = blk.rowwise().norm();
        const Eigen::MatrixXd gram = norms.cwiseInverse().asDiagonal() * (blk * blk.transpose()) * norms.cwiseInverse().asDiagonal();
        EXPECT_LE((gram - Eigen::MatrixXd::Identity(rows, rows)).cwiseAbs().maxCoeff(), 1e-13) << "block " << b;
    }
    // Chi(d) norms: E‖ω‖² = d, sd sqrt(2d) = 5.7; over 1024 rows the mean is d ± 0.18 (1 sd).
    o.num_features = 1024;
    const auto big = PositiveRandomFeatures<double>::draw(d, 8, o);
    const double mean_sq = big.matrix().rowwise().squaredNorm().mean();
    EXPECT_NEAR(mean_sq, static_cast<double>(d), 0.8);
    EXPECT_GT(big.matrix().rowwise().norm().maxCoeff() - big.matrix().rowwise().norm().minCoeff(), 2.0);
    o.norms = attnx::FeatureNorms::SqrtD;
    const auto fixed = PositiveRandomFeatures<double>::draw(d, 8, o);
    EXPECT_LE((fixed.matrix().rowwise().norm().array() - std::sqrt(static_cast<double>(d))).abs().maxCoeff(), 1e-12);
    o.orthogonal = false;  // iid rows, normalised to sqrt(d)
    EXPECT_LE((PositiveRandomFeatures<double>::draw(d, 8, o).matrix().rowwise().norm().array() - 4.0).abs().maxCoeff(), 1e-12);

    // Seeded: the same seed gives the same W bit for bit; redraw() moves to the next draw.
    auto a = PositiveRandomFeatures<float>::draw(d, 99), b = PositiveRandomFeatures<float>::draw(d, 99);
    EXPECT_EQ(a.num_features(), 256);  // paper default
    EXPECT_TRUE(a.matrix() == b.matrix());
    EXPECT_FALSE(a.matrix() == PositiveRandomFeatures<float>::draw(d, 98).matrix());
    a.redraw();
    EXPECT_EQ(a.draw_index(), 1u);
    EXPECT_FALSE(a.matrix() == b.matrix());
    b.redraw();
    EXPECT_TRUE(a.matrix() == b.matrix());
    // An imported W gives the same attention as the drawn one.
    const auto x = random_qkv<float>(20, 20, d, 4, 3, 1.0);
    const auto imported = PositiveRandomFeatures<float>::from_matrix(a.matrix());
    EXPECT_FALSE(imported.seeded());
    EXPECT_TRUE(attnx::performer_attention(x.q, x.k, x.v, imported) == attnx::performer_attention(x.q, x.k, x.v, a));
}

TEST(FeatureMaps, MechanismValuesDescribeThemselves) {
    attnx::Linear<> lin;
    EXPECT_EQ(lin.name(), "linear");
    EXPECT_EQ(lin.parameters(), "elu(x) + 1");
    lin.options.causal = true;
    EXPECT_EQ(lin.parameters(), "elu(x) + 1, causal, chunk 64");  // chunk: the causal algorithm's only
    const attnx::Performer<float> perf{PositiveRandomFeatures<float>::draw(8, 1), {}};
    EXPECT_EQ(perf.name(), "performer");
    EXPECT_EQ(perf.parameters(), "FAVOR+ m = 256, orthogonal, seed 1");
    static_assert(attnx::is_mechanism<attnx::Linear<PositiveRandomFeatures<float>>>::value, "Linear over FAVOR+");
}

/// elu + 1 whose keys() throws on its first call: a user map that fails inside the region.
struct ThrowingKeysMap {
    static constexpr bool uses_scale = false;
    Index feature_dim(Index d) const { return d; }
    void queries(const Eigen::Ref<const Matrix<float>>& x, double scale, Eigen::Ref<Matrix<float>> phi) const {
        EluPlusOne{}.queries<float>(x, scale, phi);
    }
    void keys(const Eigen::Ref<const Matrix<float>>&, double, Eigen::Ref<Matrix<float>>, Eigen::Ref<Vector<float>>) const {
        throw std::runtime_error("keys failed");
    }
};

/// elu + 1 whose features are infinite for a finite key with x(0) > 100 (a map that overflows on
/// finite input); Finite says whether it declares finite_features (a true claim would be false).
template <bool Finite>
struct OverflowingKeysMap {
    static constexpr bool uses_scale = false;
    static constexpr bool finite_features = Finite;
    Index feature_dim(Index d) const { return d; }
    void queries(const Eigen::Ref<const Matrix<float>>& x, double scale, Eigen::Ref<Matrix<float>> phi) const {
        EluPlusOne{}.queries<float>(x, scale, phi);
    }
    void keys(const Eigen::Ref<const Matrix<float>>& x, double scale, Eigen::Ref<Matrix<float>> phi,
              Eigen::Ref<Vector<float>> log_scale) const {
        EluPlusOne{}.keys<float>(x, scale, phi, log_scale);
        for (Index i = 0; i < x.rows(); ++i)
            if (x(i, 0) > 100) phi.row(i).setConstant(std::numeric_limits<float>::infinity());
    }
};

/// Optional members of the wrong kind (see FeatureScanSkippedOnlyForMapsFiniteOnFiniteInput).
struct IntFlag {
    static constexpr int finite_features = 2;
};
struct RuntimeFlag {
    bool uses_scale = false;
};
struct GoodFlags {
    static constexpr bool uses_scale = false;
    static constexpr bool finite_features = true;
};

TEST(FeatureMaps, FeatureScanSkippedOnlyForMapsFiniteOnFiniteInput) {
    // elu + 1 is finite on finite input, so with the inputs scanned its features are not scanned
    // again; FAVOR+ and maps that do not say so are.
    static_assert(attnx::detail::map_finite_features<EluPlusOne>::value, "elu + 1");
    static_assert(!attnx::detail::map_finite_features<PositiveRandomFeatures<float>>::value, "FAVOR+");
    static_assert(!attnx::detail::map_finite_features<ThrowingKeysMap>::value, "absent: false");
    // The optional members must be static constexpr bool: anything else is rejected by a
    // static_assert with a message in the entry points (optional_members_ok), not deep inside.
    static_assert(!attnx::detail::optional_members_ok<IntFlag>::value, "int");
    static_assert(!attnx::detail::optional_members_ok<RuntimeFlag>::value, "not static");
    static_assert(attnx::detail::optional_members_ok<GoodFlags>::value, "static constexpr bool");
    static_assert(attnx::detail::optional_members_ok<ThrowingKeysMap>::value, "finite_features absent");
    static_assert(!attnx::detail::map_finite_features<IntFlag>::value && attnx::detail::map_uses_scale<RuntimeFlag>::value,
                  "an unusable member counts as absent");
    using E = attnx::invalid_argument;
    const auto x = random_qkv<float>(300, 300, 8, 4, 17, 1.0);
    Matrix<float> k = x.k;
    k(250, 0) = 1000;
    for (const bool causal : {false, true}) {
        LinearAttentionOptions o;
        o.causal = causal;
        // Without the claim the features are scanned: the map is named with the key row.
        EXPECT_THAT([&] { attnx::linear_attention(x.q, k, x.v, OverflowingKeysMap<false>{}, o); },
                    ThrowsMessage<E>(AllOf(HasSubstr("the feature map (custom feature map) overflowed float"),
                                           HasSubstr("key row 250 is not finite"), HasSubstr("max|k| = 1e+03"))))
            << causal;
        // A false claim still cannot give a silent NaN: the output check reports it.
        EXPECT_THAT([&] { attnx::linear_attention(x.q, k, x.v, OverflowingKeysMap<true>{}, o); },
                    ThrowsMessage<E>(HasSubstr("the result overflowed float")))
            << causal;
        // And both agree with elu + 1 where the features are finite.
        EXPECT_EQ(attnx::linear_attention(x.q, x.k, x.v, OverflowingKeysMap<true>{}, o),
                  attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o));
    }
}

TEST(FeatureMaps, OverflowedSumsAreReportedEvenWhenTheOutputLooksFinite) {
    // elu + 1 in float with q = k = 1e18 (accepted: the engine has no logit bound) and v = 0.01:
    // the numerators (about 5e37) fit in float, the denominators (about 5e39) do not, and
    // num / Inf = 0 gave a finite, wrong zero row (the answer is 0.01) that a scan of the output
    // cannot see. Every path must report it.
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const Index n = 300, d = 16;
    const M big = M::Constant(n, d, 1e18f), v = M::Constant(n, 4, 0.01f);
    const auto overflow = ThrowsMessage<E>(AllOf(HasSubstr("the result overflowed float"), HasSubstr("max|k| = 1e+18")));
    for (const bool causal : {false, true}) {
        LinearAttentionOptions o;
        o.causal = causal;
        EXPECT_THAT([&] { attnx::linear_attention(big, big, v, EluPlusOne{}, o); }, overflow) << causal;
    }
    LinearAttentionState<float, EluPlusOne> st(EluPlusOne{}, d, 4);
    EXPECT_THAT([&] { st.prefill(big, big, v); }, overflow);
    EXPECT_EQ(st.tokens(), 0);  // a prefill that throws changes nothing
    st.prefill(big, v);         // the state's sums themselves fit (z is about 3e20)
    EXPECT_THAT([&] { st.query(big.topRows(3)); },  // the keys and values came with an earlier call
                ThrowsMessage<E>(AllOf(HasSubstr("the result overflowed float"),
                                       HasSubstr("max|q| = 1e+18; the keys and values were absorbed before"))));
    EXPECT_THAT([&] { st.step(big.row(0), big.row(0), v.row(0)); }, overflow);
    // One scale down everything fits, and the output is the exact 0.01.
    const M fine = M::Constant(n, d, 1e15f);
    EXPECT_NEAR(attnx::linear_attention(fine, fine, v, EluPlusOne{}).maxCoeff(), 0.01f, 1e-8f);
}

TEST(FeatureMaps, PrefillWithoutOutputsReportsAnOverflowedStateAndKeepsItsState) {
    // prefill(K, V) computes no output to scan: its own sums are checked before the state changes.
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const auto x = random_qkv<float>(200, 200, 8, 4, 29, 1.0);
    LinearAttentionState<float, EluPlusOne> st(EluPlusOne{}, 8, 4);
    st.prefill(x.k.topRows(10), x.v.topRows(10));
    const M before = st.sums();
    const M huge_k = M::Constant(200, 8, 1e30f), huge_v = M::Constant(200, 4, 1e10f);  // S = 2e42
    EXPECT_THAT([&] { st.prefill(huge_k, huge_v); },
                ThrowsMessage<E>(AllOf(HasSubstr("prefill: the result overflowed float"),
                                       HasSubstr("a sum of the state [S | z] is not finite although every input is "
                                                 "finite; max|k| = 1e+30, max|v| = 1e+10)"))));
    EXPECT_EQ(st.tokens(), 10);
    EXPECT_EQ(st.sums(), before);
    // A map that wrongly claims finite_features skips the feature scan, and is still caught here.
    M k = x.k;
    k(150, 0) = 1000;
    LinearAttentionState<float, OverflowingKeysMap<true>> liar(OverflowingKeysMap<true>{}, 8, 4);
    EXPECT_THAT([&] { liar.prefill(k, x.v); }, ThrowsMessage<E>(HasSubstr("a sum of the state [S | z] is not finite")));
    EXPECT_EQ(liar.tokens(), 0);
    LinearAttentionState<float, OverflowingKeysMap<false>> honest(OverflowingKeysMap<false>{}, 8, 4);
    EXPECT_THAT([&] { honest.prefill(k, x.v); }, ThrowsMessage<E>(HasSubstr("key row 150 is not finite")));
}

// The input scan is fused into the kernel's reads (each block scanned while in cache): every
// row must still be covered, whichever pass reads it or whether a pass reads it at all.
TEST(FeatureMaps, FusedInputScanFindsEveryNonFiniteEntry) {
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const auto prf = favor<float>(8, 16, 2);
    // {n_q, n_k, chunk}: several causal windows and a ragged last chunk (n_k = 300, chunk 7);
    // n_q > n_k, where causal rows 0 .. n_q − n_k − 1 see no key and pass 2 never reads them;
    // several non-causal key blocks (n_k > 256).
    const Index shapes[][3] = {{300, 300, 7}, {40, 25, 16}, {20, 600, 64}};
    for (const auto& sh : shapes) {
        const auto x = random_qkv<float>(sh[0], sh[1], 8, 4, 70 + static_cast<std::uint64_t>(sh[1]), 1.0);
        for (const bool causal : {false, true}) {
            for (const bool masked : {false, true}) {
                LinearAttentionOptions o;
                o.causal = causal;
                o.chunk = sh[2];
                if (masked) {  // padded keys must be finite too (the first, and one near the end)
                    o.key_padding_mask.assign(static_cast<std::size_t>(sh[1]), false);
                    o.key_padding_mask[0] = o.key_padding_mask[static_cast<std::size_t>(sh[1] - 2)] = true;
                }
                const std::string where = std::to_string(sh[0]) + "x" + std::to_string(sh[1]) +
                                          (causal ? " causal" : "") + (masked ? " masked" : "");
                // First row, last row, and (for k and v) a padded row.
                for (const Index row : {Index(0), Index(-1), Index(-2)}) {
                    for (const char which : {'q', 'k', 'v'}) {
                        M q = x.q, k = x.k, v = x.v;
                        M& m = which == 'q' ? q : which == 'k' ? k : v;
                        const Index r = row >= 0 ? row : m.rows() + row;
                        const Index c = m.cols() - 1;
                        m(r, c) = row == -1 ? inf : nan;
                        const std::string want = testing_support::non_finite_entry(which, m.rows(), m.cols(), r, c);
                        EXPECT_THAT([&] { attnx::linear_attention(q, k, v, EluPlusOne{}, o); },
                                    ThrowsMessage<E>(HasSubstr(want)))
                            << where;
                        M out(q.rows(), v.cols());
                        EXPECT_THAT([&] { attnx::performer_attention(q, k, v, prf, out, o); },
                                    ThrowsMessage<E>(HasSubstr(want)))
                            << where;
                        // A map that throws inside the kernel does not hide the bad input (as when
                        // the scan ran before the work); with finite inputs its own error comes out.
                        EXPECT_THAT([&] { attnx::linear_attention(q, k, v, ThrowingKeysMap{}, o); },
                                    ThrowsMessage<E>(HasSubstr(want)))
                            << where;
                        EXPECT_THAT([&] { attnx::linear_attention(x.q, x.k, x.v, ThrowingKeysMap{}, o); },
                                    ThrowsMessage<std::runtime_error>(HasSubstr("keys failed")))
                            << where;
                        // check_finite off: no scan, no throw for a NaN the map turns finite.
                        LinearAttentionOptions off = o;
                        off.check_finite = false;
                        EXPECT_NO_THROW(attnx::linear_attention(q, k, v, EluPlusOne{}, off)) << where;
                    }
                }
            }
        }
    }
}

TEST(FeatureMaps, DecodeStateScanFindsEveryNonFiniteEntryAndKeepsItsState) {
    // prefill and query scan their inputs as the kernel reads them (chunks, query tiles): a NaN
    // or Inf anywhere is named, and the state is left as it was.
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const auto prf = favor<float>(8, 16, 3);
    const Index n = 300;  // several chunks of 64 and windows, a partial last chunk
    const auto x = random_qkv<float>(n, n, 8, 4, 91, 1.0);
    LinearAttentionState<float, PositiveRandomFeatures<float>> st(prf, 8, 4);
    st.prefill(x.k.topRows(10), x.v.topRows(10));
    const M before = st.sums();
    for (const Index row : {Index(0), Index(63), n - 1}) {
        for (const char which : {'q', 'k', 'v'}) {
            M q = x.q, k = x.k, v = x.v;
            M& m = which == 'q' ? q : which == 'k' ? k : v;
            const Index c = m.cols() - 1;
            m(row, c) = row == n - 1 ? inf : nan;
            const std::string want = testing_support::non_finite_entry(which, n, m.cols(), row, c);
            EXPECT_THAT([&] { st.prefill(q, k, v); }, ThrowsMessage<E>(HasSubstr(want))) << want;
            if (which == 'q') {
                EXPECT_THAT([&] { st.query(q); }, ThrowsMessage<E>(HasSubstr(want))) << want;
            } else {
                EXPECT_THAT([&] { st.prefill(k, v); }, ThrowsMessage<E>(HasSubstr(want))) << want;
            }
            EXPECT_EQ(st.tokens(), 10);
            EXPECT_EQ(st.sums(), before);
        }
    }
}

TEST(FeatureMaps, BadInputThrowsNamingArgumentAndSizes) {
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const auto x = random_qkv<float>(10, 12, 8, 4, 1, 1.0);
    const auto prf = favor<float>(8, 16, 1);
    auto lin = [&](const LinearAttentionOptions& o) { return [=] { attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, o); }; };
    auto perf = [&](const PositiveRandomFeatures<float>& f, const LinearAttentionOptions& o = {}) {
        return [=] { attnx::performer_attention(x.q, x.k, x.v, f, o); };
    };
    EXPECT_NO_THROW(lin({})());
    EXPECT_NO_THROW(perf(prf)());
    // Options: eps, chunk, scale with a map that has none, the mask length.
    LinearAttentionOptions o;
    for (const double eps : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        o.eps = eps;
        EXPECT_THAT(lin(o), ThrowsMessage<E>(AllOf(HasSubstr("attnx::linear_attention: eps ("),
                                                   HasSubstr(") must be finite and > 0"))));
    }
    o = {};
    o.chunk = 0;
    EXPECT_THAT(perf(prf, o), ThrowsMessage<E>(HasSubstr("attnx::performer_attention: chunk (0) must be >= 1")));
    o = {};
    o.scale = 0.5;
    EXPECT_THAT(lin(o), ThrowsMessage<E>(HasSubstr("scale is set (0.5) but the feature map elu(x) + 1 does not use one")));
    EXPECT_NO_THROW(perf(prf, o)());
    o.scale = -1.0;
    EXPECT_THAT(perf(prf, o), ThrowsMessage<E>(HasSubstr("scale (-1) must be finite and > 0")));
    o = {};
    o.key_padding_mask.assign(11, false);
    EXPECT_THAT(lin(o), ThrowsMessage<E>(HasSubstr("key_padding_mask has length 11 but there are n_k = k.rows() = 12 keys")));
    // The features: wrong width, empty (default-constructed, moved-from), m < 1, bad stabilizer, NaN W.
    EXPECT_THAT(perf(favor<float>(6, 16, 1)),
                ThrowsMessage<E>(HasSubstr("attnx::performer_attention: PositiveRandomFeatures: W is m x d = 16x6 but q "
                                           "and k have d = 8 columns")));
    EXPECT_THAT(perf(PositiveRandomFeatures<float>()),
                ThrowsMessage<E>(HasSubstr("PositiveRandomFeatures: the features are empty (W is 0x0")));
    auto moved = favor<float>(8, 16, 1);
    const auto taken = std::move(moved);
    EXPECT_EQ(taken.num_features(), 16);
    EXPECT_THAT(perf(moved), ThrowsMessage<E>(HasSubstr("the features are empty")));  // NOLINT(bugprone-use-after-move)
    EXPECT_THAT([] { favor<float>(8, 0, 1); },
                ThrowsMessage<E>(HasSubstr("PositiveRandomFeatures::draw: num_features (m = 0) must be >= 1")));
    EXPECT_THAT([] { favor<float>(0, 4, 1); }, ThrowsMessage<E>(HasSubstr("PositiveRandomFeatures::draw: d (0) must be >= 1")));
    RandomFeatureOptions ro;
    ro.stabilizer = -1e-6;
    EXPECT_THAT([&] { PositiveRandomFeatures<float>::draw(8, 1, ro); },
                ThrowsMessage<E>(HasSubstr("stabilizer (-1e-06) must be finite and >= 0")));
    M w = prf.matrix();
    w(3, 2) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT([&] { PositiveRandomFeatures<float>::from_matrix(w); },
                ThrowsMessage<E>(HasSubstr("from_matrix: w (16x8) has a non-finite entry w(3, 2) = nan")));
    EXPECT_THAT([] { PositiveRandomFeatures<float>::from_matrix(M(0, 8)); }, ThrowsMessage<E>(HasSubstr("w is empty (0x8)")));
    EXPECT_THAT([&] { PositiveRandomFeatures<float>::from_matrix(prf.matrix()).redraw(); },
                ThrowsMessage<E>(HasSubstr("redraw: these features have no seed (from_matrix)")));
    // A feature map whose output overflows (FAVOR+ in float: W q is infinite for |q| = 3e38, and
    // ‖x‖² for |k| = 1e20; a query row only needs W q, its ‖x‖² cancels).
    M big = x.q;
    big.row(4).setConstant(3e38f);
    EXPECT_THAT([&] { attnx::performer_attention(big, x.k, x.v, prf); },
                ThrowsMessage<E>(AllOf(HasSubstr("the feature map (FAVOR+ m = 16"), HasSubstr("overflowed float"),
                                       HasSubstr("query row 4 is not finite"), HasSubstr("max|q| = 3e+38"))));
    M bigk = x.k;
    bigk.row(9).setConstant(-1e20f);
    EXPECT_THAT([&] { attnx::performer_attention(x.q, bigk, x.v, prf); },
                ThrowsMessage<E>(AllOf(HasSubstr("key row 9 is not finite"), HasSubstr("max|k| = 1e+20"))));
    // A result that overflows (sums of huge values) and non-finite inputs.
    M hugev = x.v;
    hugev.setConstant(3e38f);
    // The kernels' fused scan checks finiteness only; the magnitudes the message names are found
    // on the failure path, and must be the inputs' own.
    EXPECT_THAT([&] { attnx::linear_attention(x.q, x.k, hugev, EluPlusOne{}); },
                ThrowsMessage<E>(AllOf(HasSubstr("the result overflowed float"), HasSubstr("max|v| = 3e+38"))));
    {
        // The output is checked block by block as the kernels write it (no pass over it after the
        // work): an overflow confined to the rows of one late chunk is found on every path,
        // causal across several windows (n = 1400 at chunk 8: 175 chunks), prefill and query.
        const Index nl = 1400;
        const auto xl = random_qkv<float>(nl, nl, 8, 4, 43, 1.0);
        M late = xl.v;
        late.row(nl - 5).setConstant(3e38f);  // φ(k) v overflows: the last five rows (causal) go non-finite
        LinearAttentionOptions lo;
        lo.chunk = 8;
        lo.causal = true;
        for (const bool causal : {true, false}) {
            lo.causal = causal;
            EXPECT_THAT([&] { attnx::linear_attention(xl.q, xl.k, late, EluPlusOne{}, lo); },
                        ThrowsMessage<E>(HasSubstr("the result overflowed float"))) << "causal " << causal;
        }
        LinearAttentionState<float, EluPlusOne> ls(EluPlusOne{}, 8, 4, lo);
        EXPECT_THAT([&] { ls.prefill(xl.q, xl.k, late); },
                    ThrowsMessage<E>(AllOf(HasSubstr("the result overflowed float"), HasSubstr("max|v| = 3e+38"))));
        LinearAttentionState<float, EluPlusOne> frozen(EluPlusOne{}, 8, 4, lo);
        // Without outputs the state's own sums are checked (they overflow here), before it changes.
        EXPECT_THAT([&] { frozen.prefill(xl.k, late); }, ThrowsMessage<E>(HasSubstr("a sum of the state [S | z]")));
        EXPECT_EQ(frozen.tokens(), 0);
        // query: a state whose sums fit (S up to about 5e35), one late query row of 1e5 whose
        // output overflows (about 4e39) while the others' stay below 2e37.
        M tall = xl.v;
        tall.row(nl - 5).setConstant(1e35f);
        frozen.prefill(xl.k, tall);
        M bigq = xl.q;
        bigq.row(nl - 5).setConstant(1e5f);
        EXPECT_TRUE(frozen.query(xl.q).allFinite());
        EXPECT_THAT([&] { frozen.query(bigq); }, ThrowsMessage<E>(HasSubstr("the result overflowed float")));
        // Below the overflow nothing is reported.
        late.row(nl - 5).setConstant(1e30f);
        EXPECT_TRUE(attnx::linear_attention(xl.q, xl.k, late, EluPlusOne{}, lo).allFinite());
    }
    M nan_k = x.k;
    nan_k(2, 1) = std::numeric_limits<float>::infinity();
    EXPECT_THAT([&] { attnx::linear_attention(x.q, nan_k, x.v, EluPlusOne{}); },
                ThrowsMessage<E>(HasSubstr("k (12x8) has a non-finite entry k(2, 1) = inf")));
    // Shapes.
    M out(3, 3);
    EXPECT_THAT([&] { attnx::linear_attention(x.q, x.k, x.v, EluPlusOne{}, out); },
                ThrowsMessage<E>(HasSubstr("out is 3x3 but must be n_q x d_v = 10x4")));
    EXPECT_THAT([&] { attnx::linear_attention(x.q, M::Ones(12, 5), x.v, EluPlusOne{}); },
                ThrowsMessage<E>(HasSubstr("k has 5 columns but q has 8")));
    // The decode state.
    using State = LinearAttentionState<float, PositiveRandomFeatures<float>>;
    EXPECT_THAT([&] { State(prf, 6, 4); }, ThrowsMessage<E>(HasSubstr("LinearAttentionState: PositiveRandomFeatures: W is m x d = 16x8")));
    EXPECT_THAT([&] { State(prf, 8, 0); }, ThrowsMessage<E>(HasSubstr("LinearAttentionState: dv (0) must be >= 1")));
    LinearAttentionOptions masked;
    masked.key_padding_mask.assign(3, false);
    EXPECT_THAT([&] { State(prf, 8, 4, masked); }, ThrowsMessage<E>(HasSubstr("key_padding_mask must be empty for a decode state")));
    State st(prf, 8, 4);
    EXPECT_THAT([&] { st.step(x.q.row(0), x.k.row(0), x.v.row(0).head(3)); },
                ThrowsMessage<E>(HasSubstr("step: v is 1x3 but must be a vector of 4 entries")));
    EXPECT_THAT([&] { st.prefill(x.q, x.k, x.v); },
                ThrowsMessage<E>(HasSubstr("prefill: q has 10 rows but k has 12 (prefill with outputs needs one query per new token)")));
    EXPECT_THAT([&] { st.prefill(x.k, M::Ones(12, 5)); },
                ThrowsMessage<E>(HasSubstr("prefill: v has 5 columns but the state was made for dv = 4")));
    EXPECT_THAT([&] { st.step(big.row(4), x.k.row(0), x.v.row(0)); }, ThrowsMessage<E>(HasSubstr("overflowed float")));
    EXPECT_EQ(st.tokens(), 0);  // nothing absorbed by the failed step
    State gone = std::move(st);
    EXPECT_THAT([&] { st.step(x.q.row(0), x.k.row(0), x.v.row(0)); },  // NOLINT(bugprone-use-after-move)
                ThrowsMessage<E>(HasSubstr("step: the state is empty")));
    EXPECT_NO_THROW(gone.step(x.q.row(0), x.k.row(0), x.v.row(0)));
    // Derived from std::invalid_argument.
    EXPECT_THROW(perf(PositiveRandomFeatures<float>())(), std::invalid_argument);
    // The default mechanism value holds empty features.
    EXPECT_THAT([&] { attnx::Performer<float>{}(x.q, x.k, x.v); }, ThrowsMessage<E>(HasSubstr("the features are empty")));
}
