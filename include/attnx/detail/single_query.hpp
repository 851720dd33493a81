// SPDX-License-Identifier: MIT
/// \file detail/single_query.hpp
/// The two products of one online-softmax step for a single query row (decoding): the scores
/// s = K_tile q and the weighted sum pᵀ V_tile, each in two forms, one for column-major tiles
/// (single-head calls on Eigen matrices) and one for row-major tiles (a token-major KV cache,
/// read in place by multi_head_attention), that perform the same floating-point operations in
/// the same order and so give the same bits. Not API.
///
/// With P the packet size of Scalar (Eigen's; 16 floats with AVX-512, 8 with AVX), the order is
/// fixed as follows, for either layout:
///  - score of key j: P lanes, lane l the FMA chain over dims c = l, l + P, l + 2P, ... < d
///    (from 0), then the lanes summed by the halving tree: lane l += lane l + w for
///    w = P/2, P/4, ..., 1; the score is lane 0;
///  - weighted sum, dim c: P lanes, lane l the FMA chain p_j v_jc over the tile's keys j with
///    j mod P = l, in order (from 0), then the same halving tree.
/// A column-major tile vectorises both products over keys (the weighted sum then needs one P x P
/// transpose per P dims for its tree); a row-major tile vectorises both over dims (the scores
/// need one P x P transpose per P keys). Lanes past the end (d or the tile's key count not a
/// multiple of P) take FMAs of +0 and +0 in both forms, so even the sign of a zero agrees. With
/// no vectorisation (P = 1) both are plain sequential chains.
///
/// Cost per key: d + d_v FMAs, plus one P x P transpose per P keys (scores, row-major) or per
/// P dims (weighted sum, column-major); no allocation.
#ifndef ATTNX_DETAIL_SINGLE_QUERY_HPP
#define ATTNX_DETAIL_SINGLE_QUERY_HPP

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>
#include <utility>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"  // ceil_div
#include "attnx/detail/static_for.hpp"

namespace attnx {
namespace detail {

/// A tile of K or V rows, column-major, any outer stride (single-head calls).
template <typename Scalar>
using TileMap = Eigen::Map<const Matrix<Scalar>, 0, Eigen::OuterStride<>>;

/// A tile of K or V rows, row-major with unit stride along the dims (a token-major cache).
template <typename Scalar>
using RowTileMap = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                              Eigen::OuterStride<>>;

template <typename T>
struct is_row_tile : std::false_type {};
template <typename Scalar>
struct is_row_tile<RowTileMap<Scalar>> : std::true_type {};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// g++ 12 with AVX-512: the _mm512_undefined_* intrinsics behind ptranspose raise false
// -Wuninitialized / -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // PacketBlock<__m256, 8>: the vector type's alignment attribute
#endif

/// Packet type, size and the shared steps of the single-query products.
template <typename Scalar>
struct QueryPackets {
    using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
    static constexpr int P = Eigen::internal::unpacket_traits<Packet>::size;
    static_assert((P & (P - 1)) == 0, "attnx: packet size must be a power of two");
    using Block = Eigen::internal::PacketBlock<Packet, P>;

    static Packet zero() { return Eigen::internal::pset1<Packet>(Scalar(0)); }
    static Packet fma(const Packet& a, const Packet& b, const Packet& c) { return Eigen::internal::pmadd(a, b, c); }
    /// fma(0, 0, c): what a padded lane (past d, or past the tile's last key) takes.
    static Packet pad(const Packet& c) { return fma(zero(), zero(), c); }

    /// The halving tree over the P packets a[0..P): a[0] ends as their lane-wise sum.
    template <int W = P / 2>
    static void tree(Packet* a) {
        if constexpr (W >= 1) {
            static_for<W>([&](auto l) { a[l] = Eigen::internal::padd(a[l], a[l + W]); });
            tree<W / 2>(a);
        }
    }

    /// out[0..n) = the tree sums of b's packets (b.packet[r] lane l: lane l of output r);
    /// b is transposed in place first, so that each packet holds one lane of every output.
    static void tree_transposed(Block& b, int n, Scalar* out) {
        if constexpr (P > 1) Eigen::internal::ptranspose(b);
        tree(b.packet);
        store(out, b.packet[0], n);
    }

    /// First n lanes of x to out.
    static void store(Scalar* out, const Packet& x, int n) {
        if (n == P) {
            Eigen::internal::pstoreu(out, x);
            return;
        }
        alignas(64) Scalar buf[P];
        Eigen::internal::pstoreu(buf, x);
        std::copy(buf, buf + n, out);
    }

    /// n (<= P) consecutive elements from src, padded with zeros, as a packet.
    static Packet load(const Scalar* src, int n) {
        if (n == P) return Eigen::internal::ploadu<Packet>(src);
        alignas(64) Scalar buf[P] = {};
        std::copy(src, src + n, buf);
        return Eigen::internal::ploadu<Packet>(buf);
    }
};

/// s[j] = score of key j of the column-major tile kt against q (the order of the file comment);
/// q has the tile's d entries followed by +0 up to a multiple of P (both forms need that: the
/// row-major form multiplies the padding of K's rows by it). Blocks of 8 packets of
/// keys; in a block, one lane of dims at a time (its columns c = l, l + P, ... each read for the
/// block's 8 packets, as Eigen's GEMV reads a column, so that the prefetcher sees streams), the
/// lanes kept on the stack for the tree.
template <typename Scalar>
void single_query_scores(const TileMap<Scalar>& kt, const Scalar* q, Scalar* s) {
    using QP = QueryPackets<Scalar>;
    using Packet = typename QP::Packet;
    constexpr int P = QP::P;
    constexpr int KP = 8;  // packets of keys per block
    const Index bk = kt.rows(), d = kt.cols(), ld = kt.outerStride();
    const Index d_pad = ceil_div(d, Index(P)) * P;
    const Scalar* base = kt.data();
    Packet lanes[KP][P];  // lanes[k][l]: lane l of dims for key packet k of the block
    Index j = 0;
    for (; j + KP * P <= bk; j += KP * P) {
        for (int l = 0; l < P; ++l) {
            Packet a[KP];  // in registers: every index below is a constant
            static_for<KP>([&](auto k) { a[k] = QP::zero(); });
            for (Index c = l; c < d_pad; c += P) {
                if (c >= d) {
                    static_for<KP>([&](auto k) { a[k] = QP::pad(a[k]); });
                    continue;
                }
                const Scalar* col = base + c * ld + j;
                const Packet qc = Eigen::internal::pset1<Packet>(q[c]);
                static_for<KP>([&](auto k) {
                    a[k] = QP::fma(Eigen::internal::ploadu<Packet>(col + k * P), qc, a[k]);
                });
            }
            static_for<KP>([&](auto k) { lanes[k][l] = a[k]; });
        }
        for (int k = 0; k < KP; ++k) {
            QP::tree(lanes[k]);
            Eigen::internal::pstoreu(s + j + k * P, lanes[k][0]);
        }
    }
    if (j == bk) return;
    // The last, partial block: the same operations, packet by packet, keys past the tile zero.
    const Index nk = bk - j;
    const int np = static_cast<int>(ceil_div(nk, Index(P)));
    for (int k = 0; k < np; ++k) {
        const int n = static_cast<int>(std::min<Index>(P, nk - Index(k) * P));
        for (int l = 0; l < P; ++l) {
            Packet a = QP::zero();
            for (Index c = l; c < d_pad; c += P)
                a = c < d ? QP::fma(QP::load(base + c * ld + j + k * P, n), Eigen::internal::pset1<Packet>(q[c]), a)
                          : QP::pad(a);
            lanes[0][l] = a;
        }
        QP::tree(lanes[0]);
        QP::store(s + j + k * P, lanes[0][0], n);
    }
}

/// The same scores for a row-major tile: one key at a time, its lanes in one packet.
template <typename Scalar>
void single_query_scores(const RowTileMap<Scalar>& kt, const Scalar* q, Scalar* s) {
    using QP = QueryPackets<Scalar>;
    using Packet = typename QP::Packet;
    constexpr int P = QP::P;
    const Index bk = kt.rows(), d = kt.cols(), ld = kt.outerStride();
    const Index d_full = d / P * P;
    const int d_tail = static_cast<int>(d - d_full);  // the padded dims of q are 0
    const Scalar* base = kt.data();
    typename QP::Block b;  // b.packet[r]: key j + r, lane l of dims
    for (Index j = 0; j < bk; j += P) {
        const int n = static_cast<int>(std::min<Index>(P, bk - j));  // keys in this block
        for (int r = 0; r < n; ++r) {
            const Scalar* row = base + (j + r) * ld;
            Packet a = QP::zero();
            for (Index c0 = 0; c0 < d_full; c0 += P)
                a = QP::fma(Eigen::internal::ploadu<Packet>(row + c0), Eigen::internal::ploadu<Packet>(q + c0), a);
            if (d_tail > 0) a = QP::fma(QP::load(row + d_full, d_tail), Eigen::internal::ploadu<Packet>(q + d_full), a);
            b.packet[r] = a;
        }
        for (int r = n; r < P; ++r) b.packet[r] = QP::zero();
        QP::tree_transposed(b, n, s + j);
    }
}

/// out[c] = Σ_j p[j] vt(j, c) over the rows of the column-major tile vt, in the order of the
/// file comment. Columns are read whole, 4 at a time (as Eigen's GEMV of a transposed matrix).
template <typename Scalar>
void single_query_weighted_sum(const TileMap<Scalar>& vt, const Scalar* p, Scalar* out) {
    using QP = QueryPackets<Scalar>;
    using Packet = typename QP::Packet;
    constexpr int P = QP::P;
    constexpr int G = P < 4 ? P : 4;  // columns read together
    const Index bk = vt.rows(), dv = vt.cols(), ld = vt.outerStride();
    const Index full = bk / P * P;  // keys in whole packets
    const int tail = static_cast<int>(bk - full);
    const Scalar* base = vt.data();
    const Packet p_tail = QP::load(p + full, tail);  // past the tile: p = v = 0
    for (Index c0 = 0; c0 < dv; c0 += P) {
        const int w = static_cast<int>(std::min<Index>(P, dv - c0));  // dims in this block
        typename QP::Block b;  // b.packet[r]: dim c0 + r, a packet over key lanes
        static_for<P / G>([&](auto g) {
            Packet a[G];
            static_for<G>([&](auto r) { a[r] = QP::zero(); });
            const Scalar* col = base + (c0 + g * G) * ld;
            if (g * G + G <= w) {
                for (Index j = 0; j < full; j += P) {
                    const Packet pp = Eigen::internal::ploadu<Packet>(p + j);
                    static_for<G>([&](auto r) {
                        a[r] = QP::fma(Eigen::internal::ploadu<Packet>(col + r * ld + j), pp, a[r]);
                    });
                }
                if (tail > 0)
                    static_for<G>([&](auto r) { a[r] = QP::fma(QP::load(col + r * ld + full, tail), p_tail, a[r]); });
            } else {  // the last block's columns past dv stay zero
                static_for<G>([&](auto r) {
                    if (g * G + r >= w) return;
                    for (Index j = 0; j < full; j += P)
                        a[r] = QP::fma(Eigen::internal::ploadu<Packet>(col + r * ld + j),
                                       Eigen::internal::ploadu<Packet>(p + j), a[r]);
                    if (tail > 0) a[r] = QP::fma(QP::load(col + r * ld + full, tail), p_tail, a[r]);
                });
            }
            static_for<G>([&](auto r) { b.packet[g * G + r] = a[r]; });
        });
        QP::tree_transposed(b, w, out + c0);
    }
}

/// Dims [c0, c0 + CP·P) of single_query_weighted_sum for a row-major tile: one lane of keys at a
/// time, each of its rows read for the CP packets at once (contiguous), into CP accumulators in
/// registers; the lanes kept on the stack for the tree.
template <int CP, typename Scalar>
void single_query_weighted_rows(const RowTileMap<Scalar>& vt, const Scalar* p, Index c0, Scalar* out) {
    using QP = QueryPackets<Scalar>;
    using Packet = typename QP::Packet;
    constexpr int P = QP::P;
    const Index bk = vt.rows(), ld = vt.outerStride();
    const int tail = static_cast<int>(bk % P);
    Packet lanes[CP][P];  // lanes[c][l]: lane l of keys (j mod P = l) for dim packet c
    for (int l = 0; l < P; ++l) {
        Packet a[CP];  // every index below is a constant
        static_for<CP>([&](auto c) { a[c] = QP::zero(); });
        for (Index j = l; j < bk; j += P) {
            const Scalar* row = vt.data() + j * ld + c0;
            const Packet pj = Eigen::internal::pset1<Packet>(p[j]);
            static_for<CP>([&](auto c) { a[c] = QP::fma(Eigen::internal::ploadu<Packet>(row + c * P), pj, a[c]); });
        }
        if (tail > 0 && l >= tail) static_for<CP>([&](auto c) { a[c] = QP::pad(a[c]); });  // keys past the tile
        static_for<CP>([&](auto c) { lanes[c][l] = a[c]; });
    }
    for (int c = 0; c < CP; ++c) {
        QP::tree(lanes[c]);
        Eigen::internal::pstoreu(out + c0 + c * P, lanes[c][0]);
    }
}

/// The same weighted sum for a row-major tile: blocks of 8, 4, 2, 1 packets of dims
/// (single_query_weighted_rows), then the last dims padded to a packet.
template <typename Scalar>
void single_query_weighted_sum(const RowTileMap<Scalar>& vt, const Scalar* p, Scalar* out) {
    using QP = QueryPackets<Scalar>;
    using Packet = typename QP::Packet;
    constexpr int P = QP::P;
    const Index bk = vt.rows(), dv = vt.cols(), ld = vt.outerStride();
    Index c0 = 0;
    for (; c0 + 8 * P <= dv; c0 += 8 * P) single_query_weighted_rows<8>(vt, p, c0, out);
    if (c0 + 4 * P <= dv) {
        single_query_weighted_rows<4>(vt, p, c0, out);
        c0 += 4 * P;
    }
    if (c0 + 2 * P <= dv) {
        single_query_weighted_rows<2>(vt, p, c0, out);
        c0 += 2 * P;
    }
    if (c0 + P <= dv) {
        single_query_weighted_rows<1>(vt, p, c0, out);
        c0 += P;
    }
    if (c0 == dv) return;
    const int w = static_cast<int>(dv - c0), tail = static_cast<int>(bk % P);
    Packet lanes[P];
    for (int l = 0; l < P; ++l) {
        Packet a = QP::zero();
        for (Index j = l; j < bk; j += P)
            a = QP::fma(QP::load(vt.data() + j * ld + c0, w), Eigen::internal::pset1<Packet>(p[j]), a);
        if (tail > 0 && l >= tail) a = QP::pad(a);
        lanes[l] = a;
    }
    QP::tree(lanes);
    QP::store(out + c0, lanes[0], w);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_SINGLE_QUERY_HPP
