// SPDX-License-Identifier: MIT
/// \file detail/static_for.hpp
/// An unrolled loop with a constant index, for the packet kernels (single_query.hpp,
/// small_gemm.hpp). Not API.
#ifndef ATTNX_DETAIL_STATIC_FOR_HPP
#define ATTNX_DETAIL_STATIC_FOR_HPP

#include <type_traits>
#include <utility>

namespace attnx {
namespace detail {

/// f(std::integral_constant<int, 0>{}), ..., f(std::integral_constant<int, N - 1>{}): an unrolled
/// loop whose index is a constant, so that arrays of packets indexed by it stay in registers.
template <typename F, int... I>
inline void static_for_each(F& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
inline void static_for(F&& f) {
    static_for_each(f, std::make_integer_sequence<int, N>{});
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_STATIC_FOR_HPP
