// SPDX-License-Identifier: MIT
/// \file detail/small_gemm.hpp
/// C = A·B and C += A·B for the small, cache-resident products of the feature-map engine (a
/// causal chunk's T x C by C x (d_v + 1), T = 64; the key states, the non-causal query tiles,
/// the decode step, FAVOR+'s feature product), computed in place from the operands. Not API.
///
/// Why not Eigen's product: for operands this small Eigen's GEMM packs both of them into
/// buffers on every call, and its micro-kernel then ran at about 60% of the FMA peak on the
/// 2-core VMs of this project (64 x 64 by 64 x 65, float, one thread, against a loop of 12
/// independent FMA chains: 68 of 111 GFLOP/s with AVX2; 133 GFLOP/s with AVX-512, whose peak
/// there, two 16-lane FMAs per cycle at the same clock, is about 221). The tile below reads
/// A's columns and broadcasts B's entries where they lie, and ran the same product at 110 and
/// 216 GFLOP/s (97–99% of those peaks on the shapes measured).
///
/// The tile: 2 packets of rows by 6 columns of C held in 12 registers (AVX2 float: 16 x 6);
/// per step of the inner dimension, 2 packet loads of A's column, 6 broadcasts of B's entries
/// and 12 FMAs, in order from k = 0; then a tile of one packet of rows if one is left. The last
/// m mod P rows (fewer than a packet) go to Eigen's product (a GEMV for the decode step's one
/// row when P > 1), which may sum in another order. Either way a result depends on the sizes
/// and the vector width only, never on the threads.
///
/// Cost: m·n·k FMAs; no allocation.
#ifndef ATTNX_DETAIL_SMALL_GEMM_HPP
#define ATTNX_DETAIL_SMALL_GEMM_HPP

#include <Eigen/Core>

#include <type_traits>

#include "attnx/core.hpp"
#include "attnx/detail/static_for.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // packet_traits<float>::type: the vector type's alignment attribute
#endif

namespace attnx {
namespace detail {

/// Columns of C per tile, and packets of rows per tile.
constexpr int small_gemm_cols = 6;
constexpr int small_gemm_packets = 2;

/// C[0:MP·P, 0:NR] (+)= A[0:MP·P, 0:k] · B[0:k, 0:NR], where A(i, l) = a[i + l·lda],
/// B(l, j) = b[l·bk + j·bj] and C(i, j) = c[i + j·ldc].
template <typename Scalar, int MP, int NR, bool Accumulate>
inline void small_gemm_tile(Index k, const Scalar* a, Index lda, const Scalar* b, Index bk, Index bj, Scalar* c,
                            Index ldc) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<Scalar>::type;
    constexpr int P = ei::unpacket_traits<Packet>::size;
    Packet acc[MP][NR];
    static_for<MP>([&](auto m) { static_for<NR>([&](auto j) { acc[m][j] = ei::pset1<Packet>(Scalar(0)); }); });
    for (Index l = 0; l < k; ++l) {
        Packet col[MP];
        static_for<MP>([&](auto m) { col[m] = ei::ploadu<Packet>(a + l * lda + m * P); });
        const Scalar* bl = b + l * bk;
        static_for<NR>([&](auto j) {
            const Packet x = ei::pset1<Packet>(bl[j * bj]);
            static_for<MP>([&](auto m) { acc[m][j] = ei::pmadd(col[m], x, acc[m][j]); });
        });
    }
    static_for<NR>([&](auto j) {
        static_for<MP>([&](auto m) {
            Scalar* to = c + j * ldc + m * P;
            if constexpr (Accumulate)
                ei::pstoreu(to, ei::padd(ei::ploadu<Packet>(to), acc[m][j]));
            else
                ei::pstoreu(to, acc[m][j]);
        });
    });
}

/// Every column of C for the row block [i, i + MP·P): tiles of 6 columns, then one tile of the
/// columns left over.
template <typename Scalar, int MP, bool Accumulate>
void small_gemm_rows(Index i, Index n, Index k, const Scalar* a, Index lda, const Scalar* b, Index bk, Index bj,
                     Scalar* c, Index ldc) {
    constexpr int NR = small_gemm_cols;
    Index j = 0;
    for (; j + NR <= n; j += NR)
        small_gemm_tile<Scalar, MP, NR, Accumulate>(k, a + i, lda, b + j * bj, bk, bj, c + i + j * ldc, ldc);
    const Index rest = n - j;
    static_for<NR - 1>([&](auto r) {
        if (rest == r + 1)
            small_gemm_tile<Scalar, MP, r + 1, Accumulate>(k, a + i, lda, b + j * bj, bk, bj, c + i + j * ldc, ldc);
    });
}

/// c = a·b (Accumulate false) or c += a·b. a and c: column-major at compile time with unit inner
/// stride (a dynamic-size Matrix, Map or Ref, or a block of rows or columns of one; not .row(i)
/// nor a row vector type, which Eigen makes row-major); b: any expression with direct access
/// (such a block, a transpose of one, a row). c must not overlap a or b. Shapes are the
/// caller's to check (asserted).
template <bool Accumulate, typename DC, typename DA, typename DB>
void small_gemm(DC&& c, const DA& a, const DB& b) {
    using Scalar = typename DA::Scalar;
    using C = std::remove_reference_t<DC>;
    static_assert(!DA::IsRowMajor && int(DA::InnerStrideAtCompileTime) == 1 && !C::IsRowMajor &&
                      int(C::InnerStrideAtCompileTime) == 1,
                  "attnx: small_gemm takes column-major a and c with unit inner stride");
    static_assert((int(DB::Flags) & Eigen::DirectAccessBit) != 0, "attnx: small_gemm reads b in place");
    using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
    constexpr Index P = Eigen::internal::unpacket_traits<Packet>::size;
    const Index m = a.rows(), n = b.cols(), k = a.cols();
    eigen_assert(b.rows() == k && c.rows() == m && c.cols() == n);
    if (m == 0 || n == 0) return;
    if (k == 0) {  // a or b may have no storage at all
        if constexpr (!Accumulate) c.setZero();
        return;
    }
    const Index bk = DB::IsRowMajor ? b.outerStride() : b.innerStride();
    const Index bj = DB::IsRowMajor ? b.innerStride() : b.outerStride();
    const Scalar* pa = a.data();
    const Scalar* pb = b.data();
    Scalar* pc = c.data();
    const Index lda = a.outerStride(), ldc = c.outerStride();
    constexpr Index MR = small_gemm_packets * P;
    Index i = 0;
    for (; i + MR <= m; i += MR)
        small_gemm_rows<Scalar, small_gemm_packets, Accumulate>(i, n, k, pa, lda, pb, bk, bj, pc, ldc);
    if (small_gemm_packets > 1 && m - i >= P) {
        small_gemm_rows<Scalar, 1, Accumulate>(i, n, k, pa, lda, pb, bk, bj, pc, ldc);
        i += P;
    }
    if (i < m) {
        if constexpr (Accumulate)
            c.bottomRows(m - i).noalias() += a.bottomRows(m - i) * b;
        else
            c.bottomRows(m - i).noalias() = a.bottomRows(m - i) * b;
    }
}

}  // namespace detail
}  // namespace attnx

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTNX_DETAIL_SMALL_GEMM_HPP
