// SPDX-License-Identifier: MIT
/// \file multi_head.hpp
/// Multi-head, batched and grouped-query attention over a framework's tensor layout, for every
/// mechanism value of mechanisms.hpp: the attention step of a transformer layer in one call.
///
///   out[b, :, h, :] = mechanism(Q[b, :, h, :], K[b, :, h_kv, :], V[b, :, h_kv, :]),
///   h_kv = h / (H_q / H_kv)            for b < B, h < H_q
///
/// (Vaswani et al., arXiv:1706.03762v7, Sec. 3.2.2: multi-head attention; Ainslie et al.,
/// arXiv:2305.13245v3: grouped-query attention, H_kv key/value heads each shared by a group of
/// H_q / H_kv consecutive query heads; Shazeer, arXiv:1911.02150: multi-query, H_kv = 1.) The
/// mapping is the one of PyTorch's repeat_interleave, ggml and ONNX Runtime; the modulo mapping
/// h % H_kv is a different (and, for models trained with the former, wrong) grouping.
///
/// Tensors are `HeadsView`s: a pointer, sizes (batch B, tokens N, heads H, head dim D) and one
/// stride per dimension, in elements. Factories cover the common layouts: `bnhd` (contiguous
/// (B, N, H, D): fused projections, ggml, flash-attn), `bhnd` (contiguous (B, H, N, D): PyTorch's
/// scaled_dot_product_attention), `strided` (anything else, e.g. Q, K, V inside one packed
/// (B, N, 3, H, D) buffer, no copy), and `heads_view(matrix, H)` for an Eigen n x (H·D) matrix
/// (either storage order; head h = columns [h·D, (h+1)·D); B = 1).
///
/// Options (MultiHeadOptions): scale (default: the mechanism's, i.e. 1/sqrt(D)), causal
/// (bottom-right aligned as in the single-head API), per-sequence key_lengths or a B x N_k
/// key_padding_mask, per-sequence query_lengths. A sequence with lengths (L_q, L_k) is computed
/// as the single-head call on its first L_q queries and first L_k keys (the cut sequence: causal
/// alignment, Nyström's segments and Linformer's projection columns all refer to it); its query
/// rows from L_q on get zero output, and L_k = 0 gives zero rows.
///
/// Results: bit-identical to the loop of single-head calls `mechanism(q_bh, k_bh, v_bh)` on each
/// (b, h) slice copied into a column-major matrix, with the item's options, for any thread count
/// (tested for every mechanism with 1, 2 and 3 threads) — except the materialized exact kernel,
/// whose Eigen GEMM blocks by thread count; it equals that loop run on one thread.
///
/// Threads (OpenMP, if compiled with it): when B·H_q >= 2·threads, the items (b, h) run in
/// parallel, each with a single-threaded kernel inside (the kernels' own regions are nested and
/// get one thread); otherwise the items run one after another and each kernel uses the threads.
/// Called inside a parallel region, items run in sequence on the calling thread. (Decoding takes
/// its own split, below: its units run in parallel, unless the whole call is under 4 MFLOP,
/// a busy-machine back-off is on, or the caller is inside a parallel region.)
///
/// Memory: per thread, once per call, the gathered slices of one item (column-major copies of
/// Q, K, V and the output of one (b, h): O((N_q + N_k)·(D + D_v))), never per item. K and V are
/// gathered once per run of consecutive items sharing a key/value head. Mechanisms with key-side
/// work that does not depend on the queries (Linformer's E K and F V) provide the optional hook
/// `KeyState` / `prepare_keys` / `attend_keys`; it then runs once per (b, key/value head), not
/// once per query head (kept for the call: B·H_kv small states).
///
/// Decoding (exact attention, streaming kernel, every sequence's L_q <= query_tile, e.g. one new
/// token against a KV cache): the work is split by (b, key/value head, key part) instead, and
/// each key tile (key_tile_for: 256 keys for one query, 128 for more, by default) is read from
/// the cache once and used by every query head of its group while it is in cache (grouped-query
/// attention reads its cache once, not H_q / H_kv times; Ainslie et al., Sec. 2). With one query per sequence and a token-major cache (unit stride
/// along D) the tiles are read in place; otherwise each is gathered into a small column-major
/// copy. Same results (bit-identical to the single-head loop) and same errors; memory: per
/// thread one item's queries and output, and one key tile of K and V where a tile is gathered;
/// per call, for sequences of 8 key tiles or more (over 1792 keys for one query at the default
/// decode_key_tile, over 896 for more at the default key_tile), the partial results of the key
/// parts (at most 8 of L_q x (D_v + 2) per item). Measured (2-core
/// AMD EPYC VM with AVX-512, H_q 32, H_kv 8, D 128): K and V read at 0.57–0.91 (4096 keys) and
/// 0.57–1.07 (32768 keys) of a same-run memory copy's rate (README, "Decoding, measured").
///
/// Errors: attnx::invalid_argument before any work for mismatched B, D, N or H_kv between q, k,
/// v and out; H_q not divisible by H_kv; negative sizes or D = 0; a null pointer with a non-zero
/// size; lengths or mask of the wrong size or out of range; key_lengths together with a
/// key_padding_mask; a mechanism whose own options carry a key_padding_mask; strides of out under
/// which two elements could share memory; out's memory range overlapping q's, k's or v's. Errors
/// a mechanism raises for one item (its options against the item's sizes, NaN/Inf in a slice,
/// overflow) are rethrown after the work as attnx::invalid_argument, prefixed with the item
/// ("batch b, head h (key/value head h_kv): ..."); the lowest failing item is reported, for
/// any thread count. After an exception the contents of out are unspecified.
///
/// Cost: the sum of the mechanism's cost over the B·H_q items (Linformer: projections over
/// B·H_kv), plus one gather of each slice, O(B·(N_q·H_q + N_k·H_kv)·D) copies (none of K and V
/// when decoding from a token-major cache).
#ifndef ATTNX_MULTI_HEAD_HPP
#define ATTNX_MULTI_HEAD_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/detail/online_softmax.hpp"
#include "attnx/detail/parallel.hpp"
#include "attnx/detail/transpose.hpp"
#include "attnx/exact.hpp"
#include "attnx/mechanisms.hpp"

namespace attnx {

/// A 4-d tensor of heads: element (b, n, h, d) is data[b·stride_batch + n·stride_token +
/// h·stride_head + d·stride_dim]. T is the element type, const for inputs (float, const float,
/// double, const double). A view does not own its memory; strides are in elements and may be
/// any value (zero or negative too) for inputs; see multi_head_attention for out.
template <typename T>
struct HeadsView {
    using Scalar = std::remove_const_t<T>;
    static_assert(std::is_floating_point<Scalar>::value, "attnx::HeadsView: the element type must be float or double");

    T* data = nullptr;
    Index batch = 0, tokens = 0, heads = 0, dim = 0;  ///< B, N, H, D
    Index stride_batch = 0, stride_token = 0, stride_head = 0, stride_dim = 0;

    /// Contiguous (B, N, H, D), C order: what a fused input projection produces; ggml,
    /// flash-attn and fast-transformers use it.
    static HeadsView bnhd(T* data, Index batch, Index tokens, Index heads, Index dim) {
        return {data, batch, tokens, heads, dim, tokens * heads * dim, heads * dim, dim, 1};
    }
    /// Contiguous (B, H, N, D), C order: PyTorch's scaled_dot_product_attention.
    static HeadsView bhnd(T* data, Index batch, Index heads, Index tokens, Index dim) {
        return {data, batch, tokens, heads, dim, heads * tokens * dim, dim, tokens * dim, 1};
    }
    /// Any strides (in elements), e.g. K inside a packed (B, N, 3, H, D) QKV buffer p:
    /// strided(p + H·D, B, N, H, D, N·3·H·D, 3·H·D, D, 1).
    static HeadsView strided(T* data, Index batch, Index tokens, Index heads, Index dim, Index stride_batch,
                             Index stride_token, Index stride_head, Index stride_dim) {
        return {data, batch, tokens, heads, dim, stride_batch, stride_token, stride_head, stride_dim};
    }

    /// A mutable view converts to a const one.
    template <typename U = T, typename = std::enable_if_t<!std::is_const<U>::value>>
    operator HeadsView<const U>() const {  // NOLINT(google-explicit-constructor)
        return {data, batch, tokens, heads, dim, stride_batch, stride_token, stride_head, stride_dim};
    }

    /// Element (b, n, h, d); no bounds check.
    T& operator()(Index b, Index n, Index h, Index d) const {
        return data[b * stride_batch + n * stride_token + h * stride_head + d * stride_dim];
    }
    /// B·N·H·D.
    Index size() const { return batch * tokens * heads * dim; }
};

namespace detail {

template <typename Derived>
void check_matrix_heads(const Eigen::DenseBase<Derived>& m, Index heads) {
    if (heads < 1) throw_invalid("heads_view: heads (", heads, ") must be >= 1");
    if (m.cols() % heads != 0)
        throw_invalid("heads_view: the matrix has ", m.cols(), " columns, not a multiple of heads = ", heads,
                      " (it must be n x (heads * D))");
}

}  // namespace detail

/// The heads of an Eigen n x (H·D) matrix (either storage order, any strides), B = 1, head h =
/// columns [h·D, (h+1)·D). The matrix must outlive the view. Throws if cols % heads != 0.
template <typename Derived>
HeadsView<const typename Derived::Scalar> heads_view(const Eigen::DenseBase<Derived>& m, Index heads) {
    static_assert((Derived::Flags & Eigen::DirectAccessBit) != 0,
                  "attnx::heads_view: the matrix must have direct access to its memory (a Matrix, Map, Ref or Block)");
    detail::check_matrix_heads(m, heads);
    const Index dim = m.cols() / heads;
    const Derived& d = m.derived();
    return {d.data(), 1, m.rows(), heads, dim, m.rows() * d.rowStride(), d.rowStride(), dim * d.colStride(),
            d.colStride()};
}

/// As above, mutable (for out).
template <typename Derived>
HeadsView<typename Derived::Scalar> heads_view(Eigen::DenseBase<Derived>& m, Index heads) {
    static_assert((Derived::Flags & Eigen::DirectAccessBit) != 0 && (Derived::Flags & Eigen::LvalueBit) != 0,
                  "attnx::heads_view: the matrix must be writable with direct access to its memory");
    detail::check_matrix_heads(m, heads);
    const Index dim = m.cols() / heads;
    Derived& d = m.derived();
    return {d.data(), 1, m.rows(), heads, dim, m.rows() * d.rowStride(), d.rowStride(), dim * d.colStride(),
            d.colStride()};
}

/// A view of a temporary matrix would dangle.
template <typename S, int R, int C, int O, int MR, int MC>
void heads_view(Eigen::Matrix<S, R, C, O, MR, MC>&& m, Index heads) = delete;

/// Options of multi_head_attention. They are applied on top of a copy of the mechanism's own
/// options for each item (b, h); check_finite and the mechanism's knobs stay as the mechanism has them.
struct MultiHeadOptions {
    /// s in softmax(s · Q Kᵀ); unset: the mechanism's options.scale, whose default is 1/sqrt(D).
    std::optional<double> scale;
    /// Causal masking (bottom-right aligned within each sequence: query i of a sequence with
    /// L_q queries and L_k keys sees keys j <= i + L_k - L_q). false leaves the mechanism's own.
    bool causal = false;
    /// Empty, or B lengths: keys at positions >= key_lengths[b] of sequence b are padding
    /// (0 <= key_lengths[b] <= N_k).
    std::vector<Index> key_lengths;
    /// Empty, or B lengths: query rows >= query_lengths[b] of sequence b are padding and get zero
    /// output (0 <= query_lengths[b] <= N_q).
    std::vector<Index> query_lengths;
    /// Empty, or B·N_k flags, row-major (entry b·N_k + j): true = key j of sequence b is padding
    /// (any pattern; passed to the mechanism as its key_padding_mask). Not with key_lengths.
    std::vector<bool> key_padding_mask;
};

namespace detail {

/// True for mechanisms with the optional key-state hook (see the file comment).
template <typename M, typename = void>
struct has_key_state : std::false_type {};
template <typename M>
struct has_key_state<M, std::void_t<typename M::KeyState>> : std::true_type {};

/// One view's sizes and strides as arrays, for the checks.
struct ViewShape {
    const char* name;
    const void* data;
    std::size_t elem;
    Index size[4];
    Index stride[4];
};

template <typename T>
ViewShape shape_of_view(const char* name, const HeadsView<T>& x) {
    return {name,
            static_cast<const void*>(x.data),
            sizeof(T),
            {x.batch, x.tokens, x.heads, x.dim},
            {x.stride_batch, x.stride_token, x.stride_head, x.stride_dim}};
}

inline std::string describe(const ViewShape& s) {
    std::ostringstream os;
    os << "(B, N, H, D) = (" << s.size[0] << ", " << s.size[1] << ", " << s.size[2] << ", " << s.size[3]
       << "), strides (" << s.stride[0] << ", " << s.stride[1] << ", " << s.stride[2] << ", " << s.stride[3] << ")";
    return os.str();
}

inline Index view_elements(const ViewShape& s) { return s.size[0] * s.size[1] * s.size[2] * s.size[3]; }

inline void check_view(const char* fn, const ViewShape& s) {
    static const char* const dims[4] = {"batch", "tokens", "heads", "dim"};
    for (int i = 0; i < 4; ++i)
        if (s.size[i] < 0) throw_invalid(fn, ": ", s.name, ".", dims[i], " = ", s.size[i], " is negative");
    if (s.size[2] < 1) throw_invalid(fn, ": ", s.name, " has ", s.size[2], " heads; it needs at least one");
    if (s.size[3] < 1) throw_invalid(fn, ": ", s.name, " has head dimension D = ", s.size[3], "; it must be >= 1");
    if (s.data == nullptr && view_elements(s) > 0)
        throw_invalid(fn, ": ", s.name, ".data is null but ", s.name, " has ", view_elements(s), " elements (",
                      describe(s), ")");
}

/// True if two different index tuples of the view may reach the same element: the dimensions
/// with more than one entry, sorted by |stride|, must each step over the whole span of the
/// smaller ones (a sufficient condition for distinct addresses; it holds for every C- or
/// Fortran-ordered layout and their sub-views).
inline bool strides_may_alias(const ViewShape& s) {
    std::vector<std::pair<Index, Index>> dims;  // (|stride|, size)
    for (int i = 0; i < 4; ++i)
        if (s.size[i] > 1) dims.emplace_back(std::abs(s.stride[i]), s.size[i]);
    std::sort(dims.begin(), dims.end());
    Index span = 0;
    for (const auto& dsz : dims) {
        if (dsz.first <= span) return true;
        span += dsz.first * (dsz.second - 1);
    }
    return false;
}

/// [first byte, one past the last byte] of the memory a non-empty view can touch.
inline std::pair<std::uintptr_t, std::uintptr_t> byte_range(const ViewShape& s) {
    Index lo = 0, hi = 0;
    for (int i = 0; i < 4; ++i) {
        const Index reach = s.stride[i] * (s.size[i] - 1);
        lo += std::min<Index>(0, reach);
        hi += std::max<Index>(0, reach);
    }
    const auto base = reinterpret_cast<std::uintptr_t>(s.data);
    const auto elem = static_cast<std::intptr_t>(s.elem);
    return {base + static_cast<std::uintptr_t>(static_cast<std::intptr_t>(lo) * elem),
            base + static_cast<std::uintptr_t>((static_cast<std::intptr_t>(hi) + 1) * elem)};
}

/// Every check of multi_head_attention that does not depend on the mechanism.
inline void check_multi_head(const char* fn, const ViewShape& q, const ViewShape& k, const ViewShape& v,
                             const ViewShape& out, const MultiHeadOptions& o, const AttentionOptions& mech) {
    for (const ViewShape* s : {&q, &k, &v, &out}) check_view(fn, *s);
    const Index b = q.size[0], n_q = q.size[1], h_q = q.size[2], d = q.size[3];
    const Index n_k = k.size[1], h_kv = k.size[2], dv = v.size[3];
    for (const ViewShape* s : {&k, &v, &out})
        if (s->size[0] != b)
            throw_invalid(fn, ": ", s->name, " has batch B = ", s->size[0], " but q has B = ", b, " (q is ",
                          describe(q), ", ", s->name, " is ", describe(*s), ")");
    if (k.size[3] != d)
        throw_invalid(fn, ": k has head dimension D = ", k.size[3], " but q has D = ", d,
                      " (q and k need the same head dimension)");
    if (v.size[2] != h_kv)
        throw_invalid(fn, ": v has ", v.size[2], " heads but k has ", h_kv,
                      " (k and v need the same number H_kv of key/value heads)");
    if (v.size[1] != n_k)
        throw_invalid(fn, ": v has N = ", v.size[1], " tokens but k has N_k = ", n_k, " (every key needs one value)");
    if (h_q % h_kv != 0)
        throw_invalid(fn, ": q has H_q = ", h_q, " heads, not a multiple of the H_kv = ", h_kv,
                      " key/value heads of k and v (each key/value head serves H_q / H_kv query heads)");
    if (out.size[1] != n_q || out.size[2] != h_q || out.size[3] != dv)
        throw_invalid(fn, ": out is ", describe(out), " but must have N = N_q = ", n_q, " tokens, H = H_q = ", h_q,
                      " heads and D = D_v = ", dv, " (the head dimension of v)");
    if (o.scale && !(std::isfinite(*o.scale) && *o.scale > 0))
        throw_invalid(fn, ": scale (", *o.scale, ") must be finite and > 0");
    if (!o.key_lengths.empty() && !o.key_padding_mask.empty())
        throw_invalid(fn, ": key_lengths and key_padding_mask are both set; pass one of them");
    if (!mech.key_padding_mask.empty())
        throw_invalid(fn, ": the mechanism's options carry a key_padding_mask (length ", mech.key_padding_mask.size(),
                      "); per-sequence masks go in MultiHeadOptions (key_lengths or key_padding_mask)");
    const auto check_lengths = [&](const std::vector<Index>& len, const char* name, Index n, const char* n_name) {
        if (len.empty()) return;
        if (static_cast<Index>(len.size()) != b)
            throw_invalid(fn, ": ", name, " has ", len.size(), " entries but the batch has B = ", b,
                          " sequences (pass one length per sequence, or none)");
        for (std::size_t i = 0; i < len.size(); ++i)
            if (len[i] < 0 || len[i] > n)
                throw_invalid(fn, ": ", name, "[", i, "] = ", len[i], " is out of range [0, ", n_name, " = ", n, "]");
    };
    check_lengths(o.key_lengths, "key_lengths", n_k, "N_k");
    check_lengths(o.query_lengths, "query_lengths", n_q, "N_q");
    if (!o.key_padding_mask.empty() && static_cast<Index>(o.key_padding_mask.size()) != b * n_k)
        throw_invalid(fn, ": key_padding_mask has ", o.key_padding_mask.size(), " entries but must have B * N_k = ",
                      b, " * ", n_k, " = ", b * n_k, " (row-major, one flag per key of each sequence)");
    if (view_elements(out) > 0 && strides_may_alias(out))
        throw_invalid(fn, ": the strides of out may make two of its elements share memory (out is ", describe(out),
                      "); each stride must exceed the span of the smaller ones");
    if (view_elements(out) > 0) {
        const auto ro = byte_range(out);
        for (const ViewShape* s : {&q, &k, &v}) {
            if (view_elements(*s) == 0) continue;
            const auto r = byte_range(*s);
            if (ro.first < r.second && r.first < ro.second)
                throw_invalid(fn, ": out overlaps the memory of ", s->name, " (out is ", describe(out), ", ", s->name,
                              " is ", describe(*s), "); the output needs its own buffer");
        }
    }
}


/// Copies rows [first, first + rows) of the (b, h) slice of x into the column-major rows x D
/// matrix at dst with outer stride ld >= rows. Token-major slices (unit stride along D) go through transpose_rows; any other
/// strides by blocks of 32 rows, so that each destination column gets whole cache lines while
/// the 32 source rows stay in L1.
template <typename Scalar>
void gather_rows(const HeadsView<const Scalar>& x, Index b, Index h, Index first, Index rows, Scalar* dst, Index ld) {
    const Scalar* base = x.data + b * x.stride_batch + h * x.stride_head + first * x.stride_token;
    if (x.stride_dim == 1) {
        transpose_rows(base, x.stride_token, rows, x.dim, dst, ld);
        return;
    }
    constexpr Index block = 32;
    for (Index n0 = 0; n0 < rows; n0 += block) {
        const Index n1 = std::min(rows, n0 + block);
        for (Index d = 0; d < x.dim; ++d) {
            const Scalar* src = base + d * x.stride_dim;
            Scalar* col = dst + d * ld;
            for (Index n = n0; n < n1; ++n) col[n] = src[n * x.stride_token];
        }
    }
}

/// Copies rows [0, rows) of the (b, h) slice of x into the column-major rows x D matrix dst
/// (which is contiguous: its outer stride is rows, as in a freshly allocated Matrix).
template <typename Scalar>
void gather_slice(const HeadsView<const Scalar>& x, Index b, Index h, Index rows, Scalar* dst) {
    gather_rows(x, b, h, 0, rows, dst, rows);
}

/// Writes the column-major rows x D matrix src into rows [0, rows) of the (b, h) slice of out,
/// and zeros into its rows [rows, N). Token-major outputs (unit stride along D) through
/// transpose_rows (src read as the row-major D x rows matrix it also is).
template <typename Scalar>
void scatter_slice(const Scalar* src, Index rows, const HeadsView<Scalar>& out, Index b, Index h) {
    constexpr Index block = 32;
    Scalar* base = out.data + b * out.stride_batch + h * out.stride_head;
    Index n_first = 0;  // rows from here on are written below
    if (out.stride_dim == 1 && rows > 0) {
        transpose_rows<Scalar>(src, rows, out.dim, rows, base, out.stride_token);
        n_first = rows;
    }
    for (Index n0 = n_first; n0 < out.tokens; n0 += block) {
        const Index n1 = std::min(out.tokens, n0 + block);
        for (Index n = n0; n < n1; ++n) {
            Scalar* row = base + n * out.stride_token;
            if (n < rows)
                for (Index d = 0; d < out.dim; ++d) row[d * out.stride_dim] = src[d * rows + n];
            else
                for (Index d = 0; d < out.dim; ++d) row[d * out.stride_dim] = Scalar(0);
        }
    }
}

/// Runs body(i, t) for i in [0, n), in parallel (thread t of `threads`, static contiguous
/// split, each thread's kernels single-threaded) if `parallel`, else in sequence on thread 0.
/// An exception from body is caught; the one of the lowest i is returned with that i.
template <typename Body>
std::pair<std::exception_ptr, Index> run_items(Index n, bool parallel, int threads, Body&& body) {
    std::exception_ptr first;
    Index first_i = n;
    if (!parallel) {
        for (Index i = 0; i < n; ++i) {
            try {
                body(i, 0);
            } catch (...) {
                return {std::current_exception(), i};
            }
        }
        return {first, first_i};
    }
#ifdef _OPENMP
    // parallel_region sets each thread's count to 1 for the region: the kernels' nested regions
    // get one thread, and Eigen's own products on it run single-threaded, as inside a kernel's
    // team at top level.
    parallel_region(threads, [&] {
        const int t = omp_get_thread_num();
ATTNX_OMP(for schedule(static))
        for (Index i = 0; i < n; ++i) {
            try {
                body(i, t);
            } catch (...) {
ATTNX_OMP(critical(attnx_multi_head_error))
                if (i < first_i) {
                    first_i = i;
                    first = std::current_exception();
                }
            }
        }
    });
#else
    (void)threads;
#endif
    return {first, first_i};
}

/// Rethrows an item's exception; attnx::invalid_argument gets the item as a prefix.
[[noreturn]] inline void rethrow_item(const char* fn, std::exception_ptr e, const std::string& item) {
    try {
        std::rethrow_exception(e);
    } catch (const attnx::invalid_argument& ex) {
        throw_invalid(fn, ": ", item, ": ", ex.what());
    }
}

/// The layer's options on a copy of the mechanism (scale, causal): what every item shares.
template <typename M>
void apply_layer_options(M& m, const MultiHeadOptions& o) {
    if (o.scale) m.options.scale = o.scale;
    if (o.causal) m.options.causal = true;
}

/// Item b's key padding mask (row b of the layer's B x N_k mask) on the mechanism, if the layer
/// has a mask; assign reuses the capacity.
template <typename M>
void set_item_mask(M& m, const MultiHeadOptions& o, Index b, Index n_k) {
    if (o.key_padding_mask.empty()) return;
    const auto first = o.key_padding_mask.begin() + static_cast<std::ptrdiff_t>(b * n_k);
    m.options.key_padding_mask.assign(first, first + static_cast<std::ptrdiff_t>(n_k));
}

/// (L_q, L_k) of sequence b: its query and key lengths (N_q, N_k without lengths).
inline std::pair<Index, Index> item_lengths(const MultiHeadOptions& o, Index b, Index n_q, Index n_k) {
    return {o.query_lengths.empty() ? n_q : o.query_lengths[static_cast<std::size_t>(b)],
            o.key_lengths.empty() ? n_k : o.key_lengths[static_cast<std::size_t>(b)]};
}

/// "batch b, head h (key/value head h_kv)", the prefix of an item's error.
inline std::string item_name(Index b, Index h, Index group) {
    return "batch " + std::to_string(b) + ", head " + std::to_string(h) + " (key/value head " +
           std::to_string(h / group) + ")";
}

/// Per-thread scratch of multi_head_attention, allocated once per call.
template <typename M, typename Scalar>
struct HeadScratch {
    M mech;
    Matrix<Scalar> q, k, v, out;  // storage only: used through contiguous Maps of the item's size
    Index loaded = -1;            // b * H_kv + h_kv of the K, V held in k, v; -1: none
};

/// The grouped exact path of multi_head_attention: exact attention, streaming kernel, every
/// sequence with at most one query tile (L_q <= query_tile: decoding, speculative decoding, short
/// prefill). Not API.
///
/// The units of work are (b, key/value head, key part). A unit takes each key tile of its K and V
/// slices once and runs the online-softmax step of every query head of its group on it (Ainslie
/// et al., arXiv:2305.13245v3: a group shares its keys, so it should read them once). With one
/// query per sequence (decoding) and token-major K and V (unit stride along D), the step reads the
/// tile's rows in place (single_query.hpp: the same bits as a column-major copy); otherwise the
/// tile is first gathered into a small column-major copy. Per head, the arithmetic is the
/// single-head kernel's: the same key tiles (key_tile_for), key parts (key_parts), steps (online_step) and merge
/// (merge_parts), on operands that round the same in either layout (Eigen 3.4's GEMM for any outer
/// stride; single_query.hpp for one query); the result is bit-identical to the loop of
/// exact_attention calls, for any thread count.
///
/// With check_finite on, the input checks are fused as in exact_fused_checked: Q's finiteness
/// per item, NaN/Inf of K and V from the scores and the accumulators, no magnitudes. An item is
/// clean when all of that passed and its result is finite; an item that is not clean is left to
/// the caller, which recomputes it through the general path (the single-head call, which then
/// throws its error or returns its values).
///
/// Memory: per call, the partial results of items whose keys are split into parts (8 key tiles
/// or more: at most 8 parts of L_q x (D_v + 2) per item); per thread, one key tile of K and V, one
/// item's queries and output, and one online-softmax workspace per query head of a group.
/// Returns redo: redo[i] != 0 for item i = b·H_q + h to recompute; out holds every other item.
template <typename Scalar>
std::vector<char> grouped_exact(const ExactOptions& eo, const HeadsView<const Scalar>& q,
                                const HeadsView<const Scalar>& k, const HeadsView<const Scalar>& v,
                                const HeadsView<Scalar>& out, const MultiHeadOptions& o) {
    using MapC = Eigen::Map<const Matrix<Scalar>>;
    using MapM = Eigen::Map<Matrix<Scalar>>;
    const Index batch = q.batch, n_q = q.tokens, h_q = q.heads, d = q.dim;
    const Index n_k = k.tokens, h_kv = k.heads, dv = v.dim, group = h_q / h_kv;
    const Index n_items = batch * h_q;
    const bool scan = eo.check_finite;
    const Scalar scale = resolve_scale<Scalar>(eo, d);

    // Per sequence, what dense_online_attention would use for the cut sequence (L_q, L_k).
    struct Sequence {
        Index lq = 0, lk = 0, count = 0, parts = 0;  // parts = 0: no work (zero rows)
        DenseKeyTiles tiles;
        MaskSpec mask;
    };
    std::vector<std::vector<bool>> padding(o.key_padding_mask.empty() ? 0 : static_cast<std::size_t>(batch));
    std::vector<Sequence> seqs(static_cast<std::size_t>(batch));
    Index bq_max = 1, bk_max = 1;
    double flops = 0;
    for (Index b = 0; b < batch; ++b) {
        Sequence& sq = seqs[static_cast<std::size_t>(b)];
        std::tie(sq.lq, sq.lk) = item_lengths(o, b, n_q, n_k);
        if (sq.lq == 0 || sq.lk == 0) continue;
        const Index bk = std::min(key_tile_for(eo, sq.lq), sq.lk);
        sq.tiles.n_q = sq.lq;
        sq.tiles.n_k = sq.lk;
        sq.tiles.bq = sq.lq;
        sq.tiles.bk = bk;
        sq.tiles.causal = eo.causal;
        sq.tiles.causal_offset = sq.lk - sq.lq;
        sq.count = sq.tiles.count(0);
        sq.parts = key_parts(1, sq.count);
        if (!padding.empty()) {
            const auto first = o.key_padding_mask.begin() + static_cast<std::ptrdiff_t>(b * n_k);
            padding[static_cast<std::size_t>(b)].assign(first, first + static_cast<std::ptrdiff_t>(n_k));
            sq.mask.key_padding = &padding[static_cast<std::size_t>(b)];
        }
        sq.mask.causal = eo.causal;
        sq.mask.causal_offset = sq.lk - sq.lq;
        bq_max = std::max(bq_max, sq.lq);
        bk_max = std::max(bk_max, bk);
        flops += 2.0 * double(h_q) * double(sq.lq) * double(sq.lk) * double(d + dv);
    }

    // Units (b, h_kv, part), in that order; split items' partial results; flags and maxima.
    struct Unit {
        Index b, hk, part;
    };
    std::vector<Unit> units;
    std::vector<Index> first_unit(static_cast<std::size_t>(batch * h_kv) + 1, 0);
    for (Index b = 0; b < batch; ++b)
        for (Index hk = 0; hk < h_kv; ++hk) {
            const Index parts = seqs[static_cast<std::size_t>(b)].parts;
            for (Index part = 0; part < parts; ++part) units.push_back({b, hk, part});
            first_unit[static_cast<std::size_t>(b * h_kv + hk) + 1] = static_cast<Index>(units.size());
        }
    const Index n_units = static_cast<Index>(units.size());
    std::vector<Index> first_slot(static_cast<std::size_t>(n_items), 0);
    Index n_slots = 0;
    for (Index i = 0; i < n_items; ++i) {
        const Index parts = seqs[static_cast<std::size_t>(i / h_q)].parts;
        first_slot[static_cast<std::size_t>(i)] = n_slots;
        if (parts > 1) n_slots += parts;
    }
    Matrix<Scalar> part_acc(bq_max * n_slots, dv), part_ml(bq_max * n_slots, 2);
    std::vector<char> q_ok(static_cast<std::size_t>(n_items), 1), redo(static_cast<std::size_t>(n_items), 0);
    std::vector<char> kv_ok(static_cast<std::size_t>(n_units * group), 1);

    // One query against token-major K and V (unit stride along D: BNHD, BHND, packed QKV): the
    // single-query step reads their rows in place, with the bits of the column-major gather.
    const bool in_place = k.stride_dim == 1 && v.stride_dim == 1;
    bool gathers = !in_place;  // some sequence's key tiles are gathered into kt, vt
    for (const Sequence& sq : seqs) gathers = gathers || (sq.parts > 0 && sq.lq > 1);

    struct ThreadScratch {
        Matrix<Scalar> kt, vt, qg, og;            // a K and a V tile (if gathered); one item's queries and output
        std::vector<OnlineWorkspace<Scalar>> ws;  // one per query head of a group
    };
    const SerialScope serial(run_serially(flops));
    const int team = team_size();
    std::vector<ThreadScratch> scratch(static_cast<std::size_t>(team));
    for (ThreadScratch& t : scratch) {
        if (gathers) {
            t.kt.resize(bk_max, d);
            t.vt.resize(bk_max, dv);
        }
        t.qg.resize(bq_max, d);
        t.og.resize(bq_max, dv);
        t.ws.reserve(static_cast<std::size_t>(group));
        for (Index g = 0; g < group; ++g) t.ws.emplace_back(bq_max, bk_max, d, dv);
    }
    // Item i's result in og (L_q x D_v, column-major) -> out, if its checks pass (else redo).
    const auto finish_item = [&](Index i, ThreadScratch& t, bool kv_clean) {
        const Index b = i / h_q, h = i % h_q, lq = seqs[static_cast<std::size_t>(b)].lq;
        const MapC oi(t.og.data(), lq, dv);
        if (scan && !(q_ok[static_cast<std::size_t>(i)] != 0 && kv_clean && block_finite(oi))) {
            redo[static_cast<std::size_t>(i)] = 1;
            return;
        }
        scatter_slice<Scalar>(t.og.data(), lq, out, b, h);
    };
    const auto k_row = [&](Index b, Index hk, Index j) {
        return k.data + b * k.stride_batch + hk * k.stride_head + j * k.stride_token;
    };
    const auto v_row = [&](Index b, Index hk, Index j) {
        return v.data + b * v.stride_batch + hk * v.stride_head + j * v.stride_token;
    };
    bool any_merge = false;
    for (const Sequence& sq : seqs) any_merge = any_merge || sq.parts != 1;
    RegionErrors errors;
    parallel_region(team, [&] {
        ThreadScratch& t = scratch[static_cast<std::size_t>(thread_index())];
        // The units: each key tile read (or gathered) once, then every query head of the group.
ATTNX_OMP(for schedule(dynamic, 1))
        for (Index u = 0; u < n_units; ++u) {
            errors.run([&] {
                const Unit& un = units[static_cast<std::size_t>(u)];
                const Sequence& sq = seqs[static_cast<std::size_t>(un.b)];
                const Index lq = sq.lq, item0 = un.b * h_q + un.hk * group;
                for (Index g = 0; g < group; ++g) {
                    const Index i = item0 + g;
                    gather_slice<Scalar>(q, un.b, i % h_q, lq, t.qg.data());
                    const MapC qi(t.qg.data(), lq, d);
                    if (scan && un.part == 0)  // one unit per item scans its queries
                        q_ok[static_cast<std::size_t>(i)] = block_finite(qi) ? 1 : 0;
                    OnlineWorkspace<Scalar>& ws = t.ws[static_cast<std::size_t>(g)];
                    ws.layout(lq, sq.tiles.bk);  // as the single-head call's workspace
                    ws.scan_keys = scan;
                    ws.scan = InputScan{};
                    online_begin<Scalar>(qi, scale, 0, lq, ws);
                }
                const Index t0 = sq.count * un.part / sq.parts, t1 = sq.count * (un.part + 1) / sq.parts;
                for (Index tile = t0; tile < t1; ++tile) {
                    const KeyRange kr = sq.tiles.range(0, tile);
                    const Index j0 = kr.begin, bk = kr.end - kr.begin;
                    if (bk <= 0) continue;
                    if (lq == 1 && in_place) {  // one query: the cache's rows as they are
                        const RowTileMap<Scalar> kt(k_row(un.b, un.hk, j0), bk, d, Eigen::OuterStride<>(k.stride_token));
                        const RowTileMap<Scalar> vt(v_row(un.b, un.hk, j0), bk, dv, Eigen::OuterStride<>(v.stride_token));
                        for (Index g = 0; g < group; ++g)
                            online_step_one<Scalar>(kt, vt, sq.mask, 0, j0, t.ws[static_cast<std::size_t>(g)], false);
                        continue;
                    }
                    gather_rows<Scalar>(k, un.b, un.hk, j0, bk, t.kt.data(), bk_max);
                    gather_rows<Scalar>(v, un.b, un.hk, j0, bk, t.vt.data(), bk_max);
                    const TileMap<Scalar> kt(t.kt.data(), bk, d, Eigen::OuterStride<>(bk_max));
                    const TileMap<Scalar> vt(t.vt.data(), bk, dv, Eigen::OuterStride<>(bk_max));
                    for (Index g = 0; g < group; ++g)
                        online_step<Scalar>(kt, vt, sq.mask, 0, lq, j0, t.ws[static_cast<std::size_t>(g)], false);
                }
                for (Index g = 0; g < group; ++g) {
                    OnlineWorkspace<Scalar>& ws = t.ws[static_cast<std::size_t>(g)];
                    const Index i = item0 + g;
                    online_end<Scalar>(lq, ws);
                    const bool clean = ws.scan.k_ok && ws.scan.v_ok;
                    if (sq.parts == 1) {  // the item is done: check it and write it out
                        finish_rows(ws, lq, MapM(t.og.data(), lq, dv));
                        finish_item(i, t, clean);
                    } else {
                        kv_ok[static_cast<std::size_t>(u * group + g)] = clean ? 1 : 0;
                        store_part(ws, lq, bq_max, first_slot[static_cast<std::size_t>(i)] + un.part, part_acc, part_ml);
                    }
                }
            });
        }
        if (!any_merge) return;
        // Items of split sequences: the merge of their key parts; sequences without work: zeros.
ATTNX_OMP(for schedule(static) nowait)
        for (Index i = 0; i < n_items; ++i) {
            errors.run([&] {
                const Index b = i / h_q, h = i % h_q;
                const Sequence& sq = seqs[static_cast<std::size_t>(b)];
                if (sq.parts == 1) return;
                if (sq.parts == 0) {
                    scatter_slice<Scalar>(t.og.data(), 0, out, b, h);  // zero rows
                    return;
                }
                merge_parts(part_acc, part_ml, first_slot[static_cast<std::size_t>(i)], sq.parts, bq_max, sq.lq,
                            MapM(t.og.data(), sq.lq, dv));
                const Index u0 = first_unit[static_cast<std::size_t>(b * h_kv + h / group)], g = h % group;
                bool clean = true;
                for (Index u = u0; u < u0 + sq.parts; ++u) clean = clean && kv_ok[static_cast<std::size_t>(u * group + g)] != 0;
                finish_item(i, t, clean);
            });
        }
    });
    errors.rethrow();
    return redo;
}

/// True if multi_head_attention may take the grouped exact path for these options: the
/// streaming kernel, valid options, and at most one query tile in every sequence.
inline bool grouped_exact_applies(const ExactOptions& eo, const MultiHeadOptions& o, Index batch, Index n_q,
                                  Index n_k) {
    if (eo.kernel != ExactKernel::Streaming || !eo.key_padding_mask.empty()) return false;
    if (eo.query_tile < 1 || eo.key_tile < 1 || eo.decode_key_tile < 1) return false;
    if (eo.scale && !(std::isfinite(*eo.scale) && *eo.scale > 0)) return false;
    for (Index b = 0; b < batch; ++b)
        if (item_lengths(o, b, n_q, n_k).first > eo.query_tile) return false;
    return true;
}

template <typename M, typename Scalar>
void multi_head_impl(const char* fn, const M& mechanism, const HeadsView<const Scalar>& q,
                     const HeadsView<const Scalar>& k, const HeadsView<const Scalar>& v, const HeadsView<Scalar>& out,
                     const MultiHeadOptions& o) {
    using MapC = Eigen::Map<const Matrix<Scalar>>;
    using MapM = Eigen::Map<Matrix<Scalar>>;
    const Index batch = q.batch, n_q = q.tokens, h_q = q.heads, d = q.dim;
    const Index n_k = k.tokens, h_kv = k.heads, dv = v.dim;
    const Index group = h_q / h_kv;
    const Index n_items = batch * h_q;
    if (n_items == 0 || n_q == 0) return;

    int threads = 1;
    bool parallel = false;
#ifdef _OPENMP
    if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
    // By sizes only (on a busy machine, parallel_region runs the items on one thread, with the
    // same single-threaded kernels: detail/parallel.hpp rule 9).
    parallel = threads > 1 && n_items >= 2 * static_cast<Index>(threads);

    const auto len_q = [&](Index b) { return item_lengths(o, b, n_q, n_k).first; };
    const auto len_k = [&](Index b) { return item_lengths(o, b, n_q, n_k).second; };

    // Exact attention with one query tile per sequence: the grouped path; the general one below
    // only for the items it leaves.
    bool grouped = false;
    std::vector<char> redo;
    if constexpr (std::is_same<M, Exact>::value) {
        M layered = mechanism;
        apply_layer_options(layered, o);
        if (grouped_exact_applies(layered.options, o, batch, n_q, n_k)) {
            redo = grouped_exact<Scalar>(layered.options, q, k, v, out, o);
            if (std::find(redo.begin(), redo.end(), char(1)) == redo.end()) return;
            grouped = true;
            parallel = false;  // the scratch below: one slot
        }
    }
    const int slots = parallel ? threads : 1;

    // Scratch, before any parallel region (allocation may throw).
    std::vector<HeadScratch<M, Scalar>> scratch(static_cast<std::size_t>(slots),
                                                HeadScratch<M, Scalar>{mechanism, {}, {}, {}, {}, -1});
    for (HeadScratch<M, Scalar>& s : scratch) {
        s.q.resize(n_q, d);
        s.k.resize(std::max<Index>(n_k, 1), d);
        s.v.resize(std::max<Index>(n_k, 1), dv);
        s.out.resize(n_q, dv);
        apply_layer_options(s.mech, o);
        if (!o.key_padding_mask.empty()) s.mech.options.key_padding_mask.reserve(static_cast<std::size_t>(n_k));
    }
    const auto set_mask = [&](M& m, Index b) { set_item_mask(m, o, b, n_k); };
    const auto load_kv = [&](HeadScratch<M, Scalar>& s, Index b, Index hk, Index lk) {
        const Index key = b * h_kv + hk;
        if (s.loaded == key) return;
        s.loaded = -1;
        gather_slice<Scalar>(k, b, hk, lk, s.k.data());
        gather_slice<Scalar>(v, b, hk, lk, s.v.data());
        s.loaded = key;
    };
    const auto name_of = [&](Index i) { return item_name(i / h_q, i % h_q, group); };

    if constexpr (has_key_state<M>::value) {
        // Key side once per (b, key/value head), then every query head against its state.
        using State = typename M::KeyState;
        const Index n_groups = batch * h_kv;
        std::vector<State> states(static_cast<std::size_t>(n_groups));
        const bool par_groups = threads > 1 && n_groups >= 2 * static_cast<Index>(threads);
        const auto kv = run_items(n_groups, par_groups && parallel, threads, [&](Index g, int t) {
            HeadScratch<M, Scalar>& s = scratch[static_cast<std::size_t>(t)];
            const Index b = g / h_kv, hk = g % h_kv, lk = len_k(b);
            if (lk == 0 || len_q(b) == 0) return;
            load_kv(s, b, hk, lk);
            set_mask(s.mech, b);
            s.mech.prepare_keys(MapC(s.k.data(), lk, d), MapC(s.v.data(), lk, dv), states[static_cast<std::size_t>(g)]);
        });
        if (kv.first)
            rethrow_item(fn, kv.first,
                         "batch " + std::to_string(kv.second / h_kv) + ", key/value head " + std::to_string(kv.second % h_kv));
        const auto qs = run_items(n_items, parallel, threads, [&](Index i, int t) {
            HeadScratch<M, Scalar>& s = scratch[static_cast<std::size_t>(t)];
            const Index b = i / h_q, h = i % h_q, lq = len_q(b), lk = len_k(b);
            Index rows = 0;
            if (lq > 0 && lk > 0) {
                gather_slice<Scalar>(q, b, h, lq, s.q.data());
                s.mech.attend_keys(MapC(s.q.data(), lq, d), states[static_cast<std::size_t>(b * h_kv + h / group)],
                                   MapM(s.out.data(), lq, dv));
                rows = lq;
            }
            scatter_slice<Scalar>(s.out.data(), rows, out, b, h);
        });
        if (qs.first) rethrow_item(fn, qs.first, name_of(qs.second));
    } else {
        const auto one_item = [&](Index i, int t) {
            HeadScratch<M, Scalar>& s = scratch[static_cast<std::size_t>(t)];
            const Index b = i / h_q, h = i % h_q, lq = len_q(b), lk = len_k(b);
            Index rows = 0;
            if (lq > 0 && lk > 0) {
                gather_slice<Scalar>(q, b, h, lq, s.q.data());
                load_kv(s, b, h / group, lk);
                set_mask(s.mech, b);
                s.mech(MapC(s.q.data(), lq, d), MapC(s.k.data(), lk, d), MapC(s.v.data(), lk, dv),
                       MapM(s.out.data(), lq, dv));
                rows = lq;
            }
            scatter_slice<Scalar>(s.out.data(), rows, out, b, h);
        };
        if (grouped) {
            // Items the grouped path left (an input or result check failed): the single-head
            // call, in item order, so that the lowest failing item's error is thrown.
            for (Index i = 0; i < n_items; ++i) {
                if (redo[static_cast<std::size_t>(i)] == 0) continue;
                try {
                    one_item(i, 0);
                } catch (...) {
                    rethrow_item(fn, std::current_exception(), name_of(i));
                }
            }
            return;
        }
        const auto r = run_items(n_items, parallel, threads, one_item);
        if (r.first) rethrow_item(fn, r.first, name_of(r.second));
    }
}

}  // namespace detail

/// Multi-head attention of every (b, h): out[b, :, h, :] = mechanism(Q[b, :, h, :],
/// K[b, :, h_kv, :], V[b, :, h_kv, :]) with h_kv = h / (H_q / H_kv); see the file comment for
/// the layouts, options, threads, results and errors.
///
///  - q: (B, N_q, H_q, D), k: (B, N_k, H_kv, D), v: (B, N_k, H_kv, D_v), out: (B, N_q, H_q, D_v);
///    H_q a multiple of H_kv (H_kv = H_q: multi-head; 1: multi-query; else grouped-query);
///  - mechanism: any mechanism value (attnx::is_mechanism), e.g. attnx::Exact{}, attnx::Nystrom{o},
///    attnx::Linformer<float>(projection), attnx::BigBird{}, attnx::BlockSparse{layout} (whose
///    layout must fit every sequence's (L_q, L_k));
///  - q, k, v may be HeadsView<const S> or HeadsView<S>; out is HeadsView<S>, S float or double.
template <typename M, typename TQ, typename TK, typename TV, typename S>
void multi_head_attention(const M& mechanism, const HeadsView<TQ>& q, const HeadsView<TK>& k,
                          const HeadsView<TV>& v, const HeadsView<S>& out, const MultiHeadOptions& options = {}) {
    static_assert(is_mechanism<M>::value, "attnx::multi_head_attention: M must be a mechanism value (mechanisms.hpp)");
    static_assert(!std::is_const<S>::value, "attnx::multi_head_attention: out must be a mutable HeadsView");
    static_assert(std::is_same<std::remove_const_t<TQ>, S>::value && std::is_same<std::remove_const_t<TK>, S>::value &&
                      std::is_same<std::remove_const_t<TV>, S>::value,
                  "attnx::multi_head_attention: q, k, v and out must have the same Scalar type");
    constexpr const char* fn = "multi_head_attention";
    detail::check_multi_head(fn, detail::shape_of_view("q", q), detail::shape_of_view("k", k),
                             detail::shape_of_view("v", v), detail::shape_of_view("out", out), options,
                             mechanism.options);
    const HeadsView<const S> qc{q.data, q.batch, q.tokens, q.heads, q.dim,
                                q.stride_batch, q.stride_token, q.stride_head, q.stride_dim};
    const HeadsView<const S> kc{k.data, k.batch, k.tokens, k.heads, k.dim,
                                k.stride_batch, k.stride_token, k.stride_head, k.stride_dim};
    const HeadsView<const S> vc{v.data, v.batch, v.tokens, v.heads, v.dim,
                                v.stride_batch, v.stride_token, v.stride_head, v.stride_dim};
    detail::multi_head_impl<M, S>(fn, mechanism, qc, kc, vc, out, options);
}

}  // namespace attnx

#endif  // ATTNX_MULTI_HEAD_HPP
