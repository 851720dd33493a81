// SPDX-License-Identifier: MIT
/// \file mechanism_cases.hpp
/// The one list of mechanisms the tests iterate (test_mechanisms.cpp, test_threads.cpp and the
/// header instantiation unit tests/cmake/instantiate_all.cpp): one case type per mechanism, with
/// how to build it for an input of n tokens, its exact limit, which symmetries it has, and its
/// tolerance budget (derivation beside each constant). Adding a mechanism = adding a case here
/// and to MechanismCases. Depends on attnx and Eigen only (instantiate_all.cpp includes it).
#ifndef ATTNX_TESTS_SUPPORT_MECHANISM_CASES_HPP
#define ATTNX_TESTS_SUPPORT_MECHANISM_CASES_HPP

#include <attnx/mechanisms.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace testing_support {

using attnx::Index;

/// The float or the double value of a tolerance: by_scalar<Scalar>(for_float, for_double).
template <typename Scalar>
constexpr double by_scalar(double for_float, double for_double) {
    return std::is_same<Scalar, float>::value ? for_float : for_double;
}

template <typename Scalar>
const char* scalar_name() {
    return std::is_same<Scalar, float>::value ? "float" : "double";
}

/// Relative Frobenius error of an attnx softmax kernel against the float64 loop reference:
/// each output entry is a softmax-weighted mean; the d-long dot products and the n_k-long sums
/// each contribute a few eps times a small factor, so errors are ~1e-7..1e-6 in float
/// (eps = 6e-8) and ~1e-15 in double; 2e-5 and 1e-12 leave headroom for other compilers and
/// vector widths, while a wrong mask, a dropped scale or a missing tile gives errors ~1e-1.
template <typename Scalar>
constexpr double softmax_tolerance() {
    return by_scalar<Scalar>(2e-5, 1e-12);
}

/// Two attnx computations of the same softmax in a different summation order (tiles, GEMM
/// blocking, a permutation of the keys): each is within a few eps·sqrt(n_k) of the exact value,
/// so they differ by ~1e-6 (float) / ~1e-15 (double); 5e-6 and 1e-14 are ~40 eps.
template <typename Scalar>
constexpr double reordering_tolerance() {
    return by_scalar<Scalar>(5e-6, 1e-14);
}

/// Exact attention, streaming kernel with small tiles so that a 37-token input has partial
/// tiles. Permuting K and V rows together permutes the terms of each softmax sum only.
struct ExactCase {
    static constexpr const char* name = "exact";
    static constexpr bool causal = true;                           ///< supports causal masking
    static constexpr bool keys_permutation_invariant = true;       ///< softmax over a set of keys
    static constexpr bool queries_permutation_equivariant = true;  ///< each row on its own
    static constexpr bool thread_count_bit_identical = true;       ///< documented in exact.hpp

    template <typename Scalar>
    static attnx::Exact make(Index /*n*/) {
        attnx::Exact m;
        m.options.query_tile = 16;
        m.options.key_tile = 8;
        return m;
    }
    template <typename Scalar>
    static attnx::Exact exact_limit(Index n) {
        return make<Scalar>(n);
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return softmax_tolerance<Scalar>();
    }
};

/// Nyström with m = min(8, n) landmarks. Exact limit: m = n with the exact pseudoinverse, which
/// equals exact attention up to cond(A)·eps (A = softmax(s Q̃ K̃ᵀ), here with Q̃ = K̃ = K): the
/// limit inputs of test_mechanisms.cpp use Q = K, so A is diagonally dominant and cond(A) <= ~50
/// at n = 37, d = 16 (measured), giving float errors ~1e-5: bound 2e-4; double 1e-10.
struct NystromCase {
    static constexpr const char* name = "nystrom";
    static constexpr bool causal = false;
    static constexpr bool keys_permutation_invariant = false;       ///< landmarks are segment means
    static constexpr bool queries_permutation_equivariant = false;  ///< so are the query landmarks
    static constexpr bool thread_count_bit_identical = false;       ///< the m x m products: Eigen

    template <typename Scalar>
    static attnx::Nystrom make(Index n) {
        attnx::Nystrom m;
        m.options.num_landmarks = std::min<Index>(8, n);
        return m;
    }
    template <typename Scalar>
    static attnx::Nystrom exact_limit(Index n) {
        attnx::Nystrom m;
        m.options.num_landmarks = n;
        m.options.pinv = attnx::PinvMethod::Exact;
        return m;
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return by_scalar<Scalar>(2e-4, 1e-10);
    }
};

/// Linformer with a Gaussian projection of k = min(8, n) rows. Exact limit: E = F = I, the same
/// online-softmax kernel on the same keys (softmax_tolerance). E mixes key positions, so the
/// keys are not permutation-invariant; each query row is computed on its own.
struct LinformerCase {
    static constexpr const char* name = "linformer";
    static constexpr bool causal = false;
    static constexpr bool keys_permutation_invariant = false;
    static constexpr bool queries_permutation_equivariant = true;
    static constexpr bool thread_count_bit_identical = true;  ///< documented in linformer.hpp

    template <typename Scalar>
    static attnx::Linformer<Scalar> make(Index n) {
        return attnx::Linformer<Scalar>(attnx::LinformerProjection<Scalar>::gaussian(std::min<Index>(8, n), n, 11));
    }
    template <typename Scalar>
    static attnx::Linformer<Scalar> exact_limit(Index n) {
        return attnx::Linformer<Scalar>(attnx::LinformerProjection<Scalar>::identity(n));
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return softmax_tolerance<Scalar>();
    }
};

/// Block-sparse attention with a Longformer layout (blocks of 8, window 3, 8 global tokens).
/// Exact limit: the dense layout.
struct BlockSparseCase {
    static constexpr const char* name = "block_sparse";
    static constexpr bool causal = true;
    static constexpr bool keys_permutation_invariant = false;  ///< the layout is positional
    static constexpr bool queries_permutation_equivariant = false;
    static constexpr bool thread_count_bit_identical = true;  ///< documented in bigbird.hpp

    template <typename Scalar>
    static attnx::BlockSparse make(Index n) {
        return attnx::BlockSparse{attnx::BlockLayout::longformer(n, 8, 3, 8), {}};
    }
    template <typename Scalar>
    static attnx::BlockSparse exact_limit(Index n) {
        return attnx::BlockSparse{attnx::BlockLayout::dense(n, 8), {}};
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return softmax_tolerance<Scalar>();
    }
};

/// BigBird (blocks of 8, window 3, 2 global, 1 random block), layout built per call. Exact
/// limit: every block global.
struct BigBirdCase {
    static constexpr const char* name = "bigbird";
    static constexpr bool causal = true;
    static constexpr bool keys_permutation_invariant = false;
    static constexpr bool queries_permutation_equivariant = false;
    static constexpr bool thread_count_bit_identical = true;

    template <typename Scalar>
    static attnx::BigBird make(Index /*n*/) {
        attnx::BigBird m;
        m.bigbird.block = 8;
        m.bigbird.window = 3;
        m.bigbird.global = 2;
        m.bigbird.random = 1;
        m.bigbird.seed = 5;
        return m;
    }
    template <typename Scalar>
    static attnx::BigBird exact_limit(Index n) {
        attnx::BigBird m = make<Scalar>(n);
        m.bigbird.global = n;
        return m;
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return softmax_tolerance<Scalar>();
    }
};

/// Linear attention, φ = elu + 1 (chunk 8, so that n = 37 has several causal chunks). It has no
/// softmax exact limit (softmax_limit = false): its own oracles are in test_feature_maps.cpp.
/// A sum over the set of keys, each query row on its own.
struct LinearCase {
    static constexpr const char* name = "linear";
    static constexpr bool causal = true;
    static constexpr bool softmax_limit = false;  ///< no setting of it equals softmax attention
    static constexpr bool keys_permutation_invariant = true;
    static constexpr bool queries_permutation_equivariant = true;
    static constexpr bool thread_count_bit_identical = true;  ///< documented in linear_attention.hpp

    template <typename Scalar>
    static attnx::Linear<> make(Index /*n*/) {
        attnx::Linear<> m;
        m.options.chunk = 8;
        return m;
    }
    template <typename Scalar>
    static attnx::Linear<> exact_limit(Index n) {
        return make<Scalar>(n);
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return 0;
    }
};

/// attnx::Performer with 32 orthogonal FAVOR+ features, drawn (seed 7) for the head dimension of
/// each call: W is m x d, and the tests call a case with several d. An estimate of softmax
/// attention with no exact limit (softmax_limit = false; its oracles and statistics are in
/// test_feature_maps.cpp). Permuting the keys permutes the terms of S, z and the running max.
template <typename Scalar>
struct PerformerForAnyD {
    attnx::LinearAttentionOptions options;

    attnx::Performer<Scalar> at(Index d) const {
        attnx::RandomFeatureOptions o;
        o.num_features = 32;
        return attnx::Performer<Scalar>{attnx::PositiveRandomFeatures<Scalar>::draw(d, 7, o), options};
    }
    std::string name() const { return "performer"; }
    std::string parameters() const { return "m = 32, drawn per d"; }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<attnx::Matrix<typename DQ::Scalar>> out) const {
        at(q.cols())(q, k, v, out);
    }
    template <typename DQ, typename DK, typename DV>
    attnx::Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                  const Eigen::MatrixBase<DV>& v) const {
        return at(q.cols())(q, k, v);
    }
};

struct PerformerCase {
    static constexpr const char* name = "performer";
    static constexpr bool causal = true;
    static constexpr bool softmax_limit = false;
    static constexpr bool keys_permutation_invariant = true;
    static constexpr bool queries_permutation_equivariant = true;
    static constexpr bool thread_count_bit_identical = true;

    template <typename Scalar>
    static PerformerForAnyD<Scalar> make(Index /*n*/) {
        PerformerForAnyD<Scalar> m;
        m.options.chunk = 8;
        return m;
    }
    template <typename Scalar>
    static PerformerForAnyD<Scalar> exact_limit(Index n) {
        return make<Scalar>(n);
    }
    template <typename Scalar>
    static double limit_tolerance() {
        return 0;
    }
};

/// Whether Case has an exact limit equal to softmax attention (true unless it says otherwise).
template <typename Case, typename = void>
struct has_softmax_limit : std::true_type {};
template <typename Case>
struct has_softmax_limit<Case, std::void_t<decltype(Case::softmax_limit)>> : std::bool_constant<Case::softmax_limit> {};

/// A case and a scalar type: the parameter of the typed tests.
template <typename Case_, typename Scalar_>
struct CaseOf {
    using Case = Case_;
    using Scalar = Scalar_;
};

/// THE list: every mechanism case, in one place. Typed test suites expand it with
/// gtest_cases_t (test files), plain code with for_each_case.
using MechanismCases =
    std::tuple<ExactCase, NystromCase, LinformerCase, BlockSparseCase, BigBirdCase, LinearCase, PerformerCase>;

/// Calls f(CaseOf<C, Scalar>{}) for every case C of MechanismCases, in order.
template <typename Scalar, typename F>
void for_each_case(F&& f) {
    std::apply([&](auto... cases) { (f(CaseOf<decltype(cases), Scalar>{}), ...); }, MechanismCases{});
}

/// TypeList<CaseOf<C, float>..., CaseOf<C, double>...> for the cases C of MechanismCases, e.g.
/// with TypeList = ::testing::Types for a TYPED_TEST_SUITE.
template <template <typename...> class TypeList, typename Cases = MechanismCases>
struct all_cases;
template <template <typename...> class TypeList, typename... C>
struct all_cases<TypeList, std::tuple<C...>> {
    using type = TypeList<CaseOf<C, float>..., CaseOf<C, double>...>;
};

}  // namespace testing_support

#endif  // ATTNX_TESTS_SUPPORT_MECHANISM_CASES_HPP
