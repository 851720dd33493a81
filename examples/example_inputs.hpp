// SPDX-License-Identifier: MIT
/// \file example_inputs.hpp
/// "Realistic" attention inputs for the examples: tokens driven by a few latent factors that
/// vary smoothly along the sequence (neighbouring tokens are alike, as in text or audio),
/// plus noise. The attention matrix is then close to low rank with local structure — the
/// regime the approximations target — and its rows are peaked (logit std around 2).
#ifndef ATTNX_EXAMPLES_EXAMPLE_INPUTS_HPP
#define ATTNX_EXAMPLES_EXAMPLE_INPUTS_HPP

#include <attnx/random.hpp>

#include <cmath>
#include <cstdint>

namespace examples {

template <typename Scalar>
struct Inputs {
    attnx::Matrix<Scalar> q, k, v;
};

/// n tokens, head dimension d, value dimension dv; rank latent factors smoothed over a
/// window of `window` tokens; deterministic in seed.
template <typename Scalar>
Inputs<Scalar> realistic_inputs(attnx::Index n, attnx::Index d, attnx::Index dv, std::uint64_t seed,
                                attnx::Index rank = 8, attnx::Index window = 16) {
    using attnx::Index;
    const Eigen::MatrixXd raw = attnx::random_normal<double>(n + window, rank, seed, 10);
    Eigen::MatrixXd z(n, rank);
    Eigen::RowVectorXd run = raw.topRows(window).colwise().sum();
    for (Index i = 0; i < n; ++i) {  // moving average: smooth along the sequence
        z.row(i) = run / std::sqrt(static_cast<double>(window));
        run += raw.row(i + window) - raw.row(i);
    }
    const Eigen::MatrixXd wq = attnx::random_normal<double>(rank, d, seed, 11, 0.0, 1.5 / std::sqrt(rank));
    const Eigen::MatrixXd wk = attnx::random_normal<double>(rank, d, seed, 12, 0.0, 1.5 / std::sqrt(rank));
    const Eigen::MatrixXd wv = attnx::random_normal<double>(rank, dv, seed, 13, 0.0, 1.0 / std::sqrt(rank));
    Inputs<Scalar> x;
    x.q = (z * wq + attnx::random_normal<double>(n, d, seed, 14, 0.0, 0.3)).template cast<Scalar>();
    x.k = (z * wk + attnx::random_normal<double>(n, d, seed, 15, 0.0, 0.3)).template cast<Scalar>();
    x.v = (z * wv + attnx::random_normal<double>(n, dv, seed, 16, 0.0, 0.3)).template cast<Scalar>();
    return x;
}

}  // namespace examples

#endif  // ATTNX_EXAMPLES_EXAMPLE_INPUTS_HPP
