// SPDX-License-Identifier: MIT
/// \file detail/online_softmax.hpp
/// The tiled online-softmax kernel behind every exact-softmax computation in attnx:
/// the streaming exact kernel, the block-sparse kernel, and the small dense pieces of
/// Nyström and Linformer. Not API.
///
/// For each query tile (rows [i0, i1) of Q) the kernel visits a list of key tiles
/// (rows [j0, j1) of K and V) and keeps, per query row, the running max m, the running
/// sum l and the unnormalised accumulator acc (Milakov & Gimelshein, arXiv:1805.02867;
/// Rabe & Staats, arXiv:2112.05682):
///     S = s * Q_i K_jᵀ (+ mask),  m' = max(m, rowmax S),  P = exp(S - m'),
///     l' = exp(m - m') l + rowsum P,  acc' = exp(m - m') acc + P V_j,
/// and finally out_i = acc / l. Rows that saw no unmasked key (m = -inf) stay zero.
///
/// The score tile is stored transposed (keys x queries) so that the per-query max,
/// exp and sum run down contiguous columns. Each thread allocates its workspace once
/// per call; the tile loop allocates nothing (tested under EIGEN_RUNTIME_NO_MALLOC).
///
/// When there are few query tiles (e.g. Nyström's m landmark queries against all n
/// keys), each query tile's key list is split into parts that run in parallel and are
/// merged in a fixed order afterwards. The split depends only on the sizes, never on
/// the thread count, so results are identical for any number of threads.
#ifndef ATTNX_DETAIL_ONLINE_SOFTMAX_HPP
#define ATTNX_DETAIL_ONLINE_SOFTMAX_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/parallel.hpp"
#include "attnx/detail/single_query.hpp"

namespace attnx {
namespace detail {

/// A half-open range of key rows [begin, end).
struct KeyRange {
    Index begin = 0;
    Index end = 0;
};

/// Sets the masked entries of a transposed score tile st (keys x queries) to `value`:
/// -inf before the softmax, and 0 again after it (Eigen's vectorised exp clamps its
/// argument, so exp(-inf) comes out as a denormal near 1e-39 rather than 0).
/// Key row r of the tile is key j0 + r; query column c is query i0 + c.
template <typename Scalar, typename Tile>
void apply_mask_tile(Tile&& st, Index j0, Index i0, const MaskSpec& mask,
                     Scalar value = -std::numeric_limits<Scalar>::infinity()) {
    const Scalar neg_inf = value;
    const Index bk = st.rows(), bq = st.cols();
    if (mask.key_padding != nullptr) {
        const std::vector<bool>& pad = *mask.key_padding;
        for (Index r = 0; r < bk; ++r)
            if (pad[static_cast<std::size_t>(j0 + r)]) st.row(r).setConstant(neg_inf);
    }
    if (mask.causal) {
        // Query i sees keys j <= i + offset: in column c, rows r >= i0 + c + offset + 1 - j0 are masked.
        for (Index c = 0; c < bq; ++c) {
            const Index first_masked = std::max<Index>(0, mask.position(i0 + c) + mask.causal_offset + 1 - j0);
            if (first_masked < bk) st.col(c).segment(first_masked, bk - first_masked).setConstant(neg_inf);
        }
    }
}

/// True if some entry of the key tile [j0, j1) x query tile [i0, i1) can be masked (query
/// positions ascend, so row i0 has the smallest causal limit).
inline bool tile_needs_mask(const MaskSpec& mask, Index i0, Index j1) {
    if (mask.key_padding != nullptr) return true;  // cheap enough to apply; rows are skipped fast
    return mask.causal && j1 - 1 > mask.position(i0) + mask.causal_offset;  // positions ascend
}

/// Which inputs the kernel scans into an InputScan (checks.hpp), the input check fused into its
/// own reads. Keys: max |k|, max |v| over the key tiles it visits, each read right after the
/// product that read it (in L1), and their finiteness at no extra read: a NaN or ±Inf in a key
/// row makes that row's scores (K_tile · qsᵀ, checked before the mask) NaN or infinite, and one
/// in a value row makes the accumulator (Pᵀ V_tile, every visited row weighted by a finite
/// p ≥ 0, and 0 · Inf = NaN) NaN or infinite. Queries: max |q| and finiteness of each query
/// tile, read as it is scaled. A non-finite query makes the scores of every key non-finite too,
/// and so does a product that overflows from finite inputs: the caller reports q before k
/// (report_scan) and rescans a flagged input, which it then finds finite, and the logit and
/// result checks report the overflow. all_finiteness scans every input for NaN/Inf only, with no
/// max |x| (no read of a tile besides the kernel's own, except the small query tiles): for exact
/// attention, finite scores and accumulators are all the checks need (exact_fused_checked).
enum class ScanInputs { keys, queries, all, all_finiteness };

/// Per-thread workspace of the online-softmax kernel, allocated once per call for at most
/// bq_cap query rows and bk_cap key rows. The tiles are views with leading dimensions ld_q (qs,
/// acc) and ld_k (st), by default the capacities: a workspace allocated for (bq, bk) and one
/// allocated larger and then laid out by layout(bq, bk) hold their tiles at the same offsets, so
/// every Eigen reduction over them (which peels to the packet alignment) rounds the same.
template <typename Scalar>
struct OnlineWorkspace {
    using View = Eigen::Map<Matrix<Scalar>, 0, Eigen::OuterStride<>>;
    Matrix<Scalar> qs_buf;   ///< bq x d: the scaled query tile
    Matrix<Scalar> st_buf;   ///< bk x bq: transposed scores, then probabilities
    Matrix<Scalar> acc_buf;  ///< bq x d_v: unnormalised output
    Vector<Scalar> m, l, alpha;
    Vector<Scalar> q_row;  ///< one query (bq = 1): the scaled row, zero-padded to a multiple of the packet size
    Vector<Scalar> pv;     ///< one query: the tile's weighted sum of value rows
    Index ld_q = 0, ld_k = 0;
    bool scan_keys = false;     ///< scan the visited K and V tiles into `scan` (ScanInputs)
    bool scan_queries = false;  ///< scan the query tiles into `scan`
    bool scan_max = true;       ///< with the scans: max |x| too, not only NaN/Inf

    /// Sets the scan flags for `sides` (no scan without an InputScan to merge into).
    void request(const InputScan* into, ScanInputs sides) {
        scan_keys = into != nullptr && sides != ScanInputs::queries;
        scan_queries = into != nullptr && sides != ScanInputs::keys;
        scan_max = sides != ScanInputs::all_finiteness;
    }
    InputScan scan;

    OnlineWorkspace(Index bq_cap, Index bk_cap, Index d, Index dv)
        : qs_buf(bq_cap, d), st_buf(bk_cap, bq_cap), acc_buf(bq_cap, dv), m(bq_cap), l(bq_cap), alpha(bq_cap),
          q_row(Vector<Scalar>::Zero(ceil_div(d, Index(QueryPackets<Scalar>::P)) * QueryPackets<Scalar>::P)), pv(dv),
          ld_q(bq_cap), ld_k(bk_cap) {}

    /// Lays the tiles out as in a workspace allocated for exactly (bq, bk) (bq, bk <= the capacities).
    void layout(Index bq, Index bk) {
        ld_q = bq;
        ld_k = bk;
    }
    View qs(Index rows) { return View(qs_buf.data(), rows, qs_buf.cols(), Eigen::OuterStride<>(ld_q)); }
    View acc(Index rows) { return View(acc_buf.data(), rows, acc_buf.cols(), Eigen::OuterStride<>(ld_q)); }
    View st(Index rows, Index cols) { return View(st_buf.data(), rows, cols, Eigen::OuterStride<>(ld_k)); }
};

/// Starts query tile [i0, i0 + bq) in ws: the scaled queries, m = -inf, l = 0, acc = 0.
template <typename Scalar>
void online_begin(const Eigen::Ref<const Matrix<Scalar>>& q, Scalar scale, Index i0, Index bq,
                  OnlineWorkspace<Scalar>& ws) {
    ws.qs(bq).noalias() = q.middleRows(i0, bq) * scale;
    if (bq == 1) ws.q_row.head(q.cols()) = ws.qs(1).row(0).transpose();  // its padding stays zero
    if (ws.scan_queries) {
        if (ws.scan_max) max_abs_block(q.middleRows(i0, bq), ws.scan.q);
        ws.scan.q_ok = ws.scan.q_ok && block_finite(q.middleRows(i0, bq));
    }
    ws.m.head(bq).setConstant(-std::numeric_limits<Scalar>::infinity());
    ws.l.head(bq).setZero();
    ws.acc(bq).setZero();
}

/// Rows [j0, j0 + rows) of a column-major matrix as a TileMap.
template <typename Scalar>
TileMap<Scalar> tile_rows(const Eigen::Ref<const Matrix<Scalar>>& x, Index j0, Index rows) {
    return TileMap<Scalar>(x.data() + j0, rows, x.cols(), Eigen::OuterStride<>(x.outerStride()));
}

#if defined(__GNUC__)
#define ATTNX_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define ATTNX_NOINLINE __declspec(noinline)
#else
#define ATTNX_NOINLINE
#endif

/// The softmax part of online_step for the bk x bq score tile in ws.st (its scores in, its
/// probabilities out): the mask, the running max m and sum l, and the rescale factors alpha.
/// Returns true if some alpha != 1. Templated on Scalar only and never inlined, so that its
/// scalar arithmetic (which the compiler may contract into FMAs) is compiled once, whichever
/// tile type the step was called with: the results agree bit for bit between them.
template <typename Scalar>
ATTNX_NOINLINE bool online_softmax_update(const MaskSpec& mask, Index i0, Index bq, Index j0, Index bk,
                                          OnlineWorkspace<Scalar>& ws) {
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
    auto m = ws.m.head(bq);
    auto l = ws.l.head(bq);
    auto alpha = ws.alpha.head(bq);
    auto st = ws.st(bk, bq);
    const bool masked = mask.any() && tile_needs_mask(mask, i0, j0 + bk);
    if (masked) apply_mask_tile<Scalar>(st, j0, i0, mask);
    bool rescale = false;
    for (Index c = 0; c < bq; ++c) {
        auto col = st.col(c);
        const Scalar m_new = std::max(m(c), col.maxCoeff());
        // Nothing visible yet for this query. A NaN score (a NaN input with check_finite off)
        // can make the max -inf too (std::max and Eigen's max drop a NaN operand): such a row
        // goes on, and exp(NaN) makes it NaN, never a plausible zero row.
        if (m_new == neg_inf && !col.hasNaN()) {
            col.setZero();
            alpha(c) = Scalar(1);
            continue;
        }
        col = (col.array() - m_new).exp();
        const Scalar a = std::exp(m(c) - m_new);  // 0 when m(c) = -inf
        alpha(c) = a;
        rescale = rescale || a != Scalar(1);
        l(c) = l(c) * a + col.sum();
        m(c) = m_new;
    }
    if (masked) apply_mask_tile<Scalar>(st, j0, i0, mask, Scalar(0));
    return rescale;
}

/// One query's accumulator update, acc = alpha acc + pv (ws.pv: the tile's weighted sum of value
/// rows); compiled once per Scalar, as online_softmax_update.
template <typename Scalar>
ATTNX_NOINLINE void online_accumulate_one(bool rescale, OnlineWorkspace<Scalar>& ws) {
    auto acc = ws.acc(1);
    if (rescale) acc *= ws.alpha(0);
    acc.row(0) += ws.pv.transpose();
}

/// The step of online_step and online_step_one (row-major tiles only with bq = 1).
template <typename Scalar, typename KTile, typename VTile>
void online_step_impl(const KTile& kt, const VTile& vt, const MaskSpec& mask, Index i0, Index bq, Index j0,
                      OnlineWorkspace<Scalar>& ws, bool max_tiles) {
    static_assert(is_row_tile<KTile>::value == is_row_tile<VTile>::value, "attnx: K and V tiles of one layout");
    const Index bk = kt.rows();
    auto st = ws.st(bk, bq);
    // One query: the scores in the fixed order of single_query.hpp, the same for either layout
    // (Eigen's GEMV sums in blocks that depend on K's layout). More: Eigen's GEMM, which blocks by
    // sizes only (column-major tiles).
    if (is_row_tile<KTile>::value || bq == 1) {
        single_query_scores<Scalar>(kt, ws.q_row.data(), st.data());
    } else if constexpr (!is_row_tile<KTile>::value) {
        st.noalias() = kt * ws.qs(bq).transpose();
    }
    if (ws.scan_keys) {
        ws.scan.k_ok = ws.scan.k_ok && block_finite(st);  // ScanInputs: NaN/Inf of the key rows
        if (max_tiles) max_abs_block(kt, ws.scan.k);
    }
    const bool rescale = online_softmax_update<Scalar>(mask, i0, bq, j0, bk, ws);
    if (is_row_tile<VTile>::value || bq == 1) {
        single_query_weighted_sum<Scalar>(vt, st.data(), ws.pv.data());
        online_accumulate_one<Scalar>(rescale, ws);
    } else if constexpr (!is_row_tile<VTile>::value) {
        auto acc = ws.acc(bq);
        if (rescale) acc.array().colwise() *= ws.alpha.head(bq).array();
        acc.noalias() += st.transpose() * vt;
    }
    if (ws.scan_keys && max_tiles) max_abs_block(vt, ws.scan.v);
}

/// One key tile [j0, j0 + kt.rows()) of the online softmax for the bq queries started in ws by
/// online_begin: kt and vt are that tile's rows of K and V, column-major with any outer stride
/// (the same bits for any stride). The fused scan (ws.scan_keys) learns the finiteness of the key
/// rows from the scores; with max_tiles it also raises ws.scan.k and .v to max |x| over the tiles,
/// each right after the product that read it (so while it is in L1).
template <typename Scalar>
void online_step(const TileMap<Scalar>& kt, const TileMap<Scalar>& vt, const MaskSpec& mask, Index i0, Index bq,
                 Index j0, OnlineWorkspace<Scalar>& ws, bool max_tiles) {
    online_step_impl<Scalar>(kt, vt, mask, i0, bq, j0, ws, max_tiles);
}

/// online_step for one query (started by online_begin with bq = 1) on row-major tiles (a
/// token-major cache read in place): the same bits as online_step on column-major copies of the
/// tiles (single_query.hpp for the products; the rest is the same compiled code).
template <typename Scalar>
void online_step_one(const RowTileMap<Scalar>& kt, const RowTileMap<Scalar>& vt, const MaskSpec& mask, Index i0,
                     Index j0, OnlineWorkspace<Scalar>& ws, bool max_tiles) {
    online_step_impl<Scalar>(kt, vt, mask, i0, 1, j0, ws, max_tiles);
}

/// Ends a range of key tiles: the accumulator carries any NaN/Inf of the visited value rows
/// (ScanInputs).
template <typename Scalar>
void online_end(Index bq, OnlineWorkspace<Scalar>& ws) {
    if (ws.scan_keys) ws.scan.v_ok = ws.scan.v_ok && block_finite(ws.acc(bq));
}

/// Runs the key ranges [t_begin, t_end) of query tile [i0, i0 + bq) into ws.m, ws.l, ws.acc
/// (which this function initialises).
template <typename Scalar, typename KeyTiles>
void online_tile(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                 const Eigen::Ref<const Matrix<Scalar>>& v, Scalar scale, const MaskSpec& mask,
                 const KeyTiles& tiles, Index qt, Index i0, Index bq, Index t_begin, Index t_end,
                 OnlineWorkspace<Scalar>& ws) {
    online_begin<Scalar>(q, scale, i0, bq, ws);
    for (Index t = t_begin; t < t_end; ++t) {
        const KeyRange kr = tiles.range(qt, t);
        const Index j0 = kr.begin, bk = kr.end - kr.begin;
        if (bk <= 0) continue;
        online_step<Scalar>(tile_rows<Scalar>(k, j0, bk), tile_rows<Scalar>(v, j0, bk), mask, i0, bq, j0, ws,
                            ws.scan_max);
    }
    online_end<Scalar>(bq, ws);
}

/// Into how many parts the key list of one query tile is split (the partial results merged by
/// merge_parts): only when there are fewer than 4 query tiles, to keep the threads busy; at
/// most 8 per call and at least 4 key tiles per part. Depends on the sizes only (determinism).
inline Index key_parts(Index n_query_tiles, Index key_tile_count) {
    constexpr Index split_below = 4;
    constexpr Index target_items = 8;
    constexpr Index min_tiles_per_part = 4;
    const Index p = n_query_tiles < split_below ? ceil_div(target_items, n_query_tiles) : 1;
    return std::min<Index>(p, std::max<Index>(1, key_tile_count / min_tiles_per_part));
}

/// Stores the state (m, l, acc) of bq rows in ws as partial result `item` of part_acc (bq_max
/// rows per item) and part_ml (columns m, l).
template <typename Scalar>
void store_part(OnlineWorkspace<Scalar>& ws, Index bq, Index bq_max, Index item, Matrix<Scalar>& part_acc,
                Matrix<Scalar>& part_ml) {
    part_acc.middleRows(item * bq_max, bq) = ws.acc(bq);
    part_ml.block(item * bq_max, 0, bq, 1) = ws.m.head(bq);
    part_ml.block(item * bq_max, 1, bq, 1) = ws.l.head(bq);
}

/// out row c (c < rows) = the softmax-weighted merge of the partial results f, ..., f + p - 1
/// (stored by store_part), in that fixed order; zero if no part saw a visible key.
template <typename Scalar, typename Out>
void merge_parts(const Matrix<Scalar>& part_acc, const Matrix<Scalar>& part_ml, Index f, Index p, Index bq_max,
                 Index rows, Out&& out) {
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
    for (Index c = 0; c < rows; ++c) {
        Scalar mx = neg_inf;
        for (Index s = 0; s < p; ++s) mx = std::max(mx, part_ml((f + s) * bq_max + c, 0));
        auto row = out.row(c);
        row.setZero();
        if (mx == neg_inf) continue;
        Scalar l = 0;
        for (Index s = 0; s < p; ++s) {
            const Scalar ms = part_ml((f + s) * bq_max + c, 0);
            if (ms == neg_inf) continue;
            const Scalar w = std::exp(ms - mx);
            l += w * part_ml((f + s) * bq_max + c, 1);
            row += w * part_acc.row((f + s) * bq_max + c);
        }
        row /= l;
    }
}

/// Writes acc / l into out (zero rows where l == 0). Column by column: out is column-major,
/// so writing it row by row would stride across pages (8192 rows = 32 KiB apart in float).
template <typename Scalar, typename Out>
void finish_rows(OnlineWorkspace<Scalar>& ws, Index bq, Out&& out) {
    auto inv_l = ws.alpha.head(bq);  // alpha is free once the tile loop is done
    for (Index c = 0; c < bq; ++c) inv_l(c) = ws.l(c) > Scalar(0) ? Scalar(1) / ws.l(c) : Scalar(0);
    out = ws.acc(bq).array().colwise() * inv_l.array();
}

/// Exact softmax attention of q against the key tiles that `tiles` lists for each query tile.
///
/// KeyTiles provides:  Index count(Index qt) const;  KeyRange range(Index qt, Index t) const;
/// for query tile qt (rows [qt*bq, min(n_q, (qt+1)*bq))), the t-th key range, t < count(qt).
/// bk_max bounds the length of every key range. If `scan` is given, the inputs `sides` names are
/// also scanned (ScanInputs: every query tile, every visited K and V tile) and the results of
/// all threads are merged into *scan.
template <typename Scalar, typename KeyTiles>
void online_softmax_attention(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                              const Eigen::Ref<const Matrix<Scalar>>& v, Scalar scale, const MaskSpec& mask,
                              Index bq, Index bk_max, const KeyTiles& tiles, Eigen::Ref<Matrix<Scalar>> out,
                              InputScan* scan = nullptr, ScanInputs sides = ScanInputs::all) {
    const Index n_q = q.rows(), d = q.cols(), dv = v.cols();
    // Workspaces are sized by what the input needs, not by the options (a tile option of
    // 2^40 means one tile, not a 2^40-row allocation).
    bq = std::min(bq, n_q);
    bk_max = std::min(bk_max, k.rows());
    const Index n_qt = ceil_div(n_q, bq);

    // Split the key list of each query tile into parts when there are too few query
    // tiles to keep the threads busy (key_parts).
    std::vector<Index> parts(static_cast<std::size_t>(n_qt), 1);
    std::vector<Index> first_item(static_cast<std::size_t>(n_qt) + 1, 0);
    bool any_split = false;
    for (Index qt = 0; qt < n_qt; ++qt) {
        const Index p = key_parts(n_qt, tiles.count(qt));
        parts[static_cast<std::size_t>(qt)] = p;
        any_split = any_split || p > 1;
        first_item[static_cast<std::size_t>(qt) + 1] = first_item[static_cast<std::size_t>(qt)] + p;
    }
    const Index n_items = first_item.back();

    // Per-thread workspaces, allocated here so that nothing inside the regions allocates
    // (an allocation failure there could not leave the region; detail/parallel.hpp rule 6).
    const int team = team_size();
    std::vector<OnlineWorkspace<Scalar>> workspaces;
    workspaces.reserve(static_cast<std::size_t>(team));
    for (int t = 0; t < team; ++t) workspaces.emplace_back(bq, bk_max, d, dv);
    RegionErrors errors;

    if (!any_split) {
        // Always a parallel region, even for one tile: inside a team of several threads Eigen
        // runs its products single-threaded, instead of spawning (and allocating for) its own.
        parallel_region(team, [&] {
            OnlineWorkspace<Scalar>& ws = workspaces[static_cast<std::size_t>(thread_index())];
            ws.request(scan, sides);
ATTNX_OMP(for schedule(dynamic, 1))
            for (Index qt = 0; qt < n_qt; ++qt) {
                errors.run([&] {
                    const Index i0 = qt * bq, rows = std::min(bq, n_q - i0);
                    online_tile<Scalar>(q, k, v, scale, mask, tiles, qt, i0, rows, 0, tiles.count(qt), ws);
                    finish_rows(ws, rows, out.middleRows(i0, rows));
                });
            }
            if (scan != nullptr) {
ATTNX_OMP(critical(attnx_key_scan))
                scan->merge(ws.scan);
            }
        });
        errors.rethrow();
        return;
    }

    // Split path: every item keeps its partial (m, l, acc); merged in item order, in the same
    // region after the barrier of the item loop (detail/parallel.hpp rule 8).
    Matrix<Scalar> part_acc(bq * n_items, dv);
    Matrix<Scalar> part_ml(bq * n_items, 2);
    parallel_region(team, [&] {
        OnlineWorkspace<Scalar>& ws = workspaces[static_cast<std::size_t>(thread_index())];
        ws.request(scan, sides);
ATTNX_OMP(for schedule(dynamic, 1))
        for (Index item = 0; item < n_items; ++item) {
            errors.run([&] {
                Index qt = 0;
                while (first_item[static_cast<std::size_t>(qt) + 1] <= item) ++qt;
                const Index p = parts[static_cast<std::size_t>(qt)];
                const Index part = item - first_item[static_cast<std::size_t>(qt)];
                const Index cnt = tiles.count(qt);
                const Index t0 = cnt * part / p, t1 = cnt * (part + 1) / p;
                const Index i0 = qt * bq, rows = std::min(bq, n_q - i0);
                online_tile<Scalar>(q, k, v, scale, mask, tiles, qt, i0, rows, t0, t1, ws);
                store_part(ws, rows, bq, item, part_acc, part_ml);
            });
        }
        if (scan != nullptr) {
ATTNX_OMP(critical(attnx_key_scan))
            scan->merge(ws.scan);
        }
        // The merge: a fixed order per row, whichever thread runs it.
ATTNX_OMP(for schedule(static) nowait)
        for (Index qt = 0; qt < n_qt; ++qt) {
            errors.run([&] {
                const Index i0 = qt * bq, rows = std::min(bq, n_q - i0);
                merge_parts(part_acc, part_ml, first_item[static_cast<std::size_t>(qt)],
                            parts[static_cast<std::size_t>(qt)], bq, rows, out.middleRows(i0, rows));
            });
        }
    });
    errors.rethrow();
}

/// Key tiles of dense (optionally causal) attention: [0, n_k) in tiles of bk rows; with
/// causal masking, tiles wholly past the last key any row of the query tile sees are skipped.
struct DenseKeyTiles {
    Index n_q = 0, n_k = 0, bq = 0, bk = 0;
    bool causal = false;
    Index causal_offset = 0;
    const Index* query_positions = nullptr;  ///< as MaskSpec::query_positions

    Index count(Index qt) const {
        Index visible = n_k;
        if (causal) {
            Index last_row = std::min(n_q, (qt + 1) * bq) - 1;
            if (query_positions != nullptr) last_row = query_positions[last_row];
            visible = std::min<Index>(n_k, std::max<Index>(0, last_row + causal_offset + 1));
        }
        return ceil_div(visible, bk);
    }
    KeyRange range(Index /*qt*/, Index t) const { return {t * bk, std::min(n_k, (t + 1) * bk)}; }
};

/// Exact softmax attention over all keys (with the mask), by the online-softmax kernel.
template <typename Scalar>
void dense_online_attention(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                            const Eigen::Ref<const Matrix<Scalar>>& v, Scalar scale, const MaskSpec& mask,
                            Index bq, Index bk, Eigen::Ref<Matrix<Scalar>> out, InputScan* scan = nullptr,
                            ScanInputs sides = ScanInputs::all) {
    bq = std::min(bq, q.rows());  // a tile larger than the input is one tile
    bk = std::min(bk, k.rows());
    DenseKeyTiles tiles;
    tiles.n_q = q.rows();
    tiles.n_k = k.rows();
    tiles.bq = bq;
    tiles.bk = bk;
    tiles.causal = mask.causal;
    tiles.causal_offset = mask.causal_offset;
    tiles.query_positions = mask.query_positions;
    online_softmax_attention<Scalar>(q, k, v, scale, mask, bq, std::min(bk, k.rows()), tiles, out, scan, sides);
}

/// In place: each column of st becomes softmax of that column; all -inf columns become 0.
/// Entries that were -inf come out as 0 up to Eigen's clamped exp (below 1e-38 relative).
template <typename Scalar>
void softmax_columns(Eigen::Ref<Matrix<Scalar>> st) {
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
ATTNX_OMP(parallel for schedule(static) if (st.size() > min_parallel_compute && !machine_busy()))
    for (Index c = 0; c < st.cols(); ++c) {
        auto col = st.col(c);
        const Scalar mx = col.maxCoeff();
        if (mx == neg_inf && !col.hasNaN()) {  // fully masked (a NaN score goes on, and stays NaN)
            col.setZero();
            continue;
        }
        col = (col.array() - mx).exp();
        col /= col.sum();
    }
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_ONLINE_SOFTMAX_HPP
