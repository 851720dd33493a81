// SPDX-License-Identifier: MIT
/// \file detail/transpose.hpp
/// A transposing copy in packet blocks, for the kernels that gather rows into columns (the
/// multi-head layer's token-major caches, the feature-map engine's key features). Not API.
#ifndef ATTNX_DETAIL_TRANSPOSE_HPP
#define ATTNX_DETAIL_TRANSPOSE_HPP

#include <Eigen/Core>

#include "attnx/core.hpp"

namespace attnx {
namespace detail {

/// dst (column-major, outer stride ld) = the rows x cols matrix at src with row stride
/// src_stride and unit column stride. Blocks of P x P (P = Eigen's packet size for Scalar) are transposed in registers by
/// Eigen's ptranspose (what its GEMM packing uses): a K or V tile of a token-major cache is
/// gathered at about the speed of a copy (the scalar loop took 1.4x one). The edges go one by one.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// g++ 12 with AVX-512: the _mm512_undefined_* intrinsics behind ptranspose
// raise false -Wuninitialized / -Wmaybe-uninitialized reports at these lines.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <typename Scalar>
void transpose_rows(const Scalar* src, Index src_stride, Index rows, Index cols, Scalar* dst, Index ld) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<Scalar>::type;
    constexpr int P = ei::packet_traits<Scalar>::size;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // PacketBlock<__m256, 8>: the vector type's alignment attribute
#endif
    using Block = ei::PacketBlock<Packet, P>;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    Index n0 = 0;
    for (; n0 + P <= rows; n0 += P) {
        Index c0 = 0;
        for (; c0 + P <= cols; c0 += P) {
            Block b;
            for (int r = 0; r < P; ++r) b.packet[r] = ei::ploadu<Packet>(src + (n0 + r) * src_stride + c0);
            ei::ptranspose(b);
            for (int r = 0; r < P; ++r) ei::pstoreu(dst + (c0 + r) * ld + n0, b.packet[r]);
        }
        for (; c0 < cols; ++c0)
            for (Index n = n0; n < n0 + P; ++n) dst[c0 * ld + n] = src[n * src_stride + c0];
    }
    for (; n0 < rows; ++n0)
        for (Index c = 0; c < cols; ++c) dst[c * ld + n0] = src[n0 * src_stride + c];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_TRANSPOSE_HPP
