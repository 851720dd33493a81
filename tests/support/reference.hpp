// SPDX-License-Identifier: MIT
/// \file reference.hpp
/// Test-side references written independently of the library: plain loops in double.
#ifndef ATTNX_TESTS_SUPPORT_REFERENCE_HPP
#define ATTNX_TESTS_SUPPORT_REFERENCE_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ref {

using MatrixXd = Eigen::MatrixXd;
using Index = Eigen::Index;

/// visible(i, j): may query i see key j.
using Visible = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

inline Visible all_visible(Index n_q, Index n_k) { return Visible::Constant(n_q, n_k, true); }

/// Applies causal (bottom-right aligned) and key-padding masks to a visibility matrix.
inline Visible masked(Index n_q, Index n_k, bool causal, const std::vector<bool>& key_padding) {
    Visible vis = all_visible(n_q, n_k);
    for (Index i = 0; i < n_q; ++i)
        for (Index j = 0; j < n_k; ++j) {
            if (causal && j > i + (n_k - n_q)) vis(i, j) = false;
            if (!key_padding.empty() && key_padding[static_cast<std::size_t>(j)]) vis(i, j) = false;
        }
    return vis;
}

/// softmax over visible keys of scale * q k^T, times v; rows with no visible key are zero.
inline MatrixXd attention(const MatrixXd& q, const MatrixXd& k, const MatrixXd& v, double scale,
                          const Visible& vis) {
    MatrixXd out = MatrixXd::Zero(q.rows(), v.cols());
    std::vector<double> s(static_cast<std::size_t>(k.rows()));
    for (Index i = 0; i < q.rows(); ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (Index j = 0; j < k.rows(); ++j) {
            if (!vis(i, j)) continue;
            double dot = 0;
            for (Index c = 0; c < q.cols(); ++c) dot += q(i, c) * k(j, c);
            s[static_cast<std::size_t>(j)] = scale * dot;
            mx = std::max(mx, s[static_cast<std::size_t>(j)]);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;
        double sum = 0;
        for (Index j = 0; j < k.rows(); ++j) {
            if (!vis(i, j)) continue;
            const double p = std::exp(s[static_cast<std::size_t>(j)] - mx);
            sum += p;
            out.row(i) += p * v.row(j);
        }
        out.row(i) /= sum;
    }
    return out;
}

inline MatrixXd attention(const MatrixXd& q, const MatrixXd& k, const MatrixXd& v) {
    return attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.cols())), all_visible(q.rows(), k.rows()));
}

}  // namespace ref

#endif  // ATTNX_TESTS_SUPPORT_REFERENCE_HPP
