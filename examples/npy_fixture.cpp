// SPDX-License-Identifier: MIT
// Test fixture maker for the attnx_run smoke tests (built with the tests only): derives .npy
// files of other dtypes, byte orders and storage orders, truncated files, row slices and masks
// from the conformance data, so the tests need no Python.
//
//   npy_fixture convert IN OUT DESCR [C|F]     DESCR: <f4 <f8 >f4 >f8 <i4 <i8 |u1 |b1
//   npy_fixture truncate IN OUT DROP_BYTES     copy IN without its last DROP_BYTES bytes
//   npy_fixture rows IN OUT BEGIN END          rows [BEGIN, END) of IN, float64, C order
//   npy_fixture mask OUT N PADDED_TAIL DESCR   N flags, the last PADDED_TAIL of them 1
//   npy_fixture info FILE                      prints dtype, shape and order
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "npy.hpp"

namespace {

template <typename T>
void put(std::vector<char>& out, double x, bool big_endian) {
    const T v = static_cast<T>(x);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    if (big_endian) std::reverse(b, b + sizeof(T));  // the test machines are little-endian
    out.insert(out.end(), b, b + sizeof(T));
}

/// Writes m with any of the supported dtypes (the library's writer does float32/64 only).
void write_typed(const std::string& path, const Eigen::MatrixXd& m, const std::string& descr, bool fortran,
                 bool one_d) {
    const std::string shape =
        one_d ? "(" + std::to_string(m.size()) + ",)" : "(" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + ")";
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                         ", 'shape': " + shape + ", }";
    header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
    header.push_back('\n');
    std::vector<char> data;
    const bool big = descr[0] == '>';
    const std::string type = descr.substr(1);
    const Eigen::Index lines = fortran ? m.cols() : m.rows(), len = fortran ? m.rows() : m.cols();
    for (Eigen::Index l = 0; l < lines; ++l)
        for (Eigen::Index t = 0; t < len; ++t) {
            const double x = fortran ? m(t, l) : m(l, t);
            if (type == "f4") put<float>(data, x, big);
            else if (type == "f8") put<double>(data, x, big);
            else if (type == "i4") put<std::int32_t>(data, x, big);
            else if (type == "i8") put<std::int64_t>(data, x, big);
            else if (type == "u1" || type == "b1") put<std::uint8_t>(data, x, false);
            else throw npy::error("npy_fixture: unsupported descr " + descr);
        }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const unsigned char len2[2] = {static_cast<unsigned char>(header.size() & 0xFF),
                                   static_cast<unsigned char>(header.size() >> 8)};
    out.write("\x93NUMPY\x01\x00", 8);
    out.write(reinterpret_cast<const char*>(len2), 2);
    out << header;
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) throw npy::error("npy_fixture: cannot write " + path);
}

int usage() {
    std::fprintf(stderr,
                 "usage: npy_fixture convert IN OUT DESCR [C|F] | truncate IN OUT DROP_BYTES | rows IN OUT BEGIN END"
                 " | mask OUT N PADDED_TAIL DESCR | info FILE\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> a(argv + 1, argv + argc);
    try {
        if (a.size() >= 4 && a[0] == "convert") {
            const npy::Array in = npy::read(a[1]);
            write_typed(a[2], in.data, a[3], a.size() > 4 && a[4] == "F", in.shape.size() == 1);
        } else if (a.size() == 4 && a[0] == "truncate") {
            std::ifstream in(a[1], std::ios::binary);
            std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            const std::size_t drop = std::min(bytes.size(), static_cast<std::size_t>(std::stoull(a[3])));
            std::ofstream out(a[2], std::ios::binary | std::ios::trunc);
            out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - drop));
        } else if (a.size() == 5 && a[0] == "rows") {
            const Eigen::MatrixXd in = npy::read(a[1]).data;
            const Eigen::Index b = std::stoll(a[3]), e = std::stoll(a[4]);
            npy::write(a[2], Eigen::MatrixXd(in.middleRows(b, e - b)));
        } else if (a.size() == 5 && a[0] == "mask") {
            const Eigen::Index n = std::stoll(a[2]), tail = std::stoll(a[3]);
            Eigen::MatrixXd m = Eigen::MatrixXd::Zero(n, 1);
            m.bottomRows(tail).setOnes();
            write_typed(a[1], m, a[4], false, true);
        } else if (a.size() == 2 && a[0] == "info") {
            const npy::Header h = npy::inspect(a[1]);
            std::printf("dtype=%s shape=%s fortran_order=%s\n", h.descr.c_str(), h.shape_string().c_str(),
                        h.fortran_order ? "True" : "False");
        } else {
            return usage();
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "npy_fixture: %s\n", e.what());
        return 2;
    }
    return 0;
}
