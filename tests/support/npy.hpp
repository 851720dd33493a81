// SPDX-License-Identifier: MIT
/// \file npy.hpp
/// A small reader and writer of NumPy .npy files (format 1.0, 2.0 and 3.0): 2-D (or 1-D)
/// arrays of little-endian float32 ('<f4'), float64 ('<f8') or uint8 ('|u1'), C or
/// Fortran order. Errors (missing file, bad magic, unsupported dtype, truncated data)
/// throw std::runtime_error with the file name and what is wrong.
#ifndef ATTNX_TESTS_SUPPORT_NPY_HPP
#define ATTNX_TESTS_SUPPORT_NPY_HPP

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct Array {
    std::string dtype;           ///< "<f4", "<f8" or "|u1"
    std::vector<std::int64_t> shape;
    Eigen::MatrixXd data;        ///< values converted to double; 1-D arrays are n x 1
};

namespace detail {
[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error("npy: " + path + ": " + what);
}

inline std::string field(const std::string& header, const std::string& key) {
    const std::size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) return {};
    std::size_t p = header.find(':', k);
    if (p == std::string::npos) return {};
    ++p;
    while (p < header.size() && header[p] == ' ') ++p;
    if (p >= header.size()) return {};
    const char open = header[p];
    if (open == '\'') {
        const std::size_t e = header.find('\'', p + 1);
        return e == std::string::npos ? std::string() : header.substr(p + 1, e - p - 1);
    }
    if (open == '(') {
        const std::size_t e = header.find(')', p);
        return e == std::string::npos ? std::string() : header.substr(p, e - p + 1);
    }
    std::size_t e = p;
    while (e < header.size() && header[e] != ',' && header[e] != '}') ++e;
    return header.substr(p, e - p);
}
}  // namespace detail

/// Reads a .npy file holding a 1-D or 2-D array.
inline Array read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::fail(path, "cannot open file");
    char magic[8];
    if (!in.read(magic, 8)) detail::fail(path, "file is shorter than the 8-byte .npy preamble");
    if (std::memcmp(magic, "\x93NUMPY", 6) != 0) detail::fail(path, "not a .npy file (bad magic)");
    const int major = static_cast<unsigned char>(magic[6]);
    std::uint32_t header_len = 0;
    if (major == 1) {
        unsigned char b[2];
        if (!in.read(reinterpret_cast<char*>(b), 2)) detail::fail(path, "truncated header length");
        header_len = static_cast<std::uint32_t>(b[0] | (b[1] << 8));
    } else if (major == 2 || major == 3) {
        unsigned char b[4];
        if (!in.read(reinterpret_cast<char*>(b), 4)) detail::fail(path, "truncated header length");
        header_len = static_cast<std::uint32_t>(b[0]) | (static_cast<std::uint32_t>(b[1]) << 8) |
                     (static_cast<std::uint32_t>(b[2]) << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
    } else {
        detail::fail(path, "unsupported .npy format version " + std::to_string(major));
    }
    std::string header(header_len, '\0');
    if (!in.read(&header[0], header_len)) detail::fail(path, "truncated header");

    Array a;
    a.dtype = detail::field(header, "descr");
    const std::string order = detail::field(header, "fortran_order");
    const std::string shape = detail::field(header, "shape");
    if (a.dtype != "<f4" && a.dtype != "<f8" && a.dtype != "|u1")
        detail::fail(path, "unsupported dtype '" + a.dtype + "' (expected <f4, <f8 or |u1)");
    if (order != "False" && order != "True") detail::fail(path, "bad fortran_order '" + order + "'");
    if (shape.empty()) detail::fail(path, "header has no shape");
    {
        std::string s = shape.substr(1, shape.size() - 2);
        std::stringstream ss(s);
        std::string tok;
        while (std::getline(ss, tok, ',')) {
            if (tok.find_first_not_of(" ") == std::string::npos) continue;
            try {
                a.shape.push_back(std::stoll(tok));
            } catch (const std::exception&) {
                detail::fail(path, "bad shape " + shape);
            }
            if (a.shape.back() < 0) detail::fail(path, "negative dimension in shape " + shape);
        }
    }
    if (a.shape.empty() || a.shape.size() > 2)
        detail::fail(path, "only 1-D and 2-D arrays are supported, shape is " + shape);
    const std::int64_t rows = a.shape[0], cols = a.shape.size() == 2 ? a.shape[1] : 1;
    const std::size_t item = a.dtype == "<f8" ? 8 : (a.dtype == "<f4" ? 4 : 1);
    const std::size_t count = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    std::vector<char> raw(count * item);
    if (count > 0 && !in.read(raw.data(), static_cast<std::streamsize>(raw.size())))
        detail::fail(path, "truncated data: expected " + std::to_string(raw.size()) + " bytes for shape " + shape);
    a.data.resize(rows, cols);
    const bool fortran = order == "True";
    for (std::size_t idx = 0; idx < count; ++idx) {
        double val = 0;
        if (item == 8) {
            std::memcpy(&val, &raw[idx * 8], 8);
        } else if (item == 4) {
            float f;
            std::memcpy(&f, &raw[idx * 4], 4);
            val = f;
        } else {
            val = static_cast<unsigned char>(raw[idx]);
        }
        const std::int64_t i = fortran ? static_cast<std::int64_t>(idx) % rows : static_cast<std::int64_t>(idx) / cols;
        const std::int64_t j = fortran ? static_cast<std::int64_t>(idx) / rows : static_cast<std::int64_t>(idx) % cols;
        a.data(i, j) = val;
    }
    return a;
}

/// Writes a 2-D array as C-order .npy (format 1.0), float32 when as_float32, else float64.
template <typename Derived>
void write(const std::string& path, const Eigen::MatrixBase<Derived>& m, bool as_float32) {
    std::ofstream out(path, std::ios::binary);
    if (!out) detail::fail(path, "cannot create file");
    std::string header = std::string("{'descr': '") + (as_float32 ? "<f4" : "<f8") +
                         "', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                         std::to_string(m.cols()) + "), }";
    const std::size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    out.write("\x93NUMPY\x01\x00", 8);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xFF),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(len), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) {
            if (as_float32) {
                const float f = static_cast<float>(m(i, j));
                out.write(reinterpret_cast<const char*>(&f), 4);
            } else {
                const double f = static_cast<double>(m(i, j));
                out.write(reinterpret_cast<const char*>(&f), 8);
            }
        }
    if (!out) detail::fail(path, "write failed");
}

}  // namespace npy

#endif  // ATTNX_TESTS_SUPPORT_NPY_HPP
