// SPDX-License-Identifier: MIT
/// \file estimate.hpp
/// How wrong is an approximation on *these* inputs? attnx::estimate_error answers it without the
/// O(n²) exact answer: it runs the mechanism on the whole input, computes exact attention only
/// for s sampled query rows, and estimates the relative Frobenius error
///     e = ||A - E||_F / ||E||_F,   A = mech(Q, K, V),  E = exact attention (same options),
/// with a confidence interval.
///
/// Estimator. The population is the N query rows that are not padding (all n_q rows, or those
/// not flagged in a Nyström query_padding_mask: padded rows are zero in A and, by definition, in
/// E, so they add nothing to either norm). s distinct rows are drawn uniformly without
/// replacement (Floyd's algorithm on attnx::CounterRng(seed, sample_stream): the same seed gives
/// the same rows on every platform and thread count). For each sampled row i,
///     a_i = ||A_i - E_i||²,   b_i = ||E_i||²   (in double),
/// and e² = Σ_all a / Σ_all b is a ratio of population totals, estimated by the ratio estimator
///     R = Σ_sample a / Σ_sample b,   rel_fro = sqrt(R)
/// (Cochran, "Sampling Techniques", 3rd ed., Wiley 1977, §6.2–6.4). Its variance by the delta
/// method (linearisation, Cochran Eq. 6.9 and Theorem 6.3 with the sample estimate 6.13):
///     v(R) = (1 - f) / (s · b̄²) · Σ_sample (a_i - R b_i)² / (s - 1),   f = s / N,  b̄ = Σ b / s,
/// and the interval is R ± z·sqrt(v(R)) with z the standard normal quantile at (1 + confidence)/2
/// (Wichura's algorithm AS241, Applied Statistics 37(3), 1988), the lower end clamped at 0; the
/// reported interval is its square root, [sqrt(R_low), sqrt(R_high)] — sqrt is increasing, so
/// this interval covers e exactly when the one for R covers e². It is a large-sample interval:
/// its coverage approaches the nominal level as s grows (tested: ≥ 90 of 100 seeded trials at
/// 95% with s = 64 of n = 512); with s = N (f = 1) it is the exact error with a zero-width
/// interval. If the sampled exact rows are all zero (Σ b = 0, e.g. every key masked) and s < N,
/// nothing is known about the others: rel_fro is 0 (Σ a = 0) or +inf, and [ci_low, ci_high] =
/// [0, +inf].
///
/// Exact rows. The sampled rows of Q are gathered (s x d) and run through the streaming exact
/// kernel against all keys, with the mechanism's scale, key_padding_mask and causal flag; under
/// causal masking each gathered row keeps the limit of its original position i (keys
/// j <= i + n_k - n_q), exactly as in exact_attention.
///
/// Cost: the mechanism's own cost, plus O(s·n_k·d) for the exact rows (4·s·n_k·d flops, no n×n
/// or s×n matrix: the online-softmax kernel keeps O(threads·128·(128 + d + d_v))), plus an
/// O(n·d) input scan (with check_finite) and O(N/8) bytes for the sampling. At n = 65536, d = 64,
/// s = 256 the exact rows are 4.3 GFLOP (bench_estimate measures the ratio to the mechanism).
///
/// Per head. estimate_error_per_head(mechanism, q, k, v, multi_head_options, options) estimates the
/// error of multi_head_attention for every item (b, h) of a batch of heads: it runs the layer once
/// (all its parallelism), then estimates each item from its own sampled rows against the item's
/// exact attention (its lengths, mask, causal flag and scale, as multi_head_attention applies them).
///
/// Errors (attnx::invalid_argument, before any work): the shapes of Q, K, V as in
/// exact_attention; samples < 2 (unless s = N: every row, the exact error) or samples > N; confidence not in the open interval (0, 1); a
/// query_padding_mask whose length is not n_q; the mechanism's own option errors (from its
/// call); NaN/Inf or overflowing inputs (with check_finite). An exact row that overflowed throws
/// after the work, as every mechanism's result check does.
#ifndef ATTNX_ESTIMATE_HPP
#define ATTNX_ESTIMATE_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/online_softmax.hpp"
#include "attnx/mechanisms.hpp"
#include "attnx/multi_head.hpp"
#include "attnx/random.hpp"

namespace attnx {

/// Options of estimate_error.
struct EstimateOptions {
    Index samples = 256;       ///< s, the query rows computed exactly: 2 <= s <= N (unpadded query rows)
    std::uint64_t seed = 0;    ///< which rows: the same seed gives the same rows everywhere
    double confidence = 0.95;  ///< level of the interval, in (0, 1)
};

/// The result of estimate_error: the estimated ||A - E||_F / ||E||_F and its interval.
struct ErrorEstimate {
    double rel_fro = 0;          ///< sqrt(Σ a / Σ b) over the sampled rows (the ratio estimator)
    double ci_low = 0;           ///< lower end of the interval for the relative Frobenius error
    double ci_high = 0;          ///< upper end (ci_low <= rel_fro <= ci_high)
    double max_abs_sampled = 0;  ///< max |A_ij - E_ij| over the sampled rows (a lower bound of max_abs)
    Index samples = 0;           ///< s, the rows computed exactly
    Index population = 0;        ///< N, the rows sampled from (n_q minus padded queries)
};

/// The CounterRng stream of the row sampling (so that other draws with the same seed differ).
constexpr std::uint64_t sample_stream = 0x6573746D61746531ULL;  // "estmate1"

/// s distinct indices drawn uniformly from [0, population), ascending: Floyd's algorithm
/// (Bentley & Floyd, "A sample of brilliance", CACM 30(9), 1987) on CounterRng(seed,
/// sample_stream), draw j uniform in [0, j] via CounterRng::below. O(s log s) time, population/8
/// bytes. Throws attnx::invalid_argument unless 0 <= s <= population.
inline std::vector<Index> sample_rows(Index population, Index samples, std::uint64_t seed) {
    if (population < 0 || samples < 0 || samples > population)
        detail::throw_invalid("sample_rows: samples (s = ", samples, ") must satisfy 0 <= s <= population (",
                              population, ")");
    std::vector<Index> rows;
    rows.reserve(static_cast<std::size_t>(samples));
    if (samples == population) {
        for (Index i = 0; i < population; ++i) rows.push_back(i);
        return rows;
    }
    const CounterRng rng(seed, sample_stream);
    std::vector<bool> taken(static_cast<std::size_t>(population), false);
    for (Index j = population - samples; j < population; ++j) {
        Index t = static_cast<Index>(rng.below(static_cast<std::uint64_t>(j), static_cast<std::uint64_t>(j) + 1));
        if (taken[static_cast<std::size_t>(t)]) t = j;
        taken[static_cast<std::size_t>(t)] = true;
        rows.push_back(t);
    }
    std::sort(rows.begin(), rows.end());
    return rows;
}

/// The standard normal quantile Φ⁻¹(p), 0 < p < 1: Wichura's algorithm AS241 (PPND16, relative
/// accuracy about 1e-16), the one Python's statistics.NormalDist.inv_cdf and R's qnorm use.
inline double normal_quantile(double p) {
    if (!(p > 0 && p < 1)) detail::throw_invalid("normal_quantile: p (", p, ") must be in (0, 1)");
    const double q = p - 0.5;
    if (std::fabs(q) <= 0.425) {
        const double r = 0.180625 - q * q;
        const double num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r +
                                 6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r +
                               1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r +
                             1.3314166789178437745e+2) * r + 3.3871328727963666080e+0) * q;
        const double den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r +
                                 3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r +
                               5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r +
                             4.2313330701600911252e+1) * r + 1.0);
        return num / den;
    }
    double r = q <= 0 ? p : 1.0 - p;
    r = std::sqrt(-std::log(r));
    double x = 0;
    if (r <= 5.0) {
        r -= 1.6;
        const double num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r +
                                 2.41780725177450611770e-1) * r + 1.27045825245236838258e+0) * r +
                               3.64784832476320460504e+0) * r + 5.76949722146069140550e+0) * r +
                             4.63033784615654529590e+0) * r + 1.42343711074968357734e+0);
        const double den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r +
                                 1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r +
                               6.89767334985100004550e-1) * r + 1.67638483018380384940e+0) * r +
                             2.05319162663775882187e+0) * r + 1.0);
        x = num / den;
    } else {
        r -= 5.0;
        const double num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r +
                                 1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r +
                               2.96560571828504891230e-1) * r + 1.78482653991729133580e+0) * r +
                             5.46378491116411436990e+0) * r + 6.65790464350110377720e+0);
        const double den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r +
                                 1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r +
                               1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r +
                             5.99832206555887937690e-1) * r + 1.0);
        x = num / den;
    }
    return q < 0 ? -x : x;
}

namespace detail {

template <typename O, typename = void>
struct has_query_padding : std::false_type {};
template <typename O>
struct has_query_padding<O, std::void_t<decltype(std::declval<const O&>().query_padding_mask)>> : std::true_type {};

/// The query padding mask of a mechanism's options (Nyström has one), or nullptr.
template <typename O>
const std::vector<bool>* query_padding_of(const O& o) {
    if constexpr (has_query_padding<O>::value) {
        if (!o.query_padding_mask.empty()) return &o.query_padding_mask;
    }
    (void)o;
    return nullptr;
}

/// Σa, Σb and the residual sum of squares -> the estimate and its interval (see the file comment).
inline void ratio_interval(const std::vector<double>& a, const std::vector<double>& b, Index population,
                           double confidence, ErrorEstimate& e) {
    const Index s = static_cast<Index>(a.size());
    double sum_a = 0, sum_b = 0;
    for (Index i = 0; i < s; ++i) {
        sum_a += a[static_cast<std::size_t>(i)];
        sum_b += b[static_cast<std::size_t>(i)];
    }
    const double inf = std::numeric_limits<double>::infinity();
    if (!(sum_b > 0)) {  // every sampled exact row is zero
        e.rel_fro = sum_a > 0 ? inf : 0.0;
        e.ci_low = s == population ? e.rel_fro : 0.0;
        e.ci_high = s == population ? e.rel_fro : inf;
        return;
    }
    const double r = sum_a / sum_b;
    e.rel_fro = std::sqrt(r);
    if (s == population) {  // f = 1: the whole population, no sampling error
        e.ci_low = e.ci_high = e.rel_fro;
        return;
    }
    double resid = 0;
    for (Index i = 0; i < s; ++i) {
        const double d = a[static_cast<std::size_t>(i)] - r * b[static_cast<std::size_t>(i)];
        resid += d * d;
    }
    const double sd = static_cast<double>(s), f = sd / static_cast<double>(population);
    const double b_mean = sum_b / sd;
    const double var = (1.0 - f) * (resid / (sd - 1.0)) / (sd * b_mean * b_mean);
    const double half = normal_quantile(0.5 + 0.5 * confidence) * std::sqrt(var);
    e.ci_low = std::sqrt(std::max(0.0, r - half));
    e.ci_high = std::sqrt(r + half);
}

/// Checks everything estimate_error can check before any work; returns the population rows
/// (the unpadded query rows, ascending), or an empty vector meaning all n_q rows.
template <typename Mech>
Index estimate_population(const char* fn, const Mech& mech, Index n_q, const EstimateOptions& eo,
                          std::vector<Index>& unpadded) {
    if (!(std::isfinite(eo.confidence) && eo.confidence > 0 && eo.confidence < 1))
        throw_invalid(fn, ": confidence (", eo.confidence, ") must be in the open interval (0, 1), e.g. 0.95");
    Index population = n_q;
    unpadded.clear();
    if (const std::vector<bool>* qpad = query_padding_of(mech.options)) {
        if (static_cast<Index>(qpad->size()) != n_q)
            throw_invalid(fn, ": query_padding_mask has length ", qpad->size(), " but there are n_q = q.rows() = ",
                          n_q, " queries (pass one flag per query, or none)");
        for (Index i = 0; i < n_q; ++i)
            if (!(*qpad)[static_cast<std::size_t>(i)]) unpadded.push_back(i);
        population = static_cast<Index>(unpadded.size());
    }
    if ((eo.samples < 2 && eo.samples != population) || eo.samples > population)
        throw_invalid(fn, ": samples (s = ", eo.samples, ") must satisfy 2 <= s <= N (N = ", population,
                      population == n_q ? " query rows = q.rows()" : " unpadded query rows",
                      "), or be N: the interval needs two rows, and rows are drawn without replacement");
    return population;
}

/// The estimate from the mechanism's output `approx` (n_q x d_v); the checks are done.
template <typename Scalar, typename Mech>
ErrorEstimate estimate_checked(const char* fn, const Mech& mech, const Eigen::Ref<const Matrix<Scalar>>& q,
                               const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                               const Eigen::Ref<const Matrix<Scalar>>& approx, const Magnitudes& mag,
                               Index population, const std::vector<Index>& unpadded, const EstimateOptions& eo) {
    const Index n_q = q.rows(), n_k = k.rows(), d = q.cols(), dv = v.cols(), s = eo.samples;
    std::vector<Index> rows = sample_rows(population, s, eo.seed);
    if (!unpadded.empty())
        for (Index& r : rows) r = unpadded[static_cast<std::size_t>(r)];  // monotone: stays ascending

    Matrix<Scalar> qs(s, d);
    for (Index c = 0; c < s; ++c) qs.row(c) = q.row(rows[static_cast<std::size_t>(c)]);
    MaskSpec mask = make_mask(mech.options, n_q, n_k);
    mask.query_positions = rows.data();
    Matrix<Scalar> exact(s, dv);
    const Eigen::Ref<const Matrix<Scalar>> qsr(qs);
    dense_online_attention<Scalar>(qsr, k, v, resolve_scale<Scalar>(mech.options, d), mask, 128, 128, exact);
    check_result<Scalar>(fn, mag, exact, " (in the exact rows)");

    ErrorEstimate e;
    e.samples = s;
    e.population = population;
    std::vector<double> a(static_cast<std::size_t>(s)), b(static_cast<std::size_t>(s));
    for (Index c = 0; c < s; ++c) {
        const Index i = rows[static_cast<std::size_t>(c)];
        double sa = 0, sb = 0, mx = 0;
        for (Index j = 0; j < dv; ++j) {
            const double ex = static_cast<double>(exact(c, j));
            const double diff = static_cast<double>(approx(i, j)) - ex;
            sa += diff * diff;
            sb += ex * ex;
            mx = std::max(mx, std::fabs(diff));
        }
        if (!std::isfinite(sa))  // the mechanism's output held NaN/Inf in this row
            throw_invalid(fn, ": the output of ", mech.name(), " (", mech.parameters(), ") is not finite in row ", i,
                          "; its error cannot be estimated");
        a[static_cast<std::size_t>(c)] = sa;
        b[static_cast<std::size_t>(c)] = sb;
        e.max_abs_sampled = std::max(e.max_abs_sampled, mx);
    }
    ratio_interval(a, b, population, eo.confidence, e);
    return e;
}

template <typename Mech, typename DQ, typename DK, typename DV>
void check_estimate_call(const char* fn, const Mech& mech, const Eigen::MatrixBase<DQ>& q,
                         const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v) {
    static_assert(is_mechanism<Mech>::value,
                  "attnx::estimate_error: the first argument must be a mechanism value (attnx::Exact, Nystrom, "
                  "Linformer, BlockSparse, BigBird, ...)");
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    check_qkv(fn, q, k, v);
    check_common_options(fn, mech.options, k.rows());
}

}  // namespace detail

/// Estimates ||A - E||_F / ||E||_F for A = mech(q, k, v) and E = exact attention with the
/// mechanism's scale, causal flag and key_padding_mask (Nyström's padded query rows are zero in
/// both), from s sampled exact rows; see the file comment for the estimator, the interval and
/// its source. Q is n_q x d, K is n_k x d, V is n_k x d_v (float or double).
/// Cost: one call of the mechanism plus O(s·n_k·d). Errors: see the file comment.
template <typename Mech, typename DQ, typename DK, typename DV>
ErrorEstimate estimate_error(const Mech& mech, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                             const Eigen::MatrixBase<DV>& v, const EstimateOptions& options = {}) {
    using Scalar = typename DQ::Scalar;
    constexpr const char* fn = "estimate_error";
    detail::check_estimate_call(fn, mech, q, k, v);
    std::vector<Index> unpadded;
    const Index population = detail::estimate_population(fn, mech, q.rows(), options, unpadded);
    const Eigen::Ref<const Matrix<Scalar>> qr(q), kr(k), vr(v);
    const detail::Magnitudes mag = detail::check_inputs<Scalar>(fn, mech.options, qr, kr, vr);
    Matrix<Scalar> approx(qr.rows(), vr.cols());
    mech(qr, kr, vr, approx);
    const Eigen::Ref<const Matrix<Scalar>> ar(approx);
    return detail::estimate_checked<Scalar>(fn, mech, qr, kr, vr, ar, mag, population, unpadded, options);
}

/// As above, for an output the caller has computed already: `approx` must be mech(q, k, v)
/// (n_q x d_v). Only the exact rows are computed, O(s·n_k·d); use it to time the mechanism and
/// estimate its error without running it twice.
template <typename Mech, typename DQ, typename DK, typename DV, typename DA>
ErrorEstimate estimate_error(const Mech& mech, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                             const Eigen::MatrixBase<DV>& v, const Eigen::MatrixBase<DA>& approx,
                             const EstimateOptions& options = {}) {
    using Scalar = typename DQ::Scalar;
    constexpr const char* fn = "estimate_error";
    detail::check_estimate_call(fn, mech, q, k, v);
    detail::check_same_scalar<DQ, DA>();
    if (approx.rows() != q.rows() || approx.cols() != v.cols())
        detail::throw_invalid(fn, ": approx is ", detail::shape_of(approx), " but must be n_q x d_v = ", q.rows(), "x",
                              v.cols(), " (the mechanism's output on q, k, v)");
    std::vector<Index> unpadded;
    const Index population = detail::estimate_population(fn, mech, q.rows(), options, unpadded);
    const Eigen::Ref<const Matrix<Scalar>> qr(q), kr(k), vr(v), ar(approx);
    const detail::Magnitudes mag = detail::check_inputs<Scalar>(fn, mech.options, qr, kr, vr);
    return detail::estimate_checked<Scalar>(fn, mech, qr, kr, vr, ar, mag, population, unpadded, options);
}

/// The error estimate of every item of multi_head_attention(mechanism, q, k, v, out,
/// multi_head_options) (multi_head.hpp: layouts, grouped-query heads, lengths, masks): element
/// b·H_q + h is estimate_error for the item (b, h), i.e. the mechanism with the item's options
/// on its cut sequence (first L_q queries, first L_k keys) against exact attention with the same
/// options, from min(options.samples, N_bh) sampled rows, where N_bh is the item's population
/// (L_q, less Nyström's padded queries). So a short sequence (N_bh <= s) gets its exact error with
/// a zero-width interval; an item with L_q = 0 or L_k = 0 has zero output in the layer and in
/// exact attention: its estimate is 0 with interval [0, 0] (samples 0, population L_q or 0).
/// Sampling seeds are options.seed for every item (the rows differ with the item's N_bh only).
///
/// Shapes: q (B, N_q, H_q, D), k (B, N_k, H_kv, D), v (B, N_k, H_kv, D_v), any strides; the
/// result has B·H_q entries. Cost: one multi_head_attention call into a B·N_q·H_q·D_v buffer,
/// plus per item O(s·L_k·D) for the exact rows (threads inside each item's exact kernel) and
/// O((L_q + L_k)·(D + D_v)) to gather its slices. Errors: those of multi_head_attention (before
/// any work), samples < 2 or confidence outside (0, 1) (before any work), and those of
/// estimate_error for an item, prefixed with "batch b, head h (key/value head h_kv)".
template <typename M, typename TQ, typename TK, typename TV>
std::vector<ErrorEstimate> estimate_error_per_head(const M& mechanism, const HeadsView<TQ>& q,
                                                   const HeadsView<TK>& k, const HeadsView<TV>& v,
                                                   const MultiHeadOptions& multi_head_options = {},
                                                   const EstimateOptions& options = {}) {
    using S = std::remove_const_t<TQ>;
    constexpr const char* fn = "estimate_error_per_head";
    if (options.samples < 2)
        detail::throw_invalid(fn, ": samples (s = ", options.samples,
                              ") must be >= 2 (items with fewer rows use all of them)");
    if (!(std::isfinite(options.confidence) && options.confidence > 0 && options.confidence < 1))
        detail::throw_invalid(fn, ": confidence (", options.confidence,
                              ") must be in the open interval (0, 1), e.g. 0.95");
    const MultiHeadOptions& mo = multi_head_options;
    const Index batch = q.batch, n_q = q.tokens, h_q = q.heads, d = q.dim, n_k = k.tokens, dv = v.dim;
    // The sizes the buffer below needs; multi_head_attention checks everything else before work.
    detail::check_view(fn, detail::shape_of_view("q", q));
    detail::check_view(fn, detail::shape_of_view("v", v));
    if (static_cast<long double>(batch) * n_q * h_q * dv > static_cast<long double>(std::numeric_limits<Index>::max()))
        detail::throw_invalid(fn, ": the output B * N_q * H_q * D_v = ", batch, " * ", n_q, " * ", h_q, " * ", dv,
                              " elements overflows Index");
    // The layer's output, contiguous (B, N_q, H_q, D_v).
    Matrix<S> approx_buffer(std::max<Index>(batch * n_q * h_q, 1), dv);
    const HeadsView<S> approx = HeadsView<S>::strided(approx_buffer.data(), batch, n_q, h_q, dv, n_q * h_q * dv,
                                                      h_q * dv, dv, 1);
    multi_head_attention(mechanism, q, k, v, approx, mo);

    const HeadsView<const S> qc{q.data, batch, n_q, h_q, d, q.stride_batch, q.stride_token, q.stride_head, q.stride_dim};
    const HeadsView<const S> kc{k.data, batch, n_k, k.heads, d, k.stride_batch, k.stride_token, k.stride_head,
                                k.stride_dim};
    const HeadsView<const S> vc{v.data, batch, n_k, v.heads, dv, v.stride_batch, v.stride_token, v.stride_head,
                                v.stride_dim};
    const HeadsView<const S> ac{approx.data, batch, n_q, h_q, dv, approx.stride_batch, approx.stride_token,
                                approx.stride_head, approx.stride_dim};
    const Index group = h_q / k.heads;
    std::vector<ErrorEstimate> out(static_cast<std::size_t>(batch * h_q));
    M item = mechanism;
    detail::apply_layer_options(item, mo);
    Matrix<S> qm, km, vm, am;
    for (Index b = 0; b < batch; ++b) {
        const std::pair<Index, Index> len = detail::item_lengths(mo, b, n_q, n_k);
        const Index lq = len.first, lk = len.second;
        detail::set_item_mask(item, mo, b, n_k);
        for (Index h = 0; h < h_q; ++h) {
            ErrorEstimate& e = out[static_cast<std::size_t>(b * h_q + h)];
            if (lq == 0 || lk == 0) {  // zero rows in the layer and in exact attention
                e.population = lk == 0 ? lq : 0;
                continue;
            }
            qm.resize(lq, d);
            am.resize(lq, dv);
            km.resize(lk, d);
            vm.resize(lk, dv);
            detail::gather_slice<S>(qc, b, h, lq, qm.data());
            detail::gather_slice<S>(ac, b, h, lq, am.data());
            detail::gather_slice<S>(kc, b, h / group, lk, km.data());
            detail::gather_slice<S>(vc, b, h / group, lk, vm.data());
            Index population = lq;  // less Nyström's padded queries, when its mask fits the item
            if (const std::vector<bool>* qpad = detail::query_padding_of(item.options))
                if (static_cast<Index>(qpad->size()) == lq)
                    population = static_cast<Index>(std::count(qpad->begin(), qpad->end(), false));
            EstimateOptions eo = options;
            eo.samples = std::min(options.samples, population);
            try {
                e = estimate_error(item, qm, km, vm, am, eo);
            } catch (const invalid_argument&) {
                detail::rethrow_item(fn, std::current_exception(), detail::item_name(b, h, group));
            }
        }
    }
    return out;
}

}  // namespace attnx

#endif  // ATTNX_ESTIMATE_HPP
