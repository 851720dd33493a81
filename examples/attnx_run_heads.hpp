// SPDX-License-Identifier: MIT
/// \file attnx_run_heads.hpp
/// attnx_run's multi-head mode (--heads, --kv-heads, --head-layout): a whole layer's attention
/// in one call of attnx::multi_head_attention on 4-d .npy arrays, q of shape (B, N, H, D)
/// (--head-layout bnhd, the default) or (B, H, N, D) (bhnd), k and v with H_kv heads, out in the
/// layout of q; or on 2-d arrays n x (H·D) with --heads H (B = 1, head h = columns h·D ...).
/// Included by attnx_run.cpp inside its anonymous namespace, after its parsing helpers
/// (usage_error, Cli, parse_index, load_mask); not a public header.
#ifndef ATTNX_EXAMPLES_ATTNX_RUN_HEADS_HPP
#define ATTNX_EXAMPLES_ATTNX_RUN_HEADS_HPP

/// A 4-d array of heads read from an .npy file (any float dtype, C or Fortran order), kept in
/// the file's element order and addressed through the strides of its layout.
template <typename Scalar>
struct HeadsArray {
    std::vector<Scalar> data;
    attnx::HeadsView<Scalar> view;  ///< into data
    bool two_d = false;             ///< read as n x (H·D)
    bool three_d = false;           ///< read as one sequence, (N, H, D) or (H, N, D)
};

inline std::string shape_string(const std::vector<std::int64_t>& s) {
    std::string out = "(";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i > 0 ? ", " : "") + std::to_string(s[i]);
    return out + ")";
}

/// Reads `path` as heads: a 4-d array in `layout` ("bnhd" or "bhnd"), or a 2-d array
/// n x (heads·D) if heads > 0 is given (then B = 1).
template <typename Scalar>
HeadsArray<Scalar> load_heads(const char* what, const std::string& path, const std::string& layout, Index heads) {
    const npy::Header h = npy::inspect(path);
    if (!h.is_float())
        throw usage_error(std::string(what) + ": " + path + " has dtype " + h.type_name() +
                          "; attnx_run reads float32 or float64 arrays");
    const std::size_t nd = h.shape.size();
    if (nd < 2 || nd > 4)
        throw usage_error(std::string(what) + ": " + path + " has shape " + shape_string(h.shape) +
                          "; in multi-head mode it must be 4-d, (B, N, H, D) for --head-layout bnhd or "
                          "(B, H, N, D) for bhnd, 3-d (one sequence, B = 1), or 2-d n x (H * D) with --heads");
    if (nd == 2 && heads < 1)
        throw usage_error(std::string(what) + ": " + path + " is 2-d " + shape_string(h.shape) +
                          "; give the number of heads (--heads, --kv-heads) to split its columns into heads");
    HeadsArray<Scalar> a;
    Index total = 1;
    for (const std::int64_t s : h.shape) total *= static_cast<Index>(s);
    a.data.resize(static_cast<std::size_t>(total));
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(h.data_offset));
    std::vector<char> raw(static_cast<std::size_t>(h.data_bytes));
    if (!in.read(raw.data(), static_cast<std::streamsize>(raw.size())))
        throw usage_error(std::string(what) + ": " + path + ": read error in the data");
    npy::detail::convert<Scalar>(h, raw.data(), total, a.data.data(), 1);
    // Strides (in elements) of the file's axes.
    std::vector<Index> st(nd);
    Index s = 1;
    if (h.fortran_order) {
        for (std::size_t i = 0; i < nd; ++i) {
            st[i] = s;
            s *= static_cast<Index>(h.shape[i]);
        }
    } else {
        for (std::size_t i = nd; i-- > 0;) {
            st[i] = s;
            s *= static_cast<Index>(h.shape[i]);
        }
    }
    if (nd == 3) {  // one sequence: B = 1
        a.three_d = true;
        st.insert(st.begin(), total);
    }
    std::vector<std::int64_t> shape = h.shape;
    if (nd == 3) shape.insert(shape.begin(), 1);
    const auto dim = [&](std::size_t i) { return static_cast<Index>(shape[i]); };
    if (nd == 2) {
        a.two_d = true;
        if (dim(1) % heads != 0)
            throw usage_error(std::string(what) + ": " + path + " has " + std::to_string(dim(1)) +
                              " columns, not a multiple of " + std::to_string(heads) + " heads");
        const Index d = dim(1) / heads;
        a.view = attnx::HeadsView<Scalar>::strided(a.data.data(), 1, dim(0), heads, d, 0, st[0], d * st[1], st[1]);
    } else if (layout == "bnhd") {
        a.view = attnx::HeadsView<Scalar>::strided(a.data.data(), dim(0), dim(1), dim(2), dim(3), st[0], st[1], st[2],
                                                   st[3]);
    } else {
        a.view = attnx::HeadsView<Scalar>::strided(a.data.data(), dim(0), dim(2), dim(1), dim(3), st[0], st[2], st[1],
                                                   st[3]);
    }
    if (heads > 0 && a.view.heads != heads)
        throw usage_error(std::string(what) + ": " + path + " has shape " + shape_string(h.shape) + ", i.e. " +
                          std::to_string(a.view.heads) + " heads in layout " + layout + ", but " +
                          std::to_string(heads) + " were given");
    return a;
}

/// Writes a C-order float32 / float64 array of the given shape (multi-head mode's output: the
/// buffer is laid out in the layout of q).
template <typename Scalar>
void write_flat(const std::string& path, std::vector<Scalar> flat, const std::vector<std::int64_t>& shape) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw usage_error("--out: cannot create " + path);
    std::string header = std::string("{'descr': '") + (sizeof(Scalar) == 4 ? "<f4" : "<f8") +
                         "', 'fortran_order': False, 'shape': " + shape_string(shape) + ", }";
    const std::size_t total = 10 + header.size() + 1;  // preamble + header + '\n', padded to 64
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    out.write("\x93NUMPY\x01\x00", 8);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xFF),
                                  static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(len), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    if (!npy::detail::host_is_little_endian())
        for (Scalar& x : flat) {
            char b[sizeof(Scalar)];
            std::memcpy(b, &x, sizeof(Scalar));
            std::reverse(b, b + sizeof(Scalar));
            std::memcpy(&x, b, sizeof(Scalar));
        }
    out.write(reinterpret_cast<const char*>(flat.data()), static_cast<std::streamsize>(flat.size() * sizeof(Scalar)));
    if (!out) throw usage_error("--out: write failed for " + path);
}

/// The reference of --compare in multi-head mode: a C-order array of the output's shape, as a
/// (total / D_v) x D_v matrix in the order of the output buffer (a row = one head's output row).
inline Eigen::MatrixXd load_flat_reference(const std::string& path, const std::vector<std::int64_t>& out_shape,
                                           Index dv) {
    const npy::Header h = npy::inspect(path);
    if (!h.is_float()) throw usage_error("--compare: " + path + " has dtype " + h.type_name() + "; expected a float");
    if (h.shape != out_shape || h.fortran_order)
        throw usage_error("--compare: " + path + " has shape " + shape_string(h.shape) +
                          (h.fortran_order ? " (Fortran order)" : "") + " but the output is " +
                          shape_string(out_shape) + " in C order");
    Index total = 1;
    for (const std::int64_t s : out_shape) total *= static_cast<Index>(s);
    std::vector<char> raw(static_cast<std::size_t>(h.data_bytes));
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(h.data_offset));
    if (!in.read(raw.data(), static_cast<std::streamsize>(raw.size())))
        throw usage_error("--compare: " + path + ": read error in the data");
    Eigen::MatrixXd m(dv, total / dv);  // column c = row c of the flat C-order array
    npy::detail::convert<double>(h, raw.data(), total, m.data(), 1);
    return m.transpose();
}

#endif  // ATTNX_EXAMPLES_ATTNX_RUN_HEADS_HPP
