// SPDX-License-Identifier: MIT
// The .npy reader and writer of examples/npy.hpp (used by attnx_run and the conformance tests):
// round trips in every supported dtype and order, the header variants other writers produce,
// and a clear npy::error for every malformed file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <attnx/random.hpp>

#include <sys/stat.h>  // mkfifo

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../examples/npy.hpp"
#include "support/temp_dir.hpp"

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

/// Every test writes into its own temporary directory, removed after the test (also a failed one).
class Npy : public ::testing::Test {
protected:
    std::string temp_path(const std::string& name) const { return dir_.file(name); }

private:
    testing_support::TempDir dir_{"attnx_test_npy_"};
};

/// Writes a .npy file byte by byte: version, header text (padded by the caller or not), data.
void write_raw(const std::string& path, int major, const std::string& header, const std::vector<char>& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write("\x93NUMPY", 6);
    const char version[2] = {static_cast<char>(major), 0};
    out.write(version, 2);
    const std::uint32_t len = static_cast<std::uint32_t>(header.size());
    if (major == 1) {
        const unsigned char b[2] = {static_cast<unsigned char>(len & 0xFF), static_cast<unsigned char>(len >> 8)};
        out.write(reinterpret_cast<const char*>(b), 2);
    } else {
        const unsigned char b[4] = {static_cast<unsigned char>(len & 0xFF), static_cast<unsigned char>((len >> 8) & 0xFF),
                                    static_cast<unsigned char>((len >> 16) & 0xFF), static_cast<unsigned char>(len >> 24)};
        out.write(reinterpret_cast<const char*>(b), 4);
    }
    out << header;
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

template <typename T>
std::vector<char> bytes_of(const std::vector<T>& values, bool big_endian = false) {
    std::vector<char> out;
    for (const T& v : values) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        if (big_endian) std::reverse(b, b + sizeof(T));  // the test machines are little-endian
        out.insert(out.end(), b, b + sizeof(T));
    }
    return out;
}

// A 3 x 2 matrix [[1, 2], [3, 4], [5, 6]]: C order 1 2 3 4 5 6, Fortran order 1 3 5 2 4 6.
Eigen::MatrixXd three_by_two() {
    Eigen::MatrixXd m(3, 2);
    m << 1, 2, 3, 4, 5, 6;
    return m;
}

TEST_F(Npy, RoundTripEveryDtypeAndOrder) {
    const Eigen::MatrixXd m = attnx::random_normal<double>(37, 5, 1, 1);
    for (const bool f32 : {true, false})
        for (const npy::Order order : {npy::Order::C, npy::Order::Fortran}) {
            const std::string path = temp_path("roundtrip.npy");
            npy::write(path, m, f32, order);
            npy::Header h;
            const Eigen::MatrixXd back = npy::read_matrix<double>(path, &h);
            EXPECT_EQ(h.descr, f32 ? "<f4" : "<f8");
            EXPECT_EQ(h.fortran_order, order == npy::Order::Fortran);
            EXPECT_EQ(h.shape_string(), "(37, 5)");
            // float32 files hold m rounded to float; float64 files hold m exactly.
            const Eigen::MatrixXd want = f32 ? Eigen::MatrixXd(m.cast<float>().cast<double>()) : m;
            EXPECT_EQ(back, want);
        }
}

TEST_F(Npy, WriteInTheScalarTypeOfTheMatrix) {
    const std::string path = temp_path("scalar.npy");
    npy::write(path, Eigen::MatrixXf::Ones(2, 3));
    EXPECT_EQ(npy::inspect(path).descr, "<f4");
    npy::write(path, Eigen::MatrixXd::Ones(2, 3), npy::Order::Fortran);
    const npy::Header h = npy::inspect(path);
    EXPECT_EQ(h.descr, "<f8");
    EXPECT_TRUE(h.fortran_order);
}

TEST_F(Npy, CAndFortranOrderOfTheSameMatrix) {
    const std::string c = temp_path("c.npy"), f = temp_path("f.npy");
    write_raw(c, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }\n",
              bytes_of<double>({1, 2, 3, 4, 5, 6}));
    write_raw(f, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }\n",
              bytes_of<double>({1, 3, 5, 2, 4, 6}));
    EXPECT_EQ(npy::read_matrix<double>(c), three_by_two());
    EXPECT_EQ(npy::read_matrix<double>(f), three_by_two());
}

TEST_F(Npy, LargeArraysAreReadInSeveralChunks) {
    // 1100 rows of 1000 float32 = 4.2 MiB, more than one 4 MiB chunk, in both orders.
    const Eigen::MatrixXf m = attnx::random_normal<float>(1100, 1000, 2, 1);
    for (const npy::Order order : {npy::Order::C, npy::Order::Fortran}) {
        const std::string path = temp_path("large.npy");
        npy::write(path, m, order);
        EXPECT_EQ(npy::read_matrix<float>(path), m);
    }
}

TEST_F(Npy, HeaderVariantsOfOtherWriters) {
    const std::vector<char> data = bytes_of<double>({1, 2, 3, 4, 5, 6});
    const std::string path = temp_path("variant.npy");
    for (const std::string& header : {
             std::string("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }\n"),  // NumPy
             std::string("{\"shape\": (3, 2), \"fortran_order\": False, \"descr\": \"<f8\"}\n"),  // other order, "
             std::string("{'descr':'<f8','fortran_order':False,'shape':(3L, 2L)}"),  // Python 2, no spaces
             std::string("{ 'descr' : '<f8' , 'fortran_order' : False , 'shape' : ( 3 , 2 ) , 'x': [1, (2,)] }  \n"),
         }) {
        write_raw(path, 1, header, data);
        EXPECT_EQ(npy::read_matrix<double>(path), three_by_two()) << header;
    }
    write_raw(path, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }\n", data);  // format 2.0
    EXPECT_EQ(npy::read_matrix<double>(path), three_by_two());
}

TEST_F(Npy, OtherDtypesAndByteOrders) {
    const std::string path = temp_path("dtype.npy");
    write_raw(path, 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (3, 2), }\n",
              bytes_of<double>({1, 2, 3, 4, 5, 6}, true));
    EXPECT_EQ(npy::read_matrix<double>(path), three_by_two());
    write_raw(path, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2), }\n",
              bytes_of<float>({1, 2, 3, 4, 5, 6}, true));
    EXPECT_EQ(npy::read_matrix<double>(path), three_by_two());
    write_raw(path, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }\n",
              bytes_of<std::int64_t>({1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(npy::read_matrix<double>(path), three_by_two());
    write_raw(path, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n", bytes_of<std::int32_t>({-7, 9}));
    EXPECT_EQ(npy::read_matrix<double>(path), Eigen::Vector2d(-7, 9));
    write_raw(path, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n", {0, 1, char(200)});
    EXPECT_EQ(npy::read_matrix<double>(path), Eigen::Vector3d(0, 1, 200));
    write_raw(path, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n", {1, 0, 1});
    const npy::Header h = npy::inspect(path);
    EXPECT_EQ(h.type_name(), "bool");
    EXPECT_EQ(npy::read_matrix<double>(path), Eigen::Vector3d(1, 0, 1));
}

TEST_F(Npy, LeadingDimensionsOfOneAreDropped) {
    const std::string path = temp_path("nd.npy");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 3, 2), }\n",
              bytes_of<double>({1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(npy::read_matrix<double>(path), three_by_two());
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }\n",
              bytes_of<double>({1, 2, 3, 4, 5, 6}));
    EXPECT_THAT([&] { npy::read_matrix<double>(path); },
                ThrowsMessage<npy::error>(AllOf(HasSubstr("has shape (2, 3, 1)"), HasSubstr("leading dimensions"))));
}

TEST_F(Npy, EveryMalformedFileThrowsAClearError) {
    const std::string path = temp_path("bad.npy");
    const auto expect_error = [&](const std::string& what) {
        EXPECT_THAT([&] { npy::read_matrix<double>(path); },
                    ThrowsMessage<npy::error>(AllOf(HasSubstr("npy: " + path + ": "), HasSubstr(what))));
    };
    const std::vector<char> six = bytes_of<double>({1, 2, 3, 4, 5, 6});
    const std::string good = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }\n";

    EXPECT_THAT([] { npy::read_matrix<double>("/nonexistent/x.npy"); },
                ThrowsMessage<npy::error>(HasSubstr("npy: /nonexistent/x.npy: cannot open file")));
    { std::ofstream(path, std::ios::binary | std::ios::trunc) << "\x93NUM"; }
    expect_error("shorter than the 8-byte .npy preamble");
    { std::ofstream(path, std::ios::binary | std::ios::trunc) << "PK\x03\x04 this is a zip"; }
    expect_error("not a .npy file");
    write_raw(path, 4, good, six);
    expect_error("unsupported .npy format version 4.0");
    write_raw(path, 1, good, std::vector<char>(six.begin(), six.end() - 8));
    expect_error("truncated: shape (3, 2) of float64 needs 48 bytes of data but the file has only 40");
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write("\x93NUMPY\x01\x00\x76\x00{'descr'", 17);  // header length 118, 7 bytes present
    }
    expect_error("truncated: the header says it is 118 bytes");
    write_raw(path, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 2), }\n", six);
    expect_error("unsupported dtype '<f2' (float16)");
    write_raw(path, 1, "{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }\n", six);
    expect_error("unsupported dtype '<c16' (complex)");
    write_raw(path, 1, "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }\n", six);
    expect_error("structured dtype");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': 0, 'shape': (3, 2), }\n", six);
    expect_error("'fortran_order' is '0'");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False}\n", six);
    expect_error("no 'shape'");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, -2), }\n", six);
    expect_error("expected a non-negative integer in the shape");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }\n", six);
    expect_error("is a 0-d array");
    write_raw(path, 1, "{'descr': '<f8' 'fortran_order': False}\n", six);
    expect_error("expected ',' or '}'");
    write_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", six);
    expect_error("is too large");
}

TEST_F(Npy, ADirectoryOrAPipeIsNamedAsSuch) {
    // Not "file is 9223372036854775807 bytes": say what the path is.
    const std::string dir = temp_path("subdir.npy");
    ASSERT_TRUE(std::filesystem::create_directory(dir));
    EXPECT_THAT([&] { npy::read_matrix<double>(dir); },
                ThrowsMessage<npy::error>(HasSubstr("npy: " + dir + ": cannot open file: it is a directory")));
    EXPECT_THAT([&] { npy::inspect(dir); }, ThrowsMessage<npy::error>(HasSubstr("it is a directory")));
    const std::string fifo = temp_path("fifo.npy");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_THAT([&] { npy::read_matrix<double>(fifo); },
                ThrowsMessage<npy::error>(HasSubstr("npy: " + fifo + ": cannot open file: it is not a regular file")));
    EXPECT_THAT([] { npy::read_matrix<double>("/nonexistent/x.npy"); },
                ThrowsMessage<npy::error>(HasSubstr("npy: /nonexistent/x.npy: cannot open file: it does not exist")));
}

TEST(NpyTempDir, RemovesItsFilesWhenItGoesOutOfScope) {
    std::string path;
    {
        const testing_support::TempDir dir("attnx_test_tempdir_");
        path = dir.path();
        npy::write(dir.file("x.npy"), Eigen::MatrixXd::Ones(2, 2));
        ASSERT_TRUE(std::filesystem::exists(dir.file("x.npy")));
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << path;
}

TEST_F(Npy, WriteToAMissingDirectoryThrows) {
    EXPECT_THAT([] { npy::write("/nonexistent/dir/x.npy", Eigen::MatrixXd::Ones(2, 2), false); },
                ThrowsMessage<npy::error>(HasSubstr("npy: /nonexistent/dir/x.npy: cannot create file")));
}

}  // namespace
