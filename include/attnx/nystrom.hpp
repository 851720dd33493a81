// SPDX-License-Identifier: MIT
/// \file nystrom.hpp
/// Nyström landmark attention. Xiong et al., "Nyströmformer: A Nyström-Based Algorithm for
/// Approximating Self-Attention", AAAI 2021, arXiv:2102.03902v3 (Sec. 3; equation numbers are
/// not cited here because they could not be checked against the PDF offline).
///
/// With scale s (default 1/sqrt(d)) and m landmarks Q̃, K̃ (m x d), the segment means of Q and K:
///     F = softmax(s · Q K̃ᵀ)   (n_q x m)
///     A = softmax(s · Q̃ K̃ᵀ)   (m x m)
///     B = softmax(s · Q̃ Kᵀ)   (m x n_k)            — softmax along rows
///     out = F · A⁺ · (B · V),  evaluated right to left: W = B V, Y = Z W, out = F Y,
/// where Z ≈ A⁺ is the iterative Moore–Penrose inverse of Razavi et al. (2014):
///     Z_0 = Aᵀ / (‖A‖_1 ‖A‖_∞) = Aᵀ / max column sum (A is row-stochastic, ‖A‖_∞ = 1),
///     Z_{j+1} = ¼ Z_j (13 I − A Z_j (15 I − A Z_j (7 I − A Z_j))),  6 iterations by default.
/// This is the arithmetic of HuggingFace NystromformerSelfAttention and of the official code
/// (github.com/mlpen/Nystromformer), which scale q and k by d^(-1/4) each (the same s).
///
/// Cost O(n·m·(d + d_v) + m³) time. Memory beyond the inputs and output: O(m·(d + d_v)) for the
/// landmarks and small kernels plus O(threads · 128 · m) for the row tiles of F, which are
/// produced and consumed tile by tile (by the same online-softmax kernel as exact attention);
/// no n x n or n x m matrix is ever formed. B · V is computed the same way, B never stored.
///
/// Exact limit: with m == n_k and PinvMethod::Exact, F A⁺ B V = F A⁺ A V = F V = exact attention
/// (K̃ = K, so F = softmax(s Q Kᵀ)); tested in test_nystrom.cpp.
///
/// The iterative inverse is a regulariser, not only a shortcut: A is usually badly conditioned
/// (cond 1e3–5e5 on the reference inputs) and six iterations leave its small singular values
/// partly uninverted. The exact pseudoinverse then amplifies noise: on 7 of the 8 conformance
/// inputs it is 3–49x further from exact attention than 6 iterations (on the well-conditioned
/// one, cond 15, they agree). Use
/// PinvMethod::Exact for analysis, and NystromReport to see how far Z is from A⁺.
///
/// Differs from the reference code:
///  - any n: the r unpadded rows are cut into m contiguous segments, the first (r mod m) of
///    ceil(r/m) rows and the rest of floor(r/m) (HuggingFace needs n % m == 0; lucidrains pads
///    the front with zeros, which changes the result);
///  - padding: key_padding_mask leaves padded keys out of the key landmarks and out of B's
///    softmax; query_padding_mask leaves padded queries out of the query landmarks and gives
///    them zero output rows. With both masks, the unpadded rows equal the output for the
///    sequence with the padding cut out (tested; with conv_kernel this holds when the padding is
///    at the end, since the convolution treats padded value rows as zeros in place);
///  - m == n does not silently switch to exact attention (HuggingFace does): the formula is
///    always evaluated; m > n is an error;
///  - causal attention is not defined for landmark averages and is rejected.
///
/// Checks (with check_finite on): Q, K and V are scanned for NaN/Inf and their magnitudes as the
/// kernel reads them (B V visits every key and value tile, F Y every query tile, padded rows
/// included), not in a pass of their own; the errors are thrown after the work (core.hpp), and
/// an `out` buffer passed in may have been written by then. Overflow: the landmark means are
/// bounded by max|q| and max|k|, so logits that could overflow the Scalar type
/// (s·d·max|q|·max|k| > max/16) throw attnx::invalid_argument (after the work, as the scan);
/// conv_kernel weights outside its range throw before it. Z can amplify (A nearly singular) and
/// huge V rows can overflow their sums: an output that is not finite throws after the work, and
/// the report is then not written.
#ifndef ATTNX_NYSTROM_HPP
#define ATTNX_NYSTROM_HPP

#include <Eigen/Core>

#include <cmath>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/metrics.hpp"  // attnx::compare, the companion of every mechanism (was in core.hpp)
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/parallel.hpp"
#include "attnx/detail/landmarks.hpp"
#include "attnx/detail/online_softmax.hpp"
#include "attnx/detail/pinv.hpp"

namespace attnx {

/// How Z ≈ A⁺ is computed.
enum class PinvMethod {
    Iterative,  ///< Razavi et al. iterations (pinv_iterations of them), as in the paper
    Exact,      ///< complete orthogonal decomposition, in double; for analysis
};

/// Options of nystrom_attention (the common scale and key_padding_mask apply; causal throws).
struct NystromOptions : AttentionOptions {
    Index num_landmarks = 64;                 ///< m; 1 <= m <= unpadded n_q and unpadded n_k
    PinvMethod pinv = PinvMethod::Iterative;  ///< how Z ≈ A⁺ is computed
    int pinv_iterations = 6;                  ///< iterations of the iterative inverse (>= 0; paper: 6)
    /// Empty, or one flag per query (length n_q): true = padding, left out of the query landmarks
    /// and given a zero output row.
    std::vector<bool> query_padding_mask;
    /// Empty, or the odd-length weights w of the depthwise convolution skip connection of the
    /// paper: out[i] += Σ_t w[t] · V[i + t − len/2] over rows inside [0, n_k) that are not padding
    /// (zero-padded "same" cross-correlation, as PyTorch's Conv2d((len, 1)) computes it).
    /// Needs n_q == n_k (self-attention).
    std::vector<double> conv_kernel;

    NystromOptions() = default;
    /// Implicit from the common options (attnx's options rule, core.hpp).
    NystromOptions(const AttentionOptions& common) : AttentionOptions(common) {}  // NOLINT(google-explicit-constructor)
};

/// Numerical diagnostics of one call (not errors): how well Z inverts A. A call in which every
/// key is padded forms no landmarks and returns zero rows: its report stays as default-constructed
/// (num_landmarks = 0).
struct NystromReport {
    Index num_landmarks = 0;
    PinvMethod pinv = PinvMethod::Iterative;
    int pinv_iterations = 0;         ///< iterations run (0 for PinvMethod::Exact)
    double pinv_residual = 0;        ///< ‖I − A Z‖_F, in double
    double pinv_residual_aza = 0;    ///< ‖A Z A − A‖_F, in double (0 for an exact pseudoinverse)
    double max_column_sum = 0;       ///< ‖A‖_1, the scale of Z_0
};

namespace detail {

inline void check_nystrom_options(const char* fn, const NystromOptions& o, Index n_q, Index n_k) {
    check_common_options(fn, o, n_k);
    if (o.causal)
        throw_invalid(fn, ": causal = true is not defined for Nyström attention (each landmark averages a whole "
                          "segment, so every output row would see future keys); set causal = false");
    if (!o.query_padding_mask.empty() && static_cast<Index>(o.query_padding_mask.size()) != n_q)
        throw_invalid(fn, ": query_padding_mask has length ", o.query_padding_mask.size(),
                      " but there are n_q = q.rows() = ", n_q, " queries (pass one flag per query, or none)");
    const Index m = o.num_landmarks;
    const Index r_q = count_unpadded(o.query_padding_mask, n_q);
    const Index r_k = count_unpadded(o.key_padding_mask, n_k);
    if (m < 1)
        throw_invalid(fn, ": num_landmarks (m = ", m, ") must satisfy 1 <= m <= n (n = k.rows() = ", n_k, ")");
    if (m > r_k && r_k > 0) {  // every key padded: zero rows, whatever m (see nystrom_checked)
        if (r_k == n_k)
            throw_invalid(fn, ": num_landmarks (m = ", m, ") must satisfy 1 <= m <= n (n = k.rows() = ", n_k,
                          "): each landmark is the mean of at least one key");
        throw_invalid(fn, ": num_landmarks (m = ", m, ") must satisfy 1 <= m <= n (n = ", r_k,
                      " unpadded keys of k.rows() = ", n_k, "): each landmark is the mean of at least one key");
    }
    if (m > r_q) {
        if (r_q == n_q)
            throw_invalid(fn, ": num_landmarks (m = ", m, ") must satisfy 1 <= m <= n_q (n_q = q.rows() = ", n_q,
                          "): each landmark is the mean of at least one query");
        throw_invalid(fn, ": num_landmarks (m = ", m, ") must satisfy 1 <= m <= n_q (n_q = ", r_q,
                      " unpadded queries of q.rows() = ", n_q, "): each landmark is the mean of at least one query");
    }
    if (o.pinv_iterations < 0)
        throw_invalid(fn, ": pinv_iterations (", o.pinv_iterations, ") must be >= 0");
    if (!o.conv_kernel.empty()) {
        const std::size_t len = o.conv_kernel.size();
        if (len % 2 == 0)
            throw_invalid(fn, ": conv_kernel has even length ", len, "; it must be odd (centred, e.g. 33)");
        if (n_q != n_k)
            throw_invalid(fn, ": conv_kernel needs self-attention (n_q == n_k), but n_q = q.rows() = ", n_q,
                          " and n_k = k.rows() = ", n_k);
        for (std::size_t t = 0; t < len; ++t)
            if (!std::isfinite(o.conv_kernel[t]))
                throw_invalid(fn, ": conv_kernel[", t, "] = ", o.conv_kernel[t], " is not finite");
    }
}

/// out += depthwise "same" convolution of v along the rows (padded rows count as zero).
template <typename Scalar>
void add_conv_skip(const Eigen::Ref<const Matrix<Scalar>>& v, const std::vector<double>& w,
                   const std::vector<bool>& padding, Eigen::Ref<Matrix<Scalar>> out) {
    const Index n = v.rows(), len = static_cast<Index>(w.size()), half = len / 2;
    const Matrix<Scalar>* src = nullptr;
    Matrix<Scalar> zeroed;
    if (!padding.empty()) {
        zeroed = v;
        for (Index j = 0; j < n; ++j)
            if (padding[static_cast<std::size_t>(j)]) zeroed.row(j).setZero();
        src = &zeroed;
    }
    constexpr Index chunk = 256;
    const Index n_chunks = ceil_div(n, chunk);
ATTNX_OMP(parallel for schedule(static) if (n_chunks > 1 && !machine_busy()))
    for (Index c = 0; c < n_chunks; ++c) {
        const Index r0 = c * chunk, r1 = std::min(n, r0 + chunk);
        for (Index t = 0; t < len; ++t) {
            // rows i in [r0, r1) read v[i + t - half], which must lie in [0, n)
            const Index lo = std::max(r0, half - t), hi = std::min(r1, n + half - t);
            if (lo >= hi) continue;
            const Scalar wt = static_cast<Scalar>(w[static_cast<std::size_t>(t)]);
            if (src != nullptr)
                out.middleRows(lo, hi - lo) += wt * src->middleRows(lo + t - half, hi - lo);
            else
                out.middleRows(lo, hi - lo) += wt * v.middleRows(lo + t - half, hi - lo);
        }
    }
}

template <typename Scalar>
void nystrom_impl(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                  const Eigen::Ref<const Matrix<Scalar>>& v, const NystromOptions& o, Eigen::Ref<Matrix<Scalar>> out,
                  NystromReport* report, InputScan* scan = nullptr) {
    constexpr Index tile = 128;
    const Index m = o.num_landmarks, dv = v.cols();
    const Scalar s = resolve_scale<Scalar>(o, q.cols());

    // Landmarks Q̃, K̃: segment means over the unpadded rows.
    const Matrix<Scalar> q_l = segment_means<Scalar>(q, o.query_padding_mask, m);
    const Matrix<Scalar> k_l = segment_means<Scalar>(k, o.key_padding_mask, m);

    // A = softmax(s Q̃ K̃ᵀ), computed transposed so the softmax runs down columns; then Z ≈ A⁺.
    // These m x m products are too small for Eigen's own threading.
    Matrix<Scalar> a(m, m), z(m, m);
    with_serial_products([&] {
        Matrix<Scalar> a_t(m, m);
        a_t.noalias() = k_l * q_l.transpose();
        a_t *= s;
        softmax_columns<Scalar>(a_t);
        a = a_t.transpose();
        if (!block_finite(a))
            z = a;  // non-finite inputs (reported after the work by the fused scan): nothing to invert
        else if (o.pinv == PinvMethod::Exact)
            z = exact_pinv(a);
        else
            z = iterative_pinv(a, o.pinv_iterations);
    });

    // W = B V = softmax(s Q̃ Kᵀ + key mask) V: m landmark queries against all keys.
    MaskSpec key_mask;
    if (!o.key_padding_mask.empty()) key_mask.key_padding = &o.key_padding_mask;
    Matrix<Scalar> w(m, dv);
    // With `scan`, this pass over every key tile (padded ones too) also scans K and V.
    dense_online_attention<Scalar>(q_l, k, v, s, key_mask, tile, tile, w, scan, ScanInputs::keys);
    Matrix<Scalar> y(m, dv);
    with_serial_products([&] { y.noalias() = z * w; });

    // out = F Y = softmax(s Q K̃ᵀ) Y, produced and consumed in row tiles (every row of Q, padded
    // ones too: with `scan`, this pass scans Q).
    dense_online_attention<Scalar>(q, k_l, y, s, MaskSpec{}, tile, m, out, scan, ScanInputs::queries);

    if (!o.conv_kernel.empty()) add_conv_skip<Scalar>(v, o.conv_kernel, o.key_padding_mask, out);
    if (!o.query_padding_mask.empty())
        for (Index i = 0; i < q.rows(); ++i)
            if (o.query_padding_mask[static_cast<std::size_t>(i)]) out.row(i).setZero();

    if (report != nullptr) {
        const Matrix<double> ad = a.template cast<double>(), zd = z.template cast<double>();
        const Matrix<double> az = ad * zd;
        report->num_landmarks = m;
        report->pinv = o.pinv;
        report->pinv_iterations = o.pinv == PinvMethod::Exact ? 0 : o.pinv_iterations;
        report->pinv_residual = (Matrix<double>::Identity(m, m) - az).norm();
        report->pinv_residual_aza = (az * ad - ad).norm();
        report->max_column_sum = ad.colwise().sum().maxCoeff();
    }
}

template <typename DQ, typename DK, typename DV>
void check_nystrom_call(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                        const Eigen::MatrixBase<DV>& v, const NystromOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    check_qkv(fn, q, k, v);
    check_nystrom_options(fn, o, q.rows(), k.rows());
}

template <typename Scalar>
void nystrom_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q,
                     const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                     const NystromOptions& o, Eigen::Ref<Matrix<Scalar>> out, NystromReport* report) {
    const double m = double(o.num_landmarks);
    const SerialScope serial(
        run_serially(2.0 * double(q.rows() + k.rows()) * m * double(q.cols() + v.cols()) + 48.0 * m * m * m));
    if (o.check_finite)
        for (std::size_t t = 0; t < o.conv_kernel.size(); ++t)
            if (!(std::abs(o.conv_kernel[t]) <= overflow_limit<Scalar>()))
                throw_invalid(fn, ": conv_kernel[", t, "] = ", o.conv_kernel[t], " exceeds the range of ",
                              scalar_name<Scalar>(), " (max/16 = ", sci(overflow_limit<Scalar>()), ")");
    NystromReport r;
    if (count_unpadded(o.key_padding_mask, k.rows()) == 0) {
        // No query sees any key: zero rows, as in every mechanism (the landmarks and A do not
        // exist, so the report stays empty). The conv skip of padded values is zero too. No
        // kernel reads the inputs, so they get the scan of their own here.
        check_inputs<Scalar>(fn, o, q, k, v);
        out.setZero();
        if (report != nullptr) *report = r;
        return;
    }
    // The input scan is fused into the kernel's two passes over the inputs (B V reads every key
    // and value tile, F Y every query tile), and its errors are thrown after the work.
    InputScan scan;
    nystrom_impl<Scalar>(q, k, v, o, out, report != nullptr ? &r : nullptr, o.check_finite ? &scan : nullptr);
    Magnitudes mag;
    if (o.check_finite) mag = report_scan<Scalar>(fn, o, scan, q, k, v);
    check_result<Scalar>(fn, mag, out);
    if (report != nullptr) *report = r;
}

}  // namespace detail

/// Nyström approximation of softmax(s · Q Kᵀ) V; Q is n_q x d, K is n_k x d, V is n_k x d_v.
/// If `report` is given, it receives the pseudoinverse diagnostics.
template <typename DQ, typename DK, typename DV>
Matrix<typename DQ::Scalar> nystrom_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                              const Eigen::MatrixBase<DV>& v, const NystromOptions& options = {},
                                              NystromReport* report = nullptr) {
    constexpr const char* fn = "nystrom_attention";
    detail::check_nystrom_call(fn, q, k, v, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::nystrom_checked<typename DQ::Scalar>(fn, q, k, v, options, out, report);
    return out;
}

/// As above, writing into a caller-provided n_q x d_v buffer (reuse it across calls: fresh
/// memory is expensive to touch for the first time).
template <typename DQ, typename DK, typename DV>
void nystrom_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                       Eigen::Ref<Matrix<typename DQ::Scalar>> out, const NystromOptions& options = {},
                       NystromReport* report = nullptr) {
    constexpr const char* fn = "nystrom_attention";
    detail::check_nystrom_call(fn, q, k, v, options);
    detail::check_out(fn, out, q, k, v);
    detail::nystrom_checked<typename DQ::Scalar>(fn, q, k, v, options, out, report);
}

}  // namespace attnx

#endif  // ATTNX_NYSTROM_HPP
