// SPDX-License-Identifier: MIT
/// \file fuzz_common.hpp
/// Shared helpers of the libFuzzer targets: turning the fuzz bytes into sizes, options and
/// values, and checking the contract of every attnx entry point:
///   either it throws attnx::invalid_argument with a non-empty message (anything else thrown
///   is a bug), or it returns a result of the documented shape whose entries are all finite
///   whenever every input was finite and check_finite was left on.
/// A violation prints what happened and calls abort(), which libFuzzer reports as a crash.
#ifndef ATTNX_FUZZ_COMMON_HPP
#define ATTNX_FUZZ_COMMON_HPP

#include <attnx/core.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace fuzz {

using attnx::Index;
using attnx::Matrix;

/// Reads the fuzz bytes front to back; past the end every read returns 0 (so short inputs
/// still give a complete, deterministic case).
class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) : m_data(data), m_size(size) {}

    std::uint8_t byte() { return m_pos < m_size ? m_data[m_pos++] : 0; }
    bool flag() { return (byte() & 1) != 0; }
    /// An integer in [lo, hi].
    Index range(Index lo, Index hi) {
        const unsigned v = static_cast<unsigned>(byte()) | (static_cast<unsigned>(byte()) << 8);
        return lo + static_cast<Index>(v % static_cast<unsigned>(hi - lo + 1));
    }
    std::uint64_t u64() {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
        return v;
    }
    bool exhausted() const { return m_pos >= m_size; }

    /// A size in [0, hi], biased to small ones and to 0 / 1.
    Index size(Index hi) {
        const std::uint8_t b = byte();
        if (b < 16) return 0;
        if (b < 32) return 1;
        return static_cast<Index>(b) % (hi + 1);
    }

    /// A value for a matrix entry: mostly moderate, sometimes one of the edge values.
    double value() {
        const std::uint8_t b = byte();
        if (b < 224) return (static_cast<double>(b) - 112.0) / 16.0;  // [-7, 7] in steps of 1/16
        static const double special[32] = {0.0,    -0.0,    1e30,   -1e30,   1e15,  -1e15, 1e-30, -1e-30,
                                           1e38,   -3e38,   1e19,   -1e19,   1e300, 1e-300, 1e4,  -1e4,
                                           65504., 1e-45,   5e-324, 1.0,     2.0,   -2.0,  1e10,  1e20,
                                           std::numeric_limits<double>::quiet_NaN(),
                                           std::numeric_limits<double>::infinity(),
                                           -std::numeric_limits<double>::infinity(),
                                           std::numeric_limits<double>::max(), 3.4e38, 1e37, -1e37, 7.0};
        return special[b - 224];
    }

    /// A multiplier applied to a whole matrix (huge magnitudes everywhere trigger overflow fast).
    double magnitude() {
        const std::uint8_t b = byte();
        static const double mult[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1e-30, 1e10, 1e15, 1e19, 1e30, 1e150, 1e-300, 1e36};
        return mult[b % 16];
    }

    /// An optional scale: unset, or an ordinary or edge value.
    bool scale(std::optional<double>& s) {
        const std::uint8_t b = byte();
        static const double table[16] = {0.0,   -1.0,  std::numeric_limits<double>::quiet_NaN(),
                                         std::numeric_limits<double>::infinity(),
                                         -std::numeric_limits<double>::infinity(),
                                         1e-30, 1e30,  1.0,   0.125, 1e-300, 1e300, 5e-324, 1e19, 1e-8, 100.0, 1e38};
        if (b < 128) {
            s.reset();
            return true;
        }
        s = table[b % 16];
        return std::isfinite(*s) && *s > 0;
    }

    /// A padding mask: empty, of the right length or of a wrong one.
    std::vector<bool> mask(Index n) {
        const std::uint8_t b = byte();
        if (b < 128) return {};
        Index len = n;
        if (b >= 240) len = n + 1;
        else if (b >= 224 && n > 0) len = n - 1;
        std::vector<bool> m(static_cast<std::size_t>(len));
        const std::uint8_t density = byte();
        for (auto&& x : m) x = byte() < density;
        return m;
    }

private:
    const std::uint8_t* m_data;
    std::size_t m_size;
    std::size_t m_pos = 0;
};

/// A rows x cols matrix of Scalar from the input (values times one magnitude for the matrix).
/// `finite` is cleared if an entry is NaN/Inf after the conversion to Scalar.
template <typename Scalar>
Matrix<Scalar> matrix(Input& in, Index rows, Index cols, bool& finite, double& max_abs) {
    Matrix<Scalar> m(rows, cols);
    const double mag = in.magnitude();
    for (Index j = 0; j < cols; ++j)
        for (Index i = 0; i < rows; ++i) {
            const Scalar x = static_cast<Scalar>(in.value() * mag);
            m(i, j) = x;
            if (!std::isfinite(static_cast<double>(x)))
                finite = false;
            else
                max_abs = std::max(max_abs, std::abs(static_cast<double>(x)));
        }
    return m;
}

[[noreturn]] inline void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "\n*** attnx fuzz contract violation in %s: %s\n", what, detail.c_str());
    std::fflush(stderr);
    std::abort();
}

/// What a call was given, to judge its outcome.
struct Case {
    const char* what = "";
    bool inputs_finite = true;  ///< every Q, K, V (and projection) entry finite as Scalar
    bool check_finite = true;   ///< options.check_finite
    bool moderate = false;      ///< inputs and scale so small that an overflow complaint is a bug
};

/// Checks a returned matrix: shape rows x cols, and finite when the inputs were.
template <typename Scalar>
void check_output(const Case& c, const Matrix<Scalar>& out, Index rows, Index cols) {
    if (out.rows() != rows || out.cols() != cols)
        fail(c.what, "result is " + std::to_string(out.rows()) + "x" + std::to_string(out.cols()) + ", expected " +
                         std::to_string(rows) + "x" + std::to_string(cols));
    if (c.inputs_finite && c.check_finite)
        for (Index j = 0; j < out.cols(); ++j)
            for (Index i = 0; i < out.rows(); ++i)
                if (!std::isfinite(static_cast<double>(out(i, j))))
                    fail(c.what, "finite inputs gave a non-finite result out(" + std::to_string(i) + ", " +
                                     std::to_string(j) + ") = " + std::to_string(static_cast<double>(out(i, j))));
}

/// Runs f (which returns the result or throws); returns true if it returned. Enforces the
/// exception side of the contract; the caller checks the result.
template <typename F>
bool call(const Case& c, F&& f) {
    try {
        f();
        return true;
    } catch (const attnx::invalid_argument& e) {
        const std::string msg = e.what();
        if (msg.empty()) fail(c.what, "attnx::invalid_argument with an empty message");
        if (msg.rfind("attnx::", 0) != 0) fail(c.what, "message does not start with attnx::: " + msg);
        if (c.moderate && c.inputs_finite && c.check_finite && msg.find("overflow") != std::string::npos)
            fail(c.what, "moderate inputs were rejected as overflowing: " + msg);
        return false;
    } catch (const std::exception& e) {
        fail(c.what, std::string("threw something other than attnx::invalid_argument: ") + e.what());
    } catch (...) {
        fail(c.what, "threw a non-std::exception");
    }
}

}  // namespace fuzz

/// Defines the libFuzzer entry point of a target whose template run<Scalar>(fuzz::Input&)
/// checks one case: the first byte's low bit picks double (1) or float (0).
#define ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)                                              \
    extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
        fuzz::Input in(data, size);                                                   \
        if (in.flag())                                                                \
            run<double>(in);                                                          \
        else                                                                          \
            run<float>(in);                                                           \
        return 0;                                                                     \
    }

#endif  // ATTNX_FUZZ_COMMON_HPP
