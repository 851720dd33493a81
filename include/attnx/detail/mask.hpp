// SPDX-License-Identifier: MIT
/// \file detail/mask.hpp
/// Which keys a query may see: the causal and key-padding masks of AttentionOptions in the form
/// the kernels use. Not API.
#ifndef ATTNX_DETAIL_MASK_HPP
#define ATTNX_DETAIL_MASK_HPP

#include <Eigen/Core>

#include <vector>

#include "attnx/core.hpp"

namespace attnx {
namespace detail {
/// Additive mask description shared by the kernels: which keys a query may see.
struct MaskSpec {
    const std::vector<bool>* key_padding = nullptr;  ///< nullptr or length n_k
    bool causal = false;
    Index causal_offset = 0;  ///< query i sees keys j <= i + causal_offset
    /// nullptr, or for each row i of q its position in the full query sequence, ascending
    /// (the estimator's gathered rows): the causal limit of row i is then
    /// query_positions[i] + causal_offset instead of i + causal_offset.
    const Index* query_positions = nullptr;

    bool any() const { return causal || key_padding != nullptr; }
    /// The position of row i of q for causal masking.
    Index position(Index i) const { return query_positions != nullptr ? query_positions[i] : i; }
};

inline MaskSpec make_mask(const AttentionOptions& o, Index n_q, Index n_k) {
    MaskSpec m;
    if (!o.key_padding_mask.empty()) m.key_padding = &o.key_padding_mask;
    m.causal = o.causal;
    m.causal_offset = n_k - n_q;
    return m;
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_MASK_HPP
