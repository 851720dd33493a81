// SPDX-License-Identifier: MIT
/// \file mechanisms.hpp
/// Mechanism values: every attnx attention mechanism as a small, copyable value that holds its
/// data and options and is called the same way. They are what generic code takes (the
/// multi-head layer, the error estimator, attnx_run, the demo, the Python module), so the list
/// of mechanisms lives here, in one compile-time place: no virtual base, no string registry.
///
/// Every mechanism value M provides
///   - `options`: a public member deriving from AttentionOptions (scale, causal,
///     key_padding_mask, check_finite), which generic code may set before a call;
///   - `mech(q, k, v, out)`: attention of Q (n_q x d) against K (n_k x d), V (n_k x d_v) into a
///     caller-provided n_q x d_v buffer, and `mech(q, k, v)` returning it; both forward to the
///     mechanism's free function with the same checks, errors, cost and results;
///   - `name()` (e.g. "nystrom") and `parameters()` (e.g. "m = 64, 6 pinv iterations"), for
///     tables and messages.
/// attnx::is_mechanism<M>::value checks the first three at compile time.
///
/// Example:
///   attnx::NystromOptions o;
///   o.num_landmarks = 32;
///   const attnx::Nystrom mech{o};
///   attnx::Matrix<float> out = mech(q, k, v);   // == attnx::nystrom_attention(q, k, v, o)
#ifndef ATTNX_MECHANISMS_HPP
#define ATTNX_MECHANISMS_HPP

#include <Eigen/Core>

#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "attnx/bigbird.hpp"
#include "attnx/block_layout.hpp"
#include "attnx/core.hpp"
#include "attnx/exact.hpp"
#include "attnx/feature_maps.hpp"
#include "attnx/linear_attention.hpp"
#include "attnx/linformer.hpp"
#include "attnx/nystrom.hpp"

namespace attnx {

namespace detail {

/// "a = 1, b = 2" from name/value pairs, for parameters().
template <class... Parts>
std::string join_parameters(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}

}  // namespace detail

/// Exact softmax attention (exact_attention), streaming or materialized per options.kernel.
struct Exact {
    ExactOptions options;

    std::string name() const { return "exact"; }
    std::string parameters() const {
        if (options.kernel == ExactKernel::Materialized) return "materialized";
        return detail::join_parameters("streaming, tile ", options.query_tile, "x", options.key_tile, ", one query ",
                                       options.decode_key_tile);
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        exact_attention(q, k, v, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return exact_attention(q, k, v, options);
    }
};

/// Nyström attention (nystrom_attention). The pseudoinverse report is not available through
/// the value; call nystrom_attention with a NystromReport for it.
struct Nystrom {
    NystromOptions options;

    std::string name() const { return "nystrom"; }
    std::string parameters() const {
        if (options.pinv == PinvMethod::Exact) return detail::join_parameters("m = ", options.num_landmarks, ", exact pinv");
        return detail::join_parameters("m = ", options.num_landmarks, ", ", options.pinv_iterations,
                                       " pinv iterations");
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        nystrom_attention(q, k, v, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return nystrom_attention(q, k, v, options);
    }
};

/// Linformer attention (linformer_attention) with a LinformerProjection. The projection is
/// shared, not copied, between copies of the value (it is k x n_max per matrix, often MiBs).
template <typename Scalar>
struct Linformer {
    std::shared_ptr<const LinformerProjection<Scalar>> projection;
    AttentionOptions options;

    Linformer() = default;
    explicit Linformer(LinformerProjection<Scalar> p, AttentionOptions o = {})
        : projection(std::make_shared<const LinformerProjection<Scalar>>(std::move(p))), options(std::move(o)) {}

    std::string name() const { return "linformer"; }
    std::string parameters() const {
        if (!projection) return "no projection";
        return detail::join_parameters("k = ", projection->rank(), ", n_max = ", projection->max_length(),
                                       projection->sharing() == LinformerSharing::KeyValue ? ", F = E" : "");
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        linformer_attention(q, k, v, get(), out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return linformer_attention(q, k, v, get(), options);
    }

    /// Key-side work shared between query heads (the optional hook multi_head_attention looks
    /// for): K̄ = E K and V̄ = F V of one key/value head, with the checks of K and V, computed
    /// once and reused by every query head of its group through attend_keys. The pair gives
    /// the same values, bit for bit, and the same errors as a call of the value.
    using KeyState = detail::LinformerKeys<Scalar>;
    void prepare_keys(const Eigen::Ref<const Matrix<Scalar>>& k, const Eigen::Ref<const Matrix<Scalar>>& v,
                      KeyState& state) const {
        detail::linformer_prepare_keys<Scalar>("linformer_attention", k, v, get(), options, state);
    }
    void attend_keys(const Eigen::Ref<const Matrix<Scalar>>& q, const KeyState& state,
                     Eigen::Ref<Matrix<Scalar>> out) const {
        detail::linformer_attend_keys<Scalar>("linformer_attention", q, state, options, out);
    }

private:
    const LinformerProjection<Scalar>& get() const {
        if (!projection)
            detail::throw_invalid("linformer_attention: the Linformer mechanism holds no projection (default-",
                                  "constructed); build it as attnx::Linformer<Scalar>(projection, options)");
        return *projection;
    }
};

/// Block-sparse attention (block_sparse_attention) with a fixed BlockLayout, built for one
/// (n_q, n_k): BigBird, Longformer, dense or any block mask.
struct BlockSparse {
    BlockLayout layout;
    AttentionOptions options;

    std::string name() const { return "block_sparse"; }
    std::string parameters() const {
        return detail::join_parameters("b = ", layout.block_size(), ", ", layout.kept_blocks(), " of ",
                                       layout.query_blocks() * layout.key_blocks(), " blocks");
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        block_sparse_attention(q, k, v, layout, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return block_sparse_attention(q, k, v, layout, options);
    }
};

/// BigBird self-attention (bigbird_attention): the layout is built for each call's n.
struct BigBird {
    BigBirdOptions bigbird;
    AttentionOptions options;

    std::string name() const { return "bigbird"; }
    std::string parameters() const {
        return detail::join_parameters("b ", bigbird.block, ", w ", bigbird.window, ", g ", bigbird.global, ", r ",
                                       bigbird.random);
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        bigbird_attention(q, k, v, bigbird, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return bigbird_attention(q, k, v, bigbird, options);
    }
};

/// Feature-map attention (linear_attention) with a feature map: linear attention with the
/// default EluPlusOne, or any type with the feature-map interface (feature_maps.hpp).
template <typename Map = EluPlusOne>
struct Linear {
    Map map;
    LinearAttentionOptions options;

    std::string name() const { return "linear"; }
    std::string parameters() const {
        return detail::join_parameters(detail::feature_map_name(map), options.causal ? ", causal, chunk " : "",
                                       options.causal ? std::to_string(options.chunk) : std::string());
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        linear_attention(q, k, v, map, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return linear_attention(q, k, v, map, options);
    }
};

/// Performer FAVOR+ attention (performer_attention) with PositiveRandomFeatures drawn by the
/// caller. A default-constructed value holds empty features: calling it throws.
template <typename Scalar>
struct Performer {
    PositiveRandomFeatures<Scalar> features;
    LinearAttentionOptions options;

    std::string name() const { return "performer"; }
    std::string parameters() const {
        return detail::join_parameters(features.name(), options.causal ? ", causal, chunk " : "",
                                       options.causal ? std::to_string(options.chunk) : std::string());
    }
    template <typename DQ, typename DK, typename DV>
    void operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k, const Eigen::MatrixBase<DV>& v,
                    Eigen::Ref<Matrix<typename DQ::Scalar>> out) const {
        performer_attention(q, k, v, features, out, options);
    }
    template <typename DQ, typename DK, typename DV>
    Matrix<typename DQ::Scalar> operator()(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                                           const Eigen::MatrixBase<DV>& v) const {
        return performer_attention(q, k, v, features, options);
    }
};

/// True for a type with the mechanism interface above: `options` deriving from
/// AttentionOptions, `name()`, `parameters()` and the out-buffer call on float matrices.
template <typename M, typename = void>
struct is_mechanism : std::false_type {};

template <typename M>
struct is_mechanism<
    M, std::void_t<decltype(std::declval<const M&>().name()), decltype(std::declval<const M&>().parameters()),
                   decltype(std::declval<const M&>()(std::declval<const Matrix<float>&>(),
                                                     std::declval<const Matrix<float>&>(),
                                                     std::declval<const Matrix<float>&>(),
                                                     std::declval<Eigen::Ref<Matrix<float>>>()))>>
    : std::bool_constant<std::is_base_of<AttentionOptions, std::decay_t<decltype(std::declval<M&>().options)>>::value> {
};

static_assert(is_mechanism<Exact>::value && is_mechanism<Nystrom>::value && is_mechanism<BlockSparse>::value &&
                  is_mechanism<BigBird>::value && is_mechanism<Linear<>>::value && is_mechanism<Performer<float>>::value,
              "attnx: every built-in mechanism has the mechanism interface");

}  // namespace attnx

#endif  // ATTNX_MECHANISMS_HPP
