// SPDX-License-Identifier: MIT
// Nyström attention: conformance with the HuggingFace reference vectors (outputs, landmarks,
// pseudoinverse and its residuals), the exact limit m = n, quality as m and the iterations grow,
// padding equivalence, the convolution skip connection, and every documented error.
#include <attnx/exact.hpp>
#include <attnx/nystrom.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::Index;
using attnx::Matrix;
using attnx::NystromOptions;
using attnx::NystromReport;
using attnx::PinvMethod;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::load;
using testing_support::random_qkv;

namespace {

NystromOptions options_for(const nlohmann::json& c) {
    NystromOptions o;
    o.num_landmarks = c.at("m").get<Index>();
    o.pinv_iterations = c.at("pinv_iterations").get<int>();
    return o;
}

std::vector<double> conv_weights(const std::string& name) {
    const Eigen::MatrixXd w = load(name, "conv_weight");
    return std::vector<double>(w.data(), w.data() + w.size());
}

}  // namespace

TEST(NystromConformance, MatchesHuggingFaceIterativeReference) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "nystrom_f64")) continue;
        const nlohmann::json c = testing_support::manifest_case(name);
        const Eigen::MatrixXd q = load(name, "q"), k = load(name, "k"), v = load(name, "v");
        const Eigen::MatrixXd want = load(name, "nystrom_f64");
        const NystromOptions o = options_for(c);
        // float: the manifest's f32_vs_f64 is 1e-7..1e-6 for PyTorch float; 1e-5 is the agreed bar.
        const Matrix<float> got_f =
            attnx::nystrom_attention(Matrix<float>(q.cast<float>()), Matrix<float>(k.cast<float>()),
                                     Matrix<float>(v.cast<float>()), o);
        EXPECT_LE(attnx::compare(got_f, want).rel_fro, 1e-5) << name;
        // double: same arithmetic up to evaluation order (we form Z (B V) first); A's condition
        // number (<= 2e5) times eps_double bounds the difference well below 1e-9.
        EXPECT_LE(attnx::compare(attnx::nystrom_attention(q, k, v, o), want).rel_fro, 1e-9) << name;
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}

TEST(NystromConformance, ConvSkipConnection) {
    const std::string name = "n256_d64_m16_conv";
    const nlohmann::json c = testing_support::manifest_case(name);
    const Eigen::MatrixXd q = load(name, "q"), k = load(name, "k"), v = load(name, "v");
    const Eigen::MatrixXd want = load(name, "nystrom_conv_f64");
    NystromOptions o = options_for(c);
    o.conv_kernel = conv_weights(name);
    ASSERT_EQ(o.conv_kernel.size(), 33u);
    EXPECT_LE(attnx::compare(attnx::nystrom_attention(q, k, v, o), want).rel_fro, 1e-9);
    const Matrix<float> got_f = attnx::nystrom_attention(Matrix<float>(q.cast<float>()), Matrix<float>(k.cast<float>()),
                                                         Matrix<float>(v.cast<float>()), o);
    EXPECT_LE(attnx::compare(got_f, want).rel_fro, 1e-5);
}

TEST(NystromConformance, ExactPinvReferenceInDouble) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "nystrom_exactpinv_f64")) continue;
        const nlohmann::json c = testing_support::manifest_case(name);
        const double cond = c.at("metrics").at("nystrom_diagnostics").at("cond_kernel_2").get<double>();
        NystromOptions o = options_for(c);
        o.pinv = PinvMethod::Exact;
        const Eigen::MatrixXd out = attnx::nystrom_attention(load(name, "q"), load(name, "k"), load(name, "v"), o);
        // Inverting A loses about cond(A) * eps_double of relative accuracy; the two pseudoinverses
        // (SVD in torch, complete orthogonal decomposition here) differ by that much.
        EXPECT_LE(attnx::compare(out, load(name, "nystrom_exactpinv_f64")).rel_fro, std::max(1e-8, cond * 1e-12))
            << name << " cond " << cond;
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}

TEST(NystromConformance, LandmarksPseudoinverseAndResiduals) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "nystrom_z_iterative_f64")) continue;
        const nlohmann::json c = testing_support::manifest_case(name);
        const Eigen::MatrixXd q = load(name, "q"), k = load(name, "k"), v = load(name, "v");
        const Index m = c.at("m").get<Index>();
        const double quarter = std::pow(static_cast<double>(q.cols()), -0.25);
        // Landmarks: HF takes means of Q / d^(1/4); ours are means of Q (the scale is applied later).
        const Eigen::MatrixXd ql = attnx::detail::segment_means<double>(q, {}, m) * quarter;
        const Eigen::MatrixXd kl = attnx::detail::segment_means<double>(k, {}, m) * quarter;
        EXPECT_LE(attnx::compare(ql, load(name, "nystrom_q_landmarks_f64")).rel_fro, 1e-14) << name;
        EXPECT_LE(attnx::compare(kl, load(name, "nystrom_k_landmarks_f64")).rel_fro, 1e-14) << name;
        const Eigen::MatrixXd a = load(name, "nystrom_kernel_2_f64");
        // Z after 6 iterations: the same sequence of products; rounding grows with cond(A).
        EXPECT_LE(attnx::compare(attnx::detail::iterative_pinv<double>(a, 6), load(name, "nystrom_z_iterative_f64")).rel_fro,
                  1e-9)
            << name;
        // The report's residuals equal the manifest's, iteration count by iteration count.
        for (const auto& item : c.at("metrics").at("nystrom_diagnostics").at("pinv_residual_by_iterations").items()) {
            NystromOptions o = options_for(c);
            o.pinv_iterations = std::stoi(item.key());
            NystromReport rep;
            attnx::nystrom_attention(q, k, v, o, &rep);
            const double want_az = item.value().at("I_minus_AZ_fro").get<double>();
            const double want_aza = item.value().at("AZA_minus_A_fro").get<double>();
            EXPECT_EQ(rep.pinv_iterations, o.pinv_iterations);
            // Relative 1e-6, or absolute 1e-12 where the residual has converged to rounding level.
            EXPECT_NEAR(rep.pinv_residual, want_az, std::max(1e-12, 1e-6 * want_az)) << name << " it " << item.key();
            EXPECT_NEAR(rep.pinv_residual_aza, want_aza, std::max(1e-12, 1e-6 * want_aza)) << name << " it " << item.key();
        }
        ++checked;
    }
    EXPECT_EQ(checked, 3);
}

TEST(NystromLimit, LandmarksEqualToKeysWithExactPinvIsExactAttention) {
    // m = n: every landmark is one token, A = B = softmax(s Q Kᵀ), and F A⁺ A V = F V.
    for (Index n : {32, 64}) {
        const auto x = random_qkv<double>(n, n, 16, 16, 77, 1.0);
        NystromOptions o;
        o.num_landmarks = n;
        o.pinv = PinvMethod::Exact;
        NystromReport rep;
        const Eigen::MatrixXd got = attnx::nystrom_attention(x.q, x.k, x.v, o, &rep);
        const Eigen::MatrixXd want = attnx::exact_attention(x.q, x.k, x.v);
        EXPECT_LE(attnx::compare(got, want).rel_fro, 1e-9) << "n = " << n;
        EXPECT_LT(rep.pinv_residual, 1e-8);
        // float: A is formed in float (rel. error ~1e-7) and inverted; cond(A) here is ~1e2
        // (logit std ~1), so the result is within ~cond * 1e-7 = 1e-5; 1e-4 leaves margin.
        const auto xf = random_qkv<float>(n, n, 16, 16, 77, 1.0);
        const Matrix<float> gf = attnx::nystrom_attention(xf.q, xf.k, xf.v, o);
        EXPECT_LE(attnx::compare(gf, attnx::exact_attention(xf.q, xf.k, xf.v)).rel_fro, 1e-4) << "n = " << n;
    }
    // Cross-attention with m = n_k < n_q: K̃ = K, so the same identity holds.
    const auto x = random_qkv<double>(70, 20, 8, 5, 78, 1.0);
    NystromOptions o;
    o.num_landmarks = 20;
    o.pinv = PinvMethod::Exact;
    EXPECT_LE(attnx::compare(attnx::nystrom_attention(x.q, x.k, x.v, o), attnx::exact_attention(x.q, x.k, x.v)).rel_fro,
              1e-9);
}

TEST(NystromQuality, ErrorFallsAsLandmarksGrow) {
    // The low-rank conformance input; the manifest records the f64 error for each m.
    const std::string name = "lowrank_n1024_d64_m64";
    const nlohmann::json sweep =
        testing_support::manifest_case(name).at("metrics").at("nystrom_diagnostics").at("m_sweep_f64");
    const Eigen::MatrixXd q = load(name, "q"), k = load(name, "k"), v = load(name, "v");
    const Eigen::MatrixXd exact = load(name, "exact_f64");
    double previous = std::numeric_limits<double>::infinity();
    for (Index m : {16, 32, 64, 128}) {
        NystromOptions o;
        o.num_landmarks = m;
        const double err = attnx::compare(attnx::nystrom_attention(q, k, v, o), exact).rel_fro;
        EXPECT_LT(err, previous) << "m = " << m;
        const double want = sweep.at(std::to_string(m)).at("nystrom_rel_fro_vs_exact").get<double>();
        EXPECT_NEAR(err, want, 1e-6 * want) << "m = " << m;
        previous = err;
    }
}

TEST(NystromQuality, ResidualFallsWithIterationsOnWellConditionedA) {
    // clustered case: cond(A) ~ 15, where the iteration converges (quadratically, then 7th order).
    const std::string name = "clustered_n512_d64_m32";
    const Eigen::MatrixXd q = load(name, "q"), k = load(name, "k"), v = load(name, "v");
    double previous = std::numeric_limits<double>::infinity();
    for (int it : {2, 4, 6, 8}) {
        NystromOptions o;
        o.num_landmarks = 32;
        o.pinv_iterations = it;
        NystromReport rep;
        attnx::nystrom_attention(q, k, v, o, &rep);
        EXPECT_LT(rep.pinv_residual, previous) << it << " iterations";
        previous = rep.pinv_residual;
    }
    EXPECT_LT(previous, 1e-12);  // converged to rounding after 8
}

TEST(NystromPadding, UnpaddedRowsEqualTheCutSequence) {
    // Self-attention with padding at the end and in the middle: with both masks, the real rows
    // must equal Nyström on the sequence with the padded tokens removed.
    const Index n = 203, d = 16;
    const auto x = random_qkv<double>(n, n, d, d, 91);
    for (bool middle : {false, true}) {
        std::vector<bool> pad(static_cast<std::size_t>(n), false);
        for (Index i = 0; i < n; ++i)
            pad[static_cast<std::size_t>(i)] = middle ? (i % 5 == 2) : (i >= 160);
        std::vector<Index> keep;
        for (Index i = 0; i < n; ++i)
            if (!pad[static_cast<std::size_t>(i)]) keep.push_back(i);
        const Index r = static_cast<Index>(keep.size());
        Eigen::MatrixXd qc(r, d), kc(r, d), vc(r, d);
        for (Index i = 0; i < r; ++i) {
            qc.row(i) = x.q.row(keep[static_cast<std::size_t>(i)]);
            kc.row(i) = x.k.row(keep[static_cast<std::size_t>(i)]);
            vc.row(i) = x.v.row(keep[static_cast<std::size_t>(i)]);
        }
        for (bool conv : {false, true}) {
            if (conv && middle) continue;  // the convolution sees positions: documented for end padding
            NystromOptions o;
            o.num_landmarks = 16;
            if (conv) o.conv_kernel = {0.1, -0.3, 0.5, 0.2, 0.05};
            const Eigen::MatrixXd cut = attnx::nystrom_attention(qc, kc, vc, o);
            o.key_padding_mask = pad;
            o.query_padding_mask = pad;
            Eigen::MatrixXd vp = x.v;  // padded value rows must not matter at all
            for (Index i = 0; i < n; ++i)
                if (pad[static_cast<std::size_t>(i)]) vp.row(i).setConstant(1e6);
            const Eigen::MatrixXd full = attnx::nystrom_attention(x.q, x.k, vp, o);
            Eigen::MatrixXd real(r, d);
            for (Index i = 0; i < r; ++i) real.row(i) = full.row(keep[static_cast<std::size_t>(i)]);
            EXPECT_LE(attnx::compare(real, cut).rel_fro, 1e-12) << "middle=" << middle << " conv=" << conv;
            for (Index i = 0; i < n; ++i)
                if (pad[static_cast<std::size_t>(i)]) {
                    EXPECT_EQ(full.row(i).cwiseAbs().maxCoeff(), 0.0) << "padded row " << i;
                }
        }
    }
}

TEST(Nystrom, NonDivisibleSegmentsAndCrossShapes) {
    // n = 10, m = 4: segments of 3, 3, 2, 2 rows.
    Eigen::MatrixXd x(10, 2);
    for (Index i = 0; i < 10; ++i) x.row(i) << static_cast<double>(i), static_cast<double>(i * i);
    const Eigen::MatrixXd l = attnx::detail::segment_means<double>(x, {}, 4);
    EXPECT_DOUBLE_EQ(l(0, 0), 1.0);
    EXPECT_DOUBLE_EQ(l(1, 0), 4.0);
    EXPECT_DOUBLE_EQ(l(2, 0), 6.5);
    EXPECT_DOUBLE_EQ(l(3, 0), 8.5);
    EXPECT_DOUBLE_EQ(l(3, 1), (64.0 + 81.0) / 2);
    // n_q != n_k and d_v != d give an n_q x d_v result, finite, float and double.
    const auto xd = random_qkv<double>(97, 130, 24, 40, 5);
    NystromOptions o;
    o.num_landmarks = 13;
    const Eigen::MatrixXd out = attnx::nystrom_attention(xd.q, xd.k, xd.v, o);
    ASSERT_EQ(out.rows(), 97);
    ASSERT_EQ(out.cols(), 40);
    const Matrix<float> outf = attnx::nystrom_attention(Matrix<float>(xd.q.cast<float>()), Matrix<float>(xd.k.cast<float>()),
                                                        Matrix<float>(xd.v.cast<float>()), o);
    // float vs double of the same method: A's inverse (6 iterations, cond up to ~1e4) amplifies
    // float rounding; 1e-4 is ~cond(A) * eps_float with room.
    EXPECT_LE(attnx::compare(outf, out).rel_fro, 1e-4);
}

TEST(Nystrom, ConvSkipMatchesDirectLoop) {
    const Index n = 50, d = 6;
    const auto x = random_qkv<double>(n, n, d, d, 12);
    NystromOptions o;
    o.num_landmarks = 5;
    const Eigen::MatrixXd base = attnx::nystrom_attention(x.q, x.k, x.v, o);
    o.conv_kernel = {0.3, -1.0, 2.0, 0.5, 0.25, -0.125, 0.7};
    const Eigen::MatrixXd with = attnx::nystrom_attention(x.q, x.k, x.v, o);
    Eigen::MatrixXd conv = Eigen::MatrixXd::Zero(n, d);
    for (Index i = 0; i < n; ++i)
        for (Index t = 0; t < 7; ++t) {
            const Index j = i + t - 3;
            if (j >= 0 && j < n) conv.row(i) += o.conv_kernel[static_cast<std::size_t>(t)] * x.v.row(j);
        }
    EXPECT_LE(attnx::compare(Eigen::MatrixXd(with - base), conv).rel_fro, 1e-13);
}

TEST(Nystrom, OutBufferAndExpressionsAgree) {
    const auto x = random_qkv<float>(300, 300, 32, 32, 3);
    NystromOptions o;
    o.num_landmarks = 30;
    const Matrix<float> a = attnx::nystrom_attention(x.q, x.k, x.v, o);
    Matrix<float> b(300, 32);
    attnx::nystrom_attention(x.q, x.k, x.v, b, o);
    EXPECT_TRUE(a == b);
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> qr = x.q;
    EXPECT_TRUE(attnx::nystrom_attention(qr, x.k, x.v, o) == a);
}

TEST(Nystrom, BadInputThrowsNamingArgument) {
    using M = Matrix<double>;
    using E = attnx::invalid_argument;
    const M x = M::Ones(16, 8);
    auto call = [&](const NystromOptions& o, const M& q, const M& k, const M& v) {
        return [=] { attnx::nystrom_attention(q, k, v, o); };
    };
    NystromOptions o;
    o.num_landmarks = 0;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("num_landmarks (m = 0) must satisfy 1 <= m <= n")));
    o.num_landmarks = 17;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(AllOf(HasSubstr("attnx::nystrom_attention: num_landmarks (m = 17)"),
                                                          HasSubstr("n = k.rows() = 16"))));
    o.num_landmarks = 8;
    o.key_padding_mask.assign(16, false);
    for (int i = 0; i < 10; ++i) o.key_padding_mask[static_cast<std::size_t>(i)] = true;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("(n = 6 unpadded keys of k.rows() = 16)")));
    o.key_padding_mask.assign(15, false);
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("key_padding_mask has length 15 but there are n_k")));
    o.key_padding_mask.clear();
    o.query_padding_mask.assign(3, false);
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("query_padding_mask has length 3 but there are n_q = q.rows() = 16")));
    o.query_padding_mask.clear();
    o.conv_kernel = {1.0, 2.0};
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("conv_kernel has even length 2")));
    o.conv_kernel = {1.0, std::nan(""), 1.0};
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("conv_kernel[1] = nan is not finite")));
    o.conv_kernel = {1.0};
    EXPECT_THAT(call(o, M::Ones(12, 8), x, x), ThrowsMessage<E>(HasSubstr("conv_kernel needs self-attention")));
    o.conv_kernel.clear();
    o.causal = true;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("causal = true is not defined for Nyström attention")));
    o.causal = false;
    o.pinv_iterations = -1;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("pinv_iterations (-1) must be >= 0")));
    o.pinv_iterations = 6;
    o.num_landmarks = 10;
    EXPECT_THAT(call(o, M::Ones(9, 8), x, x), ThrowsMessage<E>(HasSubstr("must satisfy 1 <= m <= n_q (n_q = q.rows() = 9)")));
    EXPECT_THAT(call(o, x, M::Ones(16, 4), x), ThrowsMessage<E>(HasSubstr("k has 4 columns but q has 8")));
    o.scale = -1.0;
    EXPECT_THAT(call(o, x, x, x), ThrowsMessage<E>(HasSubstr("scale (-1) must be finite and > 0")));
    o.scale.reset();
    M bad = x;
    bad(2, 3) = std::numeric_limits<double>::infinity();
    EXPECT_THAT(call(o, x, x, bad), ThrowsMessage<E>(HasSubstr("v(2, 3) = inf")));
}
