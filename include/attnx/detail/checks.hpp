// SPDX-License-Identifier: MIT
/// \file detail/checks.hpp
/// Argument validation shared by every entry point: messages, shapes, common options, the
/// NaN/Inf and magnitude scan of the inputs, the overflow guard of the logits and the one scan
/// of the result (see the conventions in core.hpp). Not API.
#ifndef ATTNX_DETAIL_CHECKS_HPP
#define ATTNX_DETAIL_CHECKS_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/parallel.hpp"

namespace attnx {
namespace detail {


/// ceil(a / b) for a >= 0 and b >= 1, without the overflow of (a + b - 1) / b near the Index
/// limit (a tile or block option of INT64_MAX is valid input: it means one tile).
constexpr Index ceil_div(Index a, Index b) { return a / b + (a % b != 0 ? 1 : 0); }

/// Builds a message from its parts and throws attnx::invalid_argument.
template <class... Parts>
[[noreturn]] void throw_invalid(const Parts&... parts) {
    std::ostringstream os;
    os << "attnx::";
    (os << ... << parts);
    throw attnx::invalid_argument(os.str());
}

template <typename Derived>
std::string shape_of(const Eigen::EigenBase<Derived>& m) {
    std::ostringstream os;
    os << m.rows() << "x" << m.cols();
    return os.str();
}

template <typename Derived>
void check_nonempty(const char* fn, const char* name, const Eigen::EigenBase<Derived>& m) {
    if (m.rows() == 0 || m.cols() == 0)
        throw_invalid(fn, ": ", name, " is empty (", shape_of(m), "); it needs at least one row and one column");
}

/// The bytes [begin, end) that a matrix argument occupies, from its first to its last entry
/// (strides included); empty for an expression without storage of its own, which is
/// evaluated into a temporary when it is bound, before any kernel writes.
struct MemoryRange {
    std::uintptr_t begin = 0, end = 0;
    bool overlaps(const MemoryRange& o) const { return begin < o.end && o.begin < end; }
};

template <typename Derived>
MemoryRange memory_range(const Eigen::MatrixBase<Derived>& m) {
    MemoryRange r;
    if constexpr ((static_cast<unsigned>(Derived::Flags) & Eigen::DirectAccessBit) != 0) {
        const Derived& x = m.derived();
        if (x.size() == 0) return r;
        const Index last = (x.outerSize() - 1) * x.outerStride() + (x.innerSize() - 1) * x.innerStride();
        r.begin = reinterpret_cast<std::uintptr_t>(x.data());
        r.end = r.begin + static_cast<std::uintptr_t>(last + 1) * sizeof(typename Derived::Scalar);
    }
    return r;
}

/// attnx does not compute in place: throws if out's memory range overlaps the input `name`'s
/// (conservative: two strided views of one buffer whose ranges interleave count as overlapping).
template <typename DOut, typename DIn>
void check_no_overlap(const char* fn, const Eigen::MatrixBase<DOut>& out, const char* name,
                      const Eigen::MatrixBase<DIn>& in) {
    if (memory_range(out).overlaps(memory_range(in)))
        throw_invalid(fn, ": out (", shape_of(out), ") shares memory with ", name, " (", shape_of(in),
                      "); the kernel would overwrite an input it still reads. Pass a separate output buffer ",
                      "(attnx does not compute in place)");
}

/// A caller-provided output buffer: n_q x d_v, and no memory shared with q, k or v.
template <typename DOut, typename DQ, typename DK, typename DV>
void check_out(const char* fn, const Eigen::MatrixBase<DOut>& out, const Eigen::MatrixBase<DQ>& q,
               const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v) {
    if (out.rows() != q.rows() || out.cols() != v.cols())
        throw_invalid(fn, ": out is ", shape_of(out), " but must be n_q x d_v = ", q.rows(), "x", v.cols());
    check_no_overlap(fn, out, "q", q);
    check_no_overlap(fn, out, "k", k);
    check_no_overlap(fn, out, "v", v);
}

/// Shapes of Q (n_q x d), K (n_k x d), V (n_k x d_v); looks only at rows and cols.
/// values_needed = false for attention_matrix, which has no V (it passes an n_k x 0 stand-in).
template <typename DQ, typename DK, typename DV>
void check_qkv(const char* fn, const Eigen::EigenBase<DQ>& q, const Eigen::EigenBase<DK>& k,
               const Eigen::EigenBase<DV>& v, bool values_needed = true) {
    check_nonempty(fn, "q", q);
    check_nonempty(fn, "k", k);
    if (values_needed) check_nonempty(fn, "v", v);
    if (k.cols() != q.cols())
        throw_invalid(fn, ": k has ", k.cols(), " columns but q has ", q.cols(), " (q is ", shape_of(q),
                      ", k is ", shape_of(k), "; both need the same head dimension d)");
    if (v.rows() != k.rows())
        throw_invalid(fn, ": v has ", v.rows(), " rows but k has ", k.rows(), " (k is ", shape_of(k),
                      ", v is ", shape_of(v), "; every key needs one value row)");
}

/// The options of AttentionOptions: scale finite and > 0, mask length n_k.
inline void check_common_options(const char* fn, const AttentionOptions& o, Index n_k) {
    if (o.scale && !(std::isfinite(*o.scale) && *o.scale > 0))
        throw_invalid(fn, ": scale (", *o.scale, ") must be finite and > 0");
    if (!o.key_padding_mask.empty() && static_cast<Index>(o.key_padding_mask.size()) != n_k)
        throw_invalid(fn, ": key_padding_mask has length ", o.key_padding_mask.size(),
                      " but there are n_k = k.rows() = ", n_k, " keys (pass one flag per key, or none)");
}

/// True if every entry is finite: x * 0 is 0 for finite x and NaN for NaN or ±Inf, and a NaN
/// survives the (vectorised) sum. One pass over memory; columns in parallel when large.
/// (Not valid under -ffast-math, which attnx does not support.)
template <typename Derived>
bool all_finite(const Eigen::MatrixBase<Derived>& m) {
    using Scalar = typename Derived::Scalar;
    bool ok = true;
ATTNX_OMP(parallel for schedule(static) reduction(&& : ok) if (m.size() > min_parallel_scan && !machine_busy()))
    for (Index j = 0; j < m.cols(); ++j) ok = ok && (m.col(j).array() * Scalar(0)).sum() == Scalar(0);
    return ok;
}

/// Throws if m holds NaN or Inf, naming the first offending entry (column-major order).
template <typename Derived>
void check_finite(const char* fn, const char* name, const Eigen::MatrixBase<Derived>& m) {
    if (all_finite(m)) return;
    for (Index j = 0; j < m.cols(); ++j)
        for (Index i = 0; i < m.rows(); ++i)
            if (!std::isfinite(static_cast<double>(m(i, j))))
                throw_invalid(fn, ": ", name, " (", shape_of(m), ") has a non-finite entry ", name, "(", i, ", ",
                              j, ") = ", static_cast<double>(m(i, j)),
                              " (inputs must be finite; set check_finite = false to skip this scan)");
}

/// The scale in double: options.scale, or 1/sqrt(d).
inline double resolve_scale_double(const AttentionOptions& o, Index d) {
    if (o.scale) return *o.scale;
    return 1.0 / std::sqrt(static_cast<double>(d));
}

template <typename Scalar>
Scalar resolve_scale(const AttentionOptions& o, Index d) {
    return static_cast<Scalar>(resolve_scale_double(o, d));
}

/// "float" or "double", for messages.
template <typename Scalar>
const char* scalar_name() {
    return std::is_same<Scalar, float>::value ? "float" : "double";
}

/// The magnitude bound of the overflow checks: max(Scalar) / 16 (headroom for the sums of the
/// softmax and of the products), in long double so that bounds compared with it cannot overflow.
template <typename Scalar>
long double overflow_limit() {
    return static_cast<long double>(std::numeric_limits<Scalar>::max()) / 16;
}

/// x in two significant digits, e.g. 6.4e+61 (for the overflow messages).
inline std::string sci(long double x) {
    std::ostringstream os;
    os.precision(2);
    os << x;
    return os.str();
}

/// One column of the input scan: raises best to max |x| and returns false if the column holds
/// NaN or Inf. Two vectorised reductions while the column is in cache: the x * 0 sum of
/// all_finite (NaN for NaN or ±Inf) and the plain max of |x| (a NaN-propagating max does not
/// vectorise and made this scan 2.3x slower).
template <typename Col>
bool scan_column(const Col& col, double& best) {
    using Scalar = typename Col::Scalar;
    if (col.size() == 0) return true;
    best = std::max(best, static_cast<double>(col.cwiseAbs().maxCoeff()));
    return (col.array() * Scalar(0)).sum() == Scalar(0);
}

/// max |m_ij| (0 for an empty m) in long double; false (mx unspecified) if m holds NaN or Inf.
/// Columns in parallel when large.
template <typename Derived>
bool finite_max_abs(const Eigen::MatrixBase<Derived>& m, long double& mx) {
    double best = 0;
    bool ok = true;
ATTNX_OMP(parallel for schedule(static) reduction(&& : ok) reduction(max : best) if (m.size() > min_parallel_scan && !machine_busy()))
    for (Index j = 0; j < m.cols(); ++j) ok = scan_column(m.col(j), best) && ok;
    mx = best;
    return ok;
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // packet_traits<float>::type: the vector type's alignment attribute
#endif
/// True if the `outer` runs of `inner` entries at p, p + stride, ... are all finite: the sum of
/// x * 0 is NaN otherwise. Four packet sums side by side: Eigen's sum() of a block chains one
/// packet sum through every add, bound by its latency (a third of the speed on the 64-row
/// blocks of the feature-map kernels).
template <typename Scalar>
bool runs_finite(const Scalar* p, Index inner, Index outer, Index stride) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<Scalar>::type;
    constexpr Index P = ei::unpacket_traits<Packet>::size;
    const Packet zero = ei::pset1<Packet>(Scalar(0));
    Packet s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    Scalar rest = 0;
    for (Index j = 0; j < outer; ++j) {
        const Scalar* run = p + j * stride;
        Index i = 0;
        for (; i + 4 * P <= inner; i += 4 * P) {
            s0 = ei::padd(s0, ei::pmul(ei::ploadu<Packet>(run + i), zero));
            s1 = ei::padd(s1, ei::pmul(ei::ploadu<Packet>(run + i + P), zero));
            s2 = ei::padd(s2, ei::pmul(ei::ploadu<Packet>(run + i + 2 * P), zero));
            s3 = ei::padd(s3, ei::pmul(ei::ploadu<Packet>(run + i + 3 * P), zero));
        }
        for (; i + P <= inner; i += P) s0 = ei::padd(s0, ei::pmul(ei::ploadu<Packet>(run + i), zero));
        for (; i < inner; ++i) rest += run[i] * Scalar(0);
    }
    return ei::predux(ei::padd(ei::padd(s0, s1), ei::padd(s2, s3))) + rest == Scalar(0);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/// True if every entry of a (small) block is finite: the x * 0 sum is NaN otherwise. The serial,
/// whole-block form of all_finite, for a block inside a kernel's parallel region. A block stored
/// in runs (unit inner stride: columns of a column-major block) is read by runs_finite.
template <typename Block>
bool block_finite(const Block& b) {
    using Scalar = typename Block::Scalar;
    if (b.size() == 0) return true;
    if constexpr ((int(Block::Flags) & Eigen::DirectAccessBit) != 0 && int(Block::InnerStrideAtCompileTime) == 1 &&
                  std::is_floating_point<Scalar>::value)
        return runs_finite(b.data(), b.innerSize(), b.outerSize(), b.outerStride());
    else
        return (b.array() * Scalar(0)).sum() == Scalar(0);
}

/// Raises best to max |x| over a whole block (one vectorised reduction; Eigen accumulates
/// packets across the columns and reduces once).
template <typename Block>
void max_abs_block(const Block& b, double& best) {
    if (b.size() > 0) best = std::max(best, static_cast<double>(b.cwiseAbs().maxCoeff()));
}

/// Folds a block's finiteness into ok, without its magnitude: for a kernel that needs max |x|
/// only to word an error (the feature-map engine), which then finds it with input_magnitudes
/// on the failure path; the reduction max_abs_block adds costs about as much as this one.
template <typename Block>
void scan_finite(const Block& b, bool& ok) {
    ok = ok && block_finite(b);
}

/// Folds a block into (best, ok): max |x| and whether all are finite. Two reductions over the
/// whole block (not per column: the kernels' blocks are 64 to 512 rows, where a reduction per
/// column costs more than its arithmetic).
template <typename Block>
void scan_block(const Block& b, double& best, bool& ok) {
    max_abs_block(b, best);
    scan_finite(b, ok);
}

/// What an input scan fused into a kernel found: max |x| of Q, K and V over the entries it read
/// (0 after scan_finite, which checks finiteness only),
/// and whether they were all finite (a kernel may learn finiteness from its own products instead
/// of the entries: online_softmax.hpp). The kernels scan each block while it is in cache, instead
/// of a pass over all of Q, K and V before the work (report_scan turns the result into the
/// errors of that pass). Threads scan into their own InputScan; merge is order-independent.
struct InputScan {
    double q = 0, k = 0, v = 0;
    bool q_ok = true, k_ok = true, v_ok = true;

    void merge(const InputScan& o) {
        q = std::max(q, o.q);
        k = std::max(k, o.k);
        v = std::max(v, o.v);
        q_ok = q_ok && o.q_ok;
        k_ok = k_ok && o.k_ok;
        v_ok = v_ok && o.v_ok;
    }
};

/// Largest |entry| of Q, K, V as found by the input scan. scanned = false when
/// options.check_finite is off (then nothing was scanned and nothing is checked afterwards).
struct Magnitudes {
    bool scanned = false;
    long double q = 0, k = 0, v = 0;
};

/// The NaN/Inf scan of Q, K and V that every entry point runs unless options.check_finite is
/// off; the same pass finds the magnitudes the overflow checks need.
template <typename Scalar>
Magnitudes check_finite_qkv(const char* fn, const AttentionOptions& o, const Eigen::Ref<const Matrix<Scalar>>& q,
                            const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v) {
    Magnitudes mag;
    if (!o.check_finite) return mag;
    // One parallel loop over the columns of all three (not one per matrix): with a passive
    // OpenMP wait policy every region costs a wake-up of the sleeping threads, ~20 µs.
    const Index cq = q.cols(), ck = k.cols(), total = cq + ck + v.cols();
    double best_q = 0, best_k = 0, best_v = 0;
    bool ok_q = true, ok_k = true, ok_v = true;
ATTNX_OMP(parallel for schedule(static) reduction(&& : ok_q, ok_k, ok_v) reduction(max : best_q, best_k, best_v) if (q.size() + k.size() + v.size() > min_parallel_scan && !machine_busy()))
    for (Index j = 0; j < total; ++j) {
        if (j < cq)
            ok_q = scan_column(q.col(j), best_q) && ok_q;
        else if (j < cq + ck)
            ok_k = scan_column(k.col(j - cq), best_k) && ok_k;
        else
            ok_v = scan_column(v.col(j - cq - ck), best_v) && ok_v;
    }
    if (!ok_q) check_finite(fn, "q", q);
    if (!ok_k) check_finite(fn, "k", k);
    if (!ok_v) check_finite(fn, "v", v);
    mag.q = best_q;
    mag.k = best_k;
    mag.v = best_v;
    mag.scanned = true;
    return mag;
}

/// The one overflow guard of the logits s·q_i·k_j, shared by every mechanism. Every logit, and
/// every partial sum of its dot product, is bounded by s·d·max|q|·max|k|; the kernels also form
/// s·q (streaming) and q·k before scaling (materialised, Nyström's A), bounded by s·max|q| and
/// d·max|q|·max|k|. Throws attnx::invalid_argument if one of these (or s itself) could exceed
/// max(Scalar)/16, naming the bound; the caller runs it before any work. q_name and k_name
/// name the matrices whose entries meet in the logits (Linformer: q and E K).
template <typename Scalar>
void check_logit_range(const char* fn, double scale, Index d, long double max_q, long double max_k,
                       const char* q_name = "q", const char* k_name = "k") {
    const long double limit = overflow_limit<Scalar>();
    const long double s = scale, dd = static_cast<long double>(d);
    const long double logits = s * dd * max_q * max_k;
    const char* advice = "; rescale q or k, lower scale, or use double";
    if (!(logits <= limit))
        throw_invalid(fn, ": logits may overflow ", scalar_name<Scalar>(), ": scale * d * max|", q_name, "| * max|",
                      k_name, "| = ", sci(scale), " * ", d, " * ", sci(max_q), " * ", sci(max_k), " = ", sci(logits),
                      " exceeds ", sci(limit), advice);
    if (!(s <= limit))
        throw_invalid(fn, ": logits may overflow ", scalar_name<Scalar>(), ": scale = ", sci(scale), " exceeds ",
                      sci(limit), advice);
    if (!(s * max_q <= limit))
        throw_invalid(fn, ": logits may overflow ", scalar_name<Scalar>(), ": scale * max|", q_name, "| = ", sci(scale),
                      " * ", sci(max_q), " = ", sci(s * max_q), " exceeds ", sci(limit), advice);
    if (!(dd * max_q * max_k <= limit))
        throw_invalid(fn, ": logits may overflow ", scalar_name<Scalar>(), ": d * max|", q_name, "| * max|", k_name,
                      "| = ", d, " * ", sci(max_q), " * ", sci(max_k), " = ", sci(dd * max_q * max_k), " exceeds ",
                      sci(limit), advice);
}

/// True if every bound of check_logit_range holds.
template <typename Scalar>
bool logits_fit(double scale, Index d, long double max_q, long double max_k) {
    const long double limit = overflow_limit<Scalar>(), s = scale, dd = static_cast<long double>(d);
    return s * dd * max_q * max_k <= limit && s <= limit && s * max_q <= limit && dd * max_q * max_k <= limit;
}

/// max |x_ij| over the rows of x that are not padding (0 if every row is, or x has no columns).
template <typename Scalar>
long double max_abs_unpadded(const Eigen::Ref<const Matrix<Scalar>>& x, const std::vector<bool>& padding) {
    long double mx = 0;
    if (x.cols() == 0) return mx;  // maxCoeff of an empty row asserts
    for (Index i = 0; i < x.rows(); ++i)
        if (!padding[static_cast<std::size_t>(i)])
            mx = std::max(mx, static_cast<long double>(x.row(i).cwiseAbs().maxCoeff()));
    return mx;
}

/// check_logit_range on max|q| and max|k| of scanned inputs (mag.scanned), for a mechanism whose
/// logits are s·q·k. Padded keys and values must be finite (0·NaN would still be NaN) but never
/// enter a logit or a weighted sum (every mechanism masks them, or zeroes them before a
/// projection), so when the bound fails and there is a key padding mask, max|k| and max|v| are
/// taken again over the unpadded rows only (a second O(n·d) pass, on that rare path alone).
template <typename Scalar>
void check_input_logits(const char* fn, const AttentionOptions& o, const Eigen::Ref<const Matrix<Scalar>>& q,
                        const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                        Magnitudes& mag) {
    const double s = resolve_scale_double(o, q.cols());
    if (!o.key_padding_mask.empty() && !logits_fit<Scalar>(s, q.cols(), mag.q, mag.k)) {
        mag.k = max_abs_unpadded<Scalar>(k, o.key_padding_mask);
        mag.v = max_abs_unpadded<Scalar>(v, o.key_padding_mask);
    }
    check_logit_range<Scalar>(fn, s, q.cols(), mag.q, mag.k);
}

/// check_finite_qkv, then check_input_logits: the input checks of a mechanism whose logits are
/// s·q·k, as a pass of their own before the work. Returns the magnitudes for check_result.
template <typename Scalar>
Magnitudes check_inputs(const char* fn, const AttentionOptions& o, const Eigen::Ref<const Matrix<Scalar>>& q,
                        const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v) {
    Magnitudes mag = check_finite_qkv<Scalar>(fn, o, q, k, v);
    if (mag.scanned) check_input_logits<Scalar>(fn, o, q, k, v, mag);
    return mag;
}

/// After a kernel whose input scan was fused (InputScan, with check_finite on): the errors
/// check_inputs would have thrown before the work, in its order (q, k, v, then the logit bound
/// when `logits`), with the same messages (check_finite rescans an input the scan flagged, to
/// name the entry; a flag raised by an overflowed product finds the input finite and falls
/// through to the bound). Returns the magnitudes for check_result.
template <typename Scalar>
Magnitudes report_scan(const char* fn, const AttentionOptions& o, const InputScan& in,
                       const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                       const Eigen::Ref<const Matrix<Scalar>>& v, bool logits = true) {
    if (!in.q_ok) check_finite(fn, "q", q);
    if (!in.k_ok) check_finite(fn, "k", k);
    if (!in.v_ok) check_finite(fn, "v", v);
    Magnitudes mag;
    mag.scanned = true;
    mag.q = in.q;
    mag.k = in.k;
    mag.v = in.v;
    if (logits) check_input_logits<Scalar>(fn, o, q, k, v, mag);
    return mag;
}

/// max |x| of Q, K and V, finite as checked before, by a pass over each: the magnitudes of an
/// error message, for a kernel whose fused scan checked finiteness only (scan_finite), found
/// only on the failure path.
template <typename Scalar>
Magnitudes input_magnitudes(const Eigen::Ref<const Matrix<Scalar>>& q, const Eigen::Ref<const Matrix<Scalar>>& k,
                            const Eigen::Ref<const Matrix<Scalar>>& v) {
    Magnitudes mag;
    mag.scanned = true;
    finite_max_abs(q, mag.q);
    finite_max_abs(k, mag.k);
    finite_max_abs(v, mag.v);
    return mag;
}

/// The one check that runs after the work: if the inputs were scanned (check_finite on) and the
/// output nonetheless holds NaN or Inf, some intermediate overflowed the Scalar type; throws
/// attnx::invalid_argument naming the input magnitudes (plus `extra`, e.g. Linformer's max|E|).
template <typename Scalar, typename Out>
void check_result(const char* fn, const Magnitudes& mag, const Out& out, const std::string& extra = "") {
    if (!mag.scanned || all_finite(out)) return;
    throw_invalid(fn, ": the result overflowed ", scalar_name<Scalar>(),
                  " (it holds non-finite values although every input is finite; max|q| = ", sci(mag.q),
                  ", max|k| = ", sci(mag.k), ", max|v| = ", sci(mag.v), extra,
                  "); rescale the inputs or use double");
}

/// check_result's error for a kernel that found the overflow itself, in a sum the output is
/// formed from (the feature-map engine: a denominator that overflowed gives a finite, wrong
/// zero row; a decode state's sums), whatever the output holds. `what` names the sum.
/// `sides` says which magnitudes the call saw: "qkv", "q" (a decode state's query: its keys and
/// values were absorbed by earlier calls) or "kv" (a prefill without queries).
template <typename Scalar>
[[noreturn]] void throw_overflow(const char* fn, const Magnitudes& mag, const char* what,
                                 const std::string& sides = "qkv") {
    std::string m;
    const auto add = [&](char side, long double value) {
        if (sides.find(side) == std::string::npos) return;
        m += (m.empty() ? "max|" : ", max|") + std::string(1, side) + "| = " + sci(value);
    };
    add('q', mag.q);
    add('k', mag.k);
    add('v', mag.v);
    if (sides == "q") m += "; the keys and values were absorbed before";
    throw_invalid(fn, ": the result overflowed ", scalar_name<Scalar>(), " (", what,
                  " is not finite although every input is finite; ", m, "); rescale the inputs or use double");
}

template <typename DA, typename DB>
void check_same_scalar() {
    static_assert(std::is_same<typename DA::Scalar, typename DB::Scalar>::value,
                  "attnx: all matrix arguments must have the same Scalar type");
    static_assert(std::is_floating_point<typename DA::Scalar>::value,
                  "attnx: the Scalar type must be float or double");
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_CHECKS_HPP
