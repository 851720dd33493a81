// SPDX-License-Identifier: MIT
/// \file block_layout.hpp
/// attnx::BlockLayout: which b x b blocks of the n_q x n_k attention matrix are kept, and the
/// builders of the BigBird, Longformer and dense layouts. The attention itself is in bigbird.hpp.
///
/// The matrix is cut into blocks of b rows (queries) and b columns (keys): query block i holds
/// rows [i·b, min(n_q, (i+1)·b)), key block j holds keys [j·b, min(n_k, (j+1)·b)); there are
/// nb_q = ceil(n_q / b) query blocks and nb_k = ceil(n_k / b) key blocks, the last of each may
/// be partial. The layout stores, for every query block, the sorted, distinct key blocks it keeps
/// (compressed sparse rows: row_ptr has nb_q + 1 entries, col_idx the kept key blocks).
/// Memory is O(nb_q + kept blocks); nothing here is O(n_q · n_k) except to_dense_mask().
///
/// Builders (all deterministic; the random blocks of BigBird come from attnx::CounterRng):
///  - bigbird(n, BigBirdOptions): global + sliding window + random blocks (Zaheer et al. 2020,
///    arXiv:2007.14062v2, §2, in the blocked form of its implementation appendix, "ITC" variant).
///  - longformer(n, block, window, global_tokens): sliding window + leading global tokens
///    (Beltagy et al. 2020, arXiv:2004.05150v2, §3.1), rounded to whole blocks.
///  - dense(n, block) / dense(n_q, n_k, block): every block (the exact limit).
///  - from_block_mask(mask, block[, n_q, n_k]): any pattern, e.g. a cross-attention one.
///
/// Window convention (BigBird and Longformer): a window of w blocks gives query block i the key
/// blocks i - floor(w/2) .. i + floor((w-1)/2), clipped to [0, nb); w odd is centred (w = 3:
/// i-1, i, i+1), w even leans to the past (w = 2: i-1, i), which causal attention can use.
#ifndef ATTNX_BLOCK_LAYOUT_HPP
#define ATTNX_BLOCK_LAYOUT_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/random.hpp"

namespace attnx {

/// A boolean matrix of blocks: entry (i, j) true = query block i keeps key block j.
using BlockMask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

/// The BigBird layout (Zaheer et al. 2020, arXiv:2007.14062v2, §2; blocked form, ITC).
/// Sizes are in blocks of `block` tokens; nb = ceil(n / block).
struct BigBirdOptions {
    /// b: tokens per block, >= 1. The last block is partial when b does not divide n.
    Index block = 64;
    /// w: sliding-window width in blocks, >= 1 (see the window convention in block_layout.hpp;
    /// the paper's default of 3 blocks is i-1, i, i+1). Clipped at the ends of the sequence.
    Index window = 3;
    /// g: number of global blocks, >= 0: the first ceil(g/2) and the last floor(g/2) blocks
    /// (g = 2: the first and the last, the paper's ITC construction). A global block row attends
    /// to every key block and every query block attends to the global key blocks. g >= nb
    /// makes every block global (the dense layout).
    Index global = 2;
    /// r: random key blocks per non-global query block, >= 0; distinct, drawn uniformly among
    /// the blocks that are neither in the row's window nor global. A row with fewer than r
    /// such blocks takes all of them (so small n gives fewer random blocks, never an error).
    Index random = 3;
    /// Seed of the random blocks: query block i draws from CounterRng(seed, stream = i), so the
    /// layout is the same on every platform and does not depend on loop or thread order.
    std::uint64_t seed = 0;
};

namespace detail {

inline void check_block_size(const char* fn, Index block) {
    if (block < 1) throw_invalid(fn, ": block (", block, ") must be >= 1 (tokens per block)");
}

inline void check_length(const char* fn, const char* name, Index n) {
    if (n < 1) throw_invalid(fn, ": ", name, " (", n, ") must be >= 1");
}

inline void check_window(const char* fn, Index window) {
    if (window < 1)
        throw_invalid(fn, ": window (", window, ") must be >= 1 (blocks; 1 = each query block sees its own key block)");
}

inline void check_bigbird_options(const char* fn, Index n, const BigBirdOptions& o) {
    check_length(fn, "n", n);
    check_block_size(fn, o.block);
    check_window(fn, o.window);
    if (o.global < 0) throw_invalid(fn, ": global (", o.global, ") must be >= 0 (number of global blocks)");
    if (o.random < 0)
        throw_invalid(fn, ": random (", o.random, ") must be >= 0 (random key blocks per query block)");
}


}  // namespace detail

/// A block-sparse attention pattern: block size, sizes, and the kept key blocks of every query
/// block as sorted, distinct lists (CSR). Build it with one of the static builders.
class BlockLayout {
public:
    /// An empty layout (0 x 0); block_sparse_attention rejects it.
    BlockLayout() = default;
    BlockLayout(const BlockLayout&) = default;
    BlockLayout& operator=(const BlockLayout&) = default;
    /// A moved-from layout is empty (as default-constructed), never half-valid.
    BlockLayout(BlockLayout&& other) noexcept { swap(other); }
    BlockLayout& operator=(BlockLayout&& other) noexcept {
        BlockLayout empty;
        swap(empty);
        swap(other);
        return *this;
    }
    ~BlockLayout() = default;

    /// BigBird self-attention layout for n tokens (see BigBirdOptions for every field).
    /// Non-global query block i keeps: its window, the global key blocks, and min(r, free_i)
    /// distinct random key blocks, free_i = nb - |window_i ∪ global|. Global rows keep everything.
    static BlockLayout bigbird(Index n, const BigBirdOptions& options = {}) {
        detail::check_bigbird_options("BlockLayout::bigbird", n, options);
        return build_bigbird(n, options);
    }

    /// Longformer self-attention layout (Beltagy et al. 2020, arXiv:2004.05150v2, §3.1) for n
    /// tokens in blocks of `block`: a sliding window of `window` blocks (window convention above)
    /// plus global attention for the first `global_tokens` tokens, rounded UP to whole blocks
    /// (global_tokens = 1, block = 64 makes tokens 0..63 global): global query blocks keep every
    /// key block, and every query block keeps the global key blocks. global_tokens = 0: window only.
    static BlockLayout longformer(Index n, Index block, Index window, Index global_tokens) {
        constexpr const char* fn = "BlockLayout::longformer";
        detail::check_length(fn, "n", n);
        detail::check_block_size(fn, block);
        detail::check_window(fn, window);
        if (global_tokens < 0)
            detail::throw_invalid(fn, ": global_tokens (", global_tokens, ") must be >= 0");
        const Index nb = detail::ceil_div(n, block);
        const Index n_global = std::min(nb, detail::ceil_div(global_tokens, block));
        BlockLayout l(block, n, n);
        std::vector<Index> row;
        for (Index i = 0; i < nb; ++i) {
            row.clear();
            if (i < n_global) {
                for (Index j = 0; j < nb; ++j) row.push_back(j);
            } else {
                for (Index j = 0; j < n_global; ++j) row.push_back(j);
                const std::pair<Index, Index> w = window_of(i, window, nb);
                for (Index j = w.first; j <= w.second; ++j) row.push_back(j);
            }
            l.push_row(row);
        }
        return l;
    }

    /// Every block kept, self-attention on n tokens: block_sparse_attention then equals exact attention.
    static BlockLayout dense(Index n, Index block) {
        detail::check_length("BlockLayout::dense", "n", n);
        return dense(n, n, block);
    }

    /// Every block kept, n_q queries against n_k keys.
    static BlockLayout dense(Index n_q, Index n_k, Index block) {
        constexpr const char* fn = "BlockLayout::dense";
        detail::check_length(fn, "n_q", n_q);
        detail::check_length(fn, "n_k", n_k);
        detail::check_block_size(fn, block);
        BlockLayout l(block, n_q, n_k);
        std::vector<Index> row(static_cast<std::size_t>(l.m_nb_k));
        for (Index j = 0; j < l.m_nb_k; ++j) row[static_cast<std::size_t>(j)] = j;
        for (Index i = 0; i < l.m_nb_q; ++i) l.push_row(row);
        return l;
    }

    /// From a query-blocks x key-blocks mask for n_q queries and n_k keys (cross-attention is
    /// fine): mask must be ceil(n_q / block) x ceil(n_k / block). A row of the mask with no
    /// block set gives zero output rows for those queries.
    static BlockLayout from_block_mask(const BlockMask& mask, Index block, Index n_q, Index n_k) {
        constexpr const char* fn = "BlockLayout::from_block_mask";
        detail::check_block_size(fn, block);
        detail::check_length(fn, "n_q", n_q);
        detail::check_length(fn, "n_k", n_k);
        const Index nb_q = detail::ceil_div(n_q, block), nb_k = detail::ceil_div(n_k, block);
        if (mask.rows() != nb_q || mask.cols() != nb_k)
            detail::throw_invalid(fn, ": mask is ", detail::shape_of(mask), " but n_q = ", n_q, " and n_k = ", n_k,
                                  " in blocks of ", block, " need ceil(n_q/block) x ceil(n_k/block) = ", nb_q, "x",
                                  nb_k, " blocks");
        BlockLayout l(block, n_q, n_k);
        std::vector<Index> row;
        for (Index i = 0; i < nb_q; ++i) {
            row.clear();
            for (Index j = 0; j < nb_k; ++j)
                if (mask(i, j)) row.push_back(j);
            l.push_row(row);
        }
        return l;
    }

    /// From a block mask whose blocks are all full: n_q = mask.rows() · block, n_k = mask.cols() · block.
    static BlockLayout from_block_mask(const BlockMask& mask, Index block) {
        detail::check_block_size("BlockLayout::from_block_mask", block);
        const Index most = std::max(mask.rows(), mask.cols());
        if (most > 0 && block > std::numeric_limits<Index>::max() / most)
            detail::throw_invalid("BlockLayout::from_block_mask: mask is ", detail::shape_of(mask), " blocks of ", block,
                                  " tokens: the sizes overflow Index; pass n_q and n_k explicitly");
        constexpr const char* fn = "BlockLayout::from_block_mask";
        detail::check_block_size(fn, block);
        if (mask.rows() == 0 || mask.cols() == 0)
            detail::throw_invalid(fn, ": mask is empty (", detail::shape_of(mask), "); it needs at least one block");
        return from_block_mask(mask, block, mask.rows() * block, mask.cols() * block);
    }

    Index block_size() const { return m_block; }
    Index n_q() const { return m_n_q; }
    Index n_k() const { return m_n_k; }
    Index query_blocks() const { return m_nb_q; }  ///< nb_q = ceil(n_q / b)
    Index key_blocks() const { return m_nb_k; }    ///< nb_k = ceil(n_k / b)

    /// CSR row pointers (nb_q + 1 entries): query block i keeps col_idx[row_ptr[i] .. row_ptr[i+1]).
    const std::vector<Index>& row_ptr() const { return m_row_ptr; }
    /// The kept key blocks, sorted and distinct within each query block.
    const std::vector<Index>& col_idx() const { return m_col_idx; }

    /// The number of key blocks query block i keeps.
    Index row_size(Index i) const { return m_row_ptr[ux(i) + 1] - m_row_ptr[ux(i)]; }
    /// The key blocks query block i keeps (a copy, sorted).
    std::vector<Index> row(Index i) const {
        return std::vector<Index>(m_col_idx.begin() + m_row_ptr[ux(i)], m_col_idx.begin() + m_row_ptr[ux(i) + 1]);
    }
    /// Whether query block i keeps key block j (binary search).
    bool contains(Index i, Index j) const {
        return std::binary_search(m_col_idx.begin() + m_row_ptr[ux(i)], m_col_idx.begin() + m_row_ptr[ux(i) + 1], j);
    }

    /// Number of kept blocks.
    Index kept_blocks() const { return static_cast<Index>(m_col_idx.size()); }
    /// Number of kept (query, key) entries, counting partial last blocks by their true size.
    Index kept_entries() const {
        Index total = 0;
        for (Index i = 0; i < m_nb_q; ++i) {
            Index keys = 0;
            for (Index p = m_row_ptr[ux(i)]; p < m_row_ptr[ux(i) + 1]; ++p) keys += block_len(m_col_idx[ux(p)], m_n_k);
            total += block_len(i, m_n_q) * keys;
        }
        return total;
    }
    /// Fraction of the n_q x n_k attention entries that are kept: kept_entries / (n_q · n_k).
    double density() const {
        if (m_n_q == 0 || m_n_k == 0) return 0.0;
        return static_cast<double>(kept_entries()) / (static_cast<double>(m_n_q) * static_cast<double>(m_n_k));
    }

    /// The nb_q x nb_k block mask.
    BlockMask to_block_mask() const {
        BlockMask m = BlockMask::Constant(m_nb_q, m_nb_k, false);
        for (Index i = 0; i < m_nb_q; ++i)
            for (Index p = m_row_ptr[ux(i)]; p < m_row_ptr[ux(i) + 1]; ++p) m(i, m_col_idx[ux(p)]) = true;
        return m;
    }

    /// The n_q x n_k token mask (true = query i may see key j): O(n_q · n_k) memory, for
    /// analysis and tests at small n.
    BlockMask to_dense_mask() const {
        BlockMask m = BlockMask::Constant(m_n_q, m_n_k, false);
        for (Index i = 0; i < m_nb_q; ++i)
            for (Index p = m_row_ptr[ux(i)]; p < m_row_ptr[ux(i) + 1]; ++p) {
                const Index j = m_col_idx[ux(p)];
                m.block(i * m_block, j * m_block, block_len(i, m_n_q), block_len(j, m_n_k)).setConstant(true);
            }
        return m;
    }

    /// Writes the block mask as a binary PGM picture (P5): one pixels_per_block x pixels_per_block
    /// square per block, kept blocks white (255), dropped blocks black (0); query blocks go down,
    /// key blocks across.
    void write_pgm(std::ostream& os, Index pixels_per_block = 1) const {
        if (pixels_per_block < 1)
            detail::throw_invalid("BlockLayout::write_pgm: pixels_per_block (", pixels_per_block, ") must be >= 1");
        const BlockMask m = to_block_mask();
        const Index w = m_nb_k * pixels_per_block, h = m_nb_q * pixels_per_block;
        os << "P5\n" << w << " " << h << "\n255\n";
        std::string line(static_cast<std::size_t>(w), '\0');
        for (Index i = 0; i < m_nb_q; ++i) {
            for (Index j = 0; j < m_nb_k; ++j)
                for (Index p = 0; p < pixels_per_block; ++p)
                    line[ux(j * pixels_per_block + p)] = m(i, j) ? static_cast<char>(255) : '\0';
            for (Index p = 0; p < pixels_per_block; ++p) os.write(line.data(), static_cast<std::streamsize>(line.size()));
        }
    }

    /// write_pgm into a file; throws std::runtime_error naming the path if it cannot be written.
    void write_pgm(const std::string& path, Index pixels_per_block = 1) const {
        std::ofstream out(path, std::ios::binary);
        if (!out) throw std::runtime_error("attnx::BlockLayout::write_pgm: cannot open '" + path + "' for writing");
        write_pgm(out, pixels_per_block);
        if (!out) throw std::runtime_error("attnx::BlockLayout::write_pgm: writing '" + path + "' failed");
    }

    /// Prints the block mask as text, one line per query block: '#' kept, '.' dropped.
    friend std::ostream& operator<<(std::ostream& os, const BlockLayout& l) {
        const BlockMask m = l.to_block_mask();
        for (Index i = 0; i < m.rows(); ++i) {
            for (Index j = 0; j < m.cols(); ++j) os << (m(i, j) ? '#' : '.');
            os << '\n';
        }
        return os;
    }

    friend bool operator==(const BlockLayout& a, const BlockLayout& b) {
        return a.m_block == b.m_block && a.m_n_q == b.m_n_q && a.m_n_k == b.m_n_k && a.m_row_ptr == b.m_row_ptr &&
               a.m_col_idx == b.m_col_idx;
    }
    friend bool operator!=(const BlockLayout& a, const BlockLayout& b) { return !(a == b); }

    /// True if the stored CSR is internally consistent with the sizes: nb_q + 1 non-decreasing
    /// row pointers from 0 to the number of kept blocks, every kept key block < nb_k. O(nb_q +
    /// kept blocks); block_sparse_attention runs it on every call (a layout is a value the caller
    /// may have built, copied or moved in any way).
    bool consistent() const {
        if (m_block < 1 || m_n_q < 1 || m_n_k < 1) return false;
        if (m_nb_q != detail::ceil_div(m_n_q, m_block) || m_nb_k != detail::ceil_div(m_n_k, m_block)) return false;
        if (m_row_ptr.size() != ux(m_nb_q) + 1 || m_row_ptr.front() != 0 ||
            m_row_ptr.back() != static_cast<Index>(m_col_idx.size()))
            return false;
        for (std::size_t i = 0; i + 1 < m_row_ptr.size(); ++i)
            if (m_row_ptr[i + 1] < m_row_ptr[i]) return false;
        for (Index j : m_col_idx)
            if (j < 0 || j >= m_nb_k) return false;
        return true;
    }

private:
    void swap(BlockLayout& o) noexcept {
        std::swap(m_block, o.m_block);
        std::swap(m_n_q, o.m_n_q);
        std::swap(m_n_k, o.m_n_k);
        std::swap(m_nb_q, o.m_nb_q);
        std::swap(m_nb_k, o.m_nb_k);
        m_row_ptr.swap(o.m_row_ptr);
        m_col_idx.swap(o.m_col_idx);
    }

    /// A block longer than both sequences is one block (ceil_div cannot overflow). Every product
    /// i·b in the layout and the kernel has i < ceil(n / b), so it stays below n + b: in range
    /// even for b = INT64_MAX (then i = 0).
    BlockLayout(Index block, Index n_q, Index n_k)
        : m_block(block),
          m_n_q(n_q),
          m_n_k(n_k),
          m_nb_q(detail::ceil_div(n_q, m_block)),
          m_nb_k(detail::ceil_div(n_k, m_block)) {
        m_row_ptr.reserve(static_cast<std::size_t>(m_nb_q) + 1);  // holds {0} already
    }

    static std::size_t ux(Index i) { return static_cast<std::size_t>(i); }

    /// Length of block i of a dimension of n entries (the last one may be partial).
    Index block_len(Index i, Index n) const { return std::min(m_block, n - i * m_block); }

    /// Appends one query block's key blocks (any order, duplicates allowed): stored sorted and distinct.
    void push_row(std::vector<Index>& row) {
        std::sort(row.begin(), row.end());
        row.erase(std::unique(row.begin(), row.end()), row.end());
        m_col_idx.insert(m_col_idx.end(), row.begin(), row.end());
        m_row_ptr.push_back(static_cast<Index>(m_col_idx.size()));
    }

    /// [first, last] key blocks of query block i's window of w blocks, clipped to [0, nb).
    static std::pair<Index, Index> window_of(Index i, Index w, Index nb) {
        return {std::max<Index>(0, i - w / 2), std::min<Index>(nb - 1, i + (w - 1) / 2)};
    }

    static BlockLayout build_bigbird(Index n, const BigBirdOptions& o) {
        const Index nb = detail::ceil_div(n, o.block);
        // Global blocks: the first ceil(g/2) and the last floor(g/2), as one sorted, distinct list.
        std::vector<Index> global;
        const Index g = std::min(o.global, nb);
        for (Index j = 0; j < (g + 1) / 2; ++j) global.push_back(j);
        for (Index j = nb - g / 2; j < nb; ++j) global.push_back(j);
        std::sort(global.begin(), global.end());
        global.erase(std::unique(global.begin(), global.end()), global.end());

        BlockLayout l(o.block, n, n);
        std::vector<Index> row, excluded, picks;
        for (Index i = 0; i < nb; ++i) {
            row.clear();
            if (std::binary_search(global.begin(), global.end(), i)) {
                for (Index j = 0; j < nb; ++j) row.push_back(j);
                l.push_row(row);
                continue;
            }
            const std::pair<Index, Index> w = window_of(i, o.window, nb);
            // excluded = window ∪ global, sorted and distinct: the random blocks avoid them.
            excluded = global;
            for (Index j = w.first; j <= w.second; ++j) excluded.push_back(j);
            std::sort(excluded.begin(), excluded.end());
            excluded.erase(std::unique(excluded.begin(), excluded.end()), excluded.end());
            row = excluded;
            const Index n_free = nb - static_cast<Index>(excluded.size());
            const Index r = std::min(o.random, n_free);
            // Floyd's algorithm: r distinct ranks, uniform among the r-subsets of [0, n_free),
            // draw t of row i from CounterRng(seed, i); O(r²) whatever nb is.
            const CounterRng rng(o.seed, static_cast<std::uint64_t>(i));
            picks.clear();
            for (Index t = n_free - r; t < n_free; ++t) {
                const Index draw = static_cast<Index>(rng.below(static_cast<std::uint64_t>(t - (n_free - r)),
                                                                static_cast<std::uint64_t>(t) + 1));
                if (std::find(picks.begin(), picks.end(), draw) == picks.end())
                    picks.push_back(draw);
                else
                    picks.push_back(t);
            }
            // Rank -> block: the rank-th block of [0, nb) that is not excluded.
            for (Index rank : picks) {
                Index j = rank;
                for (Index e : excluded)
                    if (e <= j) ++j;  // excluded is sorted: each excluded block at or before j shifts j
                row.push_back(j);
            }
            l.push_row(row);
        }
        return l;
    }

    Index m_block = 0, m_n_q = 0, m_n_k = 0, m_nb_q = 0, m_nb_k = 0;
    std::vector<Index> m_row_ptr{0};
    std::vector<Index> m_col_idx;
};

}  // namespace attnx

#endif  // ATTNX_BLOCK_LAYOUT_HPP
