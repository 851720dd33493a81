// SPDX-License-Identifier: MIT
/// \file linformer.hpp
/// Linformer attention. Wang, Li, Khabsa, Fang & Ma, "Linformer: Self-Attention with Linear
/// Complexity", arXiv:2006.04768v3 (Sec. 3: the attention matrix is close to low rank, by a
/// Johnson–Lindenstrauss argument; Sec. 4: the model and its parameter sharing). Equation numbers
/// are not cited here because they could not be checked against the PDF offline.
///
/// With projections E, F (k x n_k) along the sequence and scale s (default 1/sqrt(d)):
///     K̄ = E K   (k x d),   V̄ = F V   (k x d_v)
///     out = softmax(s · Q K̄ᵀ) · V̄        — softmax along rows, over the k projected keys.
/// The attention of Q against K̄, V̄ runs through the same online-softmax kernel as exact
/// attention (detail/online_softmax.hpp); only the projections are Linformer's own.
///
/// Cost O(n_k·k·(d + d_v)) for the projections plus O(n_q·k·(d + d_v)) for the attention,
/// ≈ 8·n·k·d flops for self-attention with d_v = d. Memory beyond the inputs and the output:
/// O(k·(d + d_v)) for K̄, V̄ and at most 16 partial sums of that size, plus the per-thread
/// tiles of the online kernel. No n x n (nor n x k) matrix is formed.
///
/// Projections: `LinformerProjection<Scalar>` holds E and F for sequences up to n_max; a
/// sequence of n_k < n_max keys uses their first n_k columns (as fairseq's Linformer slices
/// `compress_k.weight[:, 0:tgt_len]`). The paper's sharing levels (Sec. 4): headwise (one E, F
/// for all heads of a layer), key–value (F = E, `LinformerSharing::KeyValue`) and layerwise (one
/// E = F for every layer and head). In attnx a projection is a value the caller passes in, so
/// headwise and layerwise sharing are simply reusing one object across heads and layers.
/// `LinformerProjection::gaussian` draws E, F with entries N(0, 1/k) from attnx's counter-based
/// generator (the same matrices on every platform, up to the last ulp of std::log/std::cos);
/// trained projections come in through `from_matrices`.
///
/// Exact limit: E = F = I_n (k = n_k) gives K̄ = K and V̄ = V exactly, hence exact attention
/// (`LinformerProjection::identity(n)`; tested in test_linformer.cpp). Random projections are
/// NOT a small-error approximation of softmax attention for a given input: V̄ has entries of
/// size sqrt(n/k)·|V|, so the relative error against exact attention is O(1) or larger and falls
/// roughly like 1/sqrt(k); the paper's guarantees concern learned (trained) projections.
///
/// Key padding mask (length n_k): padded keys are zeroed before the projection, i.e. column j
/// of E and F is left out of the sums when key j is padding, so padded keys contribute nothing
/// whatever their values (the k projected keys all stay visible). This is Linformer on the
/// sequence with the padded keys and their columns of E and F cut out. With every key padded,
/// K̄ = V̄ = 0 and every output row is zero.
///
/// `causal = true` throws: every projected key mixes all positions, so causality is not defined.
///
/// Checks (with check_finite on): K and V are scanned for NaN/Inf and their magnitudes as the
/// projection reads them (padded rows too), and Q as the attention reads it, not in a pass of
/// their own. A non-finite K or V throws between the projection and the attention, a non-finite
/// Q after the attention (an `out` buffer passed in may have been written by then). Raw E and
/// F are scanned before the work (a LinformerProjection knows its magnitudes).
/// Overflow: the logits meet Q and K̄ = E K, so the logit bound of core.hpp is checked on max|q|
/// and max|K̄|, after the attention; a K̄ or V̄ = F V that overflowed the Scalar type throws
/// before it. An output that overflowed anyway throws after the work. All are
/// attnx::invalid_argument naming the magnitudes.
///
/// Threads: the projections are summed over key blocks split into at most 16 parts whose bounds
/// depend only on n_k; the parts run in parallel (OpenMP, if compiled with it) with
/// single-threaded Eigen products and are added in a fixed order, so the result is bit-identical
/// for any number of threads. Row-major or expression arguments are copied once on entry.
#ifndef ATTNX_LINFORMER_HPP
#define ATTNX_LINFORMER_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/metrics.hpp"  // attnx::compare, the companion of every mechanism (was in core.hpp)
#include "attnx/detail/checks.hpp"
#include "attnx/detail/mask.hpp"
#include "attnx/detail/parallel.hpp"
#include "attnx/detail/online_softmax.hpp"
#include "attnx/random.hpp"

namespace attnx {

/// Whether a LinformerProjection keeps separate key and value projections.
enum class LinformerSharing {
    Separate,  ///< independent E and F (shared across heads by reusing the object: "headwise")
    KeyValue,  ///< F = E, one matrix stored (the paper's "key–value" sharing; "layerwise" if reused)
};

/// The projections E (keys) and F (values) of Linformer, k x n_max each, for sequences of up
/// to n_max keys. Sequences of n_k < n_max keys use the first n_k columns.
template <typename Scalar>
class LinformerProjection {
    static_assert(std::is_floating_point<Scalar>::value, "attnx::LinformerProjection: Scalar must be float or double");

public:
    /// The generator streams of E and F (seed, stream, index): E(i, j) is element j*k + i of
    /// stream e_stream, so a longer projection with the same seed and k extends a shorter one.
    static constexpr std::uint64_t e_stream = 0x4C494E464F524D45ULL;  // "LINFORME"
    static constexpr std::uint64_t f_stream = 0x4C494E464F524D46ULL;  // "LINFORMF"

    /// E, F with independent N(0, 1/k) entries from attnx's seeded generator (F = E with
    /// LinformerSharing::KeyValue). k >= 1, n_max >= 1.
    static LinformerProjection gaussian(Index k, Index n_max, std::uint64_t seed,
                                        LinformerSharing sharing = LinformerSharing::Separate) {
        constexpr const char* fn = "LinformerProjection::gaussian";
        if (k < 1) detail::throw_invalid(fn, ": k (", k, ") must be >= 1 (the number of projected keys)");
        if (n_max < 1) detail::throw_invalid(fn, ": n_max (", n_max, ") must be >= 1 (the longest sequence)");
        if (k > std::numeric_limits<Index>::max() / n_max)
            detail::throw_invalid(fn, ": k * n_max = ", k, " * ", n_max,
                                  " entries overflow Index (k is the number of projected keys, at most n_max is useful)");
        Matrix<Scalar> e = draw(k, n_max, seed, e_stream);
        Matrix<Scalar> f;
        if (sharing == LinformerSharing::Separate) f = draw(k, n_max, seed, f_stream);
        return LinformerProjection(std::move(e), std::move(f), sharing);
    }

    /// Caller-given (e.g. trained) E and F, both k x n_max, finite.
    template <typename DE, typename DF>
    static LinformerProjection from_matrices(const Eigen::MatrixBase<DE>& e, const Eigen::MatrixBase<DF>& f) {
        static_assert(std::is_same<typename DE::Scalar, Scalar>::value &&
                          std::is_same<typename DF::Scalar, Scalar>::value,
                      "attnx::LinformerProjection::from_matrices: e and f must have the projection's Scalar type");
        constexpr const char* fn = "LinformerProjection::from_matrices";
        detail::check_nonempty(fn, "e", e);
        detail::check_nonempty(fn, "f", f);
        if (e.rows() != f.rows() || e.cols() != f.cols())
            detail::throw_invalid(fn, ": e is ", detail::shape_of(e), " but f is ", detail::shape_of(f),
                                  " (E and F must both be k x n_max)");
        Matrix<Scalar> em = e, fm = f;
        detail::check_finite(fn, "e", em);
        detail::check_finite(fn, "f", fm);
        return LinformerProjection(std::move(em), std::move(fm), LinformerSharing::Separate);
    }

    /// A caller-given E used for keys and values alike (F = E), k x n_max, finite.
    template <typename DE>
    static LinformerProjection from_matrix(const Eigen::MatrixBase<DE>& e) {
        static_assert(std::is_same<typename DE::Scalar, Scalar>::value,
                      "attnx::LinformerProjection::from_matrix: e must have the projection's Scalar type");
        constexpr const char* fn = "LinformerProjection::from_matrix";
        detail::check_nonempty(fn, "e", e);
        Matrix<Scalar> em = e;
        detail::check_finite(fn, "e", em);
        return LinformerProjection(std::move(em), Matrix<Scalar>(), LinformerSharing::KeyValue);
    }

    /// E = F = I_n: Linformer then equals exact attention for sequences of exactly n keys
    /// (a shorter sequence would see n - n_k extra zero keys).
    static LinformerProjection identity(Index n) {
        if (n < 1) detail::throw_invalid("LinformerProjection::identity: n (", n, ") must be >= 1");
        return LinformerProjection(Matrix<Scalar>::Identity(n, n), Matrix<Scalar>(), LinformerSharing::KeyValue);
    }

    /// k, the number of projected keys (rows of E and F).
    Index rank() const { return m_e.rows(); }
    /// n_max, the longest sequence the projection covers (columns of E and F).
    Index max_length() const { return m_e.cols(); }
    LinformerSharing sharing() const { return m_sharing; }
    /// E (k x n_max).
    const Matrix<Scalar>& e() const { return m_e; }
    /// F (k x n_max); the same object as e() with LinformerSharing::KeyValue.
    const Matrix<Scalar>& f() const { return m_sharing == LinformerSharing::KeyValue ? m_e : m_f; }
    /// max |E_ij| and max |F_ij| over the whole projection, computed once when it was made.
    long double max_abs_e() const { return m_max_abs_e; }
    long double max_abs_f() const { return m_max_abs_f; }

private:
    LinformerProjection(Matrix<Scalar> e, Matrix<Scalar> f, LinformerSharing sharing)
        : m_e(std::move(e)), m_f(std::move(f)), m_sharing(sharing) {
        m_max_abs_e = m_e.size() == 0 ? 0.0L : static_cast<long double>(m_e.cwiseAbs().maxCoeff());
        m_max_abs_f = sharing == LinformerSharing::KeyValue || m_f.size() == 0
                          ? m_max_abs_e
                          : static_cast<long double>(m_f.cwiseAbs().maxCoeff());
    }

    static Matrix<Scalar> draw(Index k, Index n_max, std::uint64_t seed, std::uint64_t stream) {
        const CounterRng rng(seed, stream);
        const double sd = 1.0 / std::sqrt(static_cast<double>(k));
        Matrix<Scalar> m(k, n_max);
        // Each entry is computed on its own from its index: any schedule gives the same matrix.
ATTNX_OMP(parallel for schedule(static) if (k * n_max > detail::min_parallel_compute && !detail::machine_busy()))
        for (Index j = 0; j < n_max; ++j)
            for (Index i = 0; i < k; ++i)
                m(i, j) = static_cast<Scalar>(sd * rng.normal(static_cast<std::uint64_t>(j * k + i)));
        return m;
    }

    Matrix<Scalar> m_e;
    Matrix<Scalar> m_f;  // empty with LinformerSharing::KeyValue
    LinformerSharing m_sharing;
    long double m_max_abs_e = 0, m_max_abs_f = 0;  // for the overflow messages, without a scan per call
};

namespace detail {

/// The projections are split into at most this many parts (partial sums added in order).
constexpr Index linformer_max_parts = 16;

/// Keys per projection product (and the unit in which the key padding mask is applied):
/// 512 (about 8% faster than 256 on a Zen 5 core), or 256 below 2048 keys so that there are
/// still at least two parts for the threads to share. Depends on n_k only.
inline Index linformer_key_block(Index n_k) { return n_k >= 2048 ? 512 : 256; }

/// kp = E K and vp = F V over the unpadded keys (padded key rows count as zero).
/// The key blocks of linformer_key_block(n_k) rows are grouped into contiguous parts; part p sums its
/// blocks in order into its own partial, and the partials are added in part order. The split
/// depends on n_k only, so the result does not depend on the number of threads. With `scan`,
/// every block of K and V (padded ones too) is also scanned (max |x|, NaN/Inf) as it is read.
template <typename Scalar>
void linformer_project(const Eigen::Ref<const Matrix<Scalar>>& e, const Eigen::Ref<const Matrix<Scalar>>& f,
                       const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                       const std::vector<bool>& padding, Matrix<Scalar>& kp, Matrix<Scalar>& vp,
                       InputScan* scan = nullptr) {
    const Index n = k.rows(), r = e.rows(), d = k.cols(), dv = v.cols();
    const Index block = linformer_key_block(n);
    const Index n_blocks = ceil_div(n, block);
    const Index blocks_per_part = ceil_div(n_blocks, linformer_max_parts);
    const Index parts = ceil_div(n_blocks, blocks_per_part);
    const bool masked = !padding.empty();

    // Part p accumulates into columns [p*d, (p+1)*d) of part_k (and likewise part_v).
    Matrix<Scalar> part_k(r, d * parts), part_v(r, dv * parts);

    // Always a parallel region: inside a team of several threads Eigen's products run
    // single-threaded (same blocking, hence the same rounding, for any thread count).
    // Zero-padded copies of a key block (only with a mask), one per thread, allocated before
    // the region; the products may still allocate (Eigen's blocking), hence RegionErrors.
    const int team = team_size();
    std::vector<Matrix<Scalar>> kbufs(static_cast<std::size_t>(masked ? team : 0));
    std::vector<Matrix<Scalar>> vbufs(kbufs.size());
    for (std::size_t t = 0; t < kbufs.size(); ++t) {
        kbufs[t].resize(std::min(block, n), d);
        vbufs[t].resize(std::min(block, n), dv);
    }
    std::vector<InputScan> scans(static_cast<std::size_t>(parts));
    RegionErrors errors;
    parallel_region(team, [&] {
ATTNX_OMP(for schedule(dynamic, 1))
        for (Index p = 0; p < parts; ++p) {
            errors.run([&] {
                auto acc_k = part_k.middleCols(p * d, d);
                auto acc_v = part_v.middleCols(p * dv, dv);
                acc_k.setZero();
                acc_v.setZero();
                InputScan& sc = scans[static_cast<std::size_t>(p)];
                const Index b_end = std::min(n_blocks, (p + 1) * blocks_per_part);
                for (Index b = p * blocks_per_part; b < b_end; ++b) {
                    const Index j0 = b * block, len = std::min(block, n - j0);
                    if (scan != nullptr) {
                        scan_block(k.middleRows(j0, len), sc.k, sc.k_ok);
                        scan_block(v.middleRows(j0, len), sc.v, sc.v_ok);
                    }
                    Index n_pad = 0;
                    if (masked)
                        for (Index j = j0; j < j0 + len; ++j) n_pad += padding[static_cast<std::size_t>(j)] ? 1 : 0;
                    if (n_pad == len) continue;  // every key of the block is padding: it adds nothing
                    if (n_pad == 0) {
                        acc_k.noalias() += e.middleCols(j0, len) * k.middleRows(j0, len);
                        acc_v.noalias() += f.middleCols(j0, len) * v.middleRows(j0, len);
                        continue;
                    }
                    // Padded rows are set to zero (not multiplied by zero), so any finite value vanishes.
                    auto kb = kbufs[static_cast<std::size_t>(thread_index())].topRows(len);
                    auto vb = vbufs[static_cast<std::size_t>(thread_index())].topRows(len);
                    kb = k.middleRows(j0, len);
                    vb = v.middleRows(j0, len);
                    for (Index j = 0; j < len; ++j)
                        if (padding[static_cast<std::size_t>(j0 + j)]) {
                            kb.row(j).setZero();
                            vb.row(j).setZero();
                        }
                    acc_k.noalias() += e.middleCols(j0, len) * kb;
                    acc_v.noalias() += f.middleCols(j0, len) * vb;
                }
            });
        }
    });
    errors.rethrow();
    if (scan != nullptr)
        for (const InputScan& sc : scans) scan->merge(sc);
    kp = part_k.leftCols(d);
    vp = part_v.leftCols(dv);
    for (Index p = 1; p < parts; ++p) {
        kp += part_k.middleCols(p * d, d);
        vp += part_v.middleCols(p * dv, dv);
    }
}

/// The attention of Q against the k projected keys kp = E K and values vp = F V. Every projected
/// key is visible: the key padding mask acted in the projection. With `scan`, Q is scanned as
/// each query tile is read.
template <typename Scalar>
void linformer_attend(const Eigen::Ref<const Matrix<Scalar>>& q, const Matrix<Scalar>& kp, const Matrix<Scalar>& vp,
                      const AttentionOptions& o, Eigen::Ref<Matrix<Scalar>> out, InputScan* scan = nullptr) {
    constexpr Index query_tile = 128;
    constexpr Index max_key_tile = 512;
    dense_online_attention<Scalar>(q, kp, vp, resolve_scale<Scalar>(o, q.cols()), MaskSpec{}, query_tile,
                                   std::min(max_key_tile, kp.rows()), out, scan, ScanInputs::queries);
}

/// max|E| and max|F|: known when a LinformerProjection computed them as it was made, else
/// scanned per call (raw E, F). Only the overflow messages use them.
struct ProjectionMagnitudes {
    bool known = false;
    long double e = 0, f = 0;
};

/// The first half of the check between the projection and the attention (with check_finite
/// on): E K and F V must not have overflowed. Returns max|E K| for the logit check.
template <typename Scalar>
long double check_projection_finite(const char* fn, Index n_k, const Magnitudes& mag, const ProjectionMagnitudes& pm,
                                    const Matrix<Scalar>& kp, const Matrix<Scalar>& vp) {
    long double max_kp = 0, max_vp = 0;
    const bool kp_ok = finite_max_abs(kp, max_kp), vp_ok = finite_max_abs(vp, max_vp);
    if (!kp_ok || !vp_ok)
        throw_invalid(fn, ": the projection ", kp_ok ? "F V" : "E K", " overflowed ", scalar_name<Scalar>(),
                      " (n_k = ", n_k, ", max|k| = ", sci(mag.k), ", max|v| = ", sci(mag.v), ", max|E| = ", sci(pm.e),
                      ", max|F| = ", sci(pm.f), "); rescale k, v or the projections, or use double");
    return max_kp;
}

inline void check_linformer_options(const char* fn, const AttentionOptions& o, Index n_k) {
    check_common_options(fn, o, n_k);
    if (o.causal)
        throw_invalid(fn, ": causal = true is not defined for Linformer attention: the projections E K and F V "
                          "mix all positions, so every output row would see future keys; set causal = false");
}

/// Shapes of a call with raw E and F (k x n_k each); looks only at rows and cols.
template <typename DQ, typename DK, typename DV, typename DE, typename DF>
void check_linformer_raw(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                         const Eigen::MatrixBase<DV>& v, const Eigen::MatrixBase<DE>& e,
                         const Eigen::MatrixBase<DF>& f, const AttentionOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    check_same_scalar<DQ, DE>();
    check_same_scalar<DQ, DF>();
    check_qkv(fn, q, k, v);
    const Index n_k = k.rows();
    if (e.rows() < 1)
        throw_invalid(fn, ": e has 0 rows: the number of projected keys k = e.rows() must be >= 1 (e is ",
                      shape_of(e), ")");
    if (f.rows() != e.rows())
        throw_invalid(fn, ": f has ", f.rows(), " rows but e has ", e.rows(), " (e is ", shape_of(e), ", f is ",
                      shape_of(f), "; E and F must project onto the same number k of keys)");
    if (e.cols() != n_k)
        throw_invalid(fn, ": e has ", e.cols(), " columns but there are n_k = k.rows() = ", n_k,
                      " keys (E must be k x n_k; a LinformerProjection slices a longer one itself)");
    if (f.cols() != n_k)
        throw_invalid(fn, ": f has ", f.cols(), " columns but there are n_k = k.rows() = ", n_k,
                      " keys (F must be k x n_k; a LinformerProjection slices a longer one itself)");
    check_linformer_options(fn, o, n_k);
}

template <typename DQ, typename DK, typename DV, typename PScalar>
void check_linformer_projection(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                const Eigen::MatrixBase<DV>& v, const LinformerProjection<PScalar>& p,
                                const AttentionOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    static_assert(std::is_same<typename DQ::Scalar, PScalar>::value,
                  "attnx::linformer_attention: the projection must have the Scalar type of q, k and v");
    check_qkv(fn, q, k, v);
    if (p.rank() < 1)
        throw_invalid(fn, ": the projection is empty (k = 0; a moved-from LinformerProjection?)");
    if (k.rows() > p.max_length())
        throw_invalid(fn, ": there are n_k = k.rows() = ", k.rows(), " keys but the projection covers at most n_max = ",
                      p.max_length(), " (projection.max_length()); draw one with n_max >= n_k");
    check_linformer_options(fn, o, k.rows());
}

/// The magnitudes a LinformerProjection computed when it was made.
template <typename Scalar>
ProjectionMagnitudes magnitudes_of(const LinformerProjection<Scalar>& p) {
    ProjectionMagnitudes pm;
    pm.known = true;
    pm.e = p.max_abs_e();
    pm.f = p.max_abs_f();
    return pm;
}

/// The key side of one Linformer call, K̄ = E K and V̄ = F V, computed once and shared by every
/// query head that reads the same keys (multi_head_attention with grouped-query attention).
template <typename Scalar>
struct LinformerKeys {
    Matrix<Scalar> kp, vp;     ///< E K (k x d), F V (k x d_v)
    Magnitudes mag;            ///< max|k|, max|v| (q is filled in per query head)
    ProjectionMagnitudes pm;   ///< max|E|, max|F|
    long double max_kp = 0;    ///< max|E K|, for the logit check
    Index n_k = 0, d = 0;
};

/// The projection with its checks (check_finite on): K and V are scanned as the projection reads
/// them (linformer_project), a non-finite one is reported here, before the attention, and then
/// an E K or F V that overflowed. Before either error, a non-finite q (when given) is reported
/// first, in check_inputs' order q, k, v (this rare path scans Q in full).
template <typename Scalar>
void linformer_project_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>* q,
                               const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                               const Eigen::Ref<const Matrix<Scalar>>& e, const Eigen::Ref<const Matrix<Scalar>>& f,
                               const ProjectionMagnitudes& pm, const AttentionOptions& o, LinformerKeys<Scalar>& keys) {
    keys.pm = pm;
    keys.n_k = k.rows();
    keys.d = k.cols();
    keys.mag = Magnitudes{};
    InputScan scan;
    linformer_project<Scalar>(e, f, k, v, o.key_padding_mask, keys.kp, keys.vp, o.check_finite ? &scan : nullptr);
    if (!o.check_finite) return;
    if (!scan.k_ok || !scan.v_ok || !(block_finite(keys.kp) && block_finite(keys.vp))) {
        // An error is coming: a non-finite q, k or v comes first (q is read only later).
        if (q != nullptr) check_finite(fn, "q", *q);
        if (!scan.k_ok) check_finite(fn, "k", k);
        if (!scan.v_ok) check_finite(fn, "v", v);
    }
    keys.mag.scanned = true;
    keys.mag.k = scan.k;
    keys.mag.v = scan.v;
    keys.max_kp = check_projection_finite<Scalar>(fn, keys.n_k, keys.mag, keys.pm, keys.kp, keys.vp);
}

/// The attention with its checks: Q is scanned as the attention reads it (when the keys were
/// scanned), then a non-finite Q, the logit bound s·d·max|q|·max|E K| and an overflowed result
/// are reported, after the work.
template <typename Scalar>
void linformer_attend_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q,
                              const LinformerKeys<Scalar>& keys, const AttentionOptions& o,
                              Eigen::Ref<Matrix<Scalar>> out) {
    InputScan scan;
    linformer_attend<Scalar>(q, keys.kp, keys.vp, o, out, keys.mag.scanned ? &scan : nullptr);
    Magnitudes mag = keys.mag;
    if (mag.scanned) {
        if (!scan.q_ok) check_finite(fn, "q", q);
        mag.q = scan.q;
        check_logit_range<Scalar>(fn, resolve_scale_double(o, q.cols()), q.cols(), mag.q, keys.max_kp, "q", "E K");
    }
    check_result<Scalar>(fn, mag, out, ", max|E| = " + sci(keys.pm.e) + ", max|F| = " + sci(keys.pm.f));
}

/// The entry skeleton of Linformer: the scan of raw E, F (k x n_k, as many reads as the
/// projection itself; a LinformerProjection knows its magnitudes, `pm`), the projection and the
/// attention with their checks (the input scan of Q, K, V fused into their reads).
template <typename Scalar>
void linformer_checked(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q,
                       const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                       const Eigen::Ref<const Matrix<Scalar>>& e, const Eigen::Ref<const Matrix<Scalar>>& f,
                       ProjectionMagnitudes pm, const AttentionOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    const double r = double(e.rows());
    const SerialScope serial(run_serially(2.0 * r * double(k.rows() + q.rows()) * double(q.cols() + v.cols())));
    if (!pm.known && o.check_finite) {
        const bool e_ok = finite_max_abs(e, pm.e);
        bool f_ok = true;
        if (f.data() == e.data())
            pm.f = pm.e;
        else
            f_ok = finite_max_abs(f, pm.f);
        if (!e_ok || !f_ok) {  // the order of errors is q, k, v, e, f: scan the inputs first (rare path)
            check_finite_qkv<Scalar>(fn, o, q, k, v);
            if (!e_ok) check_finite(fn, "e", e);
            check_finite(fn, "f", f);
        }
    }
    LinformerKeys<Scalar> keys;
    linformer_project_checked<Scalar>(fn, &q, k, v, e, f, pm, o, keys);
    linformer_attend_checked<Scalar>(fn, q, keys, o, out);
}

/// The key half of linformer_checked with a LinformerProjection: checks the sizes and options
/// against the projection, projects with the scan of K and V, and checks E K, F V for overflow.
template <typename Scalar>
void linformer_prepare_keys(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& k,
                            const Eigen::Ref<const Matrix<Scalar>>& v, const LinformerProjection<Scalar>& p,
                            const AttentionOptions& o, LinformerKeys<Scalar>& keys) {
    check_nonempty(fn, "k", k);
    check_nonempty(fn, "v", v);
    if (v.rows() != k.rows())
        throw_invalid(fn, ": v has ", v.rows(), " rows but k has ", k.rows(), " (every key needs one value row)");
    if (p.rank() < 1) throw_invalid(fn, ": the projection is empty (k = 0; a moved-from LinformerProjection?)");
    const Index n_k = k.rows();
    if (n_k > p.max_length())
        throw_invalid(fn, ": there are n_k = k.rows() = ", n_k, " keys but the projection covers at most n_max = ",
                      p.max_length(), " (projection.max_length()); draw one with n_max >= n_k");
    check_linformer_options(fn, o, n_k);
    linformer_project_checked<Scalar>(fn, nullptr, k, v, p.e().leftCols(n_k), p.f().leftCols(n_k), magnitudes_of(p),
                                      o, keys);
}

/// The query half: checks the shapes against the keys, then linformer_attend_checked. With
/// linformer_prepare_keys, the same values (bit for bit) as linformer_checked.
template <typename Scalar>
void linformer_attend_keys(const char* fn, const Eigen::Ref<const Matrix<Scalar>>& q, const LinformerKeys<Scalar>& keys,
                           const AttentionOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    check_nonempty(fn, "q", q);
    if (q.cols() != keys.d)
        throw_invalid(fn, ": k has ", keys.d, " columns but q has ", q.cols(), " (both need the same head dimension d)");
    if (out.rows() != q.rows() || out.cols() != keys.vp.cols())
        throw_invalid(fn, ": out is ", shape_of(out), " but must be n_q x d_v = ", q.rows(), "x", keys.vp.cols());
    check_no_overlap(fn, out, "q", q);
    linformer_attend_checked<Scalar>(fn, q, keys, o, out);
}

}  // namespace detail

/// softmax(s · Q (E K)ᵀ) (F V). Q is n_q x d, K is n_k x d, V is n_k x d_v, E and F are k x n_k
/// (F may be the same matrix as E: key–value sharing). Returns n_q x d_v.
/// E and F are scanned for NaN/Inf along with Q, K, V unless options.check_finite is off.
template <typename DQ, typename DK, typename DV, typename DE, typename DF>
Matrix<typename DQ::Scalar> linformer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                const Eigen::MatrixBase<DV>& v, const Eigen::MatrixBase<DE>& e,
                                                const Eigen::MatrixBase<DF>& f, const AttentionOptions& options = {}) {
    constexpr const char* fn = "linformer_attention";
    detail::check_linformer_raw(fn, q, k, v, e, f, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::linformer_checked<typename DQ::Scalar>(fn, q, k, v, e, f, {}, options, out);
    return out;
}

/// As above, writing into a caller-provided n_q x d_v buffer (reuse it across calls: fresh
/// memory is expensive to touch for the first time).
template <typename DQ, typename DK, typename DV, typename DE, typename DF>
void linformer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                         const Eigen::MatrixBase<DV>& v, const Eigen::MatrixBase<DE>& e,
                         const Eigen::MatrixBase<DF>& f, Eigen::Ref<Matrix<typename DQ::Scalar>> out,
                         const AttentionOptions& options = {}) {
    constexpr const char* fn = "linformer_attention";
    detail::check_linformer_raw(fn, q, k, v, e, f, options);
    detail::check_out(fn, out, q, k, v);
    detail::check_no_overlap(fn, out, "e", e);
    detail::check_no_overlap(fn, out, "f", f);
    detail::linformer_checked<typename DQ::Scalar>(fn, q, k, v, e, f, {}, options, out);
}

/// softmax(s · Q (E K)ᵀ) (F V) with the first n_k columns of the projection's E and F
/// (n_k <= projection.max_length()). Returns n_q x d_v.
template <typename DQ, typename DK, typename DV, typename PScalar>
Matrix<typename DQ::Scalar> linformer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                const Eigen::MatrixBase<DV>& v,
                                                const LinformerProjection<PScalar>& projection,
                                                const AttentionOptions& options = {}) {
    constexpr const char* fn = "linformer_attention";
    detail::check_linformer_projection(fn, q, k, v, projection, options);
    const Index n_k = k.rows();
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::linformer_checked<PScalar>(fn, q, k, v, projection.e().leftCols(n_k), projection.f().leftCols(n_k),
                                       detail::magnitudes_of(projection), options, out);
    return out;
}

/// As above, writing into a caller-provided n_q x d_v buffer.
template <typename DQ, typename DK, typename DV, typename PScalar>
void linformer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                         const Eigen::MatrixBase<DV>& v, const LinformerProjection<PScalar>& projection,
                         Eigen::Ref<Matrix<typename DQ::Scalar>> out, const AttentionOptions& options = {}) {
    constexpr const char* fn = "linformer_attention";
    detail::check_linformer_projection(fn, q, k, v, projection, options);
    detail::check_out(fn, out, q, k, v);
    detail::check_no_overlap(fn, out, "the projection's e", projection.e());
    detail::check_no_overlap(fn, out, "the projection's f", projection.f());
    const Index n_k = k.rows();
    detail::linformer_checked<PScalar>(fn, q, k, v, projection.e().leftCols(n_k), projection.f().leftCols(n_k),
                                       detail::magnitudes_of(projection), options, out);
}

}  // namespace attnx

#endif  // ATTNX_LINFORMER_HPP
