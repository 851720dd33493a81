// SPDX-License-Identifier: MIT
/// \file bigbird.hpp
/// Block-sparse softmax attention: BigBird (Zaheer et al. 2020, arXiv:2007.14062v2) and
/// Longformer (Beltagy et al. 2020, arXiv:2004.05150v2) patterns, or any attnx::BlockLayout.
///
///   out_i = Σ_{j ∈ N(i)} softmax_j(s · q_i·k_j + M_ij) v_j,   s = 1/sqrt(d) by default,
///
/// the exact softmax over the keys N(i) that the layout keeps for query i (BigBird's generalised
/// attention of §2, without the residual x_i and for one head; equation number not yet checked
/// against the v2 PDF), with M the causal / key-padding mask of AttentionOptions (0 or -inf). N(i) is the union of whole key blocks:
/// with b-token blocks, query i in query block I = floor(i/b) sees key j iff the layout keeps
/// (I, floor(j/b)). For BigBird (BlockLayout::bigbird), block I keeps its window of w blocks,
/// the g global blocks and r random blocks, and global block rows keep everything; Longformer
/// (BlockLayout::longformer) is the window plus leading global tokens, rounded to whole blocks.
///
/// Computed block by block with the online softmax of detail/online_softmax.hpp (one query
/// block = one query tile, one kept key block = one key tile): no n_q x n_k matrix, no work on
/// dropped blocks, query blocks in parallel (OpenMP), the same result for any thread count.
/// With causal masking, kept key blocks wholly in the future of a query block are not visited.
/// Cost: 4 · kept_entries · d flops (kept_entries = layout.kept_entries() ≈ density · n_q · n_k;
/// for BigBird ≈ (w + 2g + r) · b · n, linear in n), extra memory
/// O(threads · b · (b + d + d_v)) plus the layout's O(kept blocks).
///
/// Exact limit: BlockLayout::dense gives exact_attention (bit-identical to the streaming kernel
/// with query_tile = key_tile = decode_key_tile = b; tested in test_bigbird.cpp).
/// A query whose kept keys are all masked (or whose block row keeps no block) gets a zero row.
/// Checks (with check_finite on): when the layout visits every key block (BigBird and Longformer
/// layouts do), Q, K and V are scanned for NaN/Inf and their magnitudes as the kernel reads them
/// (online_softmax.hpp), not in a pass of their own, and the errors, including logits that could
/// overflow the Scalar type, are thrown after the work (an `out` buffer passed in may have been
/// written by then); a layout that leaves key blocks unread gets the scan before the work.
/// An overflowed output throws after the work (core.hpp).
/// Differs from the reference code (google-research/bigbird, HuggingFace BigBird): the random
/// blocks are drawn by our CounterRng (the reference draws them with NumPy), any n is allowed (a
/// partial last block instead of "n must be a multiple of b"), and global rows/columns are
/// computed as ordinary kept blocks rather than by a separate dense pass — the result is the
/// same masked softmax. RowMajor or expression inputs are copied once into column-major (O(n·d)).
#ifndef ATTNX_BIGBIRD_HPP
#define ATTNX_BIGBIRD_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attnx/block_layout.hpp"
#include "attnx/core.hpp"
#include "attnx/metrics.hpp"  // attnx::compare, the companion of every mechanism (was in core.hpp)
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/online_softmax.hpp"

namespace attnx {

namespace detail {

/// KeyTiles adapter of a BlockLayout for online_softmax_attention (query tile = query block).
struct BlockKeyTiles {
    const std::vector<Index>* row_ptr = nullptr;
    const std::vector<Index>* col_idx = nullptr;
    const std::vector<Index>* counts = nullptr;  ///< blocks visited per query block (causal trims the tail)
    Index block = 0, n_k = 0;

    Index count(Index qt) const { return (*counts)[static_cast<std::size_t>(qt)]; }
    KeyRange range(Index qt, Index t) const {
        const Index j = (*col_idx)[static_cast<std::size_t>((*row_ptr)[static_cast<std::size_t>(qt)] + t)];
        return {j * block, std::min(n_k, (j + 1) * block)};
    }
};

/// Key blocks visited per query block of `layout`: all kept ones, or with causal masking the
/// prefix of them that starts at or before the latest key any row of the block sees.
inline std::vector<Index> visited_block_counts(const BlockLayout& layout, const MaskSpec& mask) {
    const Index n_q = layout.n_q(), b = layout.block_size(), nb_q = layout.query_blocks();
    const std::vector<Index>& row_ptr = layout.row_ptr();
    const std::vector<Index>& col_idx = layout.col_idx();
    std::vector<Index> counts(static_cast<std::size_t>(nb_q));
    for (Index i = 0; i < nb_q; ++i) {
        const auto first = col_idx.begin() + row_ptr[static_cast<std::size_t>(i)];
        const auto last = col_idx.begin() + row_ptr[static_cast<std::size_t>(i) + 1];
        Index cnt = static_cast<Index>(last - first);
        if (mask.causal) {
            // The latest key any row of block i sees is (its last row) + offset; the kept blocks
            // are sorted, so the visible ones are a prefix: those starting at or before that key.
            const Index last_key = std::min(n_q, (i + 1) * b) - 1 + mask.causal_offset;
            if (last_key < 0)
                cnt = 0;
            else
                cnt = static_cast<Index>(std::upper_bound(first, last, last_key / b) - first);
        }
        counts[static_cast<std::size_t>(i)] = cnt;
    }
    return counts;
}

/// True if every key block is visited by at least one query block (so that a scan of the
/// visited key tiles reads every row of K and V). BigBird and Longformer layouts do (the window holds the
/// diagonal); a from_block_mask layout may not.
inline bool visits_every_key_block(const BlockLayout& layout, const std::vector<Index>& counts) {
    std::vector<char> seen(static_cast<std::size_t>(layout.key_blocks()), 0);
    Index n_seen = 0;
    const std::vector<Index>& row_ptr = layout.row_ptr();
    for (Index i = 0; i < layout.query_blocks(); ++i)
        for (Index t = 0; t < counts[static_cast<std::size_t>(i)]; ++t) {
            const Index j = layout.col_idx()[static_cast<std::size_t>(row_ptr[static_cast<std::size_t>(i)] + t)];
            if (!seen[static_cast<std::size_t>(j)]) {
                seen[static_cast<std::size_t>(j)] = 1;
                ++n_seen;
            }
        }
    return n_seen == layout.key_blocks();
}

/// The kernel: the online softmax over the key blocks `counts` lets each query block visit
/// (visited_block_counts). With `scan`, it also scans Q and the visited K and V tiles.
template <typename Scalar>
void block_sparse_impl(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                       const Eigen::Ref<const Matrix<Scalar>>& v, const BlockLayout& layout,
                       const std::vector<Index>& counts, const MaskSpec& mask, Scalar scale,
                       Eigen::Ref<Matrix<Scalar>> out, InputScan* scan) {
    const Index n_q = q.rows(), n_k = k.rows(), b = layout.block_size();
    BlockKeyTiles tiles;
    tiles.row_ptr = &layout.row_ptr();
    tiles.col_idx = &layout.col_idx();
    tiles.counts = &counts;
    tiles.block = b;
    tiles.n_k = n_k;
    // Query tile = query block; a block larger than the input only needs n rows of workspace.
    online_softmax_attention<Scalar>(q, k, v, scale, mask, std::min(b, n_q), std::min(b, n_k), tiles, out, scan);
}

inline void check_layout(const char* fn, const BlockLayout& layout, Index n_q, Index n_k) {
    if (layout.block_size() < 1)
        throw_invalid(fn, ": layout is empty (default-constructed) or moved-from; build it with BlockLayout::bigbird, ",
                      "longformer, dense or from_block_mask for n_q = ", n_q, " queries and n_k = ", n_k, " keys");
    if (layout.n_q() != n_q || layout.n_k() != n_k)
        throw_invalid(fn, ": layout was built for n_q = ", layout.n_q(), " queries and n_k = ", layout.n_k(),
                      " keys (block ", layout.block_size(), ", ", layout.query_blocks(), "x", layout.key_blocks(),
                      " blocks) but q has ", n_q, " rows and k has ", n_k, " rows");
    if (!layout.consistent())
        throw_invalid(fn, ": layout is inconsistent: its block lists do not match its sizes (n_q = ", layout.n_q(),
                      ", n_k = ", layout.n_k(), ", block ", layout.block_size(), ", ", layout.query_blocks(), "x",
                      layout.key_blocks(), " blocks, ", layout.kept_blocks(),
                      " kept); build it with a BlockLayout builder");
}

template <typename DQ, typename DK, typename DV>
void check_block_sparse_call(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                             const Eigen::MatrixBase<DV>& v, const AttentionOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    check_qkv(fn, q, k, v);
    check_common_options(fn, o, k.rows());
}

/// The shape and option checks of bigbird_attention (self-attention, BigBirdOptions in range).
template <typename DQ, typename DK, typename DV>
void check_bigbird_call(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                        const Eigen::MatrixBase<DV>& v, const BigBirdOptions& bigbird, const AttentionOptions& o) {
    check_block_sparse_call(fn, q, k, v, o);
    if (q.rows() != k.rows())
        throw_invalid(fn, ": q has ", q.rows(), " rows but k has ", k.rows(),
                      "; the BigBird layout is for self-attention (n_q = n_k); for cross-attention ",
                      "build a layout with BlockLayout::from_block_mask and call block_sparse_attention");
    check_bigbird_options(fn, q.rows(), bigbird);
}

/// The input checks, the kernel and the result check of block-sparse attention. `layout` is
/// either given (checked by check_layout) or, with `bigbird`, built here. With check_finite on,
/// the input scan is fused into the kernel (every query tile, every visited key tile) when the
/// layout visits every key block, and its errors are thrown after the work; otherwise (a
/// from_block_mask layout that leaves keys unread) the scan runs before the work.
template <typename Scalar>
void block_sparse_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q,
                          const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                          const BlockLayout* layout, const BigBirdOptions* bigbird, const AttentionOptions& o,
                          Eigen::Ref<Matrix<Scalar>> out) {
    // Nominal work: every kept block in full (a b x b tile of logits and of the weighted sum).
    // In double throughout: block, window, global and random may be as large as Index allows.
    const double n = double(std::max(q.rows(), k.rows()));
    const double b = std::min(n, layout != nullptr ? double(layout->block_size()) : double(bigbird->block));
    double blocks = 0;
    if (layout != nullptr) {
        blocks = double(layout->kept_blocks());
    } else {
        const double per_row = double(bigbird->window) + 2.0 * double(bigbird->global) + double(bigbird->random);
        const double nb = std::ceil(n / b);
        blocks = nb * std::min(nb, per_row);
    }
    const SerialScope serial(run_serially(2.0 * blocks * b * b * double(q.cols() + v.cols())));
    BlockLayout built;
    if (layout == nullptr) {
        built = BlockLayout::bigbird(q.rows(), *bigbird);
        layout = &built;
    }
    const MaskSpec mask = make_mask(o, q.rows(), k.rows());
    const Scalar scale = resolve_scale<Scalar>(o, q.cols());
    const std::vector<Index> counts = visited_block_counts(*layout, mask);
    Magnitudes mag;
    if (o.check_finite && visits_every_key_block(*layout, counts)) {
        InputScan scan;
        block_sparse_impl<Scalar>(q, k, v, *layout, counts, mask, scale, out, &scan);
        mag = report_scan<Scalar>(fn, o, scan, q, k, v);
    } else {
        mag = check_inputs<Scalar>(fn, o, q, k, v);
        block_sparse_impl<Scalar>(q, k, v, *layout, counts, mask, scale, out, nullptr);
    }
    check_result<Scalar>(fn, mag, out);
}

}  // namespace detail

/// Exact softmax attention restricted to the blocks `layout` keeps, into a caller-provided
/// n_q x d_v buffer. The layout must be built for n_q = q.rows() and n_k = k.rows().
template <typename DQ, typename DK, typename DV>
void block_sparse_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                            const Eigen::MatrixBase<DV>& v, const BlockLayout& layout,
                            Eigen::Ref<Matrix<typename DQ::Scalar>> out, const AttentionOptions& options = {}) {
    constexpr const char* fn = "block_sparse_attention";
    detail::check_block_sparse_call(fn, q, k, v, options);
    detail::check_layout(fn, layout, q.rows(), k.rows());
    detail::check_out(fn, out, q, k, v);
    detail::block_sparse_checked<typename DQ::Scalar>(fn, q, k, v, &layout, nullptr, options, out);
}

/// Exact softmax attention restricted to the blocks `layout` keeps (causal and key padding from
/// `options` apply on top). Q is n_q x d, K is n_k x d, V is n_k x d_v; returns n_q x d_v.
template <typename DQ, typename DK, typename DV>
Matrix<typename DQ::Scalar> block_sparse_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                   const Eigen::MatrixBase<DV>& v, const BlockLayout& layout,
                                                   const AttentionOptions& options = {}) {
    constexpr const char* fn = "block_sparse_attention";
    detail::check_block_sparse_call(fn, q, k, v, options);
    detail::check_layout(fn, layout, q.rows(), k.rows());
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::block_sparse_checked<typename DQ::Scalar>(fn, q, k, v, &layout, nullptr, options, out);
    return out;
}

/// BigBird self-attention in one call: BlockLayout::bigbird(n, bigbird) then
/// block_sparse_attention. Needs n_q == n_k (for cross-attention build a layout with
/// BlockLayout::from_block_mask). Building the layout costs O(n/b · (w + g + r)²), small next
/// to the attention; callers that repeat the call on one n can build the layout once instead.
template <typename DQ, typename DK, typename DV>
Matrix<typename DQ::Scalar> bigbird_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                              const Eigen::MatrixBase<DV>& v, const BigBirdOptions& bigbird = {},
                                              const AttentionOptions& options = {}) {
    constexpr const char* fn = "bigbird_attention";
    detail::check_bigbird_call(fn, q, k, v, bigbird, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::block_sparse_checked<typename DQ::Scalar>(fn, q, k, v, nullptr, &bigbird, options, out);
    return out;
}

/// As above, writing into a caller-provided n x d_v buffer (the layout parameters come before
/// `out`, as a block_sparse_attention layout or a Linformer projection does).
template <typename DQ, typename DK, typename DV>
void bigbird_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                       const BigBirdOptions& bigbird, Eigen::Ref<Matrix<typename DQ::Scalar>> out,
                       const AttentionOptions& options = {}) {
    constexpr const char* fn = "bigbird_attention";
    detail::check_bigbird_call(fn, q, k, v, bigbird, options);
    detail::check_out(fn, out, q, k, v);
    detail::block_sparse_checked<typename DQ::Scalar>(fn, q, k, v, nullptr, &bigbird, options, out);
}

}  // namespace attnx

#endif  // ATTNX_BIGBIRD_HPP
