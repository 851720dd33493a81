// SPDX-License-Identifier: MIT
/// \file core.hpp
/// The types every attnx mechanism shares: the matrix and index types, the error type and the
/// common options. Argument and overflow checks are in detail/checks.hpp, masks in
/// detail/mask.hpp, the threading policy in detail/parallel.hpp, the error metrics of `compare`
/// in metrics.hpp.
///
/// Conventions used throughout attnx:
///  - rows are tokens: Q is n_q x d, K is n_k x d, V is n_k x d_v, every output n_q x d_v;
///  - the API is column-major (`attnx::Matrix<Scalar>`); a row-major or expression
///    argument is evaluated into a column-major temporary once, O(n*d), on entry;
///  - misuse throws `attnx::invalid_argument` before any work is done; numerical quality
///    that is not an error (e.g. a pseudoinverse residual) goes into an optional report;
///  - every public entry point runs the same steps (detail::<mechanism>_checked): shape and
///    option checks, bind to Eigen::Ref, the kernel with the input scan fused into its reads
///    (detail::InputScan: max |x| and NaN/Inf of each tile of Q, K and V while it is in cache,
///    not a pass of its own; the feature-map kernels, which have no logit to bound, NaN/Inf
///    only), the errors of that scan (detail::report_scan), one scan of the result
///    (detail::check_result; the feature-map kernels check each output block and its
///    denominators as they write them, and a decode state's prefill its sums, and throw
///    detail::throw_overflow). Shape and option errors are thrown before any work; a
///    non-finite input and the logit bound below after it, and an out buffer passed in may have
///    been written by then (no value computed from bad inputs is returned). Where no kernel
///    reads every input (the materialized exact kernel, a block layout that leaves keys
///    unread, Nyström with every key padded), the scan runs before the work
///    (detail::check_inputs), as do the checks of a mechanism's own data (Linformer's raw E and
///    F, Nyström's conv_kernel);
///  - overflow: finite inputs so large that the logits s·q·k could overflow the Scalar type
///    (bound s·d·max|q|·max|k| > max/16) are rejected (detail::check_logit_range), from the
///    magnitudes the input scan found. Exact attention's streaming kernel sees its own scores
///    instead: it scans only for NaN/Inf in the scores and sums it computes, and applies the
///    bound only to name the cause when a score was not finite. The rest of the amplification
///    (Nyström's Z, Linformer's F V, the conv skip, sums of huge V rows) is caught by one scan
///    of the output after the work (detail::check_result). Either way: attnx::invalid_argument,
///    never a silent NaN;
///  - options: a mechanism's knobs live in `XOptions : AttentionOptions`, and every such type
///    converts implicitly from AttentionOptions (so a call can pass the common options alone);
///    a mechanism's data (a projection, a block layout) is a positional argument.
#ifndef ATTNX_CORE_HPP
#define ATTNX_CORE_HPP

#include <Eigen/Core>

#include <optional>
#include <stdexcept>
#include <vector>

#include "attnx/version.hpp"

namespace attnx {

using Index = Eigen::Index;

/// The dense, column-major matrix every attnx function returns.
template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

/// A column vector.
template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// Thrown for misuse: wrong shapes, empty inputs, bad options, non-finite inputs.
/// The message names the function, the argument, the rule and the values.
class invalid_argument : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

/// Options every mechanism understands (each mechanism's own options type derives from it).
struct AttentionOptions {
    /// s in softmax(s * Q K^T); default 1/sqrt(d). Must be finite and > 0.
    std::optional<double> scale;
    /// Causal masking: query i sees key j iff j <= i + (n_k - n_q) (aligned bottom-right,
    /// as in incremental decoding; with n_q == n_k this is the usual j <= i). Query rows
    /// that see no key at all (possible when n_q > n_k) get zero output rows.
    bool causal = false;
    /// Empty, or one flag per key (length n_k): true = the key is padding and is ignored.
    /// A query row whose keys are all masked gets a zero output row, never NaN.
    std::vector<bool> key_padding_mask;
    /// Reject Q, K, V holding NaN or Inf, inputs whose logits could overflow the Scalar type
    /// (both found by a scan fused into the kernel's reads of the inputs and reported after the
    /// work; exact attention's streaming kernel checks its own scores instead: see the
    /// conventions above), and results that overflowed (an O(n_q*d_v) scan of the output after
    /// the work). Set false only if the caller has validated its inputs already
    /// (finite, moderate magnitudes): all these scans are then skipped, and non-finite or
    /// huge inputs give unspecified output. It is not a plausible one: a NaN that reaches a
    /// softmax score makes that row NaN (it is not mistaken for a fully masked, zero row).
    bool check_finite = true;
};

}  // namespace attnx

#endif  // ATTNX_CORE_HPP
