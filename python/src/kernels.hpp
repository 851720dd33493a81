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
#include "attnx/mechanisms.hpp"
#include "attnx/multi_head.hpp"
#include "attnx/metrics.hpp"
#include "attnx/nystrom.hpp"

namespace attnx_py {

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

/// attnx::compare(approx, reference).
template <typename A, typename R>
attnx::ErrorMetrics compare(const In<A>& approx, const In<R>& reference);

}  // namespace attnx_py

#endif  // ATTNX_PYTHON_KERNELS_HPP
