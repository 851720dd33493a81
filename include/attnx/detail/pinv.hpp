// SPDX-License-Identifier: MIT
/// \file detail/pinv.hpp
/// Moore–Penrose pseudoinverses of the small m x m Nyström kernel. Not API.
///
/// Iterative (Razavi et al. 2014, as used by Nyströmformer and HuggingFace):
///     Z_0 = Aᵀ / (‖A‖_1 ‖A‖_∞);  for a row-stochastic A, ‖A‖_∞ = 1, so Z_0 = Aᵀ / max column sum;
///     Z_{j+1} = ¼ Z_j (13 I − A Z_j (15 I − A Z_j (7 I − A Z_j))),
/// evaluated in exactly HuggingFace's order: (0.25 Z) · (13 I − AZ · (15 I − AZ · (7 I − AZ))).
/// Exact: complete orthogonal decomposition, computed in double whatever the Scalar.
#ifndef ATTNX_DETAIL_PINV_HPP
#define ATTNX_DETAIL_PINV_HPP

#include <Eigen/Core>
#include <Eigen/QR>

#include "attnx/core.hpp"

namespace attnx {
namespace detail {

/// A must be row-stochastic (it is a softmax), so ‖A‖_∞ = 1 and Z_0 = Aᵀ / max column sum.
template <typename Scalar>
Matrix<Scalar> iterative_pinv(const Matrix<Scalar>& a, int iterations) {
    const Index m = a.rows();
    const Scalar denom = a.colwise().sum().maxCoeff();
    Matrix<Scalar> z = a.transpose() / denom;
    const Matrix<Scalar> id = Matrix<Scalar>::Identity(m, m);
    Matrix<Scalar> az(m, m), t(m, m), u(m, m);
    for (int it = 0; it < iterations; ++it) {
        az.noalias() = a * z;
        t = Scalar(7) * id - az;
        u.noalias() = az * t;
        t = Scalar(15) * id - u;
        u.noalias() = az * t;
        t = Scalar(13) * id - u;
        u.noalias() = (Scalar(0.25) * z) * t;
        z.swap(u);
    }
    return z;
}

template <typename Scalar>
Matrix<Scalar> exact_pinv(const Matrix<Scalar>& a) {
    const Matrix<double> ad = a.template cast<double>();
    const Eigen::CompleteOrthogonalDecomposition<Matrix<double>> cod(ad);
    return cod.pseudoInverse().template cast<Scalar>();
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_PINV_HPP
