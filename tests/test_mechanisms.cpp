// SPDX-License-Identifier: MIT
// The properties every mechanism of the list in tests/support/mechanism_cases.hpp must have,
// checked through the mechanism values of mechanisms.hpp, in float and double:
//  - its exact limit equals the float64 loop reference (with causal masking where supported), for
//    the mechanisms that have one (not the feature-map ones: Case::softmax_limit = false);
//  - n in {1, 8, 9, 37, 67}: finite, n x d_v, and the returning and out-buffer calls agree bit
//    for bit;
//  - permutation properties where the mechanism has them (Case flags);
//  - every key padded gives zero rows; `out` sharing memory with q, k or v is rejected;
//  - a NaN or Inf anywhere in q, k or v (first, last or padded row) is reported by name, although
//    the scan is fused into the kernels' reads.
// Adding a mechanism to the list runs all of this on it.
#include <attnx/mechanisms.hpp>
#include <attnx/metrics.hpp>
#include <attnx/random.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "support/inputs.hpp"
#include "support/mechanism_cases.hpp"
#include "support/reference.hpp"

using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using namespace testing_support;

namespace {

template <typename T>
class MechanismTest : public ::testing::Test {};
using Cases = all_cases<::testing::Types>::type;
TYPED_TEST_SUITE(MechanismTest, Cases, );

template <typename Scalar>
struct Inputs {
    Matrix<Scalar> q, k, v;
};

/// N(0, 1.5^2) Q, K and N(0, 1) V from attnx's generator; with self_similar, Q = K (the exact
/// limit inputs: it keeps Nyström's A diagonally dominant, see NystromCase).
template <typename Scalar>
Inputs<Scalar> inputs(Index n, Index d, Index dv, std::uint64_t seed, bool self_similar = false) {
    Inputs<Scalar> x;
    x.k = attnx::random_normal<Scalar>(n, d, seed, 2, 0.0, 1.5);
    x.q = self_similar ? x.k : attnx::random_normal<Scalar>(n, d, seed, 1, 0.0, 1.5);
    x.v = attnx::random_normal<Scalar>(n, dv, seed, 3);
    return x;
}

template <typename Scalar>
Eigen::MatrixXd reference(const Inputs<Scalar>& x, bool causal) {
    const Eigen::MatrixXd q = x.q.template cast<double>(), k = x.k.template cast<double>(),
                          v = x.v.template cast<double>();
    return ref::attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.cols())),
                          ref::masked(q.rows(), k.rows(), causal, {}));
}

TYPED_TEST(MechanismTest, ExactLimitEqualsTheFloat64Reference) {
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    if constexpr (!has_softmax_limit<Case>::value) return;  // feature maps: see test_feature_maps.cpp
    const Index n = 37;  // partial tiles and blocks
    const Inputs<S> x = inputs<S>(n, 16, 8, 1, /*self_similar=*/true);
    for (bool causal : {false, true}) {
        if (causal && !Case::causal) continue;
        auto mech = Case::template exact_limit<S>(n);
        mech.options.causal = causal;
        const double e = attnx::compare(mech(x.q, x.k, x.v), reference(x, causal)).rel_fro;
        EXPECT_LE(e, Case::template limit_tolerance<S>()) << Case::name << " causal " << causal;
    }
}

TYPED_TEST(MechanismTest, FiniteShapedAndBothCallsAgree) {
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    for (Index n : {1, 8, 9, 37, 67}) {
        const Inputs<S> x = inputs<S>(n, 16, 5, 2 + static_cast<std::uint64_t>(n));
        const auto mech = Case::template make<S>(n);
        const Matrix<S> out = mech(x.q, x.k, x.v);
        ASSERT_EQ(out.rows(), n);
        ASSERT_EQ(out.cols(), 5);
        EXPECT_TRUE(out.allFinite()) << Case::name << " n " << n;
        Matrix<S> buffer(n, 5);
        mech(x.q, x.k, x.v, buffer);
        EXPECT_EQ(buffer, out) << Case::name << " n " << n << ": out-buffer call differs";
    }
}

TYPED_TEST(MechanismTest, PermutationProperties) {
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    const Index n = 96;  // 12 blocks of 8: the BigBird and Longformer layouts are far from dense
    const Inputs<S> x = inputs<S>(n, 16, 8, 3);
    const auto mech = Case::template make<S>(n);
    const Matrix<S> out = mech(x.q, x.k, x.v);
    std::vector<Index> perm(static_cast<std::size_t>(n));
    std::iota(perm.begin(), perm.end(), Index(0));
    const attnx::CounterRng rng(9, 0);
    for (Index i = n - 1; i > 0; --i)  // Fisher–Yates with attnx's generator
        std::swap(perm[static_cast<std::size_t>(i)],
                  perm[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(i) + 1))]);
    Eigen::PermutationMatrix<Eigen::Dynamic> p(n);
    for (Index i = 0; i < n; ++i) p.indices()(i) = static_cast<int>(perm[static_cast<std::size_t>(i)]);
    if (Case::keys_permutation_invariant) {
        const Matrix<S> kp = p * x.k, vp = p * x.v;
        EXPECT_LE(attnx::compare(mech(x.q, kp, vp), out).rel_fro, reordering_tolerance<S>()) << Case::name;
    }
    if (Case::queries_permutation_equivariant) {
        const Matrix<S> qp = p * x.q;
        const Matrix<S> expected = p * out;
        EXPECT_LE(attnx::compare(mech(qp, x.k, x.v), expected).rel_fro, reordering_tolerance<S>()) << Case::name;
    }
    if (!Case::keys_permutation_invariant && !Case::queries_permutation_equivariant) {
        // Positional mechanisms: permuting the keys must change the result (else the test above
        // would be vacuous for them and the flags could be set wrongly without notice).
        const Matrix<S> kp = p * x.k, vp = p * x.v;
        EXPECT_GT(attnx::compare(mech(x.q, kp, vp), out).rel_fro, 1e-3) << Case::name;
    }
}

TYPED_TEST(MechanismTest, EveryKeyPaddedGivesZeroRows) {
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    const Index n = 24;
    const Inputs<S> x = inputs<S>(n, 8, 4, 4);
    auto mech = Case::template make<S>(n);
    mech.options.key_padding_mask.assign(static_cast<std::size_t>(n), true);
    EXPECT_EQ(mech(x.q, x.k, x.v), Matrix<S>::Zero(n, 4)) << Case::name;
}

TYPED_TEST(MechanismTest, OutSharingMemoryWithAnInputIsRejected) {
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    const Index n = 24;
    Inputs<S> x = inputs<S>(n, 4, 4, 5);  // d = d_v, so q, k and v all have out's shape
    const auto mech = Case::template make<S>(n);
    for (const char* name : {"q", "k", "v"}) {
        Matrix<S>& alias = name[0] == 'q' ? x.q : name[0] == 'k' ? x.k : x.v;
        EXPECT_THAT([&] { mech(x.q, x.k, x.v, alias); },
                    ThrowsMessage<attnx::invalid_argument>(AllOf(
                        HasSubstr(std::string(": out (24x4) shares memory with ") + name), HasSubstr("in place"))))
            << Case::name;
    }
}

TYPED_TEST(MechanismTest, NonFiniteInputIsReportedWhereverItIs) {
    // Every mechanism scans its inputs as its kernel reads them (core.hpp), in tiles, key blocks,
    // projection blocks or chunks: the scan must still reach the first row, the last row (of a
    // partial tile) and padded rows, causal or not, and the error must name the entry.
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    const S nan = std::numeric_limits<S>::quiet_NaN(), inf = std::numeric_limits<S>::infinity();
    for (const Index n : {Index(37), Index(300)}) {  // 300: several tiles, blocks and key parts
        const Inputs<S> x = inputs<S>(n, 8, 4, 6);
        for (const bool causal : {false, true}) {
            if (causal && !Case::causal) continue;
            for (const bool masked : {false, true}) {
                auto mech = Case::template make<S>(n);
                mech.options.causal = causal;
                if (masked) {  // padded keys must be finite too
                    mech.options.key_padding_mask.assign(static_cast<std::size_t>(n), false);
                    mech.options.key_padding_mask[1] = mech.options.key_padding_mask[static_cast<std::size_t>(n - 3)] =
                        true;
                }
                for (const Index row : {Index(0), Index(1), n - 3, n - 1}) {
                    for (const char which : {'q', 'k', 'v'}) {
                        Inputs<S> y = x;
                        Matrix<S>& m = which == 'q' ? y.q : which == 'k' ? y.k : y.v;
                        const Index c = row % m.cols();
                        m(row, c) = row == n - 1 ? inf : nan;
                        const std::string want = non_finite_entry(which, n, m.cols(), row, c);
                        const std::string where = std::string(Case::name) + " n " + std::to_string(n) +
                                                  (causal ? " causal" : "") + (masked ? " masked" : "");
                        EXPECT_THAT([&] { mech(y.q, y.k, y.v); },
                                    ThrowsMessage<attnx::invalid_argument>(HasSubstr(want)))
                            << where;
                        Matrix<S> out(n, y.v.cols());
                        EXPECT_THAT([&] { mech(y.q, y.k, y.v, out); },
                                    ThrowsMessage<attnx::invalid_argument>(HasSubstr(want)))
                            << where;
                    }
                }
            }
        }
    }
}

TYPED_TEST(MechanismTest, NanInputWithChecksOffGivesNaNNotAPlausibleRow) {
    // check_finite = false makes a non-finite input the caller's problem, but the output must not
    // hide it: a NaN score used to look like a fully masked row to the online softmax (zero rows,
    // all of Linformer's output zero for a NaN in k). Every mechanism now carries the NaN through.
    using Case = typename TypeParam::Case;
    using S = typename TypeParam::Scalar;
    const S nan = std::numeric_limits<S>::quiet_NaN();
    for (const Index n : {Index(37), Index(300)}) {
        const Inputs<S> x = inputs<S>(n, 8, 4, 6);
        for (const bool causal : {false, true}) {
            if (causal && !Case::causal) continue;
            auto mech = Case::template make<S>(n);
            mech.options.causal = causal;
            mech.options.check_finite = false;
            for (const char which : {'q', 'k'}) {
                Inputs<S> y = x;
                (which == 'q' ? y.q : y.k)(1, 2) = nan;
                const std::string where = std::string(Case::name) + " n " + std::to_string(n) +
                                          (causal ? " causal" : "") + " NaN in " + which;
                Matrix<S> out;
                EXPECT_NO_THROW(out = mech(y.q, y.k, y.v)) << where;
                EXPECT_FALSE(out.allFinite()) << where;
                if (which == 'q') {
                    EXPECT_TRUE(out.row(1).hasNaN()) << where;
                }
            }
        }
    }
}

}  // namespace
