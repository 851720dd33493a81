// SPDX-License-Identifier: MIT
/// \file linear_attention.hpp
/// Feature-map attention: linear attention (Katharopoulos, Vyas, Pappas & Fleuret, "Transformers
/// are RNNs: Fast Autoregressive Transformers with Linear Attention", ICML 2020, arXiv:2006.16236)
/// and Performer's FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", ICLR 2021,
/// arXiv:2009.14794), one engine for any feature map φ (feature_maps.hpp).
///
/// exp(s·qᵀk) is replaced by φ(q)ᵀφ(k) (paper 1, eq. 4) and the product is reordered (eqs. 5–6):
///     out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps),   S = Σ_j φ(k_j) v_jᵀ  (C × d_v),  z = Σ_j φ(k_j)  (C),
/// over the visible keys j: all unpadded keys, or with `causal` those with j <= i (eqs. 9–12);
/// decoding token by token is the RNN of eqs. 16–20: S_i = S_{i−1} + φ(k_i) v_iᵀ, z_i = z_{i−1} + φ(k_i).
/// φ = EluPlusOne (paper 1, eq. 7) gives linear attention; φ = PositiveRandomFeatures (paper 2,
/// eq. 7, Lemma 1) gives FAVOR+, an unbiased estimate of softmax attention whose error is
/// governed by Lemma 2 (eq. 8) and Theorem 2 (eq. 10), see the README.
///
/// Stabilisation (what the numbers are exactly). A map returns query rows up to a positive factor
/// and key rows as phi_j·exp(c_j) (feature_maps.hpp). Query i's keys are weighted relative to
/// R_i = max of c_j over the keys it sees (for causal attention a running maximum, the online-
/// softmax trick: S and z are rescaled when it grows), so
///     num_i = Σ_j (φ̂_iᵀ phi_j) · exp(c_j − R_i) · v_j,   den_i = Σ_j (φ̂_iᵀ phi_j) · exp(c_j − R_i),
///     out_i = num_i / (den_i + eps),
/// with φ̂_i the query row as the map returns it. Nothing overflows, and a causal output depends
/// on no future key, not even through the stabilisation. For elu + 1, c_j = 0 and this is the
/// plain formula. A query row that sees no key gets a zero row.
///
/// Non-causal: keys in blocks of 256; the blocks are grouped into at most 16 parts (bounds
/// depend on n_k only) that run in parallel, each accumulating [S | z] with one GEMM per block
/// (φ(K_b)ᵀ [V_b | 1]); the parts are merged in a fixed order; then the query tiles run in
/// parallel (one GEMM φ(Q_t) [S | z] each).
/// Causal, chunked (`chunk` = T tokens, default 64): for chunk c,
///     out_c = φ(Q_c) S_{<c} + tril(φ(Q_c) φ(K_c)ᵀ) V_c  (and the same for the denominator),
///     S_{≤c} = S_{<c} + φ(K_c)ᵀ V_c,
/// all matrix products (the tril product in blocks of one register tile of query rows, 2
/// packets: 16 floats with AVX2, 32 with AVX-512, 8 with SSE2; each block against the keys its
/// last row sees, so the upper triangle is mostly skipped). The engine's products (states,
/// outputs, chunks, the decode step; FAVOR+'s map uses it for its feature product too) are
/// detail::small_gemm, a register tile that reads its operands in place: on these 64 x 64 by
/// 64 x 65 shapes Eigen's GEMM, which packs both operands on every call, ran at 60% of the FMA
/// peak and the tile at 97–99% (detail/small_gemm.hpp). The chunks run in windows of 8 per thread:
/// pass 1 forms each chunk's features and own state φ(K_c)ᵀ[V_c | 1] in parallel and keeps them;
/// a prefix over the window's chunk states, in chunk order and in place (each chunk's state
/// becomes S_{≤c}; its columns split between the threads), gives each chunk S_{<c}; pass 2
/// forms the chunks' outputs in parallel from the kept features. Each thread takes one run of
/// consecutive chunks of a window, the same in both passes (so it reads the features it kept
/// itself: in its own cache for small C, else in the last-level cache), and asks for the rows it
/// reads two chunks later before their use. Chunk bounds
/// depend on n_k (and `chunk`) only and the prefix runs over the chunks in order whatever the
/// window or the runs: results are bit-identical for any thread count. Each key's features and
/// state product are formed once.
///
/// Cost: O((n_q + n_k)·C·(d + d_v)) time — C·d per token for the features (FAVOR+: m·d; elu + 1:
/// d) and C·d_v for the states — plus O(n·T·(C + d_v)) for the causal chunks; extra memory
/// O(parts·C·d_v + threads·T·(C + d_v)) non-causal (parts <= 16), O(threads·(C·d_v + T·(C + d_v
/// + B))) causal (8 chunks per thread kept, in one block that the calling thread keeps for its
/// next call up to 16 MiB — 2.3 MiB in float for FAVOR+ m = 256, d_v = 64 on two threads; per thread and Scalar type — and a B x T
/// row block of the tril product, B = causal_row_block: 2 packets); no n × n or n × C matrix.
///
/// Causal with n_q != n_k is aligned bottom-right like every attnx mechanism: query i sees keys
/// j <= i + n_k − n_q (the queries are the last n_q positions; with n_q > n_k the first
/// n_q − n_k query rows see no key and are zero). Cross-attention (n_q != n_k) is otherwise
/// ordinary non-causal attention.
///
/// Key padding mask: padded keys are removed before the sums (their rows of φ(K) and [V | 1] are
/// set to zero, and they take no part in the running maximum), so any finite value they hold
/// changes nothing (tested with 1e6).
///
/// Checks (with check_finite on): Q, K, V are scanned for NaN/Inf, each block as the kernel reads
/// it, not in a pass of its own (over 48 MiB at n = 65536, where check_finite on cost 10% of a
/// causal elu + 1 call with that pass). A non-finite input is reported after the work, with the
/// same message (an out buffer passed in may have been written by then; its contents are
/// unspecified). There is no logit to bound, so the scan checks finiteness only; the magnitudes
/// an error message names (max|q|, max|k|, max|v|) are found by a pass over the inputs on the
/// failure path. A feature map whose output is not finite for some row (e.g. FAVOR+ in float on
/// a key of norm near 1e19, whose ‖x‖² overflows) throws attnx::invalid_argument naming the row;
/// the features are scanned for this unless the map declares finite_features (elu + 1: finite
/// on the finite inputs the scan has let through). An output that overflowed (sums of huge V
/// rows) throws after the work: each output block is checked as it is written. Without the
/// max |x| reduction and elu + 1's feature scan, a causal or non-causal elu + 1 call at n = 4096
/// takes about 8% less time (min of 300 calls, binaries alternated, 2-core AVX-512 VM).
///
/// Decode: LinearAttentionState (per sequence and head) holds [S | z], the running maximum R and
/// the feature map: prefill(K, V), step(q, k, v) -> one output row in O(C·(d + d_v)) whatever the
/// number of tokens already seen, and query(q) for cross-attention against a frozen memory.
#ifndef ATTNX_LINEAR_ATTENTION_HPP
#define ATTNX_LINEAR_ATTENTION_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/detail/fast_exp.hpp"
#include "attnx/detail/parallel.hpp"
#include "attnx/detail/small_gemm.hpp"
#include "attnx/detail/transpose.hpp"
#include "attnx/feature_maps.hpp"

namespace attnx {

/// Options of linear_attention / performer_attention and LinearAttentionState: the common
/// options (scale: FAVOR+'s s, x = √s·q, default 1/√d; must stay unset for EluPlusOne) plus
/// the denominator's eps and the causal chunk size.
struct LinearAttentionOptions : AttentionOptions {
    /// Added to the denominator: out_i = num_i / (den_i + eps) (finite and > 0; in float, values
    /// below 1.2e-38 act as 1.2e-38). It keeps rows with no visible key at zero. It is added in
    /// the stabilised units of the file comment (num_i, den_i scaled by exp(−R_i) and by the
    /// map's per-row query factor), so for FAVOR+ its relative weight against den_i is not
    /// eps / (φ(q_i)ᵀ z) of the unstabilised formula: it grows with m and with the spread of the
    /// logits (measured: 1e-10 relative at m = 32, 1.4e-3 at m = 16384, d = 8, inputs of small
    /// norm; 7.6e-4 at m = 128, d = 32 on N(0, 1) inputs: the spread of the logits dominates).
    /// Where the dense formula must be matched to rounding, pass a tiny eps (e.g. 1e-30).
    double eps = 1e-6;
    /// T, tokens per chunk of the causal algorithm (>= 1): used by causal calls and by
    /// LinearAttentionState::prefill; non-causal calls and step() ignore it; T >= n_k gives one
    /// chunk. Changes results only by rounding.
    Index chunk = 64;

    LinearAttentionOptions() = default;
    /// Implicit from the common options (attnx's options rule, core.hpp).
    LinearAttentionOptions(const AttentionOptions& common) : AttentionOptions(common) {}  // NOLINT(google-explicit-constructor)
};

namespace detail {

template <typename Scalar>
constexpr Scalar minus_infinity() {
    return -std::numeric_limits<Scalar>::infinity();
}

/// exp(from − to) for from <= to; 0 for from = −inf (then there is nothing to rescale).
template <typename Scalar>
Scalar rescale_factor(Scalar from, Scalar to) {
    if (from == minus_infinity<Scalar>()) return Scalar(0);
    return std::exp(from - to);
}

/// Running sums of feature-map attention, relative to a log offset r:
/// s = [Σ_j φ(k_j) v_jᵀ | Σ_j φ(k_j)] · exp(−r)  (C × (d_v + 1)). r = −inf: nothing absorbed.
template <typename Scalar>
struct FeatureState {
    Matrix<Scalar> s;
    Scalar r = minus_infinity<Scalar>();

    void reset(Index c, Index dv) {
        s.setZero(c, dv + 1);
        r = minus_infinity<Scalar>();
    }
};

/// acc += part, with their offsets reconciled (the larger one wins).
template <typename Scalar>
void merge_state(FeatureState<Scalar>& acc, const FeatureState<Scalar>& part) {
    if (part.r == minus_infinity<Scalar>()) return;
    if (acc.r == minus_infinity<Scalar>()) {
        acc.s = part.s;
        acc.r = part.r;
        return;
    }
    if (part.r > acc.r) {
        acc.s *= std::exp(acc.r - part.r);
        acc.r = part.r;
        acc.s += part.s;
    } else {
        acc.s += std::exp(part.r - acc.r) * part.s;
    }
}

/// Query rows per block of a causal chunk's tril(φ(Q_c) φ(K_c)ᵀ) [V_c | 1]: a block forms the
/// products with the keys its last row sees only, so the blocks skip 3/8 of a chunk's T x T
/// square at T = 64 with 16-row blocks (1/4 with 32-row blocks). One register tile of rows,
/// 2 packets (floats: 8 with SSE2, 16 with AVX2, 32 with AVX-512; doubles half as many), the
/// fewest rows the tile computes at full width. For finite inputs the block size changes no
/// bit of a result: a row's hidden keys (zeroed) come after its visible ones, adding their zero
/// products leaves the sum as it is, and the row block buffer's height is a whole number of
/// packets, so that which entries of a column Eigen's vectorised loops reach with scalar code
/// depends on the row alone. (With check_finite off, a hidden key's Inf or NaN in V turns its
/// zero into NaN: up to B − 1 earlier rows of its block get NaN.)
template <typename Scalar>
constexpr Index causal_row_block() {
    return small_gemm_packets * static_cast<Index>(Eigen::internal::packet_traits<Scalar>::size);
}

/// A block of prepared keys: features, log scales and [V | 1], padded rows zero (c = −inf).
template <typename Scalar>
struct KeyBlock {
    Matrix<Scalar> psi;   ///< rows x C: key features
    Matrix<Scalar> vaug;  ///< rows x (d_v + 1): [V | 1], unweighted
    Vector<Scalar> c;     ///< rows: key log scales (−inf for padded keys)

    void resize(Index rows, Index c_dim, Index dv) {
        psi.resize(rows, c_dim);
        vaug.resize(rows, dv + 1);
        c.resize(rows);
    }
};

/// A KeyBlock's three parts as views into memory owned elsewhere (the causal path places a
/// window's blocks and states in one allocation: see CausalArena).
template <typename Scalar>
struct KeyBlockView {
    Eigen::Map<Matrix<Scalar>> psi;
    Eigen::Map<Matrix<Scalar>> vaug;
    Eigen::Map<Vector<Scalar>> c;
};

/// A FeatureState whose sums live in memory owned elsewhere.
template <typename Scalar>
struct StateView {
    Eigen::Map<Matrix<Scalar>> s;
    Scalar r = minus_infinity<Scalar>();

    void reset() {
        s.setZero();
        r = minus_infinity<Scalar>();
    }
};

/// Per-thread buffers for a block of `rows` keys and `rows` queries.
template <typename Scalar>
struct LinearWorkspace {
    Matrix<Scalar> kbuf;   ///< rows x d: a key block with its padded rows zeroed (only with a mask)
    KeyBlock<Scalar> keys; ///< the block's prepared keys (non-causal; the causal path keeps its own per chunk)
    Vector<Scalar> w;      ///< rows: weights exp(c_j − r)
    Matrix<Scalar> vw;     ///< rows x (d_v + 1): diag(w) [V | 1] when the weights are not all 1
    Matrix<Scalar> phiq;   ///< rows x C: query features
    Matrix<Scalar> psit;   ///< C x rows: a key block's features transposed (the left factor of its state product)
    Matrix<Scalar> y;      ///< rows x (d_v + 1): [num | den]
    Matrix<Scalar> a;      ///< min(rows, causal_row_block) rounded up to whole packets x rows: a row block of φ(Q_c) φ(K_c)ᵀ (causal only)
    Vector<Scalar> rq;     ///< rows: R_i of the chunk's query rows (causal only)
    Vector<Scalar> f;      ///< rows: exp(r − R_i) (causal only)
    /// False once an output row this thread wrote, or its denominator, held NaN or Inf (checked
    /// while the rows are in cache, instead of a pass over the whole output after the work; only
    /// with pb.check). The denominator too: one that overflowed while the numerator did not
    /// gives a finite zero row.
    bool out_finite = true;

    LinearWorkspace() = default;
    LinearWorkspace(Index rows, Index d, Index c_dim, Index dv, bool masked, bool causal) {
        resize(rows, d, c_dim, dv, masked, causal);
    }
    void resize(Index rows, Index d, Index c_dim, Index dv, bool masked, bool causal) {
        if (masked) kbuf.resize(rows, d);
        if (!causal) keys.resize(rows, c_dim, dv);  // the causal path keeps its own per chunk
        w.resize(rows);
        vw.resize(rows, dv + 1);
        phiq.resize(rows, c_dim);
        psit.resize(c_dim, rows);
        y.resize(rows, dv + 1);
        if (causal) {
            constexpr Index packet = static_cast<Index>(Eigen::internal::packet_traits<Scalar>::size);
            a.resize(ceil_div(std::min(rows, causal_row_block<Scalar>()), packet) * packet, rows);
            rq.resize(rows);
            f.resize(rows);
        }
    }
};

/// Everything a kernel call reads: the map, the inputs and the resolved options.
template <typename Scalar, typename Map>
struct LinearProblem {
    const Map& map;
    const Eigen::Ref<const Matrix<Scalar>>* q;  ///< nullptr: keys only (LinearAttentionState::prefill(K, V))
    const Eigen::Ref<const Matrix<Scalar>>& k;
    const Eigen::Ref<const Matrix<Scalar>>& v;
    const std::vector<bool>& padding;  ///< empty or n_k flags
    double scale;
    Scalar eps;
    Index c_dim;
    bool check;                ///< scan the features and the output for NaN/Inf
    bool scan_inputs = false;  ///< scan Q, K, V as the kernel reads them (FeatureFailure::inputs)

    /// Whether the features need their own NaN/Inf scan: not for a map that is finite on finite
    /// inputs (map_finite_features) when the inputs are scanned.
    bool check_features() const { return check && !(map_finite_features<Map>::value && scan_inputs); }
};

/// What a kernel call found: the first rows whose features were not finite (−1: none), the
/// input scan (with LinearProblem::scan_inputs), and whether every output row it wrote was
/// finite (with LinearProblem::check).
struct FeatureFailure {
    Index key_row = -1;
    Index query_row = -1;
    InputScan inputs;
    bool out_finite = true;

    void merge(const FeatureFailure& o);
};

inline void note_failure(Index& slot, Index row) {
    if (row >= 0 && (slot < 0 || row < slot)) slot = row;
}

inline void FeatureFailure::merge(const FeatureFailure& o) {
    note_failure(key_row, o.key_row);
    note_failure(query_row, o.query_row);
    inputs.merge(o.inputs);
    out_finite = out_finite && o.out_finite;
}

/// Key rows [j0, j0 + len): features, log scales and [V | 1] into the top rows of kb (kbuf: a
/// rows x d buffer, used only with a padding mask);
/// padded keys get zero rows and c = −inf. Returns the first key row with non-finite features
/// (with pb.check_features()), else −1. With pb.scan_inputs, the block's rows of K and V (padded ones too)
/// are scanned into `scan`.
template <typename Scalar, typename Map, typename KB>
Index prepare_keys(const LinearProblem<Scalar, Map>& pb, Index j0, Index len, Matrix<Scalar>& kbuf, KB& kb,
                   InputScan& scan) {
    const Index dv = pb.v.cols();
    if (pb.scan_inputs) {
        scan_finite(pb.k.middleRows(j0, len), scan.k_ok);
        scan_finite(pb.v.middleRows(j0, len), scan.v_ok);
    }
    Index n_pad = 0;
    if (!pb.padding.empty())
        for (Index j = j0; j < j0 + len; ++j) n_pad += pb.padding[static_cast<std::size_t>(j)] ? 1 : 0;
    Eigen::Ref<Matrix<Scalar>> psi(kb.psi.topRows(len));
    Eigen::Ref<Vector<Scalar>> c(kb.c.head(len));
    auto vaug = kb.vaug.topRows(len);
    if (n_pad == len) {
        psi.setZero();
        c.setConstant(minus_infinity<Scalar>());
        vaug.setZero();
        return -1;
    }
    if (n_pad == 0) {
        const Eigen::Ref<const Matrix<Scalar>> kb(pb.k.middleRows(j0, len));
        pb.map.keys(kb, pb.scale, psi, c);
    } else {
        // Padded rows are set to zero before the map, so no value they hold reaches it.
        auto kb = kbuf.topRows(len);
        kb = pb.k.middleRows(j0, len);
        for (Index t = 0; t < len; ++t)
            if (pb.padding[static_cast<std::size_t>(j0 + t)]) kb.row(t).setZero();
        const Eigen::Ref<const Matrix<Scalar>> kr(kb);
        pb.map.keys(kr, pb.scale, psi, c);
    }
    Index bad = -1;
    if (pb.check_features() && !(block_finite(psi) && block_finite(c))) {
        for (Index t = 0; t < len && bad < 0; ++t)
            if (!(block_finite(psi.row(t)) && std::isfinite(static_cast<double>(c(t))))) bad = j0 + t;
    }
    vaug.leftCols(dv) = pb.v.middleRows(j0, len);
    vaug.col(dv).setOnes();
    if (n_pad > 0)
        for (Index t = 0; t < len; ++t)
            if (pb.padding[static_cast<std::size_t>(j0 + t)]) {
                psi.row(t).setZero();
                vaug.row(t).setZero();
                c(t) = minus_infinity<Scalar>();
            }
    return bad;
}

/// True if every key of the block with c_j > −inf has c_j == value.
template <typename C, typename Scalar>
bool uniform_log_scale(const C& c, Index len, Scalar value) {
    for (Index t = 0; t < len; ++t)
        if (c(t) != minus_infinity<Scalar>() && c(t) != value) return false;
    return true;
}

/// st += the prepared block (kb, len rows): raises st.r to the block's largest log scale if
/// needed (rescaling st.s), then st.s += psiᵀ · diag(exp(c − r)) · [V | 1] (the weighted rows in
/// ws.vw when they are not all 1; kb is not changed).
template <typename Scalar, typename St, typename KB>
void absorb_block(St& st, const KB& kb, Index len, LinearWorkspace<Scalar>& ws) {
    const Scalar top = kb.c.head(len).maxCoeff();
    if (top == minus_infinity<Scalar>()) return;  // every key of the block is padding
    if (top > st.r) {
        if (st.r != minus_infinity<Scalar>()) st.s *= std::exp(st.r - top);
        st.r = top;
    }
    auto psit = ws.psit.leftCols(len);
    transpose_rows(kb.psi.data(), kb.psi.outerStride(), kb.psi.cols(), len, psit.data(), psit.outerStride());
    if (uniform_log_scale(kb.c, len, st.r)) {
        small_gemm<true>(st.s, psit, kb.vaug.topRows(len));
        return;
    }
    for (Index t = 0; t < len; ++t) ws.w(t) = rescale_factor(kb.c(t), st.r);
    auto vw = ws.vw.topRows(len);
    vw = kb.vaug.topRows(len).array().colwise() * ws.w.head(len).array();
    small_gemm<true>(st.s, psit, vw);
}

/// out rows = num / (den + eps) from y = [num | den].
template <typename Scalar, typename Y, typename Out>
void normalise_rows(const Y& y, Scalar eps, Out&& out) {
    const Index dv = y.cols() - 1;
    out.array() = y.leftCols(dv).array().colwise() / (y.col(dv).array() + eps);
}

/// True if the rows formed from y = [num | den] are sound: the output rows finite and the
/// denominators too (a numerator that overflowed shows in the output; a denominator alone that
/// did gives a finite zero row, so it is looked at itself). Any NaN or Inf in the sums they
/// came from shows here: the query features are finite and positive maps' are never 0, and a
/// 0 feature times Inf is NaN.
template <typename Y, typename Out>
bool rows_sound(const Y& y, const Out& out) {
    return block_finite(y.col(y.cols() - 1)) && block_finite(out);
}

/// Non-causal outputs of query rows [i0, i0 + nq) against the state st.
template <typename Scalar, typename Map>
Index attend_rows(const LinearProblem<Scalar, Map>& pb, const FeatureState<Scalar>& st, Index i0, Index nq,
                  LinearWorkspace<Scalar>& ws, Eigen::Ref<Matrix<Scalar>>& out, InputScan& scan) {
    Eigen::Ref<Matrix<Scalar>> phiq(ws.phiq.topRows(nq));
    const Eigen::Ref<const Matrix<Scalar>> qb(pb.q->middleRows(i0, nq));
    if (pb.scan_inputs) scan_finite(qb, scan.q_ok);
    pb.map.queries(qb, pb.scale, phiq);
    Index bad = -1;
    if (pb.check_features() && !block_finite(phiq))
        for (Index t = 0; t < nq && bad < 0; ++t)
            if (!block_finite(phiq.row(t))) bad = i0 + t;
    auto y = ws.y.topRows(nq);
    small_gemm<false>(y, phiq, st.s);
    normalise_rows(y, pb.eps, out.middleRows(i0, nq));
    if (pb.check && !rows_sound(y, out.middleRows(i0, nq))) ws.out_finite = false;
    return bad;
}

/// Causal outputs of the query rows [i0, i0 + nq) whose positions i + off fall into the prepared
/// key chunk kb (its first len rows, key rows [j0, j0 + len)), given the state (st_s, st_r) of
/// every key before j0 (see the file comment). Query row i0 + t sees the chunk's keys 0 .. first + t.
template <typename Scalar, typename Map, typename KB>
Index attend_chunk(const LinearProblem<Scalar, Map>& pb, const Eigen::Ref<const Matrix<Scalar>>& st_s, Scalar st_r, const KB& kb,
                   Index j0, Index len, Index i0, Index nq, Index off, LinearWorkspace<Scalar>& ws,
                   Eigen::Ref<Matrix<Scalar>>& out, InputScan& scan) {
    Eigen::Ref<Matrix<Scalar>> phiq(ws.phiq.topRows(nq));
    const Eigen::Ref<const Matrix<Scalar>> qb(pb.q->middleRows(i0, nq));
    if (pb.scan_inputs) scan_finite(qb, scan.q_ok);
    pb.map.queries(qb, pb.scale, phiq);
    Index bad = -1;
    if (pb.check_features() && !block_finite(phiq))
        for (Index t = 0; t < nq && bad < 0; ++t)
            if (!block_finite(phiq.row(t))) bad = i0 + t;

    const Index first = i0 + off - j0;  // >= 0: row 0's position within the chunk
    const Scalar c0 = kb.c.head(len).maxCoeff();
    const bool uniform = uniform_log_scale(kb.c, len, c0) &&
                         (st_r == minus_infinity<Scalar>() || st_r == c0 || c0 == minus_infinity<Scalar>());
    auto y = ws.y.topRows(nq);
    if (st_r == minus_infinity<Scalar>())
        y.setZero();
    else
        small_gemm<false>(y, phiq, st_s);
    if (!uniform) {
        // R_i = max(st_r, c_0 .. c_{position of i}); y rows rescaled by exp(st_r − R_i).
        Scalar run = st_r;
        Index t = 0;
        for (Index i = 0; i < nq; ++i) {
            for (; t <= first + i; ++t) run = std::max(run, kb.c(t));
            ws.rq(i) = run;
            ws.f(i) = rescale_factor(st_r, run);
        }
        y.array().colwise() *= ws.f.head(nq).array();
    }
    constexpr Index row_block = causal_row_block<Scalar>();
    for (Index r0 = 0; r0 < nq; r0 += row_block) {
        const Index rows = std::min(row_block, nq - r0);
        const Index seen = std::min(len, first + r0 + rows);  // keys the block's last row sees
        auto a = ws.a.topLeftCorner(rows, seen);
        small_gemm<false>(a, phiq.middleRows(r0, rows), kb.psi.topRows(seen).transpose());
        for (Index t = 0; t < seen; ++t) {
            // Rows r0 + i with first + r0 + i < t cannot see key t (it is in their future).
            const Index hidden = std::clamp<Index>(t - first - r0, 0, rows);
            a.col(t).head(hidden).setZero();
            if (!uniform && hidden < rows) {
                if (kb.c(t) == minus_infinity<Scalar>())
                    a.col(t).tail(rows - hidden).setZero();
                else
                    a.col(t).tail(rows - hidden).array() *=
                        (kb.c(t) - ws.rq.segment(r0 + hidden, rows - hidden).array()).unaryExpr(exp_op<Scalar>());
            }
        }
        small_gemm<true>(y.middleRows(r0, rows), a, kb.vaug.topRows(seen));
    }
    normalise_rows(y, pb.eps, out.middleRows(i0, nq));
    if (pb.check && !rows_sound(y, out.middleRows(i0, nq))) ws.out_finite = false;
    return bad;
}

/// True if no thread saw a non-finite output row (LinearWorkspace::out_finite).
template <typename Scalar>
bool outputs_finite(const std::vector<LinearWorkspace<Scalar>>& workspaces) {
    for (const LinearWorkspace<Scalar>& w : workspaces)
        if (!w.out_finite) return false;
    return true;
}

/// One workspace per thread of a team_size() team, allocated before the region (parallel.hpp rule 6).
template <typename Scalar>
std::vector<LinearWorkspace<Scalar>> make_workspaces(Index rows, Index d, Index c_dim, Index dv, bool masked,
                                                     bool causal) {
    std::vector<LinearWorkspace<Scalar>> ws;
    const int team = team_size();
    ws.reserve(static_cast<std::size_t>(team));
    for (int t = 0; t < team; ++t) ws.emplace_back(rows, d, c_dim, dv, masked, causal);
    return ws;
}

/// Keys per block of the non-causal path (features are formed a block at a time).
constexpr Index linear_key_block = 256;
/// Queries per tile of the non-causal path.
constexpr Index linear_query_tile = 256;
/// At most this many key parts (partial states merged in a fixed order).
constexpr Index linear_max_parts = 16;

/// Parts of a sequence of `units` key blocks (non-causal): at most 16, at least one block each
/// (and at least one part). Depends on the sizes only.
struct PartSplit {
    Index per_part = 1, parts = 1;
};
inline PartSplit split_parts(Index units) {
    PartSplit s;
    const Index want = std::clamp<Index>(units, 1, linear_max_parts);
    s.per_part = ceil_div(units, want);
    s.parts = ceil_div(units, s.per_part);
    return s;
}

/// Adds the keys of part p of `split` (units [p · per_part, (p + 1) · per_part) of `unit` key
/// rows each, `units` in all) to st in order, noting the first key row whose features failed.
template <typename Scalar, typename Map>
void absorb_part(const LinearProblem<Scalar, Map>& pb, const PartSplit& split, Index p, Index unit, Index units,
                 LinearWorkspace<Scalar>& ws, FeatureState<Scalar>& st, Index& bad_key, InputScan& scan) {
    const Index n_k = pb.k.rows();
    const Index u_end = std::min(units, (p + 1) * split.per_part);
    for (Index u = p * split.per_part; u < u_end; ++u) {
        const Index j0 = u * unit, len = std::min(unit, n_k - j0);
        note_failure(bad_key, prepare_keys(pb, j0, len, ws.kbuf, ws.keys, scan));
        absorb_block(st, ws.keys, len, ws);
    }
}

/// Non-causal: [S | z] over all keys (parts in parallel, merged in order), then the query tiles.
/// If q is null, only `total` is computed.
template <typename Scalar, typename Map>
void linear_noncausal(const LinearProblem<Scalar, Map>& pb, FeatureState<Scalar>& total,
                      Eigen::Ref<Matrix<Scalar>>* out, FeatureFailure& failure) {
    const Index n_k = pb.k.rows(), d = pb.k.cols(), dv = pb.v.cols();
    const Index n_q = pb.q != nullptr ? pb.q->rows() : 0;
    const Index block = std::min(linear_key_block, n_k);
    const Index blocks = ceil_div(n_k, block);
    const PartSplit split = split_parts(blocks);
    std::vector<FeatureState<Scalar>> parts(static_cast<std::size_t>(split.parts));
    for (auto& p : parts) p.reset(pb.c_dim, dv);
    std::vector<Index> bad_key(static_cast<std::size_t>(split.parts), -1);
    const Index tile = std::max<Index>(1, std::min(linear_query_tile, n_q));
    const Index tiles = ceil_div(n_q, tile);
    std::vector<Index> bad_query(static_cast<std::size_t>(tiles), -1);
    std::vector<LinearWorkspace<Scalar>> workspaces =
        make_workspaces<Scalar>(std::max(block, tile), d, pb.c_dim, dv, !pb.padding.empty(), false);
    std::vector<InputScan> scans(workspaces.size());
    if (pb.scan_inputs && pb.q != nullptr && out == nullptr)  // Q is not read below
        scan_finite(*pb.q, scans[0].q_ok);
    RegionErrors errors;  // e.g. bad_alloc in a product, or a user map that throws
    // Always a parallel region: inside a team Eigen's products run single-threaded, with the
    // same blocking (hence the same rounding) for any thread count.
    parallel_region(static_cast<int>(workspaces.size()), [&] {
        LinearWorkspace<Scalar>& ws = workspaces[static_cast<std::size_t>(thread_index())];
        InputScan& scan = scans[static_cast<std::size_t>(thread_index())];
ATTNX_OMP(for schedule(dynamic, 1))
        for (Index p = 0; p < split.parts; ++p) {
            errors.run([&] {
                absorb_part(pb, split, p, block, blocks, ws, parts[static_cast<std::size_t>(p)],
                            bad_key[static_cast<std::size_t>(p)], scan);
            });
        }
ATTNX_OMP(single)
        errors.run([&] {
            total = parts[0];
            for (std::size_t p = 1; p < parts.size(); ++p) merge_state(total, parts[p]);
        });
        if (out != nullptr) {
ATTNX_OMP(for schedule(dynamic, 1))
            for (Index t = 0; t < tiles; ++t) {
                errors.run([&] {
                    const Index i0 = t * tile, nq = std::min(tile, n_q - i0);
                    bad_query[static_cast<std::size_t>(t)] = attend_rows(pb, total, i0, nq, ws, *out, scan);
                });
            }
        }
    });
    errors.rethrow();
    for (const Index b : bad_key) note_failure(failure.key_row, b);
    for (const Index b : bad_query) note_failure(failure.query_row, b);
    for (const InputScan& sc : scans) failure.inputs.merge(sc);
    failure.out_finite = failure.out_finite && outputs_finite(workspaces);
}

/// Chunks per window of the causal path for a team of `team` threads: a run of 8 per thread
/// (longer runs read longer pieces of each column of Q, K and V), few enough that a window's
/// prepared keys (per chunk T·(C + d_v) entries plus its C·(d_v + 1) state: about 145 KiB in
/// float at T = 64, C = 256, d_v = 64) stay in the last-level cache between its two passes. The
/// window and the runs are the one split that depends on the thread count (parallel.hpp rule
/// 4): results do not, as the prefix runs over the chunks in order whatever the window.
inline Index causal_window(int team) { return 8 * static_cast<Index>(std::max(team, 1)); }

/// Columns per block of the causal prefix (the blocks are split between the threads).
constexpr Index prefix_column_block = 8;

/// The causal prefix over a window's chunk states, in place: own[w] (chunk w's own state, offset
/// own[w].r) becomes the state of every key up to and including chunk w, starting from `from`
/// (every key before the window); its offset goes to prefix_r[w] and the last one's state to
/// `to` as well. merge_state's cases, one fixed expression per entry, in chunk order (with FMA
/// contraction it may round differently from merge_state), so the columns are split between
/// the threads without changing a bit. Call from every thread of the
/// team: a work-shared loop, ending in a barrier.
template <typename Scalar>
void prefix_window(const FeatureState<Scalar>& from, std::vector<StateView<Scalar>>& own, Index count,
                   std::vector<Scalar>& prefix_r, FeatureState<Scalar>& to) {
    const Index cols = from.s.cols();
    const Index blocks = ceil_div(cols, prefix_column_block);
ATTNX_OMP(for schedule(static))
    for (Index b = 0; b < blocks; ++b) {
        const Index c0 = b * prefix_column_block, nc = std::min(prefix_column_block, cols - c0);
        Scalar r = from.r;
        const Scalar* prev = from.s.data();
        const Index rows = from.s.rows();
        for (Index w = 0; w < count; ++w) {
            StateView<Scalar>& cur = own[static_cast<std::size_t>(w)];
            for (Index col = c0; col < c0 + nc; ++col) {
                auto dst = cur.s.col(col);
                const Eigen::Map<const Vector<Scalar>> src(prev + col * rows, rows);
                if (cur.r == minus_infinity<Scalar>())
                    dst = src;  // a chunk of padding only: the prefix does not change
                else if (r == minus_infinity<Scalar>())
                    continue;  // nothing before: the prefix is the chunk's own state
                else if (cur.r > r)
                    dst = src * std::exp(r - cur.r) + dst;
                else
                    dst = src + std::exp(cur.r - r) * dst;
            }
            r = std::max(r, cur.r);
            if (b == 0) prefix_r[static_cast<std::size_t>(w)] = r;
            prev = cur.s.data();
        }
        to.s.middleCols(c0, nc) = Eigen::Map<const Matrix<Scalar>>(prev, rows, cols).middleCols(c0, nc);
        if (b == 0) to.r = r;
    }
}

/// Chunks per thread of a causal window of `in_window` chunks for a team of `threads` (the team
/// granted, team_threads()): thread t takes the run [t·per, (t + 1)·per) in both passes
/// (schedule(static, per)).
inline Index causal_run(Index in_window, int threads) {
    return ceil_div(in_window, static_cast<Index>(std::max(threads, 1)));
}

/// Chunks ahead of use whose rows a thread asks for (causal path).
constexpr Index causal_prefetch_ahead = 2;

/// Rows a thread of the causal path reads causal_prefetch_ahead chunks after chunk w of the
/// window at c0: `chunk` (from the sequence's start) and whether its K and V rows (pass 1) or
/// its Q rows (pass 2).
struct ChunkAhead {
    Index chunk;
    bool keys;
};

/// In pass 1 a later chunk of the thread's run, or past the run's end the first chunks of the
/// same run for pass 2; in pass 2 a later chunk of the run, or past its end the first chunks of
/// its run in the next window (taken as split alike) for pass 1. Only a hint for
/// prefetch_rows: the chunk may be past the end of the sequence.
inline ChunkAhead causal_chunk_ahead(bool pass1, Index c0, Index w, Index in_window, Index window, Index per) {
    const Index b0 = (w / per) * per, b1 = std::min(b0 + per, in_window);
    const Index ahead = w + causal_prefetch_ahead;
    if (ahead < b1) return {c0 + ahead, pass1};
    const Index into = b0 + (ahead - b1);  // the position in the run of the next pass
    return pass1 ? ChunkAhead{c0 + into, false} : ChunkAhead{c0 + window + into, true};
}

/// Asks for rows [r0, r1) of a column-major matrix (every cache line of each column) to be loaded
/// ahead of use: the causal path reads a chunk as T-row pieces of every column of Q, K and V
/// (columns n_q or n_k entries apart), too short for the hardware prefetchers to follow once
/// the inputs do not fit in the cache.
template <typename Scalar>
void prefetch_rows(const Eigen::Ref<const Matrix<Scalar>>& m, Index r0, Index r1) {
#if defined(__GNUC__) || defined(__clang__)
    constexpr Index line = static_cast<Index>(64 / sizeof(Scalar));
    if (r1 <= r0) return;
    for (Index col = 0; col < m.cols(); ++col) {
        const Scalar* p = m.data() + m.outerStride() * col;
        for (Index r = r0; r < r1; r += line) __builtin_prefetch(p + r, 0, 1);
        __builtin_prefetch(p + r1 - 1, 0, 1);
    }
#else
    (void)m;
    (void)r0;
    (void)r1;
#endif
}

/// The largest CausalArena kept for the next call of the same thread (bytes).
constexpr std::size_t max_kept_arena_bytes = std::size_t(16) << 20;

/// The storage a thread's last CausalArena leaves for its next one.
template <typename Scalar>
struct KeptArena {
    Vector<Scalar> storage;
    bool busy = false;  // held by a call on this thread (a map's own call, nested, gets its own)
    bool* destroyed;    // set when this thread's arena is gone (a call from a later destructor)

    explicit KeptArena(bool* gone) : destroyed(gone) {}
    KeptArena(const KeptArena&) = delete;
    KeptArena& operator=(const KeptArena&) = delete;
    ~KeptArena() { *destroyed = true; }
};

/// This thread's kept arena, or nullptr once it was destroyed (thread or program exit).
template <typename Scalar>
KeptArena<Scalar>* kept_arena() {
    thread_local bool gone = false;  // trivially destructible: readable after the arena's end
    if (gone) return nullptr;
    thread_local KeptArena<Scalar> kept(&gone);
    return gone ? nullptr : &kept;
}

/// A window's prepared key chunks and chunk states, in one allocation that the calling thread
/// keeps for its next call (up to max_kept_arena_bytes: 2.3 MiB in float for FAVOR+ m = 256, d_v = 64,
/// T = 64 on two threads). Allocated afresh per call, its pages were returned to the system at
/// the end of each call and faulted in again by the next one: about 600 page faults per call of
/// a quarter of its time at n = 1024 (FAVOR+, 2 threads, bench_feature_map).
template <typename Scalar>
struct CausalArena {
    Vector<Scalar> local;  // used when the kept storage is busy or the arena too large to keep
    KeptArena<Scalar>* held = nullptr;
    std::vector<KeyBlockView<Scalar>> keys;
    std::vector<StateView<Scalar>> own;

    CausalArena(const CausalArena&) = delete;
    CausalArena& operator=(const CausalArena&) = delete;
    ~CausalArena() {
        if (held != nullptr) held->busy = false;
    }

    /// Entries of one piece, rounded up to 64 bytes (each view starts on a cache line).
    static Index padded(Index n) {
        constexpr Index line = static_cast<Index>(64 / sizeof(Scalar));
        return ceil_div(n, line) * line;
    }

    CausalArena(Index window, Index rows, Index c_dim, Index dv) {
        keys.reserve(static_cast<std::size_t>(window));  // before the kept storage is taken: may throw
        own.reserve(static_cast<std::size_t>(window));
        const Index psi = padded(rows * c_dim), vaug = padded(rows * (dv + 1)), c = padded(rows),
                    st = padded(c_dim * (dv + 1));
        const Index per = psi + vaug + c + st;
        const Index need = window * per + padded(1);
        Vector<Scalar>* storage = &local;
        KeptArena<Scalar>* keptp = kept_arena<Scalar>();
        if (keptp != nullptr && !keptp->busy && static_cast<std::size_t>(need) * sizeof(Scalar) <= max_kept_arena_bytes) {
            KeptArena<Scalar>& kept = *keptp;
            if (kept.storage.size() < need) {
                kept.storage.resize(0);  // free first: a failed resize must not leave a freed buffer behind
                kept.storage.resize(need);
            }
            kept.busy = true;
            held = &kept;
            storage = &kept.storage;
        } else {
            local.resize(need);
        }
        // The first cache line boundary inside storage (Eigen aligns to 16 or 32 bytes).
        Scalar* base = storage->data();
        const std::uintptr_t mis = reinterpret_cast<std::uintptr_t>(base) % 64;
        if (mis != 0) base += (64 - mis) / sizeof(Scalar);
        for (Index w = 0; w < window; ++w) {
            Scalar* p = base + w * per;
            keys.push_back({Eigen::Map<Matrix<Scalar>>(p, rows, c_dim), Eigen::Map<Matrix<Scalar>>(p + psi, rows, dv + 1),
                            Eigen::Map<Vector<Scalar>>(p + psi + vaug, rows)});
            own.push_back({Eigen::Map<Matrix<Scalar>>(p + psi + vaug + c, c_dim, dv + 1), minus_infinity<Scalar>()});
        }
    }
};

/// Causal, chunked: see the file comment. Query row i sits at key position i + off (off =
/// n_k − n_q for the bottom-right alignment; rows with i + off < 0 see no key and are zeroed).
/// `init` is the state of keys before this call (empty for attention, the decode state for
/// prefill); `final_state`, if not null, receives the state after every key. q may be null
/// (then only the final state is computed).
template <typename Scalar, typename Map>
void linear_causal(const LinearProblem<Scalar, Map>& pb, Index chunk, Index off, const FeatureState<Scalar>& init,
                   Eigen::Ref<Matrix<Scalar>>* out, FeatureState<Scalar>* final_state, FeatureFailure& failure) {
    const Index n_k = pb.k.rows(), d = pb.k.cols(), dv = pb.v.cols();
    const Index n_q = pb.q != nullptr ? pb.q->rows() : 0;
    const Index t_len = std::max<Index>(1, std::min(chunk, n_k));
    const Index chunks = ceil_div(n_k, t_len);
    const bool want_out = pb.q != nullptr && out != nullptr;
    if (want_out && off < 0) out->topRows(std::min(n_q, -off)).setZero();
    std::vector<LinearWorkspace<Scalar>> workspaces =
        make_workspaces<Scalar>(t_len, d, pb.c_dim, dv, !pb.padding.empty(), true);
    const int team = static_cast<int>(workspaces.size());
    const Index window = std::min(chunks, causal_window(team));
    // Per chunk of a window: its prepared keys and its own state φ(K_c)ᵀ[V_c | 1], which the
    // prefix turns into the state of every key up to it (offset prefix_r).
    CausalArena<Scalar> arena(window, t_len, pb.c_dim, dv);
    std::vector<KeyBlockView<Scalar>>& keys = arena.keys;
    std::vector<StateView<Scalar>>& own = arena.own;
    std::vector<Scalar> prefix_r(static_cast<std::size_t>(window), minus_infinity<Scalar>());
    std::vector<FeatureFailure> failures(static_cast<std::size_t>(team));
    if (pb.scan_inputs && pb.q != nullptr) {  // the query rows pass 2 does not read
        const Index unread = want_out ? std::clamp<Index>(-off, 0, n_q) : n_q;
        scan_finite(pb.q->topRows(unread), failures[0].inputs.q_ok);
    }
    // The state of every key before the current window, and after it (swapped per window).
    FeatureState<Scalar> carry[2] = {init, init};
    // Asks for the rows of chunk a.chunk that the thread reads next (a hint: clamped, never read).
    const auto prefetch_ahead = [&](const ChunkAhead& a) {
        const Index j = std::min(n_k, a.chunk * t_len), j_end = std::min(n_k, j + t_len);
        if (a.keys) {
            prefetch_rows(pb.k, j, j_end);
            prefetch_rows(pb.v, j, j_end);
        } else if (want_out) {
            prefetch_rows(*pb.q, std::clamp<Index>(j - off, 0, n_q), std::clamp<Index>(j_end - off, 0, n_q));
        }
    };
    RegionErrors errors;
    parallel_region(team, [&] {
        LinearWorkspace<Scalar>& ws = workspaces[static_cast<std::size_t>(thread_index())];
        FeatureFailure& fail = failures[static_cast<std::size_t>(thread_index())];
        // The team granted, which may be smaller than the one asked for (parallel_region).
        const int threads = team_threads();
        int from = 0;
        for (Index c0 = 0; c0 < chunks; c0 += window, from = 1 - from) {
            const Index in_window = std::min(window, chunks - c0);
            // One run of consecutive chunks per thread, the same in both passes (per is the
            // same on every thread: a schedule's chunk size must be).
            const Index per = causal_run(in_window, threads);
            // Pass 1: each chunk's features and own state (and the rows read two chunks later asked for).
ATTNX_OMP(for schedule(static, per))
            for (Index w = 0; w < in_window; ++w) {
                errors.run([&] {
                    const Index j0 = (c0 + w) * t_len, len = std::min(t_len, n_k - j0);
                    prefetch_ahead(causal_chunk_ahead(true, c0, w, in_window, window, per));
                    KeyBlockView<Scalar>& kb = keys[static_cast<std::size_t>(w)];
                    StateView<Scalar>& st = own[static_cast<std::size_t>(w)];
                    note_failure(fail.key_row, prepare_keys(pb, j0, len, ws.kbuf, kb, fail.inputs));
                    st.reset();
                    absorb_block(st, kb, len, ws);
                });
            }
            // The prefix, in chunk order (so nothing depends on the team or the window).
            prefix_window(carry[from], own, in_window, prefix_r, carry[1 - from]);
            // Pass 2: the outputs of the queries that sit in each chunk.
            if (want_out) {
ATTNX_OMP(for schedule(static, per))
                for (Index w = 0; w < in_window; ++w) {
                    errors.run([&] {
                        const Index j0 = (c0 + w) * t_len, len = std::min(t_len, n_k - j0);
                        const Index i0 = std::clamp<Index>(j0 - off, 0, n_q);
                        const Index i1 = std::clamp<Index>(j0 + len - off, 0, n_q);
                        prefetch_ahead(causal_chunk_ahead(false, c0, w, in_window, window, per));
                        const Scalar* before = w == 0 ? carry[from].s.data() : own[static_cast<std::size_t>(w - 1)].s.data();
                        const Scalar before_r = w == 0 ? carry[from].r : prefix_r[static_cast<std::size_t>(w - 1)];
                        if (i1 > i0)
                            note_failure(fail.query_row,
                                         attend_chunk<Scalar, Map>(pb, Eigen::Map<const Matrix<Scalar>>(before, pb.c_dim, dv + 1),
                                                      before_r, keys[static_cast<std::size_t>(w)], j0, len, i0,
                                                      i1 - i0, off, ws, *out, fail.inputs));
                    });
                }
            }
        }
    });
    errors.rethrow();
    if (final_state != nullptr) *final_state = carry[window > 0 ? ceil_div(chunks, window) % 2 : 0];
    for (const FeatureFailure& f : failures) failure.merge(f);
    failure.out_finite = failure.out_finite && outputs_finite(workspaces);
}

inline void check_linear_options(const char* fn, const LinearAttentionOptions& o, Index n_k, bool uses_scale,
                                 const std::string& map_name) {
    check_common_options(fn, o, n_k);
    if (!(std::isfinite(o.eps) && o.eps > 0))
        throw_invalid(fn, ": eps (", o.eps, ") must be finite and > 0 (it is added to the denominator; default 1e-6)");
    if (o.chunk < 1)
        throw_invalid(fn, ": chunk (", o.chunk, ") must be >= 1 (tokens per chunk of the causal algorithm; default 64)");
    if (o.scale && !uses_scale)
        throw_invalid(fn, ": scale is set (", *o.scale, ") but the feature map ", map_name,
                      " does not use one (its uses_scale is false; e.g. elu(x) + 1 has no 1/sqrt(d), Katharopoulos et al. eq. 7); leave scale "
                      "unset, or scale q and k yourself");
}

/// C = map.feature_dim(d), the map's own consistency check; its message is re-issued under fn.
template <typename Map>
Index checked_feature_dim(const char* fn, const Map& map, Index d) {
    Index c = 0;
    try {
        c = static_cast<Index>(map.feature_dim(d));
    } catch (const attnx::invalid_argument& e) {
        std::string msg = e.what();
        if (msg.rfind("attnx::", 0) == 0) msg.erase(0, 7);
        throw_invalid(fn, ": ", msg);
    }
    if (c < 1)
        throw_invalid(fn, ": the feature map (", feature_map_name(map), ") has feature_dim(", d, ") = ", c,
                      "; it must be >= 1");
    return c;
}

template <typename Scalar>
Scalar resolve_eps(double eps) {
    return std::max(static_cast<Scalar>(eps), std::numeric_limits<Scalar>::min());
}

template <typename Map>
void throw_feature_failure(const char* fn, const Map& map, const FeatureFailure& f, const Magnitudes& mag,
                           const char* scalar) {
    const bool key = f.key_row >= 0;
    throw_invalid(fn, ": the feature map (", feature_map_name(map), ") overflowed ", scalar, ": its output for ",
                  key ? "key" : "query", " row ", key ? f.key_row : f.query_row, " is not finite (max|q| = ",
                  sci(mag.q), ", max|k| = ", sci(mag.k), "); rescale q and k, lower scale, or use double");
}

/// Shapes, options and the map's feature_dim (before any work). Returns C.
template <typename DQ, typename DK, typename DV, typename Map>
Index check_linear_call(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                        const Eigen::MatrixBase<DV>& v, const Map& map, const LinearAttentionOptions& o) {
    check_same_scalar<DQ, DK>();
    check_same_scalar<DQ, DV>();
    static_assert(is_feature_map<Map, typename DQ::Scalar>::value,
                  "attnx::linear_attention: the feature map must provide feature_dim(d), queries(x, scale, phi) "
                  "and keys(x, scale, phi, log_scale) for the Scalar type of q, k and v (feature_maps.hpp)");
    static_assert(optional_members_ok<Map>::value,
                  "attnx::linear_attention: a feature map's optional uses_scale and finite_features must be "
                  "declared 'static constexpr bool' (feature_maps.hpp)");
    check_qkv(fn, q, k, v);
    check_linear_options(fn, o, k.rows(), map_uses_scale<Map>::value, feature_map_name(map));
    return checked_feature_dim(fn, map, q.cols());
}

/// The entry skeleton: input scan, kernel, feature and result checks.
template <typename Scalar, typename Map>
void linear_checked(const char* fn, const Map& map, Index c_dim, const Eigen::Ref<const Matrix<Scalar>>& q,
                    const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                    const LinearAttentionOptions& o, Eigen::Ref<Matrix<Scalar>> out) {
    // Nominal work: the features of every row (at most C x d each) and the C x d_v state products.
    const SerialScope serial(
        run_serially(2.0 * double(q.rows() + k.rows()) * double(c_dim) * double(q.cols() + 2 * v.cols())));
    // The NaN/Inf scan of Q, K and V is fused into the kernel (pb.scan_inputs): each block is
    // scanned as it is read, and a non-finite input is reported after the work, as the separate
    // scan reported it before (same message: check_finite rescans the matrix to name the entry).
    const LinearProblem<Scalar, Map> pb{map, &q, k, v, o.key_padding_mask, resolve_scale_double(o, q.cols()),
                                        resolve_eps<Scalar>(o.eps), c_dim, o.check_finite, o.check_finite};
    FeatureFailure failure;
    FeatureState<Scalar> state;
    try {
        if (o.causal) {
            FeatureState<Scalar> empty;
            empty.reset(c_dim, v.cols());
            linear_causal<Scalar, Map>(pb, o.chunk, k.rows() - q.rows(), empty, &out, nullptr, failure);
        } else {
            linear_noncausal<Scalar, Map>(pb, state, &out, failure);
        }
    } catch (...) {
        // A map that threw, or bad_alloc: a non-finite input is still the error reported, as when
        // the scan ran before the work (the fused scan may not have reached every block).
        if (o.check_finite) check_finite_qkv<Scalar>(fn, o, q, k, v);
        throw;
    }
    // No logit bound: the maps guard their own range (FeatureFailure). The scan checked
    // finiteness only; the magnitudes an error names are found on the failure path.
    if (o.check_finite) report_scan<Scalar>(fn, o, failure.inputs, q, k, v, /*logits=*/false);
    if (failure.key_row >= 0 || failure.query_row >= 0)
        throw_feature_failure(fn, map, failure, input_magnitudes<Scalar>(q, k, v), scalar_name<Scalar>());
    // The kernels checked each output block as they wrote it: no pass over `out` here.
    if (!failure.out_finite) throw_overflow<Scalar>(fn, input_magnitudes<Scalar>(q, k, v), "a sum of the result");
}

}  // namespace detail

/// Feature-map attention out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps) (see the file comment) of Q
/// (n_q x d) against K (n_k x d), V (n_k x d_v), with φ = `feature_map` (EluPlusOne,
/// PositiveRandomFeatures<Scalar>, or any type with the feature-map interface). Returns n_q x d_v.
template <typename DQ, typename DK, typename DV, typename Map>
Matrix<typename DQ::Scalar> linear_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                             const Eigen::MatrixBase<DV>& v, const Map& feature_map,
                                             const LinearAttentionOptions& options = {}) {
    constexpr const char* fn = "linear_attention";
    const Index c_dim = detail::check_linear_call(fn, q, k, v, feature_map, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::linear_checked<typename DQ::Scalar, Map>(fn, feature_map, c_dim, q, k, v, options, out);
    return out;
}

/// As above, into a caller-provided n_q x d_v buffer.
template <typename DQ, typename DK, typename DV, typename Map>
void linear_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                      const Map& feature_map, Eigen::Ref<Matrix<typename DQ::Scalar>> out,
                      const LinearAttentionOptions& options = {}) {
    constexpr const char* fn = "linear_attention";
    const Index c_dim = detail::check_linear_call(fn, q, k, v, feature_map, options);
    detail::check_out(fn, out, q, k, v);
    detail::linear_checked<typename DQ::Scalar, Map>(fn, feature_map, c_dim, q, k, v, options, out);
}

/// Performer (FAVOR+) attention: linear_attention with PositiveRandomFeatures, which estimates
/// softmax(s · Q Kᵀ) V (s = options.scale, default 1/√d). Returns n_q x d_v.
template <typename DQ, typename DK, typename DV, typename FScalar>
Matrix<typename DQ::Scalar> performer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                                const Eigen::MatrixBase<DV>& v,
                                                const PositiveRandomFeatures<FScalar>& features,
                                                const LinearAttentionOptions& options = {}) {
    static_assert(std::is_same<typename DQ::Scalar, FScalar>::value,
                  "attnx::performer_attention: the features must have the Scalar type of q, k and v");
    constexpr const char* fn = "performer_attention";
    const Index c_dim = detail::check_linear_call(fn, q, k, v, features, options);
    Matrix<typename DQ::Scalar> out(q.rows(), v.cols());
    detail::linear_checked<FScalar, PositiveRandomFeatures<FScalar>>(fn, features, c_dim, q, k, v, options, out);
    return out;
}

/// As above, into a caller-provided n_q x d_v buffer.
template <typename DQ, typename DK, typename DV, typename FScalar>
void performer_attention(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                         const Eigen::MatrixBase<DV>& v, const PositiveRandomFeatures<FScalar>& features,
                         Eigen::Ref<Matrix<typename DQ::Scalar>> out, const LinearAttentionOptions& options = {}) {
    static_assert(std::is_same<typename DQ::Scalar, FScalar>::value,
                  "attnx::performer_attention: the features must have the Scalar type of q, k and v");
    constexpr const char* fn = "performer_attention";
    const Index c_dim = detail::check_linear_call(fn, q, k, v, features, options);
    detail::check_out(fn, out, q, k, v);
    detail::linear_checked<FScalar, PositiveRandomFeatures<FScalar>>(fn, features, c_dim, q, k, v, options, out);
}

/// The decode state of feature-map attention for one sequence and head (paper 1, eqs. 16–20):
/// [S | z] (C x (d_v + 1)), the running maximum R of the key log scales, and the feature map
/// (a copy). step(q, k, v) absorbs one token and returns its output row in O(C·(d + d_v)),
/// independent of the tokens already absorbed; stepping through a sequence gives the causal
/// batch output (linear_attention with causal = true) up to rounding. prefill absorbs many
/// tokens at once with the chunked algorithm (and can return their causal outputs); query(q)
/// attends to everything absorbed without changing the state: the cross-attention form, against
/// a memory prefilled once and then frozen (use a const reference).
///
/// Options: scale, eps, chunk (prefill) and check_finite apply; `causal` is ignored (a state is
/// causal by construction); key_padding_mask must be empty (leave padded tokens out instead).
/// Not thread-safe for concurrent mutation; const members may be called from many threads.
/// A prefill that throws leaves the state unchanged, whatever the error (a non-finite input, a
/// feature map's overflow, or with check_finite on an overflow of the outputs' sums or of the
/// state's own). A step that throws for a non-finite input or a feature overflow leaves it
/// unchanged too; one that throws because the result overflowed has absorbed its token, and
/// the state then holds non-finite sums that every later call reports: reset() it.
template <typename Scalar, typename Map>
class LinearAttentionState {
    static_assert(std::is_floating_point<Scalar>::value, "attnx::LinearAttentionState: Scalar must be float or double");
    static_assert(is_feature_map<Map, Scalar>::value,
                  "attnx::LinearAttentionState: the feature map must provide feature_dim(d), queries(x, scale, phi) "
                  "and keys(x, scale, phi, log_scale) for Scalar (feature_maps.hpp)");
    static_assert(detail::optional_members_ok<Map>::value,
                  "attnx::LinearAttentionState: a feature map's optional uses_scale and finite_features must be "
                  "declared 'static constexpr bool' (feature_maps.hpp)");

public:
    using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

    /// A state for queries and keys of width d and values of width dv, with nothing absorbed.
    LinearAttentionState(Map feature_map, Index d, Index dv, LinearAttentionOptions options = {})
        : m_map(std::move(feature_map)), m_options(std::move(options)), m_d(d), m_dv(dv) {
        constexpr const char* fn = "LinearAttentionState";
        if (d < 1) detail::throw_invalid(fn, ": d (", d, ") must be >= 1 (the width of q and k)");
        if (dv < 1) detail::throw_invalid(fn, ": dv (", dv, ") must be >= 1 (the width of v)");
        if (!m_options.key_padding_mask.empty())
            detail::throw_invalid(fn, ": key_padding_mask must be empty for a decode state (it has ",
                                  m_options.key_padding_mask.size(), " flags); leave padded tokens out of prefill and step");
        detail::check_linear_options(fn, m_options, 0, detail::map_uses_scale<Map>::value,
                                     detail::feature_map_name(m_map));
        m_c = detail::checked_feature_dim(fn, m_map, d);
        m_scale = detail::resolve_scale_double(m_options, d);
        m_eps = detail::resolve_eps<Scalar>(m_options.eps);
        reset();
    }

    /// Forgets every absorbed token.
    void reset() {
        m_state.reset(m_c, m_dv);
        m_tokens = 0;
    }

    /// Absorbs keys K (n x d) and values V (n x dv) (the chunked algorithm, in parallel).
    template <typename DK, typename DV>
    void prefill(const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v) {
        constexpr const char* fn = "LinearAttentionState::prefill";
        detail::check_same_scalar<DK, DV>();
        static_assert(std::is_same<typename DK::Scalar, Scalar>::value,
                      "attnx::LinearAttentionState::prefill: k and v must have the state's Scalar type");
        check_usable(fn);
        check_shapes(fn, k, k, v);
        const Eigen::Ref<const Matrix<Scalar>> kr(k), vr(v);
        run(fn, nullptr, kr, vr, nullptr);
    }

    /// Absorbs K, V (n x d, n x dv) and returns the causal outputs of Q (n x d): row i attends to
    /// every token absorbed before and to keys 0..i of this call.
    template <typename DQ, typename DK, typename DV>
    Matrix<Scalar> prefill(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                           const Eigen::MatrixBase<DV>& v) {
        Matrix<Scalar> out(q.rows(), v.cols());
        prefill(q, k, v, out);
        return out;
    }

    /// As above, into a caller-provided n x dv buffer.
    template <typename DQ, typename DK, typename DV>
    void prefill(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                 Eigen::Ref<Matrix<Scalar>> out) {
        constexpr const char* fn = "LinearAttentionState::prefill";
        detail::check_same_scalar<DQ, DK>();
        detail::check_same_scalar<DQ, DV>();
        static_assert(std::is_same<typename DQ::Scalar, Scalar>::value,
                      "attnx::LinearAttentionState::prefill: q, k and v must have the state's Scalar type");
        check_usable(fn);
        check_shapes(fn, q, k, v);
        if (q.rows() != k.rows())
            detail::throw_invalid(fn, ": q has ", q.rows(), " rows but k has ", k.rows(),
                                  " (prefill with outputs needs one query per new token)");
        detail::check_out(fn, out, q, k, v);
        const Eigen::Ref<const Matrix<Scalar>> qr(q), kr(k), vr(v);
        run(fn, &qr, kr, vr, &out);
    }

    /// Absorbs one token (k: d entries, v: dv entries, row or column vectors) and returns the
    /// output row of its query q (d entries): attention over every absorbed token, itself included.
    template <typename DQ, typename DK, typename DV>
    RowVector step(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v) {
        RowVector out(m_dv);
        step(q, k, v, out);
        return out;
    }

    /// As above, into `out` (dv entries; a row of a matrix works).
    template <typename DQ, typename DK, typename DV>
    void step(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
              Eigen::Ref<RowVector, 0, Eigen::InnerStride<>> out) {
        constexpr const char* fn = "LinearAttentionState::step";
        detail::check_same_scalar<DQ, DK>();
        detail::check_same_scalar<DQ, DV>();
        static_assert(std::is_same<typename DQ::Scalar, Scalar>::value,
                      "attnx::LinearAttentionState::step: q, k and v must have the state's Scalar type");
        check_usable(fn);
        check_vector(fn, "q", q, m_d);
        check_vector(fn, "k", k, m_d);
        check_vector(fn, "v", v, m_dv);
        if (out.size() != m_dv) detail::throw_invalid(fn, ": out has ", out.size(), " entries but must have dv = ", m_dv);
        m_qx.resize(1, m_d);
        m_kx.resize(1, m_d);
        for (Index j = 0; j < m_d; ++j) {
            m_qx(0, j) = q(j);
            m_kx(0, j) = k(j);
        }
        detail::LinearWorkspace<Scalar>& ws = m_ws;
        if (ws.keys.psi.rows() != 1 || ws.keys.psi.cols() != m_c) ws.resize(1, m_d, m_c, m_dv, false, false);
        for (Index j = 0; j < m_dv; ++j) ws.keys.vaug(0, j) = v(j);
        ws.keys.vaug(0, m_dv) = Scalar(1);
        detail::Magnitudes mag;
        if (m_options.check_finite) {
            mag.scanned = true;
            if (!detail::finite_max_abs(m_qx, mag.q)) detail::check_finite(fn, "q", m_qx);
            if (!detail::finite_max_abs(m_kx, mag.k)) detail::check_finite(fn, "k", m_kx);
            if (!detail::finite_max_abs(ws.keys.vaug, mag.v)) detail::check_finite(fn, "v", ws.keys.vaug.leftCols(m_dv));
        }
        Eigen::Ref<Matrix<Scalar>> psi(ws.keys.psi), phiq(ws.phiq);
        Eigen::Ref<Vector<Scalar>> c(ws.keys.c);
        const Eigen::Ref<const Matrix<Scalar>> kr(m_kx), qr(m_qx);
        m_map.keys(kr, m_scale, psi, c);
        m_map.queries(qr, m_scale, phiq);
        if (m_options.check_finite) {
            detail::FeatureFailure f;
            if (!(detail::block_finite(psi) && std::isfinite(static_cast<double>(c(0))))) f.key_row = 0;
            else if (!detail::block_finite(phiq)) f.query_row = 0;
            if (f.key_row >= 0 || f.query_row >= 0)
                detail::throw_feature_failure(fn, m_map, f, mag, detail::scalar_name<Scalar>());
        }
        detail::absorb_block(m_state, ws.keys, 1, ws);
        ++m_tokens;
        detail::small_gemm<false>(ws.y, phiq, m_state.s);  // one row: Eigen's GEMV (when vectorised)
        detail::normalise_rows(ws.y, m_eps, out);
        if (m_options.check_finite && !detail::rows_sound(ws.y, out))
            detail::throw_overflow<Scalar>(fn, mag, "a sum of the result");
    }

    /// Attention of every row of Q (n x d) over the absorbed tokens, without changing the state
    /// (cross-attention against a frozen memory; non-causal). Returns n x dv.
    template <typename DQ>
    Matrix<Scalar> query(const Eigen::MatrixBase<DQ>& q) const {
        constexpr const char* fn = "LinearAttentionState::query";
        static_assert(std::is_same<typename DQ::Scalar, Scalar>::value,
                      "attnx::LinearAttentionState::query: q must have the state's Scalar type");
        check_usable(fn);
        detail::check_nonempty(fn, "q", q);
        if (q.cols() != m_d)
            detail::throw_invalid(fn, ": q has ", q.cols(), " columns but the state was made for d = ", m_d);
        const Eigen::Ref<const Matrix<Scalar>> qr(q);
        const Matrix<Scalar> no_keys(0, m_d), no_values(0, m_dv);
        const Eigen::Ref<const Matrix<Scalar>> kr(no_keys), vr(no_values);
        const std::vector<bool> no_padding;
        // Q is scanned as attend_rows reads it (pb.scan_inputs), its errors thrown after the work.
        const detail::LinearProblem<Scalar, Map> pb{m_map, &qr, kr, vr, no_padding, m_scale, m_eps, m_c,
                                                    m_options.check_finite, m_options.check_finite};
        Matrix<Scalar> out(q.rows(), m_dv);
        const Index tile = detail::linear_query_tile, n = q.rows(), tiles = detail::ceil_div(n, tile);
        std::vector<Index> bad(static_cast<std::size_t>(tiles), -1);
        Eigen::Ref<Matrix<Scalar>> outr(out);
        std::vector<detail::LinearWorkspace<Scalar>> workspaces =
            detail::make_workspaces<Scalar>(std::min(tile, n), m_d, m_c, m_dv, false, false);
        std::vector<detail::InputScan> scans(workspaces.size());
        detail::RegionErrors errors;
        detail::parallel_region(static_cast<int>(workspaces.size()), [&] {
            const std::size_t me = static_cast<std::size_t>(detail::thread_index());
ATTNX_OMP(for schedule(dynamic, 1))
            for (Index t = 0; t < tiles; ++t)
                errors.run([&] {
                    bad[static_cast<std::size_t>(t)] = detail::attend_rows(
                        pb, m_state, t * tile, std::min(tile, n - t * tile), workspaces[me], outr, scans[me]);
                });
        });
        if (m_options.check_finite) {
            // A map that threw (or bad_alloc): a non-finite q is still the error reported.
            if (errors.failed()) detail::check_finite(fn, "q", qr);
            for (std::size_t i = 1; i < scans.size(); ++i) scans[0].merge(scans[i]);
        }
        errors.rethrow();
        if (m_options.check_finite) detail::report_scan<Scalar>(fn, m_options, scans[0], qr, kr, vr, false);
        detail::FeatureFailure f;
        for (const Index b : bad) detail::note_failure(f.query_row, b);
        if (f.query_row >= 0)
            detail::throw_feature_failure(fn, m_map, f, detail::input_magnitudes<Scalar>(qr, kr, vr),
                                          detail::scalar_name<Scalar>());
        if (!detail::outputs_finite(workspaces))
            detail::throw_overflow<Scalar>(fn, detail::input_magnitudes<Scalar>(qr, kr, vr), "a sum of the result", "q");
        return out;
    }

    /// Tokens absorbed since construction or reset().
    Index tokens() const { return m_tokens; }
    Index dim() const { return m_d; }
    Index value_dim() const { return m_dv; }
    /// C, the number of features.
    Index feature_dim() const { return m_c; }
    const Map& feature_map() const { return m_map; }
    const LinearAttentionOptions& options() const { return m_options; }
    /// [S | z] · exp(−R) (C x (dv + 1)): S = sums().leftCols(dv) · exp(R), z = sums().col(dv) · exp(R).
    const Matrix<Scalar>& sums() const { return m_state.s; }
    /// R, the running maximum of the absorbed keys' log scales (−inf before the first key).
    Scalar log_offset() const { return m_state.r; }

private:
    void check_usable(const char* fn) const {
        if (m_c < 1 || m_state.s.rows() != m_c || m_state.s.cols() != m_dv + 1)
            detail::throw_invalid(fn, ": the state is empty (its sums are ", detail::shape_of(m_state.s),
                                  "; moved-from?); construct a new one");
    }

    template <typename DQ, typename DK, typename DV>
    void check_shapes(const char* fn, const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                      const Eigen::MatrixBase<DV>& v) const {
        detail::check_qkv(fn, q, k, v);
        if (k.cols() != m_d)
            detail::throw_invalid(fn, ": k has ", k.cols(), " columns but the state was made for d = ", m_d);
        if (v.cols() != m_dv)
            detail::throw_invalid(fn, ": v has ", v.cols(), " columns but the state was made for dv = ", m_dv);
    }

    template <typename D>
    static void check_vector(const char* fn, const char* name, const Eigen::MatrixBase<D>& x, Index size) {
        if ((x.rows() != 1 && x.cols() != 1) || x.size() != size)
            detail::throw_invalid(fn, ": ", name, " is ", detail::shape_of(x), " but must be a vector of ", size,
                                  " entries (one token)");
    }

    /// The chunked causal kernel over K, V (and Q, with `out`) from the current state, with the
    /// input scan fused into its reads (as linear_checked); the state changes only if every
    /// check passed (an overflowed result is reported after it changed: see the class doc).
    void run(const char* fn, const Eigen::Ref<const Matrix<Scalar>>* q, const Eigen::Ref<const Matrix<Scalar>>& k,
             const Eigen::Ref<const Matrix<Scalar>>& v, Eigen::Ref<Matrix<Scalar>>* out) {
        const std::vector<bool> no_padding;
        const detail::LinearProblem<Scalar, Map> pb{m_map, q, k, v, no_padding, m_scale, m_eps, m_c,
                                                    m_options.check_finite, m_options.check_finite};
        const Matrix<Scalar> none(0, m_d);
        const Eigen::Ref<const Matrix<Scalar>> qr = q != nullptr ? *q : Eigen::Ref<const Matrix<Scalar>>(none);
        detail::FeatureFailure failure;
        detail::FeatureState<Scalar> next;
        try {
            detail::linear_causal<Scalar, Map>(pb, m_options.chunk, 0, m_state, out, &next, failure);
        } catch (...) {
            // A map that threw, or bad_alloc: a non-finite input is still the error reported.
            if (m_options.check_finite) detail::check_finite_qkv<Scalar>(fn, m_options, qr, k, v);
            throw;
        }
        if (m_options.check_finite) {
            detail::report_scan<Scalar>(fn, m_options, failure.inputs, qr, k, v, false);
            if (failure.key_row >= 0 || failure.query_row >= 0)
                detail::throw_feature_failure(fn, m_map, failure, detail::input_magnitudes<Scalar>(qr, k, v),
                                              detail::scalar_name<Scalar>());
            // Before the state changes: the outputs' sums, and the state's own (without outputs
            // nothing else would show them; C x (d_v + 1) entries).
            if (!failure.out_finite)
                detail::throw_overflow<Scalar>(fn, detail::input_magnitudes<Scalar>(qr, k, v), "a sum of the result");
            if (!detail::block_finite(next.s))
                detail::throw_overflow<Scalar>(fn, detail::input_magnitudes<Scalar>(qr, k, v),
                                               "a sum of the state [S | z]", q != nullptr ? "qkv" : "kv");
        }
        m_state = std::move(next);
        m_tokens += k.rows();
    }

    Map m_map;
    LinearAttentionOptions m_options;
    Index m_d = 0, m_dv = 0, m_c = 0;
    double m_scale = 1;
    Scalar m_eps = 0;
    detail::FeatureState<Scalar> m_state;
    Index m_tokens = 0;
    Matrix<Scalar> m_qx, m_kx;                              // step: q and k as 1 x d rows
    detail::LinearWorkspace<Scalar> m_ws;                   // step buffers
};

}  // namespace attnx

#endif  // ATTNX_LINEAR_ATTENTION_HPP
