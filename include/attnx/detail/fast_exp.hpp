// SPDX-License-Identifier: MIT
/// \file detail/fast_exp.hpp
/// exp for float packets with the exponent built by one integer shift, for the feature-map
/// engine's exp passes (FAVOR+'s features, elu + 1's negative part, the causal chunks' key
/// weights). Not API.
///
/// Why: Eigen 3.4's SSE and AVX exp for float (pexp_float) scales by 2^m with its general
/// ldexp (pldexp_generic: clamps and four multiplies, for any float exponent), where an exp's
/// m is in [−127, 128]; only its AVX-512 exp builds 2^m with a shift. On the 2-core AVX-512 VM
/// of this project, built with -mno-avx512f, Eigen's exp took 0.44 ns per float (1.5 cycles)
/// and this one 0.26–0.30; with AVX-512 both take 0.13. A FAVOR+ feature block (64 x 256)
/// spent half as long in Eigen's exp as in its 64 x 64 by 64 x 256 product. This is Eigen's
/// generic pexp_float (Cody–Waite reduction with ln 2 in two parts, exact without FMA; Cephes'
/// degree-7 polynomial on r ∈ [−ln2/2, ln2/2]) with 2^m built by the shift of its AVX-512 exp.
/// Multiplying by an exact power of two does not round, so where the result is a normal float
/// it is bit-identical to Eigen's SSE/AVX exp; Eigen's AVX-512 exp reduces with one ln 2
/// constant, so there the last bit may differ.
///
/// Accuracy (tested against the double exp): within 2 ulp (1.25–1.28 measured) for
/// x ∈ [−87.33, 88.376), where the result is a normal float; for x ∈ [−88.38, −87.33), results
/// within 2^−126 of the true value (+0 from −87.68 down: no subnormal results there, where
/// Eigen's SSE/AVX exp returns subnormals); x < −88.38 and −inf give +0; x ≥ 88.376 and +inf
/// give +inf (the true result overflows from 88.723; the feature maps pass x <= 0); NaN gives
/// NaN. The scalar path (what Eigen's vectorised loops do not reach with whole packets: a
/// block's unaligned head and its tail) is std::exp, as in Eigen's own exp. Double is Eigen's
/// exp unchanged (no target here depends on it).
///
/// Cost: about 19 vector operations per packet with FMA (more with SSE2, whose floor is
/// emulated), no table, no branch.
#ifndef ATTNX_DETAIL_FAST_EXP_HPP
#define ATTNX_DETAIL_FAST_EXP_HPP

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <type_traits>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // packet types' alignment attributes
#endif

namespace attnx {
namespace detail {

/// exp of a packet of floats: see the file comment.
template <typename Packet>
inline Packet pexp_float_shift(const Packet& x0) {
    namespace ei = Eigen::internal;
    using PacketI = typename ei::unpacket_traits<Packet>::integer_packet;
    // x >= 88.3763 gives m = 128, whose biased exponent 255 shifted into place is +inf; the
    // upper clamp keeps m from passing 128 (a larger biased exponent would reach the sign bit).
    const Packet x = ei::pmax(ei::pmin(x0, ei::pset1<Packet>(88.7f)), ei::pset1<Packet>(-88.3762626647949f));
    const Packet m = ei::pfloor(ei::pmadd(x, ei::pset1<Packet>(1.44269504088896341f), ei::pset1<Packet>(0.5f)));
    Packet r = ei::pmadd(m, ei::pset1<Packet>(-0.693359375f), x);  // 9 significant bits: m·C1 is exact
    r = ei::pmadd(m, ei::pset1<Packet>(2.12194440e-4f), r);
    const Packet r2 = ei::pmul(r, r);
    const Packet r3 = ei::pmul(r2, r);
    Packet y = ei::pmadd(ei::pset1<Packet>(1.9875691500e-4f), r, ei::pset1<Packet>(1.3981999507e-3f));
    Packet y1 = ei::pmadd(ei::pset1<Packet>(4.1665795894e-2f), r, ei::pset1<Packet>(1.6666665459e-1f));
    const Packet y2 = ei::padd(r, ei::pset1<Packet>(1.0f));
    y = ei::pmadd(y, r, ei::pset1<Packet>(8.3334519073e-3f));
    y1 = ei::pmadd(y1, r, ei::pset1<Packet>(5.0000001201e-1f));
    y = ei::pmadd(y, r3, y1);
    y = ei::pmadd(y, r2, y2);
    // 2^m for m in [−127, 128]: the biased exponent m + 127 in [0, 255] shifted into place (+0
    // for m = −127, +inf for m = 128). The lower clamp rounds to −88.37625885: x·log2e + 0.5 =
    // −126.99999 with and without FMA, so m is never −128 (whose bits would be −inf).
    const PacketI e = ei::plogical_shift_left<23>(ei::pcast<Packet, PacketI>(ei::padd(m, ei::pset1<Packet>(127.0f))));
    return ei::pmul(y, ei::preinterpret<Packet>(e));
}

/// exp as an Eigen functor: `expr.unaryExpr(detail::exp_op<Scalar>())` in place of
/// `expr.exp()`, vectorised with pexp_float_shift for float (Eigen's pexp for double).
template <typename Scalar>
struct exp_op {
    Scalar operator()(const Scalar& x) const { return std::exp(x); }
    template <typename Packet>
    Packet packetOp(const Packet& x) const {
        if constexpr (std::is_same<Scalar, float>::value)
            return pexp_float_shift(x);
        else
            return Eigen::internal::pexp(x);
    }
};

}  // namespace detail
}  // namespace attnx

namespace Eigen {
namespace internal {
template <typename Scalar>
struct functor_traits<attnx::detail::exp_op<Scalar>> {
    enum { Cost = 20 * NumTraits<Scalar>::MulCost, PacketAccess = packet_traits<Scalar>::HasExp };
};
}  // namespace internal
}  // namespace Eigen

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif  // ATTNX_DETAIL_FAST_EXP_HPP
