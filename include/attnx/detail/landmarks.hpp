// SPDX-License-Identifier: MIT
/// \file detail/landmarks.hpp
/// Segment-mean landmarks (Nyström attention). Not API.
///
/// The r real (unpadded) rows of x, in order, are cut into m contiguous segments: the first
/// (r mod m) segments hold ceil(r/m) rows, the others floor(r/m). Landmark i is the mean of
/// segment i. With r a multiple of m this is HuggingFace's x.reshape(m, r/m, d).mean(-2).
#ifndef ATTNX_DETAIL_LANDMARKS_HPP
#define ATTNX_DETAIL_LANDMARKS_HPP

#include <Eigen/Core>

#include <vector>

#include "attnx/core.hpp"

namespace attnx {
namespace detail {

/// Number of rows not flagged as padding (all rows when the mask is empty).
inline Index count_unpadded(const std::vector<bool>& padding, Index rows) {
    if (padding.empty()) return rows;
    Index r = 0;
    for (bool p : padding) r += p ? 0 : 1;
    return r;
}

/// Length of segment i when r rows are cut into m segments (first r mod m are one longer).
inline Index segment_length(Index r, Index m, Index i) { return r / m + (i < r % m ? 1 : 0); }

/// m x d landmarks of x (n x d): means of m segments of the unpadded rows. Requires
/// 1 <= m <= count_unpadded(padding, n).
template <typename Scalar>
Matrix<Scalar> segment_means(const Eigen::Ref<const Matrix<Scalar>>& x, const std::vector<bool>& padding, Index m) {
    const Index n = x.rows();
    const Index r = count_unpadded(padding, n);
    Matrix<Scalar> out(m, x.cols());
    if (padding.empty()) {
        Index start = 0;
        for (Index i = 0; i < m; ++i) {
            const Index len = segment_length(r, m, i);
            out.row(i) = x.middleRows(start, len).colwise().sum() / static_cast<Scalar>(len);
            start += len;
        }
        return out;
    }
    Index row = 0;
    for (Index i = 0; i < m; ++i) {
        const Index len = segment_length(r, m, i);
        out.row(i).setZero();
        for (Index taken = 0; taken < len; ++row) {
            if (padding[static_cast<std::size_t>(row)]) continue;
            out.row(i) += x.row(row);
            ++taken;
        }
        out.row(i) /= static_cast<Scalar>(len);
    }
    return out;
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_LANDMARKS_HPP
