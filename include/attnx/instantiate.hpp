// SPDX-License-Identifier: MIT
/// \file instantiate.hpp
/// Faster builds for projects with many translation units: attnx's kernels compiled once.
///
/// attnx is header-only, so every translation unit that calls a mechanism compiles its kernel
/// again (g++ -O2 on a 2-core machine: exact attention in float and double, 25-40 s per unit;
/// every mechanism, 82 s per unit). This header declares the kernels for float and double as
/// explicit instantiations ("extern template", C++11 [temp.explicit]): a unit that includes it
/// compiles only the thin public entry points and calls the kernels instead of instantiating
/// them (measured: exact in float and double 40 s -> 4 s; every mechanism 82 s -> 12 s; the
/// kernels unit itself costs about one such unit, once).
/// Exactly one unit of the program defines them:
///
///     // attnx_kernels.cpp, compiled once, with the same flags as the rest of the program
///     #define ATTNX_INSTANTIATE_KERNELS
///     #include <attnx/instantiate.hpp>
///
/// and every other unit includes <attnx/instantiate.hpp> (e.g. with g++/clang++ -include
/// attnx/instantiate.hpp, without touching the sources). To compile float and double in
/// parallel, define ATTNX_INSTANTIATE_KERNELS_FLOAT in one unit and ATTNX_INSTANTIATE_KERNELS_DOUBLE
/// in another instead (attnx's own tests and examples do: examples/attnx_kernels_*.cpp). Results are the same: the same code is
/// compiled, once. Without the defining unit the program fails to link (undefined
/// attnx::detail::*_checked<float> ...), never silently. Only float and double are declared;
/// other calls instantiate as usual. Mechanisms with a user-defined feature map, and the member
/// templates of LinearAttentionState, instantiate in each unit as usual (their engines below do
/// not).
///
/// What is declared (namespace attnx::detail, Scalar = float and double): the entry skeletons of
/// every mechanism (exact_checked, exact_fused_checked, nystrom_checked, linformer_checked,
/// block_sparse_checked, linear_checked for EluPlusOne and PositiveRandomFeatures<Scalar>), the
/// exact kernels estimate_error and attention_matrix call directly (dense_online_attention,
/// materialized_attention), and the feature-map engines (linear_noncausal, linear_causal).
/// The public API is unchanged; this header only includes attnx.hpp and adds declarations.
#ifndef ATTNX_INSTANTIATE_HPP
#define ATTNX_INSTANTIATE_HPP

#include "attnx/attnx.hpp"

// The definitions (this unit compiles the kernels) or the declarations (other units call them),
// per Scalar: ATTNX_INSTANTIATE_KERNELS_FLOAT and _DOUBLE split the work over two units.
#if defined(ATTNX_INSTANTIATE_KERNELS) || defined(ATTNX_INSTANTIATE_KERNELS_FLOAT)
#define ATTNX_INSTANTIATION_FLOAT_ template
#else
#define ATTNX_INSTANTIATION_FLOAT_ extern template
#endif
#if defined(ATTNX_INSTANTIATE_KERNELS) || defined(ATTNX_INSTANTIATE_KERNELS_DOUBLE)
#define ATTNX_INSTANTIATION_DOUBLE_ template
#else
#define ATTNX_INSTANTIATION_DOUBLE_ extern template
#endif

/// One Scalar's explicit instantiations; each parameter list is the definition's, verbatim.
#define ATTNX_INSTANTIATE_FOR_(ATTNX_INSTANTIATION_, S)                                                                            \
    ATTNX_INSTANTIATION_ void exact_checked<S>(const char*, const Eigen::Ref<const Matrix<S>>&,                 \
                                               const Eigen::Ref<const Matrix<S>>&,                             \
                                               const Eigen::Ref<const Matrix<S>>&, const ExactOptions&,        \
                                               Eigen::Ref<Matrix<S>>);                                         \
    ATTNX_INSTANTIATION_ void exact_fused_checked<S>(const char*, const Eigen::Ref<const Matrix<S>>&,           \
                                                     const Eigen::Ref<const Matrix<S>>&,                       \
                                                     const Eigen::Ref<const Matrix<S>>&, const ExactOptions&,  \
                                                     Eigen::Ref<Matrix<S>>);                                   \
    ATTNX_INSTANTIATION_ void materialized_attention<S>(const Eigen::Ref<const Matrix<S>>&,                    \
                                                        const Eigen::Ref<const Matrix<S>>&, S, const MaskSpec&, \
                                                        Matrix<S>&);                                           \
    ATTNX_INSTANTIATION_ void dense_online_attention<S>(const Eigen::Ref<const Matrix<S>>&,                    \
                                                        const Eigen::Ref<const Matrix<S>>&,                    \
                                                        const Eigen::Ref<const Matrix<S>>&, S, const MaskSpec&, \
                                                        Index, Index, Eigen::Ref<Matrix<S>>, InputScan*,       \
                                                        ScanInputs);                                           \
    ATTNX_INSTANTIATION_ void nystrom_checked<S>(const char*, const Eigen::Ref<const Matrix<S>>&,               \
                                                 const Eigen::Ref<const Matrix<S>>&,                           \
                                                 const Eigen::Ref<const Matrix<S>>&, const NystromOptions&,    \
                                                 Eigen::Ref<Matrix<S>>, NystromReport*);                       \
    ATTNX_INSTANTIATION_ void linformer_checked<S>(                                                            \
        const char*, const Eigen::Ref<const Matrix<S>>&, const Eigen::Ref<const Matrix<S>>&,                   \
        const Eigen::Ref<const Matrix<S>>&, const Eigen::Ref<const Matrix<S>>&,                                \
        const Eigen::Ref<const Matrix<S>>&, ProjectionMagnitudes, const AttentionOptions&,                    \
        Eigen::Ref<Matrix<S>>);                                                                                \
    ATTNX_INSTANTIATION_ void block_sparse_checked<S>(const char*, const Eigen::Ref<const Matrix<S>>&,          \
                                                      const Eigen::Ref<const Matrix<S>>&,                      \
                                                      const Eigen::Ref<const Matrix<S>>&, const BlockLayout*,  \
                                                      const BigBirdOptions*, const AttentionOptions&,          \
                                                      Eigen::Ref<Matrix<S>>);                                  \
    ATTNX_INSTANTIATE_MAP_(ATTNX_INSTANTIATION_, S, EluPlusOne)                                                \
    ATTNX_INSTANTIATE_MAP_(ATTNX_INSTANTIATION_, S, PositiveRandomFeatures<S>)

/// The feature-map engine for one Scalar and map M.
#define ATTNX_INSTANTIATE_MAP_(ATTNX_INSTANTIATION_, S, M)                                                                         \
    ATTNX_INSTANTIATION_ void linear_checked<S, M>(const char*, const M&, Index,                               \
                                                   const Eigen::Ref<const Matrix<S>>&,                         \
                                                   const Eigen::Ref<const Matrix<S>>&,                         \
                                                   const Eigen::Ref<const Matrix<S>>&,                         \
                                                   const LinearAttentionOptions&, Eigen::Ref<Matrix<S>>);      \
    ATTNX_INSTANTIATION_ void linear_noncausal<S, M>(const LinearProblem<S, M>&, FeatureState<S>&,             \
                                                     Eigen::Ref<Matrix<S>>*, FeatureFailure&);                 \
    ATTNX_INSTANTIATION_ void linear_causal<S, M>(const LinearProblem<S, M>&, Index, Index,                    \
                                                  const FeatureState<S>&, Eigen::Ref<Matrix<S>>*,              \
                                                  FeatureState<S>*, FeatureFailure&);

namespace attnx {
namespace detail {
ATTNX_INSTANTIATE_FOR_(ATTNX_INSTANTIATION_FLOAT_, float)
ATTNX_INSTANTIATE_FOR_(ATTNX_INSTANTIATION_DOUBLE_, double)
}  // namespace detail
}  // namespace attnx

#undef ATTNX_INSTANTIATE_MAP_
#undef ATTNX_INSTANTIATE_FOR_
#undef ATTNX_INSTANTIATION_FLOAT_
#undef ATTNX_INSTANTIATION_DOUBLE_

#endif  // ATTNX_INSTANTIATE_HPP
