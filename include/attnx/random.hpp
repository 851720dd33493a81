// SPDX-License-Identifier: MIT
/// \file random.hpp
/// attnx's own seeded random numbers, identical on every compiler and standard library
/// (std::*_distribution are not specified bit-for-bit, and Eigen's Random() wraps std::rand).
///
/// The generator is counter-based: draw(seed, stream, index) -> 64 random bits, computed by
/// the SplitMix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014) applied to a combination of the three words. Any value can be
/// computed on its own, so results never depend on loop or thread order.
///
/// Uniforms use the top 53 bits; normals use Box–Muller on two uniforms. The integer and
/// uniform streams are bit-identical everywhere; a normal goes through std::log, std::sqrt
/// and std::cos, which may differ in the last ulp between C libraries.
#ifndef ATTNX_RANDOM_HPP
#define ATTNX_RANDOM_HPP

#include <Eigen/Core>

#include <cmath>
#include <cstdint>

#include "attnx/core.hpp"

namespace attnx {

/// A counter-based random source: a seed and a stream name one sequence; operator() with an
/// index gives that element of the sequence.
class CounterRng {
public:
    explicit CounterRng(std::uint64_t seed, std::uint64_t stream = 0) : m_seed(seed), m_stream(stream) {}

    /// 64 random bits: element `index` of this (seed, stream) sequence.
    std::uint64_t bits(std::uint64_t index) const {
        std::uint64_t x = mix(m_seed ^ 0x9E3779B97F4A7C15ULL);
        x = mix(x ^ (m_stream + 0xD1B54A32D192ED03ULL));
        return mix(x ^ (index * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL));
    }

    /// Uniform in [0, 1) with 53 random bits.
    double uniform(std::uint64_t index) const { return static_cast<double>(bits(index) >> 11) * 0x1.0p-53; }

    /// Uniform integer in [0, n) for n >= 1: the high word of bits * n (Lemire's
    /// multiply-shift; bias below n / 2^64), computed portably in 32-bit halves.
    std::uint64_t below(std::uint64_t index, std::uint64_t n) const { return mul_high(bits(index), n); }

    /// Standard normal N(0, 1), Box–Muller on uniforms 2*index and 2*index + 1.
    double normal(std::uint64_t index) const {
        const double u1 = 1.0 - uniform(2 * index);  // (0, 1]: log is finite
        const double u2 = uniform(2 * index + 1);
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
    }

    std::uint64_t seed() const { return m_seed; }
    std::uint64_t stream() const { return m_stream; }

private:
    static std::uint64_t mul_high(std::uint64_t a, std::uint64_t b) {
        const std::uint64_t a_lo = a & 0xFFFFFFFFULL, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFULL, b_hi = b >> 32;
        const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
        const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFULL) + lo_hi;
        return hi_hi + (hi_lo >> 32) + (cross >> 32);
    }

    static std::uint64_t mix(std::uint64_t z) {
        z += 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    std::uint64_t m_seed;
    std::uint64_t m_stream;
};

/// A rows x cols matrix of N(mean, stddev^2) entries; entry (i, j) is element i*cols + j of
/// the (seed, stream) sequence, whatever the storage order.
template <typename Scalar>
Matrix<Scalar> random_normal(Index rows, Index cols, std::uint64_t seed, std::uint64_t stream = 0,
                             double mean = 0.0, double stddev = 1.0) {
    const CounterRng rng(seed, stream);
    Matrix<Scalar> m(rows, cols);
    for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < cols; ++j)
            m(i, j) = static_cast<Scalar>(mean + stddev * rng.normal(static_cast<std::uint64_t>(i * cols + j)));
    return m;
}

}  // namespace attnx

#endif  // ATTNX_RANDOM_HPP
