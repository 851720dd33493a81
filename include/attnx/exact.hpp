// SPDX-License-Identifier: MIT
/// \file exact.hpp
/// Exact softmax attention (Vaswani et al. 2017, arXiv:1706.03762v7, Eq. (1)):
///     out = softmax(s · Q Kᵀ + M) V,   s = 1/sqrt(d) by default,
/// where M is 0 for visible and -inf for masked (causal / padding) entries and the
/// softmax runs along each row (over keys).
///
/// Two kernels, selected by ExactOptions::kernel:
///  - ExactKernel::Streaming (default): the online softmax over key tiles
///    (Milakov & Gimelshein, arXiv:1805.02867; Rabe & Staats, arXiv:2112.05682).
///    Never stores the n_q x n_k scores: extra memory O(threads · tile · (tile + d + d_v)).
///    Query tiles run in parallel (OpenMP, if compiled with it); the result does not
///    depend on the number of threads.
///  - ExactKernel::Materialized: forms the n_q x n_k probability matrix — the reference.
/// Both subtract the running (row) maximum before exp, so logits of ±1e4 are fine.
///
/// A query row whose keys are all masked returns a zero row (never NaN).
/// Checks (with check_finite on): NaN/Inf in Q, K or V, and logits that could overflow the
/// Scalar type (s·d·max|q|·max|k| > max/16), throw attnx::invalid_argument; an output that
/// overflowed anyway (sums of huge V rows) throws after the work (see core.hpp). The
/// materialized kernel scans before the work. The streaming kernel has no pass of its own (when
/// decoding, n_q <= query_tile, that pass cost as much as the attention): it checks the scores
/// and sums it computes anyway, and only if one is not finite does it scan the inputs, after the
/// work, to throw the error that names the cause (out may then have been written); no value
/// computed from bad inputs is returned. Its logits are seen, not bounded: finite inputs whose
/// logits fit are accepted even where the bound (conservative by up to a factor d) fails.
/// Causal with n_q != n_k is aligned bottom-right: query i sees keys j <= i + n_k - n_q.
#ifndef ATTNX_EXACT_HPP
#define ATTNX_EXACT_HPP

#include <Eigen/Core>

#include "attnx/core.hpp"
#include "attnx/metrics.hpp"  // attnx::compare, the companion of every mechanism (was in core.hpp)
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/online_softmax.hpp"

namespace attnx {

/// Which kernel computes exact attention.
enum class ExactKernel {
    Streaming,     ///< online softmax over key tiles; O((n_q + n_k) d) memory (default)
    Materialized,  ///< forms the n_q x n_k probabilities; the reference
};

/// Options of exact_attention: the common options plus the kernel choice.
struct ExactOptions : AttentionOptions {
    ExactKernel kernel = ExactKernel::Streaming;
    Index query_tile = 128;  ///< rows of Q per tile of the streaming kernel (>= 1)
    Index key_tile = 128;    ///< rows of K per tile of the streaming kernel (>= 1)
    /// Rows of K per tile of the streaming kernel when Q has one row (decoding; >= 1). One query
    /// does little work per key, and a longer tile means fewer online-softmax updates and longer
    /// runs down each column of K and V: on a 2-core AVX-512 VM, one query against 4096 keys
    /// (d = 64, float) took 49 µs at 128, 42 µs at 256 and 39 µs at 512 (median of 3000 calls).
    /// Not longer: the multi-head layer's grouped-query decoding (which uses the same tile, to
    /// give the same bits) runs every query head of a group on a tile while it is in L2, and at
    /// 512 (H_q 32, H_kv 8, D 128: 512 KiB of K and V per tile) it was 10% slower at 32768 keys
    /// than at 128, where 256 was even. The result depends on the tile only through rounding.
    /// The key list is split across threads in parts of at least 4 tiles, so one query against
    /// n_k keys uses at most n_k / 1024 threads at this tile; calls under 4 MFLOP run on one.
    Index decode_key_tile = 256;

    ExactOptions() = default;
    /// Implicit from the common options, so exact_attention(q, k, v, AttentionOptions{...}) works.
    ExactOptions(const AttentionOptions& common) : AttentionOptions(common) {}  // NOLINT(google-explicit-constructor)
};

namespace detail {

/// The key tile of the streaming kernel for a Q of n_q rows: decode_key_tile for one row,
/// key_tile otherwise (the multi-head layer uses the same rule per sequence).
inline Index key_tile_for(const ExactOptions& o, Index n_q) { return n_q == 1 ? o.decode_key_tile : o.key_tile; }

template <typename Scalar>
void materialized_attention(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                            Scalar scale, const MaskSpec& mask, Matrix<Scalar>& pt) {
    // pt = probabilities transposed (n_k x n_q): each column is one query's softmax.
    pt.noalias() = k * q.transpose();
    pt *= scale;
    if (mask.any()) apply_mask_tile<Scalar>(pt, 0, 0, mask);
    softmax_columns<Scalar>(pt);
    if (mask.any()) apply_mask_tile<Scalar>(pt, 0, 0, mask, Scalar(0));
}

template <typename Scalar>
void exact_impl(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                const Eigen::Ref<const Matrix<Scalar>>& v, const ExactOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    const Scalar scale = resolve_scale<Scalar>(o, q.cols());
    const MaskSpec mask = make_mask(o, q.rows(), k.rows());
    if (o.kernel == ExactKernel::Materialized) {
        Matrix<Scalar> pt(k.rows(), q.rows());
        materialized_attention<Scalar>(q, k, scale, mask, pt);
        out.noalias() = pt.transpose() * v;
    } else {
        dense_online_attention<Scalar>(q, k, v, scale, mask, o.query_tile, key_tile_for(o, q.rows()), out);
    }
}

inline void check_exact_options(const char* fn, const ExactOptions& o, Index n_k) {
    check_common_options(fn, o, n_k);
    if (o.query_tile < 1) throw_invalid(fn, ": query_tile (", o.query_tile, ") must be >= 1");
    if (o.key_tile < 1) throw_invalid(fn, ": key_tile (", o.key_tile, ") must be >= 1");
    if (o.decode_key_tile < 1) throw_invalid(fn, ": decode_key_tile (", o.decode_key_tile, ") must be >= 1");
}

template <typename DQ, typename DK, typename DV>
void check_exact_call(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                      const Eigen::MatrixBase<DV>& v, const ExactOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    check_qkv(fn, q, k, v);
    check_exact_options(fn, o, k.rows());
}

/// Streaming exact attention with check_finite on: the same errors and values as
/// exact_checked's general path, without its separate pass over Q, K and V. The kernel learns
/// whether they are finite from its own products (ScanInputs::all_finiteness): a NaN or Inf in
/// K or Q makes scores non-finite, one in V an accumulator; every key tile is visited (the last
/// query row sees every key, causal masks being bottom-right aligned), masked keys included.
/// Finite scores and accumulators also mean that no logit overflowed and that the result is
/// finite, so the magnitudes are not needed: only when something is not finite do the checks of
/// the general path run, after the work, and throw its error (same message, same order: q, k,
/// v, logits, result; the logit bound only if a score was not finite); `out` may have been
/// written by then. Values computed from bad inputs are
/// never returned. Unlike the general path, finite inputs whose logit bound fails but whose
/// logits did fit are accepted (the bound is conservative by up to a factor d).
template <typename Scalar>
void exact_fused_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q,
                         const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                         const ExactOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    InputScan scan;
    dense_online_attention<Scalar>(q, k, v, resolve_scale<Scalar>(o, q.cols()), make_mask(o, q.rows(), k.rows()),
                                   o.query_tile, key_tile_for(o, q.rows()), out, &scan, ScanInputs::all_finiteness);
    if (scan.q_ok && scan.k_ok && scan.v_ok && all_finite(out)) return;
    if (scan.q_ok && scan.k_ok) {
        // Every score was finite, so Q and K are and the logits fit: only a non-finite V or
        // sums of V that overflowed are left (the bound, conservative, would misname the latter).
        const Magnitudes mag = check_finite_qkv<Scalar>(fn, o, q, k, v);
        check_result<Scalar>(fn, mag, out);
        return;
    }
    const Magnitudes mag = check_inputs<Scalar>(fn, o, q, k, v);
    check_result<Scalar>(fn, mag, out);
}

/// The input scan, the kernel and the result check of exact attention (the shapes and options
/// were checked by check_exact_call).
template <typename Scalar>
void exact_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                   const Eigen::Ref<const Matrix<Scalar>>& v, const ExactOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    const SerialScope serial(run_serially(4.0 * double(q.rows()) * double(k.rows()) * double(q.cols() + v.cols()) / 2));
    if (o.check_finite && o.kernel == ExactKernel::Streaming) {
        exact_fused_checked<Scalar>(fn, q, k, v, o, out);
        return;
    }
    const Magnitudes mag = check_inputs<Scalar>(fn, o, q, k, v);
    exact_impl<Scalar>(q, k, v, o, out);
    check_result<Scalar>(fn, mag, out);
}

}  // namespace detail

/// softmax(s · Q Kᵀ + mask) V into a caller-provided n_q x d_v buffer (reuse across calls).
template <typename DQ, typename DK, typename DV>
void exact_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                     Eigen::Ref<Matrix<typename DQ::Scalar>> out, const ExactOptions& options = {}) {
    constexpr const char* fn = "exact_attention";
    detail::check_exact_call(fn, q, k, v, options);
    detail::check_out(fn, out, q, k, v);
    detail::exact_checked<typename DQ::Scalar>(fn, q, k, v, options, out);
}

/// softmax(s · Q Kᵀ + mask) V. Q is n_q x d, K is n_k x d, V is n_k x d_v; returns n_q x d_v.
template <typename DQ, typename DK, typename DV>
Matrix<typename DQ::Scalar> exact_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                            const Eigen::MatrixBase<DV>& v, const ExactOptions& options = {}) {
    constexpr const char* fn = "exact_attention";
    detail::check_exact_call(fn, q, k, v, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::exact_checked<typename DQ::Scalar>(fn, q, k, v, options, out);
    return out;
}

/// The n_q x n_k matrix of attention probabilities softmax(s · Q Kᵀ + mask), for analysis
/// at small n (it is O(n_q · n_k) memory). Fully masked rows are zero. Same checks as
/// exact_attention with the materialized kernel (shapes of q and k, options, the input scan and
/// the logit bound, before the work).
template <typename DQ, typename DK>
Matrix<typename DQ::Scalar> attention_matrix(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                             const AttentionOptions& options = {}) {
    using Scalar = typename DQ::Scalar;
    constexpr const char* fn = "attention_matrix";
    detail::check_same_scalar<DQ, DK>();
    const Matrix<Scalar> no_values(k.rows(), 0);  // attention_matrix has no V: an n_k x 0 stand-in
    detail::check_qkv(fn, q, k, no_values, /*values_needed=*/false);
    detail::check_common_options(fn, options, k.rows());
    const Eigen::Ref<const Matrix<Scalar>> qr(q), kr(k);
    detail::check_inputs<Scalar>(fn, options, qr, kr, no_values);
    Matrix<Scalar> pt(kr.rows(), qr.rows());
    detail::materialized_attention<Scalar>(qr, kr, detail::resolve_scale<Scalar>(options, qr.cols()),
                                           detail::make_mask(options, qr.rows(), kr.rows()), pt);
    return pt.transpose();
}

}  // namespace attnx

#endif  // ATTNX_EXACT_HPP
