// SPDX-License-Identifier: MIT
/// \file metrics.hpp
/// attnx::compare and ErrorMetrics: the error of an approximation against a reference, the
/// metrics every test, benchmark and the demo report.
#ifndef ATTNX_METRICS_HPP
#define ATTNX_METRICS_HPP

#include <Eigen/Core>

#include <limits>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"

namespace attnx {

/// Error metrics of an approximation against a reference (computed in double).
struct ErrorMetrics {
    double rel_fro = 0;          ///< ||A - R||_F / ||R||_F (0 if both are 0, +inf if only R is 0)
    double max_abs = 0;          ///< max |A_ij - R_ij|
    double mean_row_cosine = 1;  ///< mean over rows of cos(A_i, R_i); a pair of zero rows counts 1
};

/// Relative Frobenius error, max abs error and mean row cosine of `approx` against
/// `reference` (same shape; the Scalar types may differ, e.g. float against a double reference).
template <typename DA, typename DR>
ErrorMetrics compare(const Eigen::MatrixBase<DA>& approx, const Eigen::MatrixBase<DR>& reference) {
    if (approx.rows() != reference.rows() || approx.cols() != reference.cols())
        detail::throw_invalid("compare: approx is ", detail::shape_of(approx), " but reference is ",
                              detail::shape_of(reference), " (they must have the same shape)");
    const Matrix<double> a = approx.template cast<double>();
    const Matrix<double> r = reference.template cast<double>();
    ErrorMetrics e;
    const double diff = (a - r).norm();
    const double ref = r.norm();
    if (ref > 0)
        e.rel_fro = diff / ref;
    else
        e.rel_fro = diff > 0 ? std::numeric_limits<double>::infinity() : 0.0;
    e.max_abs = a.size() == 0 ? 0.0 : (a - r).cwiseAbs().maxCoeff();
    double cos_sum = 0;
    for (Index i = 0; i < a.rows(); ++i) {
        const double na = a.row(i).norm(), nr = r.row(i).norm();
        if (na == 0 && nr == 0)
            cos_sum += 1;
        else if (na > 0 && nr > 0)
            cos_sum += a.row(i).dot(r.row(i)) / (na * nr);
    }
    e.mean_row_cosine = a.rows() > 0 ? cos_sum / static_cast<double>(a.rows()) : 1.0;
    return e;
}

}  // namespace attnx

#endif  // ATTNX_METRICS_HPP
