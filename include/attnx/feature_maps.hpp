// SPDX-License-Identifier: MIT
/// \file feature_maps.hpp
/// Feature maps φ for feature-map ("linear") attention, linear_attention.hpp: the similarity
/// sim(q, k) = φ(q)ᵀ φ(k) replaces exp(s·qᵀk) (Katharopoulos et al., "Transformers are RNNs",
/// ICML 2020, arXiv:2006.16236, eqs. 4–6). Two maps, and the concept a third one follows:
///
///  - `EluPlusOne`: φ(x) = elu(x) + 1 (paper 1, eq. 7), C = d features, no 1/√d inside φ.
///  - `PositiveRandomFeatures<Scalar>`: FAVOR+ (Choromanski et al., "Rethinking Attention with
///    Performers", ICLR 2021, arXiv:2009.14794, eq. 7 and Lemma 1):
///        φ(x) = exp(Wx − ‖x‖²/2) / √m,   x = √s·q  (s = options.scale, default 1/√d: x = d^(−1/4)·q),
///    so that E[φ(x)ᵀφ(y)] = exp(xᵀy) = exp(s·qᵀk), with W (m × d) random. W is a value the caller
///    keeps: drawn from a seed by attnx's counter-based generator (random.hpp), orthogonal by
///    default (Theorem 2, eq. 10: orthogonal rows never increase the estimator's MSE), redrawn
///    only by an explicit redraw(), importable with from_matrix(W).
///
/// The concept (checked by `attnx::is_feature_map<Map, Scalar>` and a static_assert in every
/// entry point). For inputs X (n × d, rows are tokens; the engine passes blocks of rows, from
/// several threads at once, so the const members must be safe to call concurrently) a map M
/// provides, for S = float and/or double (templates or plain overloads; Matrix<S> and Vector<S>
/// are attnx::Matrix / attnx::Vector: dynamic, column-major, core.hpp)
///   - `Index feature_dim(Index d) const`: C, the number of features for head dimension d. It is
///     also the map's consistency check: it throws attnx::invalid_argument if the map cannot
///     take inputs of width d (e.g. a W of another width, an empty W). It runs before any work.
///   - `void queries(const Eigen::Ref<const Matrix<S>>& x, double scale, Eigen::Ref<Matrix<S>> phi) const`:
///     phi (n × C) = φ(x) row by row, each row up to a positive factor of the map's choice (it
///     cancels between the numerator and the denominator of attention). Here x is the raw
///     queries (or keys) and `scale` the resolved options.scale: a map that uses a scale applies
///     it itself (FAVOR+ forms √s·q).
///   - `void keys(const Eigen::Ref<const Matrix<S>>& x, double scale, Eigen::Ref<Matrix<S>> phi,
///     Eigen::Ref<Vector<S>> log_scale) const`: φ(x_j) = phi_j · exp(log_scale_j) exactly; the
///     split keeps phi in range (FAVOR+ returns rows with max entry (1 + stabilizer)/√m and the
///     row's log scale; elu + 1 returns log_scale = 0). Key rows are combined by the engine with
///     a running maximum of log_scale (the online-softmax trick), so nothing overflows and a
///     causal output depends on no future key.
///   - optionally `static constexpr bool uses_scale`: false if the map ignores `scale` (then a
///     set options.scale is an error rather than silently unused); true when absent.
///   - optionally `static constexpr bool finite_features`: true if φ(x) (phi and log_scale) is
///     finite for every finite x (elu + 1). With check_finite on the engine scans the inputs
///     anyway, and then skips its NaN/Inf check of such a map's features in the batch calls,
///     prefill and query (step always checks them); false when absent (FAVOR+ in float
///     overflows on keys of norm near 1e19). It changes nothing with check_finite off. A wrong
///     claim cannot give a silent NaN: the outputs, and a prefill's state, are still checked,
///     and the error then says the result overflowed instead of naming the map and the row.
///   - optionally `std::string name() const`, for tables and messages.
/// `scale` is options.scale, or 1/√d when unset. queries and keys run inside OpenMP regions,
/// with shapes already checked through feature_dim; an exception they throw is carried out of
/// the region and rethrown by the entry point (detail::RegionErrors), unless an input holds
/// NaN or Inf: the NaN/Inf scan of linear_attention is fused into the kernel's reads, so a map
/// can be called on non-finite rows even with check_finite on, and the entry point then reports
/// the input rather than the map's exception.
#ifndef ATTNX_FEATURE_MAPS_HPP
#define ATTNX_FEATURE_MAPS_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "attnx/core.hpp"
#include "attnx/detail/checks.hpp"
#include "attnx/detail/fast_exp.hpp"
#include "attnx/detail/small_gemm.hpp"
#include "attnx/random.hpp"

namespace attnx {

/// φ(x) = elu(x) + 1, element-wise (x + 1 for x > 0, exp(x) otherwise): the feature map of
/// linear attention, Katharopoulos et al. 2020, eq. 7. C = d features; positive, so the
/// denominator φ(q)ᵀ Σ φ(k_j) is positive. It has no scale: options.scale must stay unset.
/// Its queries() and keys() are member templates over the scalar type: called directly (the
/// engine does this for you), name it, e.g. `EluPlusOne{}.keys<double>(x, 0.0, phi, log_scale)`.
struct EluPlusOne {
    static constexpr bool uses_scale = false;
    /// φ(x) is finite for finite x (x + 1 <= FLT_MAX rounds to x; exp of x <= 0 is in (0, 1]).
    static constexpr bool finite_features = true;

    std::string name() const { return "elu(x) + 1"; }
    Index feature_dim(Index d) const { return d; }

    template <typename Scalar>
    void queries(const Eigen::Ref<const Matrix<Scalar>>& x, double /*scale*/, Eigen::Ref<Matrix<Scalar>> phi) const {
        // max(x, 0) + exp(min(x, 0)): x + 1 for x > 0 and exp(x) otherwise, without a branch;
        // column by column, so that the exp is vectorised (detail/fast_exp.hpp).
        for (Index j = 0; j < x.cols(); ++j)
            phi.col(j).array() = x.col(j).array().cwiseMax(Scalar(0)) +
                                 x.col(j).array().cwiseMin(Scalar(0)).unaryExpr(detail::exp_op<Scalar>());
    }

    template <typename Scalar>
    void keys(const Eigen::Ref<const Matrix<Scalar>>& x, double scale, Eigen::Ref<Matrix<Scalar>> phi,
              Eigen::Ref<Vector<Scalar>> log_scale) const {
        queries<Scalar>(x, scale, phi);
        log_scale.setZero();
    }
};

namespace detail {

/// The Q factor of the Householder QR G = QR of a square matrix, with the signs of Q's columns
/// chosen so that diag(R) > 0: for Gaussian G, Q is then Haar-distributed (uniform on the
/// orthogonal group). Plain reflections (Golub & Van Loan, Alg. 5.2.1), in double.
inline Matrix<double> haar_q(Matrix<double> a) {
    const Index d = a.rows();
    Matrix<double> vs = Matrix<double>::Zero(d, d);  // column k: the k-th Householder vector (rows k..d-1)
    Vector<double> beta = Vector<double>::Zero(d), r_diag(d);
    for (Index k = 0; k < d; ++k) {
        const Index len = d - k;
        const double norm = a.col(k).tail(len).norm();
        const double x0 = a(k, k);
        const double alpha = x0 >= 0 ? -norm : norm;  // R_kk; the sign avoids cancellation in v_0
        r_diag(k) = alpha;
        vs.col(k).tail(len) = a.col(k).tail(len);
        vs(k, k) = x0 - alpha;
        const double vtv = vs.col(k).tail(len).squaredNorm();
        if (vtv == 0) continue;  // the column is already zero below the diagonal: H_k = I
        beta(k) = 2.0 / vtv;
        for (Index j = k; j < d; ++j)
            a.col(j).tail(len) -= (beta(k) * vs.col(k).tail(len).dot(a.col(j).tail(len))) * vs.col(k).tail(len);
    }
    // Q = H_0 H_1 ... H_{d-1}, applied to the identity from the right-most reflection.
    Matrix<double> q = Matrix<double>::Identity(d, d);
    for (Index k = d - 1; k >= 0; --k) {
        if (beta(k) == 0) continue;
        const Index len = d - k;
        for (Index j = 0; j < d; ++j)
            q.col(j).tail(len) -= (beta(k) * vs.col(k).tail(len).dot(q.col(j).tail(len))) * vs.col(k).tail(len);
    }
    for (Index k = 0; k < d; ++k)
        if (r_diag(k) < 0) q.col(k) = -q.col(k);
    return q;
}

}  // namespace detail

/// How the row norms of a PositiveRandomFeatures matrix are chosen.
enum class FeatureNorms {
    Chi,    ///< independent draws from the chi distribution with d degrees of freedom: every row
            ///< is then marginally N(0, I_d), so the estimator stays unbiased (Lemma 1)
    SqrtD,  ///< every row has norm √d (the reference code's "scaling = 1" option); biased but
            ///< lower variance in practice
};

/// How PositiveRandomFeatures::draw builds W.
struct RandomFeatureOptions {
    Index num_features = 256;            ///< m, the number of random features (>= 1; paper App. A.3: 256)
    bool orthogonal = true;              ///< rows orthogonal in blocks of d (Theorem 2); false: iid N(0, I_d) rows
    FeatureNorms norms = FeatureNorms::Chi;  ///< row norms (with orthogonal = false, Chi keeps each
                                             ///< Gaussian row's own norm)
    double stabilizer = 1e-6;            ///< times the row's largest feature, added to every feature before the 1/√m (finite, >= 0)
};

/// FAVOR+ positive random features (Choromanski et al. 2021, arXiv:2009.14794, eq. 7, Lemma 1):
/// φ(x) = (exp(Wx − ‖x‖²/2) + stabilizer·exp(max_f (Wx)_f − ‖x‖²/2)) / √m with x = √s·q, so that
/// φ(x)ᵀφ(y) estimates exp(xᵀy) = exp(s·qᵀk) without bias when the stabilizer is 0 (Lemma 1) and
/// with mean squared error (1/m)·exp(‖x+y‖²)·exp(2xᵀy)·(1 − exp(−‖x+y‖²)) for iid rows (Lemma 2,
/// eq. 8); orthogonal rows only lower it (Theorem 2, eq. 10).
///
/// The stabilizer is relative to each row's largest feature (the reference code adds it after
/// subtracting a maximum taken over the whole sequence, which makes a causal output depend on
/// future keys); queries() returns φ(x) times exp(‖x‖²/2 − max_f (Wx)_f), a per-row factor that
/// cancels between an output's numerator and denominator, i.e. (exp(Wx − max_f (Wx)_f) +
/// stabilizer) / √m; keys() returns the same rows plus their log scale max_f (Wx)_f − ‖x‖²/2
/// (row · exp(log scale) = φ(x)), so no feature exceeds (1 + stabilizer)/√m.
///
/// W (m × d) is drawn from (seed, stream = `stream` + draw index) of attnx::CounterRng: the
/// same matrix on every platform and thread count (up to the last ulp of std::log/std::cos and
/// of the QR). With orthogonal = true, ⌊m/d⌋ blocks of d rows are the columns of the Q factor
/// of a Householder QR (detail::haar_q) of a d × d Gaussian matrix (signs fixed by diag(R) > 0, so Q is Haar
/// distributed), and the last m mod d rows are the first columns of one more such Q; row
/// norms per `norms`. The draw is in double, then rounded to Scalar.
template <typename Scalar>
class PositiveRandomFeatures {
    static_assert(std::is_floating_point<Scalar>::value,
                  "attnx::PositiveRandomFeatures: Scalar must be float or double");

public:
    /// The generator stream of draw 0; draw t (after t calls of redraw()) uses stream + t.
    static constexpr std::uint64_t stream = 0x4641564F52504C55ULL;  // "FAVORPLU"
    static constexpr bool uses_scale = true;

    /// Empty (m = 0): every use throws until a draw or from_matrix is assigned.
    PositiveRandomFeatures() = default;

    /// W for head dimension d from a seed: options.num_features rows, orthogonal blocks and
    /// chi norms by default. d >= 1, num_features >= 1, stabilizer finite and >= 0.
    static PositiveRandomFeatures draw(Index d, std::uint64_t seed, const RandomFeatureOptions& options = {}) {
        constexpr const char* fn = "PositiveRandomFeatures::draw";
        if (d < 1) detail::throw_invalid(fn, ": d (", d, ") must be >= 1 (the head dimension of q and k)");
        if (options.num_features < 1)
            detail::throw_invalid(fn, ": num_features (m = ", options.num_features,
                                  ") must be >= 1 (the number of random features; paper default 256)");
        check_stabilizer(fn, options.stabilizer);
        PositiveRandomFeatures f;
        f.m_options = options;
        f.m_seed = seed;
        f.m_seeded = true;
        f.set_matrix(draw_matrix(options.num_features, d, seed, 0, options).template cast<Scalar>());
        return f;
    }

    /// A caller-given W (m × d, finite, e.g. the projection of a trained Performer).
    /// redraw() is not available on it (it has no seed).
    template <typename DW>
    static PositiveRandomFeatures from_matrix(const Eigen::MatrixBase<DW>& w, double stabilizer = 1e-6) {
        static_assert(std::is_same<typename DW::Scalar, Scalar>::value,
                      "attnx::PositiveRandomFeatures::from_matrix: w must have the features' Scalar type");
        constexpr const char* fn = "PositiveRandomFeatures::from_matrix";
        detail::check_nonempty(fn, "w", w);
        check_stabilizer(fn, stabilizer);
        PositiveRandomFeatures f;
        f.set_matrix(w);
        detail::check_finite(fn, "w", f.m_w);
        f.m_options.num_features = f.m_w.rows();
        f.m_options.stabilizer = stabilizer;
        return f;
    }

    /// Replaces W by the next draw of the same seed (draw index + 1), with the same options.
    void redraw() {
        constexpr const char* fn = "PositiveRandomFeatures::redraw";
        if (!m_seeded)
            detail::throw_invalid(fn, ": these features have no seed (", m_w.rows() == 0 ? "empty" : "from_matrix",
                                  "); make them with PositiveRandomFeatures<S>::draw(d, seed) to redraw");
        ++m_draw;
        set_matrix(draw_matrix(m_options.num_features, m_w.cols(), m_seed, m_draw, m_options).template cast<Scalar>());
    }

    /// m, the number of features (0 if empty).
    Index num_features() const { return m_w.rows(); }
    /// d, the head dimension W was drawn for (0 if empty).
    Index dim() const { return m_w.cols(); }
    /// W (m × d): row f is ω_f.
    const Matrix<Scalar>& matrix() const { return m_w; }
    double stabilizer() const { return m_options.stabilizer; }
    const RandomFeatureOptions& options() const { return m_options; }
    bool seeded() const { return m_seeded; }
    std::uint64_t seed() const { return m_seed; }
    /// How many times redraw() was called since draw().
    std::uint64_t draw_index() const { return m_draw; }

    std::string name() const {
        if (m_w.size() == 0) return "FAVOR+ (empty: no W)";
        std::ostringstream os;
        os << "FAVOR+ m = " << m_w.rows();
        if (m_seeded)
            os << (m_options.orthogonal ? ", orthogonal" : ", iid")
               << (m_options.norms == FeatureNorms::Chi ? "" : ", norms sqrt(d)") << ", seed " << m_seed;
        else
            os << ", given W";
        return os.str();
    }

    /// m; throws if the features are empty (default-constructed or moved-from), hold a
    /// non-finite stabilizer, or were drawn for another head dimension than d.
    Index feature_dim(Index d) const {
        if (m_w.rows() == 0 || m_w.cols() == 0)
            detail::throw_invalid("PositiveRandomFeatures: the features are empty (W is ", detail::shape_of(m_w),
                                  "; default-constructed or moved-from?); make them with "
                                  "PositiveRandomFeatures<S>::draw(d, seed) or from_matrix(W)");
        check_stabilizer("PositiveRandomFeatures", m_options.stabilizer);
        if (m_w.cols() != d)
            detail::throw_invalid("PositiveRandomFeatures: W is m x d = ", detail::shape_of(m_w),
                                  " but q and k have d = ", d, " columns (draw the features for the head dimension d)");
        return m_w.rows();
    }

    /// Per row of x (the queries q; the map forms √s·q itself): φ(√s·q) times
    /// exp(‖√s·q‖²/2 − max_f √s·(Wq)_f), i.e. (exp(√s·Wq − max_f √s·(Wq)_f) + stabilizer) / √m,
    /// entries in (0, (1 + stabilizer)/√m] (see the class comment).
    void queries(const Eigen::Ref<const Matrix<Scalar>>& x, double scale, Eigen::Ref<Matrix<Scalar>> phi) const {
        Vector<Scalar> row_max(x.rows());
        project(x, scale, phi, row_max);
    }

    /// φ(x_j) = phi_j · exp(log_scale_j): phi as in queries(), log_scale_j = max_f (Wx_j)_f − ‖x_j‖²/2.
    void keys(const Eigen::Ref<const Matrix<Scalar>>& x, double scale, Eigen::Ref<Matrix<Scalar>> phi,
              Eigen::Ref<Vector<Scalar>> log_scale) const {
        project(x, scale, phi, log_scale);
        const Scalar half_s = static_cast<Scalar>(0.5 * scale);
        for (Index j = 0; j < x.cols(); ++j) log_scale.array() -= half_s * x.col(j).array().square();
    }

private:
    static void check_stabilizer(const char* fn, double stabilizer) {
        if (!(std::isfinite(stabilizer) && stabilizer >= 0))
            detail::throw_invalid(fn, ": stabilizer (", stabilizer, ") must be finite and >= 0 (default 1e-6)");
    }

    /// phi = (exp(√s·X Wᵀ − row max) + stabilizer) / √m; row_max = the row maxima of √s·X Wᵀ.
    template <typename RowMax>
    void project(const Eigen::Ref<const Matrix<Scalar>>& x, double scale, Eigen::Ref<Matrix<Scalar>> phi,
                 RowMax&& row_max) const {
        const Scalar root_s = static_cast<Scalar>(std::sqrt(scale));
        const Scalar inv_sqrt_m = static_cast<Scalar>(1.0 / std::sqrt(static_cast<double>(m_w.rows())));
        const Scalar stab = static_cast<Scalar>(m_options.stabilizer);
        detail::small_gemm<false>(phi, x, m_wt);  // X Wᵀ; √s (> 0) is applied below
        // Column by column: contiguous, so max and exp vectorise (a rowwise()/colwise() broadcast
        // made Eigen call the scalar expf, 3x slower).
        row_max = phi.col(0);
        for (Index f = 1; f < phi.cols(); ++f) row_max = row_max.cwiseMax(phi.col(f));
        row_max *= root_s;
        for (Index f = 0; f < phi.cols(); ++f)
            phi.col(f).array() =
                ((root_s * phi.col(f).array() - row_max.array()).unaryExpr(detail::exp_op<Scalar>()) + stab) * inv_sqrt_m;
    }

    /// W (m × d) in double: see the class comment.
    static Matrix<double> draw_matrix(Index m, Index d, std::uint64_t seed, std::uint64_t draw_index,
                                      const RandomFeatureOptions& o) {
        const CounterRng rng(seed, stream + draw_index);
        const std::uint64_t du = static_cast<std::uint64_t>(d);
        Matrix<double> w(m, d);
        const double sqrt_d = std::sqrt(static_cast<double>(d));
        if (!o.orthogonal) {
            // Row f: normals f*d .. f*d + d - 1.
            for (Index f = 0; f < m; ++f) {
                for (Index j = 0; j < d; ++j) w(f, j) = rng.normal(static_cast<std::uint64_t>(f) * du + static_cast<std::uint64_t>(j));
                if (o.norms == FeatureNorms::SqrtD) w.row(f) *= sqrt_d / w.row(f).norm();
            }
            return w;
        }
        // Block b: a d x d Gaussian G (normals b*d*d + i*d + j), G = QR, columns of Q·diag(sign R_ii).
        const Index blocks = (m + d - 1) / d;
        Matrix<double> g(d, d);
        for (Index b = 0; b < blocks; ++b) {
            const std::uint64_t base = static_cast<std::uint64_t>(b) * du * du;
            for (Index i = 0; i < d; ++i)
                for (Index j = 0; j < d; ++j)
                    g(i, j) = rng.normal(base + static_cast<std::uint64_t>(i) * du + static_cast<std::uint64_t>(j));
            const Matrix<double> q = detail::haar_q(g);
            const Index rows = std::min(d, m - b * d);
            w.middleRows(b * d, rows) = q.leftCols(rows).transpose();
        }
        // Row norms: chi(d) from d further normals per row (after every block's normals), or √d.
        const std::uint64_t norm_base = static_cast<std::uint64_t>(blocks) * du * du;
        for (Index f = 0; f < m; ++f) {
            double norm = sqrt_d;
            if (o.norms == FeatureNorms::Chi) {
                double sq = 0;
                for (Index t = 0; t < d; ++t) {
                    const double z = rng.normal(norm_base + static_cast<std::uint64_t>(f) * du + static_cast<std::uint64_t>(t));
                    sq += z * z;
                }
                norm = std::sqrt(sq);
            }
            w.row(f) *= norm;
        }
        return w;
    }

    /// W and its transpose: the feature product X Wᵀ (detail::small_gemm, a register tile that
    /// reads both factors in place) reads Wᵀ column-major. Rows past the last whole packet, such as a single row, go through Eigen's
    /// product, which may round differently.
    template <typename DW>
    void set_matrix(const Eigen::MatrixBase<DW>& w) {
        m_w = w;
        m_wt = m_w.transpose();
    }

    Matrix<Scalar> m_w;
    Matrix<Scalar> m_wt;
    RandomFeatureOptions m_options;
    std::uint64_t m_seed = 0;
    std::uint64_t m_draw = 0;
    bool m_seeded = false;
};

namespace detail {

template <typename Map, typename Scalar, typename = void>
struct feature_map_check : std::false_type {};

template <typename Map, typename Scalar>
struct feature_map_check<
    Map, Scalar,
    std::void_t<decltype(static_cast<Index>(std::declval<const Map&>().feature_dim(Index{}))),
                decltype(std::declval<const Map&>().queries(std::declval<const Eigen::Ref<const Matrix<Scalar>>&>(),
                                                            double{}, std::declval<Eigen::Ref<Matrix<Scalar>>>())),
                decltype(std::declval<const Map&>().keys(std::declval<const Eigen::Ref<const Matrix<Scalar>>&>(),
                                                         double{}, std::declval<Eigen::Ref<Matrix<Scalar>>>(),
                                                         std::declval<Eigen::Ref<Vector<Scalar>>>()))>>
    : std::true_type {};

/// The optional members uses_scale and finite_features: whether the map declares one at all,
/// and whether it is usable as what the concept asks for, a static constexpr bool (its address
/// is a const bool*; a non-static member's is a pointer to member, which GCC rejects outright
/// in a template argument). Only a usable member counts (map_uses_scale, map_finite_features);
/// a declared one that is not usable is rejected by optional_members_ok's static_assert in the
/// entry points, with a message, rather than by an error deep in these templates.
template <typename Map, typename = void>
struct uses_scale_member {
    static constexpr bool declared = false, usable = false;
};
template <typename Map>
struct uses_scale_member<Map, std::void_t<decltype(&Map::uses_scale)>> {
    static constexpr bool declared = true, usable = std::is_same<decltype(&Map::uses_scale), const bool*>::value;
};

template <typename Map, typename = void>
struct finite_features_member {
    static constexpr bool declared = false, usable = false;
};
template <typename Map>
struct finite_features_member<Map, std::void_t<decltype(&Map::finite_features)>> {
    static constexpr bool declared = true, usable = std::is_same<decltype(&Map::finite_features), const bool*>::value;
};

/// True if every optional member the map declares is a static constexpr bool.
template <typename Map>
struct optional_members_ok
    : std::bool_constant<(!uses_scale_member<Map>::declared || uses_scale_member<Map>::usable) &&
                         (!finite_features_member<Map>::declared || finite_features_member<Map>::usable)> {};

template <typename Map, typename = void>
struct map_uses_scale : std::true_type {};
template <typename Map>
struct map_uses_scale<Map, std::enable_if_t<uses_scale_member<Map>::usable>> : std::bool_constant<Map::uses_scale> {};

template <typename Map, typename = void>
struct map_finite_features : std::false_type {};
template <typename Map>
struct map_finite_features<Map, std::enable_if_t<finite_features_member<Map>::usable>>
    : std::bool_constant<Map::finite_features> {};

template <typename Map, typename = void>
struct map_has_name : std::false_type {};
template <typename Map>
struct map_has_name<Map, std::void_t<decltype(std::string(std::declval<const Map&>().name()))>> : std::true_type {};

/// The map's name() if it has one, else "custom feature map".
template <typename Map>
std::string feature_map_name(const Map& map) {
    if constexpr (map_has_name<Map>::value)
        return std::string(map.name());
    else
        return "custom feature map";
}

}  // namespace detail

/// True if Map has the feature-map interface (feature_dim, queries, keys) for Scalar.
template <typename Map, typename Scalar>
struct is_feature_map : detail::feature_map_check<Map, Scalar> {};

static_assert(is_feature_map<EluPlusOne, float>::value && is_feature_map<EluPlusOne, double>::value &&
                  is_feature_map<PositiveRandomFeatures<float>, float>::value &&
                  is_feature_map<PositiveRandomFeatures<double>, double>::value,
              "attnx: the built-in feature maps have the feature-map interface");

}  // namespace attnx

#endif  // ATTNX_FEATURE_MAPS_HPP
