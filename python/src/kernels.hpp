// SPDX-License-Identifier: MIT
/// \file kernels.hpp
/// The attnx calls of the Python module, declared here and instantiated once in kernels.cpp
/// for float and double: the module's bindings (module.cpp, pybind11) and the kernels (Eigen,
/// OpenMP) compile as two units in parallel, and each kernel is instantiated exactly once, on
/// one argument type (Eigen::Ref to column-major memory: NumPy's buffers mapped without a copy
/// where their strides allow, see module.cpp).
#ifndef ATTNX_PYTHON_KERNELS_HPP
#define ATTNX_PYTHON_KERNELS_HPP

#include <Eigen/Core>

#include "attnx/estimate.hpp"
#include "attnx/linear_attention.hpp"
#include "attnx/mechanisms.hpp"
#include "attnx/multi_head.hpp"
#include "attnx/metrics.hpp"
#include "attnx/nystrom.hpp"

namespace attnx_py {

using attnx::Index;

template <typename S>
using In = Eigen::Ref<const attnx::Matrix<S>>;
template <typename S>
using Out = Eigen::Ref<attnx::Matrix<S>>;

/// mech(q, k, v, out): every mechanism value of mechanisms.hpp (Linformer<S> with its own S).
template <typename Mech, typename S>
void run(const Mech& mech, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out);

/// nystrom_attention with its pseudoinverse report.
template <typename S>
void run_nystrom(const attnx::NystromOptions& o, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out,
                 attnx::NystromReport* report);

/// linformer_attention with raw E and F (k x n_k each).
template <typename S>
void run_linformer_raw(const In<S>& q, const In<S>& k, const In<S>& v, const In<S>& e, const In<S>& f,
                       const attnx::AttentionOptions& o, Out<S> out);

/// LinformerProjection<S>::from_matrices / from_matrix (f == nullptr).
template <typename S>
attnx::LinformerProjection<S> projection_from(const In<S>& e, const In<S>* f);

/// attnx::estimate_error(mech, q, k, v[, *approx], options).
template <typename Mech, typename S>
attnx::ErrorEstimate estimate(const Mech& mech, const In<S>& q, const In<S>& k, const In<S>& v, const In<S>* approx,
                              const attnx::EstimateOptions& o);

/// attnx::multi_head_attention(mech, q, k, v, out, options).
template <typename Mech, typename S>
void run_multi_head(const Mech& mech, const attnx::HeadsView<const S>& q, const attnx::HeadsView<const S>& k,
                    const attnx::HeadsView<const S>& v, const attnx::HeadsView<S>& out,
                    const attnx::MultiHeadOptions& o);

/// The decode states of feature-map attention: elu + 1 (linear attention) and FAVOR+.
template <typename S>
using EluState = attnx::LinearAttentionState<S, attnx::EluPlusOne>;
template <typename S>
using FavorState = attnx::LinearAttentionState<S, attnx::PositiveRandomFeatures<S>>;

/// state.prefill(k, v): absorbs the tokens.
template <typename State, typename S>
void state_absorb(State& state, const In<S>& k, const In<S>& v);
/// state.prefill(q, k, v, out): absorbs the tokens and writes their causal outputs.
template <typename State, typename S>
void state_prefill(State& state, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out);
/// state.step(q, k, v, out) for one token (q, k, v, out: 1 x d, 1 x d, 1 x d_v, 1 x d_v).
template <typename State, typename S>
void state_step(State& state, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out);
/// state.query(q, out): attends to the absorbed tokens, state unchanged.
template <typename State, typename S>
void state_query(const State& state, const In<S>& q, Out<S> out);

/// PositiveRandomFeatures<S>::draw / from_matrix.
template <typename S>
attnx::PositiveRandomFeatures<S> features_draw(Index d, std::uint64_t seed, const attnx::RandomFeatureOptions& o);
template <typename S>
attnx::PositiveRandomFeatures<S> features_from(const In<S>& w, double stabilizer);

/// attnx::compare(approx, reference).
template <typename A, typename R>
attnx::ErrorMetrics compare(const In<A>& approx, const In<R>& reference);

}  // namespace attnx_py

#endif  // ATTNX_PYTHON_KERNELS_HPP
