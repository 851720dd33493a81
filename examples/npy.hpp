// SPDX-License-Identifier: MIT
/// \file npy.hpp
/// A small reader and writer of NumPy .npy files (format versions 1.0, 2.0 and 3.0), used by
/// attnx_run, the examples and the tests. Not part of the attnx library.
///
/// Reads 1-D and 2-D arrays (and N-D arrays whose leading dimensions are all 1, e.g. a single
/// head (1, 1, n, d)), C or Fortran order, of these dtypes, in either byte order:
///   float32 'f4', float64 'f8', bool 'b1', int8..int64 'i1'..'i8', uint8..uint64 'u1'..'u8'.
/// Values are converted to the requested Scalar; a 1-D array of length n becomes an n x 1
/// matrix. The header dictionary is parsed as the Python literal it is (keys in any order,
/// single or double quotes, Python 2 'L' suffixes), not by searching for substrings.
///
/// Writes float32 or float64, little-endian, C order (NumPy's default) or Fortran order.
///
/// Every problem (missing file, a directory or pipe instead of a file, unreadable file, bad
/// magic, unsupported dtype such as float16, bad header, truncated data, shape overflow, failed
/// write) throws npy::error, whose message starts with "npy: <path>: " and says what is wrong
/// and what was expected. Large arrays are converted in chunks of rows, so reading needs no
/// second full-size buffer.
#ifndef ATTNX_EXAMPLES_NPY_HPP
#define ATTNX_EXAMPLES_NPY_HPP

#include <Eigen/Core>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace npy {

/// Everything that goes wrong while reading or writing a .npy file.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The parsed header of a .npy file.
struct Header {
    std::string descr;                 ///< the dtype as written, e.g. "<f4", "|b1"
    char kind = 'f';                   ///< 'f' float, 'i' signed int, 'u' unsigned int, 'b' bool
    int item_size = 0;                 ///< bytes per element
    bool swap_bytes = false;           ///< the file's byte order differs from this machine's
    bool fortran_order = false;        ///< column-major data
    std::vector<std::int64_t> shape;   ///< as written; () is a 0-d array
    std::uint64_t data_offset = 0;     ///< bytes before the data (preamble + header)
    std::uint64_t data_bytes = 0;      ///< bytes of data the shape and dtype call for

    bool is_float() const { return kind == 'f'; }
    /// "float32", "int64", "bool", ...
    std::string type_name() const {
        if (kind == 'b') return "bool";
        const std::string base = kind == 'f' ? "float" : (kind == 'i' ? "int" : "uint");
        return base + std::to_string(8 * item_size);
    }
    /// "(64, 32)" — Python's spelling.
    std::string shape_string() const {
        std::string s = "(";
        for (std::size_t i = 0; i < shape.size(); ++i) {
            if (i > 0) s += ", ";
            s += std::to_string(shape[i]);
        }
        if (shape.size() == 1) s += ",";
        return s + ")";
    }
};

/// A 1-D or 2-D array read as double (kept for the tests' loaders).
struct Array {
    std::string dtype;                 ///< e.g. "<f4", "<f8", "|u1"
    std::vector<std::int64_t> shape;
    Eigen::MatrixXd data;              ///< values converted to double; 1-D arrays are n x 1
};

/// Storage order of a written file.
enum class Order { C, Fortran };

namespace detail {

[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
    throw npy::error("npy: " + path + ": " + what);
}

inline bool host_is_little_endian() {
    const std::uint16_t one = 1;
    unsigned char first = 0;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

/// A parser for the header: a Python dict literal of strings, booleans and tuples of integers.
class HeaderParser {
public:
    HeaderParser(const std::string& text, const std::string& path) : m_s(text), m_path(path) {}

    void parse(std::string& descr, std::string& order, std::vector<std::int64_t>& shape, bool& has_shape) {
        skip_ws();
        expect('{');
        while (true) {
            skip_ws();
            if (peek() == '}') break;
            const std::string key = string_literal();
            skip_ws();
            expect(':');
            skip_ws();
            if (key == "descr") {
                if (peek() == '[')
                    bad("structured dtype " + raw_value() + " (a record array) is not supported; "
                        "expected a plain numeric dtype such as '<f4' or '<f8'");
                descr = string_literal();
            } else if (key == "fortran_order") {
                order = word();
            } else if (key == "shape") {
                shape = tuple();
                has_shape = true;
            } else {
                raw_value();  // unknown keys are ignored
            }
            skip_ws();
            if (peek() == ',') {
                ++m_p;
                continue;
            }
            if (peek() == '}') break;
            bad(std::string("expected ',' or '}' at offset ") + std::to_string(m_p));
        }
    }

private:
    char peek() const { return m_p < m_s.size() ? m_s[m_p] : '\0'; }
    void skip_ws() {
        while (m_p < m_s.size() && std::isspace(static_cast<unsigned char>(m_s[m_p]))) ++m_p;
    }
    [[noreturn]] void bad(const std::string& what) const { fail(m_path, "bad header " + quoted() + ": " + what); }
    std::string quoted() const {
        std::string t = m_s;
        while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
        if (t.size() > 200) t = t.substr(0, 200) + "...";
        return "\"" + t + "\"";
    }
    void expect(char c) {
        if (peek() != c) bad(std::string("expected '") + c + "' at offset " + std::to_string(m_p));
        ++m_p;
    }
    std::string string_literal() {
        const char q = peek();
        if (q != '\'' && q != '"') bad("expected a quoted string at offset " + std::to_string(m_p));
        const std::size_t e = m_s.find(q, m_p + 1);
        if (e == std::string::npos) bad("unterminated string");
        std::string out = m_s.substr(m_p + 1, e - m_p - 1);
        m_p = e + 1;
        return out;
    }
    std::string word() {
        const std::size_t b = m_p;
        while (m_p < m_s.size() && std::isalnum(static_cast<unsigned char>(m_s[m_p]))) ++m_p;
        return m_s.substr(b, m_p - b);
    }
    std::vector<std::int64_t> tuple() {
        std::vector<std::int64_t> dims;
        expect('(');
        while (true) {
            skip_ws();
            if (peek() == ')') break;
            const std::size_t b = m_p;
            while (m_p < m_s.size() && std::isdigit(static_cast<unsigned char>(m_s[m_p]))) ++m_p;
            if (m_p == b) bad("expected a non-negative integer in the shape at offset " + std::to_string(b));
            const std::string digits = m_s.substr(b, m_p - b);
            if (digits.size() > 18) bad("dimension " + digits + " is too large");
            dims.push_back(std::stoll(digits));
            if (peek() == 'L' || peek() == 'l') ++m_p;  // Python 2 long
            skip_ws();
            if (peek() == ',') {
                ++m_p;
                continue;
            }
            if (peek() != ')') bad("expected ',' or ')' in the shape at offset " + std::to_string(m_p));
        }
        ++m_p;
        return dims;
    }
    /// Skips one value of any kind (for unknown keys, and for error messages).
    std::string raw_value() {
        const std::size_t b = m_p;
        int depth = 0;
        while (m_p < m_s.size()) {
            const char c = m_s[m_p];
            if (c == '\'' || c == '"') {
                string_literal();
                continue;
            }
            if (c == '(' || c == '[' || c == '{') ++depth;
            if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) break;
                --depth;
            }
            if (c == ',' && depth == 0) break;
            ++m_p;
        }
        return m_s.substr(b, m_p - b);
    }

    const std::string& m_s;
    const std::string& m_path;
    std::size_t m_p = 0;
};

inline void parse_descr(const std::string& path, Header& h) {
    const std::string& d = h.descr;
    std::size_t p = 0;
    char order = '=';
    if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '=' || d[0] == '|')) {
        order = d[0];
        p = 1;
    }
    if (p >= d.size()) fail(path, "unsupported dtype '" + d + "'");
    h.kind = d[p];
    const std::string size = d.substr(p + 1);
    const bool digits = !size.empty() && size.size() <= 2 &&
                        std::all_of(size.begin(), size.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    h.item_size = digits ? std::stoi(size) : 0;
    const bool ok = (h.kind == 'f' && (h.item_size == 4 || h.item_size == 8)) ||
                    ((h.kind == 'i' || h.kind == 'u') &&
                     (h.item_size == 1 || h.item_size == 2 || h.item_size == 4 || h.item_size == 8)) ||
                    (h.kind == 'b' && h.item_size == 1);
    if (!ok) {
        std::string what = "unsupported dtype '" + d + "'";
        if (h.kind == 'f' && h.item_size == 2) what += " (float16)";
        if (h.kind == 'f' && h.item_size > 8) what += " (long double)";
        if (h.kind == 'c') what += " (complex)";
        if (h.kind == 'O') what += " (Python objects)";
        if (h.kind == 'U' || h.kind == 'S') what += " (strings)";
        if (h.kind == 'M' || h.kind == 'm') what += " (dates/times)";
        fail(path, what + "; supported: float32 '<f4', float64 '<f8', bool '|b1', int8..int64, uint8..uint64");
    }
    const bool file_little = order == '<' || order == '|' || (order == '=' && host_is_little_endian());
    h.swap_bytes = h.item_size > 1 && file_little != host_is_little_endian();
}

template <typename T>
T load(const char* p, bool swap) {
    T v;
    if (!swap) {
        std::memcpy(&v, p, sizeof(T));
    } else {
        char b[sizeof(T)];
        for (std::size_t i = 0; i < sizeof(T); ++i) b[i] = p[sizeof(T) - 1 - i];
        std::memcpy(&v, b, sizeof(T));
    }
    return v;
}

/// dst[i * stride] = raw element i, for i < n, converted to Scalar.
template <typename Scalar, typename T>
void convert_run(const char* raw, Eigen::Index n, bool swap, Scalar* dst, Eigen::Index stride) {
    for (Eigen::Index i = 0; i < n; ++i)
        dst[i * stride] = static_cast<Scalar>(load<T>(raw + static_cast<std::size_t>(i) * sizeof(T), swap));
}

template <typename Scalar>
void convert(const Header& h, const char* raw, Eigen::Index n, Scalar* dst, Eigen::Index stride) {
    const bool s = h.swap_bytes;
    switch (h.kind) {
        case 'f':
            if (h.item_size == 4)
                convert_run<Scalar, float>(raw, n, s, dst, stride);
            else
                convert_run<Scalar, double>(raw, n, s, dst, stride);
            return;
        case 'i':
            if (h.item_size == 1) convert_run<Scalar, std::int8_t>(raw, n, s, dst, stride);
            if (h.item_size == 2) convert_run<Scalar, std::int16_t>(raw, n, s, dst, stride);
            if (h.item_size == 4) convert_run<Scalar, std::int32_t>(raw, n, s, dst, stride);
            if (h.item_size == 8) convert_run<Scalar, std::int64_t>(raw, n, s, dst, stride);
            return;
        case 'u':
            if (h.item_size == 1) convert_run<Scalar, std::uint8_t>(raw, n, s, dst, stride);
            if (h.item_size == 2) convert_run<Scalar, std::uint16_t>(raw, n, s, dst, stride);
            if (h.item_size == 4) convert_run<Scalar, std::uint32_t>(raw, n, s, dst, stride);
            if (h.item_size == 8) convert_run<Scalar, std::uint64_t>(raw, n, s, dst, stride);
            return;
        default:  // 'b': one byte, 0 or 1
            for (Eigen::Index i = 0; i < n; ++i) dst[i * stride] = raw[i] != 0 ? Scalar(1) : Scalar(0);
    }
}

/// Opens path and reads its header; the stream is left at the start of the data.
inline Header read_header(std::ifstream& in, const std::string& path) {
    // Name the real problem: a directory or a pipe opens (or fails to) with no useful size.
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(path, ec);
    if (st.type() == std::filesystem::file_type::not_found)
        fail(path, "cannot open file: it does not exist");
    if (st.type() == std::filesystem::file_type::directory)
        fail(path, "cannot open file: it is a directory, not a .npy file");
    if (!ec && st.type() != std::filesystem::file_type::regular)
        fail(path, "cannot open file: it is not a regular file (a pipe, socket or device); save the array to a "
                   ".npy file and pass its path");
    errno = 0;
    in.open(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        fail(path, std::string("cannot open file: ") +
                       (err == EACCES ? "permission denied (it is not readable)"
                        : err != 0    ? std::strerror(err)
                                      : "it cannot be read (does it exist and is it readable?)"));
    }
    in.seekg(0, std::ios::end);
    const std::streamoff file_size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (file_size < 0) fail(path, "cannot determine the file size");
    unsigned char magic[8];
    if (!in.read(reinterpret_cast<char*>(magic), 8))
        fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte .npy preamble");
    if (std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, "not a .npy file (it does not start with \\x93NUMPY)");
    const int major = magic[6];
    std::uint64_t header_len = 0, prefix = 0;
    if (major == 1) {
        unsigned char b[2];
        if (!in.read(reinterpret_cast<char*>(b), 2)) fail(path, "truncated: the file ends inside the header length");
        header_len = static_cast<std::uint64_t>(b[0]) | (static_cast<std::uint64_t>(b[1]) << 8);
        prefix = 10;
    } else if (major == 2 || major == 3) {
        unsigned char b[4];
        if (!in.read(reinterpret_cast<char*>(b), 4)) fail(path, "truncated: the file ends inside the header length");
        header_len = static_cast<std::uint64_t>(b[0]) | (static_cast<std::uint64_t>(b[1]) << 8) |
                     (static_cast<std::uint64_t>(b[2]) << 16) | (static_cast<std::uint64_t>(b[3]) << 24);
        prefix = 12;
    } else {
        fail(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(magic[7]) +
                       " (supported: 1.0, 2.0, 3.0)");
    }
    if (prefix + header_len > static_cast<std::uint64_t>(file_size))
        fail(path, "truncated: the header says it is " + std::to_string(header_len) + " bytes but the file has only " +
                       std::to_string(static_cast<std::uint64_t>(file_size) - prefix) + " after the preamble");
    std::string text(static_cast<std::size_t>(header_len), '\0');
    if (header_len > 0 && !in.read(&text[0], static_cast<std::streamsize>(header_len)))
        fail(path, "truncated: cannot read the header");

    Header h;
    std::string order;
    bool has_shape = false;
    HeaderParser(text, path).parse(h.descr, order, h.shape, has_shape);
    if (h.descr.empty()) fail(path, "bad header: no 'descr' (dtype)");
    if (!has_shape) fail(path, "bad header: no 'shape'");
    if (order != "True" && order != "False")
        fail(path, "bad header: 'fortran_order' is '" + order + "', expected True or False");
    h.fortran_order = order == "True";
    parse_descr(path, h);

    std::uint64_t count = 1;
    for (const std::int64_t dim : h.shape) {
        const std::uint64_t u = static_cast<std::uint64_t>(dim);
        if (u != 0 && count > std::numeric_limits<std::uint64_t>::max() / 16 / u)
            fail(path, "shape " + h.shape_string() + " is too large");
        count *= u;
    }
    h.data_offset = prefix + header_len;
    h.data_bytes = count * static_cast<std::uint64_t>(h.item_size);
    const std::uint64_t have = static_cast<std::uint64_t>(file_size) - h.data_offset;
    if (have < h.data_bytes)
        fail(path, "truncated: shape " + h.shape_string() + " of " + h.type_name() + " needs " +
                       std::to_string(h.data_bytes) + " bytes of data but the file has only " + std::to_string(have) +
                       " after the header");
    return h;
}

inline Header inspect_path(const std::string& path) {
    std::ifstream in;
    return read_header(in, path);
}

/// Rows and columns of the matrix a shape stands for: (n,) -> n x 1; (r, c); (1, ..., 1, r, c).
inline void matrix_shape(const std::string& path, const Header& h, Eigen::Index& rows, Eigen::Index& cols) {
    const std::size_t nd = h.shape.size();
    if (nd == 0) fail(path, "is a 0-d array (a scalar); expected a vector or a matrix");
    for (std::size_t i = 0; i + 2 < nd; ++i)
        if (h.shape[i] != 1)
            fail(path, "has shape " + h.shape_string() + "; expected a vector or a matrix (leading dimensions of "
                                                         "size 1 are dropped, e.g. one head x[b, h] of a batch)");
    if (nd == 1) {
        rows = static_cast<Eigen::Index>(h.shape[0]);
        cols = 1;
    } else {
        rows = static_cast<Eigen::Index>(h.shape[nd - 2]);
        cols = static_cast<Eigen::Index>(h.shape[nd - 1]);
    }
}

}  // namespace detail

/// The header of a .npy file (dtype, order, shape), without reading the data.
inline Header inspect(const std::string& path) { return detail::inspect_path(path); }

/// Reads a .npy file as a rows x cols column-major matrix of Scalar (see the file comment for
/// the shapes and dtypes accepted). If `header` is given, it receives the file's header.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> read_matrix(const std::string& path, Header* header = nullptr) {
    using Index = Eigen::Index;
    std::ifstream in;
    const Header h = detail::read_header(in, path);
    if (header != nullptr) *header = h;
    Index rows = 0, cols = 0;
    detail::matrix_shape(path, h, rows, cols);
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(rows, cols);
    if (m.size() == 0) return m;
    // Fortran order is column-major: "lines" are columns; C order: lines are rows.
    const Index lines = h.fortran_order ? cols : rows;
    const Index line_len = h.fortran_order ? rows : cols;
    const std::size_t line_bytes = static_cast<std::size_t>(line_len) * static_cast<std::size_t>(h.item_size);
    const Index per_chunk = std::max<Index>(1, static_cast<Index>((std::size_t(4) << 20) / line_bytes));
    std::vector<char> buf(static_cast<std::size_t>(std::min(per_chunk, lines)) * line_bytes);
    for (Index l0 = 0; l0 < lines; l0 += per_chunk) {
        const Index nl = std::min(per_chunk, lines - l0);
        if (!in.read(buf.data(), static_cast<std::streamsize>(static_cast<std::size_t>(nl) * line_bytes)))
            detail::fail(path, "read error in the data (the file changed while it was read?)");
        for (Index l = 0; l < nl; ++l) {
            const char* src = buf.data() + static_cast<std::size_t>(l) * line_bytes;
            if (h.fortran_order)
                detail::convert<Scalar>(h, src, line_len, m.data() + (l0 + l) * rows, 1);
            else
                detail::convert<Scalar>(h, src, line_len, m.data() + (l0 + l), rows);
        }
    }
    return m;
}

/// Reads a 1-D or 2-D (or leading-ones N-D) array as double.
inline Array read(const std::string& path) {
    Header h;
    Array a;
    a.data = read_matrix<double>(path, &h);
    a.dtype = h.descr;
    a.shape = h.shape;
    return a;
}

/// Writes m as a 2-D .npy (format 1.0, little-endian) of float32 (as_float32) or float64,
/// in C order (NumPy's default) or Fortran order.
template <typename Derived>
void write(const std::string& path, const Eigen::MatrixBase<Derived>& m, bool as_float32, Order order = Order::C) {
    using Index = Eigen::Index;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) detail::fail(path, "cannot create file (does the directory exist and is it writable?)");
    std::string header = std::string("{'descr': '") + (as_float32 ? "<f4" : "<f8") +
                         "', 'fortran_order': " + (order == Order::Fortran ? "True" : "False") + ", 'shape': (" +
                         std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "), }";
    const std::size_t total = 10 + header.size() + 1;  // preamble + header + '\n', padded to 64
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    out.write("\x93NUMPY\x01\x00", 8);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xFF),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(len), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));

    const bool swap = !detail::host_is_little_endian();
    const std::size_t item = as_float32 ? 4 : 8;
    const Index lines = order == Order::Fortran ? m.cols() : m.rows();
    const Index line_len = order == Order::Fortran ? m.rows() : m.cols();
    const std::size_t line_bytes = std::max<std::size_t>(1, static_cast<std::size_t>(line_len) * item);
    const Index per_chunk = std::max<Index>(1, static_cast<Index>((std::size_t(4) << 20) / line_bytes));
    std::vector<char> buf(static_cast<std::size_t>(std::max<Index>(1, std::min(per_chunk, lines))) * line_bytes);
    for (Index l0 = 0; l0 < lines; l0 += per_chunk) {
        const Index nl = std::min(per_chunk, lines - l0);
        char* p = buf.data();
        for (Index l = l0; l < l0 + nl; ++l)
            for (Index t = 0; t < line_len; ++t) {
                const double x = order == Order::Fortran ? static_cast<double>(m(t, l)) : static_cast<double>(m(l, t));
                char b[8];
                if (as_float32) {
                    const float f = static_cast<float>(x);
                    std::memcpy(b, &f, 4);
                } else {
                    std::memcpy(b, &x, 8);
                }
                if (swap) std::reverse(b, b + item);
                std::memcpy(p, b, item);
                p += item;
            }
        out.write(buf.data(), static_cast<std::streamsize>(p - buf.data()));
    }
    out.flush();
    if (!out) detail::fail(path, "write failed (disk full?)");
}

/// Writes m in its own Scalar type: float -> float32, double -> float64.
template <typename Derived>
void write(const std::string& path, const Eigen::MatrixBase<Derived>& m, Order order = Order::C) {
    using Scalar = typename Derived::Scalar;
    static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value,
                  "npy::write: the Scalar type must be float or double");
    write(path, m, std::is_same<Scalar, float>::value, order);
}

}  // namespace npy

#endif  // ATTNX_EXAMPLES_NPY_HPP
