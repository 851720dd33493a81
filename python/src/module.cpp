// SPDX-License-Identifier: MIT
/// \file module.cpp
/// The Python module `attnx` (pybind11): one function per mechanism, the mechanism values as
/// classes, BlockLayout, LinformerProjection, PerformerFeatures, LinearAttentionState (the
/// decode state of linear attention and Performer), NystromReport, compare, estimate_error and
/// multi_head_attention.
///
/// Arrays. Q, K, V (and E, F) are float32 or float64 NumPy arrays (or anything numpy.asarray
/// turns into one) of shape (n, d); all of one call must share one dtype, and the result has it.
/// attnx's kernels read column-major memory with unit stride down a column, so an (n, d) array
/// whose rows are contiguous in the first axis (Fortran order, or any array with strides
/// (itemsize, ld * itemsize), ld >= n) is read in place, without a copy. A C-ordered (n, d) array
/// is the column-major (d, n) matrix Qᵀ, which no kernel can read as Q: it is converted once
/// into a column-major buffer (O(n·d) time and memory per argument, the same conversion the C++
/// API makes for a row-major argument). Results are allocated by NumPy in Fortran order and
/// written in place by the kernel (no copy); passing one result on as an input is copy-free.
///
/// Errors. attnx::invalid_argument becomes ValueError with the same message; a wrong dtype, rank
/// or type of an argument is a TypeError naming the argument. The GIL is released while the
/// conversion and the kernel run, so several Python threads compute at once.
#include <pybind11/numpy.h>
#include <pybind11/operators.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.hpp"

namespace py = pybind11;
using attnx::Index;

namespace attnx_py {
namespace {

template <typename S>
using Matrix = attnx::Matrix<S>;

// ---------------------------------------------------------------------------------------------
// Argument conversion

enum class Dtype { F32, F64 };

std::string dtype_str(const py::dtype& dt) { return py::str(static_cast<py::handle>(dt)).cast<std::string>(); }

const char* dtype_name(Dtype t) { return t == Dtype::F32 ? "float32" : "float64"; }

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")).cast<std::string>(); }

std::string shape_string(const py::array& a) {
    std::ostringstream os;
    os << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i) << (a.ndim() == 1 ? "," : "");
    os << ")";
    return os.str();
}

template <class... Parts>
[[noreturn]] void type_error(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw py::type_error(os.str());
}

template <class... Parts>
[[noreturn]] void value_error(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw py::value_error(os.str());
}

/// obj as a NumPy array (numpy.asarray for lists and other array-likes); TypeError otherwise.
py::array as_array(const char* fn, const char* name, py::handle obj) {
    if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
    if (obj.is_none()) type_error(fn, ": ", name, " must be a NumPy array, got None");
    py::array a = py::array::ensure(obj);
    if (!a) type_error(fn, ": ", name, " must be a NumPy array, got ", type_name(obj));
    return a;
}

/// A 2-d float32/float64 array as the kernels read it: the NumPy object (kept alive), its raw
/// layout, and whether the kernels can read it in place (direct) or need the column-major copy
/// in `buffer`, allocated here with the GIL held and filled by view_of with the GIL released.
/// The buffer is a NumPy array so that it comes from NumPy's allocator, which asks for huge
/// pages: the first touch of a fresh 4 KiB-page malloc buffer cost more than the copy itself
/// (~2 ms per 2 MiB on the 2-core test machine, against ~0.5 ms with NumPy's allocation).
struct Array2 {
    py::array array;
    Dtype dtype = Dtype::F64;
    Index rows = 0, cols = 0;
    const char* data = nullptr;
    py::ssize_t stride0 = 0, stride1 = 0;  // in bytes, as NumPy gives them (may be 0 or negative)
    bool aligned = true;
    bool direct = false;  // column-major with unit inner stride: read in place
    Index outer = 1;      // the column stride (elements) when direct
    py::array buffer;     // the column-major copy when not direct
    char* buffer_data = nullptr;
};

Dtype float_dtype(const char* fn, const char* name, const py::array& a, py::handle original) {
    const py::dtype dt = a.dtype();
    if (dt.kind() == 'f' && (dt.itemsize() == 4 || dt.itemsize() == 8)) {
        if (!dt.attr("isnative").cast<bool>())
            type_error(fn, ": ", name, " has the non-native byte order of dtype ", dtype_str(dt),
                       "; pass ", name, ".astype(numpy.float", dt.itemsize() * 8, ")");
        return dt.itemsize() == 4 ? Dtype::F32 : Dtype::F64;
    }
    type_error(fn, ": ", name, " must be a float32 or float64 array, got ",
               py::isinstance<py::array>(original) ? "dtype " + dtype_str(dt)
                                                   : type_name(original) + " (dtype " + dtype_str(dt) + ")");
}

Array2 array2(const char* fn, const char* name, py::handle obj, const char* shape_hint) {
    Array2 m;
    m.array = as_array(fn, name, obj);
    m.dtype = float_dtype(fn, name, m.array, obj);
    if (m.array.ndim() != 2)
        type_error(fn, ": ", name, " must be a 2-d array of shape ", shape_hint, ", got a ", m.array.ndim(),
                   "-d array of shape ", shape_string(m.array));
    m.rows = static_cast<Index>(m.array.shape(0));
    m.cols = static_cast<Index>(m.array.shape(1));
    m.data = static_cast<const char*>(m.array.data());
    m.stride0 = m.array.strides(0);
    m.stride1 = m.array.strides(1);
    m.aligned = (m.array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
    const py::ssize_t item = m.array.itemsize();
    const bool unit_inner = m.rows <= 1 || m.stride0 == item;
    const bool outer_ok = m.cols <= 1 || (m.stride1 > 0 && m.stride1 % item == 0 && m.stride1 / item >= m.rows);
    m.direct = m.aligned && unit_inner && outer_ok;
    if (m.direct) {
        m.outer = m.cols <= 1 ? std::max<Index>(m.rows, 1) : static_cast<Index>(m.stride1 / item);
    } else {
        m.outer = std::max<Index>(m.rows, 1);
        m.buffer = py::array(m.array.dtype(), std::vector<py::ssize_t>{m.rows, m.cols},
                             std::vector<py::ssize_t>{item, item * m.outer});
        m.buffer_data = static_cast<char*>(m.buffer.mutable_data());
    }
    return m;
}

void check_same_dtype(const char* fn, const char* name, const Array2& a, const char* first, const Array2& ref) {
    if (a.dtype != ref.dtype)
        type_error(fn, ": ", name, " has dtype ", dtype_name(a.dtype), " but ", first, " has ", dtype_name(ref.dtype),
                   " (all arrays of one call share one dtype, float32 or float64; convert with .astype)");
}

/// What a kernel reads: the NumPy memory itself when direct, otherwise the column-major copy.
template <typename S>
struct View {
    const S* ptr = nullptr;
    Index rows = 0, cols = 0, outer = 1;

    In<S> ref() const {
        return In<S>(Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>(ptr, rows, cols, Eigen::OuterStride<>(outer)));
    }
};

/// The view of m; fills m's buffer first when m is not direct (call with the GIL released).
template <typename S>
View<S> view_of(const Array2& m) {
    View<S> v;
    v.rows = m.rows;
    v.cols = m.cols;
    v.outer = m.outer;
    if (m.direct) {
        v.ptr = reinterpret_cast<const S*>(m.data);
        return v;
    }
    const auto item = static_cast<py::ssize_t>(sizeof(S));
    const Index n = m.rows, d = m.cols;
    S* dst = reinterpret_cast<S*>(m.buffer_data);
    v.ptr = dst;
    if (m.aligned && m.stride1 == item && m.stride0 == item * d) {
        // C order: one transposing copy in 64 x 64 tiles (16 KiB of float), so that the rows a
        // tile reads stay in L1 while each of its columns is written contiguously; row tiles in
        // parallel when large.
        const S* src = reinterpret_cast<const S*>(m.data);
        const Index tiles = (n + 63) / 64;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * d > (Index(1) << 18))
#endif
        for (Index t = 0; t < tiles; ++t) {
            const Index i0 = t * 64, i1 = std::min(n, i0 + 64);
            for (Index j0 = 0; j0 < d; j0 += 64) {
                const Index j1 = std::min(d, j0 + 64);
                for (Index j = j0; j < j1; ++j)
                    for (Index i = i0; i < i1; ++i) dst[j * n + i] = src[i * d + j];
            }
        }
    } else {  // any strides (negative, zero, unaligned)
        for (Index j = 0; j < d; ++j)
            for (Index i = 0; i < n; ++i) std::memcpy(dst + j * n + i, m.data + i * m.stride0 + j * m.stride1, sizeof(S));
    }
    return v;
}

/// A Fortran-ordered (rows, cols) array of S, written in place by the kernels.
template <typename S>
py::array new_output(Index rows, Index cols) {
    const auto item = static_cast<py::ssize_t>(sizeof(S));
    return py::array(py::dtype::of<S>(), std::vector<py::ssize_t>{rows, cols},
                     std::vector<py::ssize_t>{item, item * std::max<Index>(rows, 1)});
}

/// A mask: None (no mask) or a 1-d bool array; True = padding.
std::vector<bool> bool_mask(const char* fn, const char* name, py::handle obj) {
    std::vector<bool> mask;
    if (obj.is_none()) return mask;
    const py::array a = as_array(fn, name, obj);
    if (a.dtype().kind() != 'b')
        type_error(fn, ": ", name, " must be a bool array (True = padding), got dtype ",
                   dtype_str(a.dtype()), "; pass ", name, " != 0 for a 0/1 array");
    if (a.ndim() != 1)
        type_error(fn, ": ", name, " must be a 1-d bool array (one flag per token), got shape ", shape_string(a));
    const auto n = a.shape(0);
    const auto stride = a.strides(0);
    const char* p = static_cast<const char*>(a.data());
    mask.resize(static_cast<std::size_t>(n));
    for (py::ssize_t i = 0; i < n; ++i) mask[static_cast<std::size_t>(i)] = p[i * stride] != 0;
    return mask;
}

/// conv_kernel: None or a 1-d array of real numbers, as doubles.
std::vector<double> real_vector(const char* fn, const char* name, py::handle obj) {
    std::vector<double> out;
    if (obj.is_none()) return out;
    const py::array a = as_array(fn, name, obj);
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u')
        type_error(fn, ": ", name, " must be a 1-d array of real numbers, got dtype ",
                   dtype_str(a.dtype()));
    if (a.ndim() != 1) type_error(fn, ": ", name, " must be a 1-d array, got shape ", shape_string(a));
    const auto d = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!d) type_error(fn, ": ", name, " cannot be converted to float64");
    out.assign(d.data(), d.data() + d.size());
    return out;
}

std::optional<double> scale_of(const char* fn, py::handle scale) {
    if (scale.is_none()) return std::nullopt;
    if (py::isinstance<py::str>(scale) || !PyNumber_Check(scale.ptr()))
        type_error(fn, ": scale must be a number or None, got ", type_name(scale));
    try {
        return scale.cast<double>();
    } catch (const py::cast_error&) {
        type_error(fn, ": scale must be a number or None, got ", type_name(scale));
    }
}

attnx::AttentionOptions common_options(const char* fn, py::handle scale, bool causal, py::handle key_padding_mask,
                                       bool check_finite) {
    attnx::AttentionOptions o;
    o.scale = scale_of(fn, scale);
    o.causal = causal;
    o.key_padding_mask = bool_mask(fn, "key_padding_mask", key_padding_mask);
    o.check_finite = check_finite;
    return o;
}

// ---------------------------------------------------------------------------------------------
// Options of each mechanism, from the keyword arguments

attnx::ExactOptions exact_options(const char* fn, py::handle scale, bool causal, py::handle key_padding_mask,
                                  const std::string& kernel, Index query_tile, Index key_tile, Index decode_key_tile,
                                  bool check_finite) {
    attnx::ExactOptions o = common_options(fn, scale, causal, key_padding_mask, check_finite);
    if (kernel == "streaming")
        o.kernel = attnx::ExactKernel::Streaming;
    else if (kernel == "materialized")
        o.kernel = attnx::ExactKernel::Materialized;
    else
        value_error(fn, ": kernel must be 'streaming' or 'materialized', got '", kernel, "'");
    o.query_tile = query_tile;
    o.key_tile = key_tile;
    o.decode_key_tile = decode_key_tile;
    return o;
}

attnx::NystromOptions nystrom_options(const char* fn, Index num_landmarks, const std::string& pinv,
                                      int pinv_iterations, py::handle scale, bool causal,
                                      py::handle key_padding_mask, py::handle query_padding_mask,
                                      py::handle conv_kernel, bool check_finite) {
    attnx::NystromOptions o = common_options(fn, scale, causal, key_padding_mask, check_finite);
    o.num_landmarks = num_landmarks;
    if (pinv == "iterative")
        o.pinv = attnx::PinvMethod::Iterative;
    else if (pinv == "exact")
        o.pinv = attnx::PinvMethod::Exact;
    else
        value_error(fn, ": pinv must be 'iterative' or 'exact', got '", pinv, "'");
    o.pinv_iterations = pinv_iterations;
    o.query_padding_mask = bool_mask(fn, "query_padding_mask", query_padding_mask);
    o.conv_kernel = real_vector(fn, "conv_kernel", conv_kernel);
    return o;
}

attnx::BigBirdOptions bigbird_options(Index block, Index window, Index global, Index random, std::uint64_t seed) {
    attnx::BigBirdOptions b;
    b.block = block;
    b.window = window;
    b.global = global;
    b.random = random;
    b.seed = seed;
    return b;
}

// ---------------------------------------------------------------------------------------------
// Linformer projections: one Python class over LinformerProjection<float> and <double>

/// One Python object over T<float> or T<double> (exactly one is set), shared and immutable.
template <template <typename> class T>
struct ByDtype {
    std::shared_ptr<const T<float>> f32;
    std::shared_ptr<const T<double>> f64;

    Dtype dtype() const { return f32 ? Dtype::F32 : Dtype::F64; }
    template <typename F>
    decltype(auto) visit(F&& f) const {
        if (f32) return f(*f32);
        return f(*f64);
    }
    template <typename S>
    const T<S>& get() const {
        if constexpr (std::is_same<S, float>::value)
            return *f32;
        else
            return *f64;
    }
    template <typename S>
    static ByDtype of(T<S>&& x) {
        ByDtype b;
        if constexpr (std::is_same<S, float>::value)
            b.f32 = std::make_shared<const T<float>>(std::move(x));
        else
            b.f64 = std::make_shared<const T<double>>(std::move(x));
        return b;
    }
};

using Projection = ByDtype<attnx::LinformerProjection>;

Dtype dtype_arg(const char* fn, py::handle dtype) {
    const py::dtype dt = py::dtype::from_args(py::reinterpret_borrow<py::object>(dtype));
    if (dt.kind() == 'f' && dt.itemsize() == 4) return Dtype::F32;
    if (dt.kind() == 'f' && dt.itemsize() == 8) return Dtype::F64;
    type_error(fn, ": dtype must be float32 or float64, got ", dtype_str(dt));
}

attnx::LinformerSharing sharing_of(const char* fn, const std::string& s) {
    if (s == "separate") return attnx::LinformerSharing::Separate;
    if (s == "key_value") return attnx::LinformerSharing::KeyValue;
    value_error(fn, ": sharing must be 'separate' or 'key_value', got '", s, "'");
}

template <typename S>
py::array matrix_view(const Matrix<S>& m, py::handle owner) {  // read-only, kept alive by owner
    const auto item = static_cast<py::ssize_t>(sizeof(S));
    py::array a(py::dtype::of<S>(), std::vector<py::ssize_t>{m.rows(), m.cols()},
                std::vector<py::ssize_t>{item, item * std::max<Index>(m.rows(), 1)}, m.data(), owner);
    a.attr("setflags")(py::arg("write") = false);
    return a;
}

// ---------------------------------------------------------------------------------------------
// The call: parse Q, K, V, release the GIL, view or convert, run, return the output

struct QKV {
    Array2 q, k, v;
};

QKV qkv(const char* fn, py::handle q, py::handle k, py::handle v) {
    QKV a{array2(fn, "q", q, "(n_q, d)"), array2(fn, "k", k, "(n_k, d)"), array2(fn, "v", v, "(n_k, d_v)")};
    check_same_dtype(fn, "k", a.k, "q", a.q);
    check_same_dtype(fn, "v", a.v, "q", a.q);
    return a;
}

/// body(q, k, v, out) on views of one Scalar S, with the GIL released.
template <typename S, typename Body>
py::array compute(const QKV& a, Body&& body) {
    py::array out = new_output<S>(a.q.rows, a.v.cols);
    S* data = static_cast<S*>(out.mutable_data());
    {
        py::gil_scoped_release release;
        const View<S> q = view_of<S>(a.q), k = view_of<S>(a.k), v = view_of<S>(a.v);
        Eigen::Map<Matrix<S>> o(data, a.q.rows, a.v.cols);
        body(q.ref(), k.ref(), v.ref(), Out<S>(o));
    }
    return out;
}

template <typename Body>
py::array compute_any(const QKV& a, Body&& body) {
    if (a.q.dtype == Dtype::F32) return compute<float>(a, body);
    return compute<double>(a, body);
}

template <typename Mech>
py::array call_mechanism(const char* fn, const Mech& mech, py::handle q, py::handle k, py::handle v) {
    const QKV a = qkv(fn, q, k, v);
    return compute_any(a, [&](const auto& qr, const auto& kr, const auto& vr, auto out) {
        using S = typename std::decay_t<decltype(qr)>::Scalar;
        run<Mech, S>(mech, qr, kr, vr, out);
    });
}

/// The Python Linformer mechanism: attnx::Linformer<float> or <double>, by the projection's dtype.
struct PyLinformer {
    Projection projection;
    attnx::AttentionOptions options;

    template <typename S>
    attnx::Linformer<S> get() const {
        attnx::Linformer<S> l;
        if constexpr (std::is_same<S, float>::value)
            l.projection = projection.f32;
        else
            l.projection = projection.f64;
        l.options = options;
        return l;
    }
    std::string name() const { return "linformer"; }
    std::string parameters() const {
        if (projection.f32) return get<float>().parameters();
        return get<double>().parameters();
    }
};

py::array call_linformer(const char* fn, const PyLinformer& mech, py::handle q, py::handle k, py::handle v) {
    const QKV a = qkv(fn, q, k, v);
    if (a.q.dtype != mech.projection.dtype())
        type_error(fn, ": the projection has dtype ", dtype_name(mech.projection.dtype()), " but q has ",
                   dtype_name(a.q.dtype), " (build the projection with dtype=numpy.", dtype_name(a.q.dtype),
                   ", or convert q, k, v)");
    return compute_any(a, [&](const auto& qr, const auto& kr, const auto& vr, auto out) {
        using S = typename std::decay_t<decltype(qr)>::Scalar;
        const attnx::Linformer<S> l = mech.get<S>();
        run<attnx::Linformer<S>, S>(l, qr, kr, vr, out);
    });
}

// ---------------------------------------------------------------------------------------------
// Feature-map attention: PerformerFeatures (FAVOR+'s W), Linear, Performer, decode states

/// FAVOR+ features, float or double. Immutable from Python: redraw() returns the next draw as a
/// new object, so a Performer built from these features never changes under its user's feet.
using Features = ByDtype<attnx::PositiveRandomFeatures>;

attnx::FeatureNorms norms_of(const char* fn, const std::string& s) {
    if (s == "chi") return attnx::FeatureNorms::Chi;
    if (s == "sqrt_d") return attnx::FeatureNorms::SqrtD;
    value_error(fn, ": norms must be 'chi' or 'sqrt_d', got '", s, "'");
}

attnx::LinearAttentionOptions linear_options(const char* fn, py::handle scale, bool causal,
                                             py::handle key_padding_mask, double eps, Index chunk,
                                             bool check_finite) {
    attnx::LinearAttentionOptions o = common_options(fn, scale, causal, key_padding_mask, check_finite);
    o.eps = eps;
    o.chunk = chunk;
    return o;
}

void check_features_dtype(const char* fn, const Features& f, Dtype want) {
    if (f.dtype() != want)
        type_error(fn, ": the PerformerFeatures have dtype ", dtype_name(f.dtype()), " but q has ", dtype_name(want),
                   " (draw them with dtype=numpy.", dtype_name(want), ", or convert q, k, v)");
}

/// The Python Performer mechanism: attnx::Performer<float> or <double>, by the features' dtype.
struct PyPerformer {
    Features features;
    attnx::LinearAttentionOptions options;

    template <typename S>
    attnx::Performer<S> get() const {
        return attnx::Performer<S>{features.get<S>(), options};
    }
    std::string name() const { return "performer"; }
    std::string parameters() const {
        return features.visit([&](const auto& x) {
            using S = typename std::decay_t<decltype(x.matrix())>::Scalar;
            return attnx::Performer<S>{x, options}.parameters();
        });
    }
};

py::array call_performer(const char* fn, const PyPerformer& mech, py::handle q, py::handle k, py::handle v) {
    const QKV a = qkv(fn, q, k, v);
    check_features_dtype(fn, mech.features, a.q.dtype);
    return compute_any(a, [&](const auto& qr, const auto& kr, const auto& vr, auto out) {
        using S = typename std::decay_t<decltype(qr)>::Scalar;
        const attnx::Performer<S> p = mech.get<S>();
        run<attnx::Performer<S>, S>(p, qr, kr, vr, out);
    });
}

/// How to fix a dtype mismatch with a state (whose dtype is fixed when it is made).
std::string state_dtype_hint(Dtype state) {
    return std::string(" (a state keeps the dtype it was made with: make it with dtype='") +
           (state == Dtype::F32 ? "float64" : "float32") + "' (or features of that dtype), or convert the arrays)";
}

/// A 1-d float array of `size` entries as a 1 x size matrix of S (copied to contiguous memory if
/// needed); TypeError for another rank or dtype, ValueError for another length.
template <typename S>
py::array_t<S> vector_of(const char* fn, const char* name, py::handle obj, Index size, const char* size_name) {
    const py::array a = as_array(fn, name, obj);
    const Dtype want = std::is_same<S, float>::value ? Dtype::F32 : Dtype::F64;
    const Dtype got = float_dtype(fn, name, a, obj);
    if (got != want)
        type_error(fn, ": ", name, " has dtype ", dtype_name(got), " but the state has ", dtype_name(want),
                   state_dtype_hint(want));
    if (a.ndim() != 1)
        type_error(fn, ": ", name, " must be a 1-d array (one token), got shape ", shape_string(a));
    if (a.shape(0) != size) value_error(fn, ": ", name, " has ", a.shape(0), " entries but ", size_name, " = ", size);
    return py::array_t<S, py::array::c_style>::ensure(a);
}

template <typename S>
In<S> row_ref(const S* p, Index size) {
    return In<S>(Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>(p, 1, size, Eigen::OuterStride<>(1)));
}

/// LinearAttentionState for elu + 1 or FAVOR+, float or double, behind one Python class. Calls
/// on one state are serialised by a mutex (taken with the GIL released), so Python threads
/// sharing a state cannot corrupt it; the order of their tokens is theirs to choose.
struct PyState {
    std::variant<EluState<float>, EluState<double>, FavorState<float>, FavorState<double>> state;
    std::mutex mutex;

    template <typename T>
    explicit PyState(T&& s) : state(std::forward<T>(s)) {}

    Dtype dtype() const { return state.index() % 2 == 0 ? Dtype::F32 : Dtype::F64; }
    template <typename F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), state);
    }
};

template <typename State>
using state_scalar = typename std::decay_t<decltype(std::declval<const State&>().sums())>::Scalar;

/// Q, K, V (any may be absent) of a state's dtype, as 2-d arrays.
struct StateArgs {
    std::optional<Array2> q, k, v;
};

StateArgs state_args(const char* fn, const PyState& p, py::handle q, py::handle k, py::handle v) {
    StateArgs a;
    auto one = [&](std::optional<Array2>& x, const char* name, py::handle obj, const char* hint) {
        if (!obj) return;
        x = array2(fn, name, obj, hint);
        if (x->dtype != p.dtype())
            type_error(fn, ": ", name, " has dtype ", dtype_name(x->dtype), " but the state has ", dtype_name(p.dtype()),
                       state_dtype_hint(p.dtype()));
    };
    one(a.q, "q", q, "(n, d)");
    one(a.k, "k", k, "(n, d)");
    one(a.v, "v", v, "(n, d_v)");
    return a;
}

/// body(state, q, k, v, out) with the GIL released and the state's mutex held; views of the
/// arrays present (others empty); out is (rows, d_v) when rows >= 0 (returned), else None.
template <typename Body>
py::object with_state(PyState& p, const StateArgs& a, Index rows, Body&& body) {
    return p.visit([&](auto& s) -> py::object {
        using S = state_scalar<std::decay_t<decltype(s)>>;
        py::array out;
        S* data = nullptr;
        if (rows >= 0) {
            out = new_output<S>(rows, s.value_dim());
            data = static_cast<S*>(out.mutable_data());
        }
        {
            py::gil_scoped_release release;
            const std::lock_guard<std::mutex> lock(p.mutex);
            const Matrix<S> none(0, 0);
            auto ref = [&](const std::optional<Array2>& x, View<S>& keep) {
                if (!x) return In<S>(none);
                keep = view_of<S>(*x);
                return keep.ref();
            };
            View<S> qv, kv, vv;
            const In<S> qr = ref(a.q, qv), kr = ref(a.k, kv), vr = ref(a.v, vv);
            Eigen::Map<Matrix<S>> o(data, rows >= 0 ? rows : 0, rows >= 0 ? s.value_dim() : 0);
            body(s, qr, kr, vr, Out<S>(o));
        }
        if (rows >= 0) return std::move(out);
        return py::none();
    });
}

std::string state_repr(PyState& p) {
    return p.visit([&](const auto& s) {
        std::ostringstream os;
        os << "attnx.LinearAttentionState(" << attnx::detail::feature_map_name(s.feature_map()) << ", d=" << s.dim()
           << ", d_v=" << s.value_dim() << ", features=" << s.feature_dim() << ", tokens=" << s.tokens()
           << ", dtype=" << dtype_name(p.dtype()) << ")";
        return os.str();
    });
}

/// f(mechanism) with the C++ mechanism value that the Python object `mech` holds, for Scalar S
/// (a Linformer's projection must have dtype S). The reference stays valid while mech is alive.
template <typename S, typename F>
void with_mechanism(const char* fn, py::handle mech, F&& f) {
    if (py::isinstance<attnx::Exact>(mech)) return f(mech.cast<const attnx::Exact&>());
    if (py::isinstance<attnx::Nystrom>(mech)) return f(mech.cast<const attnx::Nystrom&>());
    if (py::isinstance<attnx::BlockSparse>(mech)) return f(mech.cast<const attnx::BlockSparse&>());
    if (py::isinstance<attnx::BigBird>(mech)) return f(mech.cast<const attnx::BigBird&>());
    if (py::isinstance<attnx::Linear<>>(mech)) return f(mech.cast<const attnx::Linear<>&>());
    if (py::isinstance<PyPerformer>(mech)) {
        const PyPerformer& p = mech.cast<const PyPerformer&>();
        check_features_dtype(fn, p.features, std::is_same<S, float>::value ? Dtype::F32 : Dtype::F64);
        return f(p.get<S>());
    }
    if (py::isinstance<PyLinformer>(mech)) {
        const PyLinformer& l = mech.cast<const PyLinformer&>();
        const Dtype want = std::is_same<S, float>::value ? Dtype::F32 : Dtype::F64;
        if (l.projection.dtype() != want)
            type_error(fn, ": the Linformer projection has dtype ", dtype_name(l.projection.dtype()), " but q has ",
                       dtype_name(want));
        return f(l.get<S>());
    }
    type_error(fn, ": mechanism must be an attnx mechanism value (attnx.Exact, attnx.Nystrom, attnx.Linformer, "
                   "attnx.BlockSparse, attnx.BigBird, attnx.Linear or attnx.Performer), got ",
               type_name(mech));
}

py::array call_linformer_raw(const char* fn, py::handle q, py::handle k, py::handle v, py::handle e, py::handle f,
                             const attnx::AttentionOptions& o) {
    const QKV a = qkv(fn, q, k, v);
    const Array2 ea = array2(fn, "E", e, "(k, n_k)");
    check_same_dtype(fn, "E", ea, "q", a.q);
    const Array2 fa = f.is_none() ? ea : array2(fn, "F", f, "(k, n_k)");
    check_same_dtype(fn, "F", fa, "q", a.q);
    return compute_any(a, [&](const auto& qr, const auto& kr, const auto& vr, auto out) {
        using S = typename std::decay_t<decltype(qr)>::Scalar;
        const View<S> ev = view_of<S>(ea), fv = view_of<S>(fa);
        run_linformer_raw<S>(qr, kr, vr, ev.ref(), fv.ref(), o, out);
    });
}

// ---------------------------------------------------------------------------------------------
// Multi-head: 4-d arrays of heads, viewed in place as attnx::HeadsView

/// A 4-d float array of heads as multi_head_attention reads it, in place: sizes (B, N, H, D) and
/// strides in elements, whatever the NumPy strides (an array whose strides are not whole
/// elements, or that is unaligned, is first copied to C order).
struct Heads {
    py::array array;
    Dtype dtype = Dtype::F64;
    Index size[4] = {0, 0, 0, 0};    // batch, tokens, heads, dim
    Index stride[4] = {0, 0, 0, 0};  // elements, same order
};

bool layout_is_bhnd(const char* fn, const std::string& layout) {
    if (layout == "bnhd") return false;
    if (layout == "bhnd") return true;
    value_error(fn, ": layout must be 'bnhd' (B, N, H, D) or 'bhnd' (B, H, N, D), got '", layout, "'");
}

Heads heads_of(const char* fn, const char* name, py::handle obj, bool bhnd) {
    Heads h;
    h.array = as_array(fn, name, obj);
    h.dtype = float_dtype(fn, name, h.array, obj);
    if (h.array.ndim() != 4)
        type_error(fn, ": ", name, " must be a 4-d array of shape ", bhnd ? "(B, H, N, D)" : "(B, N, H, D)",
                   " (layout='", bhnd ? "bhnd" : "bnhd", "'), got shape ", shape_string(h.array));
    const py::ssize_t item = h.array.itemsize();
    bool whole = (h.array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
    for (int a = 0; a < 4; ++a) whole = whole && h.array.strides(a) % item == 0;
    if (!whole) h.array = py::module_::import("numpy").attr("ascontiguousarray")(h.array);
    const int axis[4] = {0, bhnd ? 2 : 1, bhnd ? 1 : 2, 3};  // batch, tokens, heads, dim
    for (int i = 0; i < 4; ++i) {
        h.size[i] = static_cast<Index>(h.array.shape(axis[i]));
        h.stride[i] = static_cast<Index>(h.array.strides(axis[i]) / item);
    }
    return h;
}

template <typename S>
attnx::HeadsView<const S> view_of_heads(const Heads& h) {
    return attnx::HeadsView<const S>::strided(static_cast<const S*>(h.array.data()), h.size[0], h.size[1], h.size[2],
                                              h.size[3], h.stride[0], h.stride[1], h.stride[2], h.stride[3]);
}

std::vector<Index> lengths_of(const char* fn, const char* name, py::handle obj) {
    std::vector<Index> out;
    if (obj.is_none()) return out;
    const py::array a = as_array(fn, name, obj);
    const char kind = a.dtype().kind();
    if ((kind != 'i' && kind != 'u') || a.ndim() != 1)
        type_error(fn, ": ", name, " must be a 1-d integer array (one length per sequence), got dtype ",
                   dtype_str(a.dtype()), " and shape ", shape_string(a));
    const auto l = py::array_t<std::int64_t, py::array::forcecast>::ensure(a);
    for (py::ssize_t i = 0; i < l.size(); ++i) out.push_back(static_cast<Index>(l.at(i)));
    return out;
}

std::vector<bool> batch_mask(const char* fn, py::handle obj) {
    std::vector<bool> mask;
    if (obj.is_none()) return mask;
    const py::array a = as_array(fn, "key_padding_mask", obj);
    if (a.dtype().kind() != 'b' || a.ndim() != 2)
        type_error(fn, ": key_padding_mask must be a 2-d bool array (B, N_k), True = padding, got dtype ",
                   dtype_str(a.dtype()), " and shape ", shape_string(a));
    const char* p = static_cast<const char*>(a.data());
    for (py::ssize_t b = 0; b < a.shape(0); ++b)
        for (py::ssize_t j = 0; j < a.shape(1); ++j) mask.push_back(p[b * a.strides(0) + j * a.strides(1)] != 0);
    return mask;
}

// ---------------------------------------------------------------------------------------------
// Reprs

std::string repr_of(const char* cls, const std::string& name, const std::string& parameters) {
    return std::string("attnx.") + cls + "(" + name + ": " + parameters + ")";
}

std::string metrics_repr(const attnx::ErrorMetrics& e) {
    std::ostringstream os;
    os.precision(6);
    os << "ErrorMetrics(rel_fro=" << e.rel_fro << ", max_abs=" << e.max_abs
       << ", mean_row_cosine=" << e.mean_row_cosine << ")";
    return os.str();
}

const char* pinv_name(attnx::PinvMethod p) { return p == attnx::PinvMethod::Exact ? "exact" : "iterative"; }

Index block_index(const char* fn, const char* name, Index i, Index n) {
    if (i < 0 || i >= n) throw py::index_error(std::string(fn) + ": " + name + " = " + std::to_string(i) +
                                               " is out of range [0, " + std::to_string(n) + ")");
    return i;
}

py::array index_array(const std::vector<Index>& v) {
    py::array_t<std::int64_t> a(static_cast<py::ssize_t>(v.size()));
    std::int64_t* p = a.mutable_data();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<std::int64_t>(v[i]);
    return std::move(a);
}

py::array bool_matrix(const attnx::BlockMask& m) {  // Fortran order, one byte per entry
    py::array a(py::dtype::of<bool>(), std::vector<py::ssize_t>{m.rows(), m.cols()},
                std::vector<py::ssize_t>{1, std::max<Index>(m.rows(), 1)});
    if (m.size() > 0) std::memcpy(a.mutable_data(), m.data(), static_cast<std::size_t>(m.size()));
    return a;
}

attnx::BlockMask block_mask_of(const char* fn, py::handle obj) {
    const py::array a = as_array(fn, "mask", obj);
    if (a.dtype().kind() != 'b')
        type_error(fn, ": mask must be a 2-d bool array (True = block kept), got dtype ",
                   dtype_str(a.dtype()), "; pass mask != 0 for a 0/1 array");
    if (a.ndim() != 2) type_error(fn, ": mask must be a 2-d bool array (nb_q, nb_k), got shape ", shape_string(a));
    attnx::BlockMask m(a.shape(0), a.shape(1));
    const char* p = static_cast<const char*>(a.data());
    for (Index i = 0; i < m.rows(); ++i)
        for (Index j = 0; j < m.cols(); ++j) m(i, j) = p[i * a.strides(0) + j * a.strides(1)] != 0;
    return m;
}

}  // namespace
}  // namespace attnx_py

PYBIND11_MODULE(attnx, m) {
    using namespace attnx_py;
    using py::arg;

    m.doc() = R"doc(attnx: exact softmax attention and its approximations (Nyström, Linformer, BigBird /
Longformer block-sparse, linear attention, Performer FAVOR+), from the header-only C++ library attnx.

Arrays are float32 or float64, shape (n, d) (rows are tokens); results have the input dtype.
Fortran-ordered arrays are read without a copy; C-ordered ones are converted once (O(n·d)).
Masks are bool arrays with True = padding (PyTorch's attn_mask uses the opposite sense).
Errors: ValueError with attnx's message for invalid arguments; TypeError for a wrong dtype or
rank. The GIL is released during the computation; threads follow OMP_NUM_THREADS.)doc";

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const attnx::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    m.attr("__version__") = std::to_string(ATTNX_VERSION_MAJOR) + "." + std::to_string(ATTNX_VERSION_MINOR) + "." +
                            std::to_string(ATTNX_VERSION_PATCH);
#ifdef _OPENMP
    m.attr("openmp") = true;
    m.def("max_threads", [] { return omp_get_max_threads(); },
          "Threads a call may use (OpenMP's omp_get_max_threads(); set OMP_NUM_THREADS before import).");
#else
    m.attr("openmp") = false;
    m.def("max_threads", [] { return 1; }, "1: this build of attnx has no OpenMP.");
#endif

    // ----- results
    py::class_<attnx::ErrorMetrics>(m, "ErrorMetrics", "Error of an approximation against a reference (in double).")
        .def_readonly("rel_fro", &attnx::ErrorMetrics::rel_fro, "||A - R||_F / ||R||_F")
        .def_readonly("max_abs", &attnx::ErrorMetrics::max_abs, "max |A_ij - R_ij|")
        .def_readonly("mean_row_cosine", &attnx::ErrorMetrics::mean_row_cosine, "mean over rows of cos(A_i, R_i)")
        .def("__repr__", &metrics_repr);

    py::class_<attnx::NystromReport>(m, "NystromReport", "Pseudoinverse diagnostics of one nystrom_attention call.")
        .def_readonly("num_landmarks", &attnx::NystromReport::num_landmarks)
        .def_property_readonly("pinv", [](const attnx::NystromReport& r) { return pinv_name(r.pinv); })
        .def_readonly("pinv_iterations", &attnx::NystromReport::pinv_iterations)
        .def_readonly("pinv_residual", &attnx::NystromReport::pinv_residual, "||I - A Z||_F")
        .def_readonly("pinv_residual_aza", &attnx::NystromReport::pinv_residual_aza, "||A Z A - A||_F")
        .def_readonly("max_column_sum", &attnx::NystromReport::max_column_sum, "||A||_1")
        .def("__repr__", [](const attnx::NystromReport& r) {
            std::ostringstream os;
            os << "NystromReport(num_landmarks=" << r.num_landmarks << ", pinv='" << pinv_name(r.pinv)
               << "', pinv_iterations=" << r.pinv_iterations << ", pinv_residual=" << r.pinv_residual
               << ", pinv_residual_aza=" << r.pinv_residual_aza << ", max_column_sum=" << r.max_column_sum << ")";
            return os.str();
        });

    // ----- BlockLayout
    py::class_<attnx::BlockLayout>(m, "BlockLayout", R"doc(The kept b x b blocks of a block-sparse attention pattern,
built for one (n_q, n_k). Builders: bigbird, longformer, dense, from_block_mask.)doc")
        .def_static(
            "bigbird",
            [](Index n, Index block, Index window, Index global, Index random, std::uint64_t seed) {
                return attnx::BlockLayout::bigbird(n, bigbird_options(block, window, global, random, seed));
            },
            arg("n"), py::kw_only(), arg("block") = 64, arg("window") = 3, arg("global_") = 2, arg("random") = 3,
            arg("seed") = 0,
            "BigBird: window blocks, global_ global blocks (first and last), random blocks per row "
            "(C++ BigBirdOptions; global_ is C++'s `global`, a Python keyword).")
        .def_static("longformer", &attnx::BlockLayout::longformer, arg("n"), arg("block"), arg("window"),
                    arg("global_tokens"), "Longformer: the window plus the first ceil(global_tokens/block) blocks as "
                                          "global rows and columns.")
        .def_static("dense", py::overload_cast<Index, Index>(&attnx::BlockLayout::dense), arg("n"), arg("block"),
                    "Every block of an n x n attention (equals exact attention).")
        .def_static("dense", py::overload_cast<Index, Index, Index>(&attnx::BlockLayout::dense), arg("n_q"),
                    arg("n_k"), arg("block"), "Every block of an n_q x n_k attention.")
        .def_static(
            "from_block_mask",
            [](py::handle mask, Index block, py::object n_q, py::object n_k) {
                constexpr const char* fn = "BlockLayout.from_block_mask";
                const attnx::BlockMask bm = block_mask_of(fn, mask);
                if (n_q.is_none() != n_k.is_none()) type_error(fn, ": pass both n_q and n_k, or neither");
                if (n_q.is_none()) return attnx::BlockLayout::from_block_mask(bm, block);
                return attnx::BlockLayout::from_block_mask(bm, block, n_q.cast<Index>(), n_k.cast<Index>());
            },
            arg("mask"), arg("block"), arg("n_q") = py::none(), arg("n_k") = py::none(),
            "From an (nb_q, nb_k) bool array of kept blocks; n_q, n_k default to nb_q*block, nb_k*block.")
        .def("block_size", &attnx::BlockLayout::block_size)
        .def("n_q", &attnx::BlockLayout::n_q)
        .def("n_k", &attnx::BlockLayout::n_k)
        .def("query_blocks", &attnx::BlockLayout::query_blocks)
        .def("key_blocks", &attnx::BlockLayout::key_blocks)
        .def("kept_blocks", &attnx::BlockLayout::kept_blocks)
        .def("kept_entries", &attnx::BlockLayout::kept_entries)
        .def("density", &attnx::BlockLayout::density, "kept entries / (n_q * n_k)")
        .def("row_ptr", [](const attnx::BlockLayout& l) { return index_array(l.row_ptr()); })
        .def("col_idx", [](const attnx::BlockLayout& l) { return index_array(l.col_idx()); })
        .def(
            "row",
            [](const attnx::BlockLayout& l, Index i) {
                return index_array(l.row(block_index("BlockLayout.row", "i", i, l.query_blocks())));
            },
            arg("i"), "The kept key blocks of query block i (sorted).")
        .def(
            "contains",
            [](const attnx::BlockLayout& l, Index i, Index j) {
                return l.contains(block_index("BlockLayout.contains", "i", i, l.query_blocks()), j);
            },
            arg("i"), arg("j"))
        .def("to_block_mask", [](const attnx::BlockLayout& l) { return bool_matrix(l.to_block_mask()); },
             "(nb_q, nb_k) bool array: True = block kept.")
        .def("to_dense_mask", [](const attnx::BlockLayout& l) { return bool_matrix(l.to_dense_mask()); },
             "(n_q, n_k) bool array: True = entry kept (small n: n_q*n_k bytes). Note: True means KEPT here, "
             "unlike the padding masks.")
        .def(
            "write_pgm",
            [](const attnx::BlockLayout& l, const std::string& path, Index pixels_per_block) {
                try {
                    l.write_pgm(path, pixels_per_block);
                } catch (const attnx::invalid_argument&) {
                    throw;
                } catch (const std::runtime_error& e) {
                    PyErr_SetString(PyExc_OSError, e.what());
                    throw py::error_already_set();
                }
            },
            arg("path"), arg("pixels_per_block") = 1)
        .def("__str__",
             [](const attnx::BlockLayout& l) {
                 std::ostringstream os;
                 os << l;
                 return os.str();
             })
        .def("__repr__",
             [](const attnx::BlockLayout& l) {
                 std::ostringstream os;
                 os << "attnx.BlockLayout(n_q=" << l.n_q() << ", n_k=" << l.n_k() << ", block=" << l.block_size()
                    << ", kept_blocks=" << l.kept_blocks() << " of " << l.query_blocks() * l.key_blocks()
                    << ", density=" << l.density() << ")";
                 return os.str();
             })
        .def(py::self == py::self)  // NOLINT(misc-redundant-expression)
        .def(py::self != py::self);  // NOLINT(misc-redundant-expression)

    // ----- LinformerProjection
    py::class_<Projection>(m, "LinformerProjection", R"doc(Linformer's projections E (keys) and F (values), k x n_max,
float32 or float64. Sequences of n_k <= n_max keys use the first n_k columns.)doc")
        .def_static(
            "gaussian",
            [](Index k, Index n_max, std::uint64_t seed, const std::string& sharing, py::handle dtype) {
                constexpr const char* fn = "LinformerProjection.gaussian";
                const attnx::LinformerSharing s = sharing_of(fn, sharing);
                Projection p;
                const Dtype dt = dtype_arg(fn, dtype);
                py::gil_scoped_release release;
                if (dt == Dtype::F32)
                    p.f32 = std::make_shared<const attnx::LinformerProjection<float>>(
                        attnx::LinformerProjection<float>::gaussian(k, n_max, seed, s));
                else
                    p.f64 = std::make_shared<const attnx::LinformerProjection<double>>(
                        attnx::LinformerProjection<double>::gaussian(k, n_max, seed, s));
                return p;
            },
            arg("k"), arg("n_max"), arg("seed"), arg("sharing") = "separate", arg("dtype") = py::str("float32"),
            "E, F with N(0, 1/k) entries from attnx's seeded generator; sharing='key_value' makes F = E.")
        .def_static(
            "from_matrices",
            [](py::handle e, py::handle f) {
                constexpr const char* fn = "LinformerProjection.from_matrices";
                const Array2 ea = array2(fn, "e", e, "(k, n_max)"), fa = array2(fn, "f", f, "(k, n_max)");
                check_same_dtype(fn, "f", fa, "e", ea);
                Projection p;
                py::gil_scoped_release release;
                if (ea.dtype == Dtype::F32) {
                    const View<float> ev = view_of<float>(ea), fv = view_of<float>(fa);
                    const In<float> fr = fv.ref();
                    p.f32 = std::make_shared<const attnx::LinformerProjection<float>>(projection_from<float>(ev.ref(), &fr));
                } else {
                    const View<double> ev = view_of<double>(ea), fv = view_of<double>(fa);
                    const In<double> fr = fv.ref();
                    p.f64 = std::make_shared<const attnx::LinformerProjection<double>>(projection_from<double>(ev.ref(), &fr));
                }
                return p;
            },
            arg("e"), arg("f"), "Given (e.g. trained) E and F, k x n_max each, finite; the dtype is theirs.")
        .def_static(
            "from_matrix",
            [](py::handle e) {
                constexpr const char* fn = "LinformerProjection.from_matrix";
                const Array2 ea = array2(fn, "e", e, "(k, n_max)");
                Projection p;
                py::gil_scoped_release release;
                if (ea.dtype == Dtype::F32)
                    p.f32 = std::make_shared<const attnx::LinformerProjection<float>>(
                        projection_from<float>(view_of<float>(ea).ref(), nullptr));
                else
                    p.f64 = std::make_shared<const attnx::LinformerProjection<double>>(
                        projection_from<double>(view_of<double>(ea).ref(), nullptr));
                return p;
            },
            arg("e"), "A given E used for keys and values alike (F = E).")
        .def_static(
            "identity",
            [](Index n, py::handle dtype) {
                Projection p;
                if (dtype_arg("LinformerProjection.identity", dtype) == Dtype::F32)
                    p.f32 = std::make_shared<const attnx::LinformerProjection<float>>(
                        attnx::LinformerProjection<float>::identity(n));
                else
                    p.f64 = std::make_shared<const attnx::LinformerProjection<double>>(
                        attnx::LinformerProjection<double>::identity(n));
                return p;
            },
            arg("n"), arg("dtype") = py::str("float64"), "E = F = I_n: the exact limit for sequences of n keys.")
        .def_property_readonly("dtype", [](const Projection& p) { return p.dtype() == Dtype::F32 ? py::dtype::of<float>() : py::dtype::of<double>(); })
        .def("rank", [](const Projection& p) { return p.visit([](const auto& x) { return x.rank(); }); },
             "k, the number of projected keys.")
        .def("max_length", [](const Projection& p) { return p.visit([](const auto& x) { return x.max_length(); }); },
             "n_max, the longest sequence covered.")
        .def("sharing",
             [](const Projection& p) {
                 return p.visit([](const auto& x) {
                     return std::string(x.sharing() == attnx::LinformerSharing::KeyValue ? "key_value" : "separate");
                 });
             })
        .def(
            "e",
            [](py::object self) {
                const Projection& p = self.cast<const Projection&>();
                return p.visit([&](const auto& x) { return matrix_view(x.e(), self); });
            },
            "E (k x n_max), a read-only view.")
        .def(
            "f",
            [](py::object self) {
                const Projection& p = self.cast<const Projection&>();
                return p.visit([&](const auto& x) { return matrix_view(x.f(), self); });
            },
            "F (k x n_max), a read-only view (the same memory as e() with key_value sharing).")
        .def("__repr__", [](const Projection& p) {
            return p.visit([&](const auto& x) {
                std::ostringstream os;
                os << "attnx.LinformerProjection(k=" << x.rank() << ", n_max=" << x.max_length() << ", sharing='"
                   << (x.sharing() == attnx::LinformerSharing::KeyValue ? "key_value" : "separate") << "', dtype="
                   << dtype_name(p.dtype()) << ")";
                return os.str();
            });
        });

    // ----- mechanism values (callable: mech(q, k, v)), and one function per mechanism
    py::class_<attnx::Exact>(m, "Exact", "Exact softmax attention as a value: Exact(**options)(q, k, v).")
        .def(py::init([](py::handle scale, bool causal, py::handle key_padding_mask, const std::string& kernel,
                         Index query_tile, Index key_tile, Index decode_key_tile, bool check_finite) {
                 return attnx::Exact{exact_options("Exact", scale, causal, key_padding_mask, kernel, query_tile,
                                                   key_tile, decode_key_tile, check_finite)};
             }),
             py::kw_only(), arg("scale") = py::none(), arg("causal") = false, arg("key_padding_mask") = py::none(),
             arg("kernel") = "streaming", arg("query_tile") = 128, arg("key_tile") = 128,
             arg("decode_key_tile") = 256, arg("check_finite") = true)
        .def("__call__", [](const attnx::Exact& e, py::handle q, py::handle k, py::handle v) {
            return call_mechanism("exact_attention", e, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def("name", &attnx::Exact::name)
        .def("parameters", &attnx::Exact::parameters)
        .def("__repr__", [](const attnx::Exact& e) { return repr_of("Exact", e.name(), e.parameters()); });

    m.def(
        "exact_attention",
        [](py::handle q, py::handle k, py::handle v, py::handle scale, bool causal, py::handle key_padding_mask,
           const std::string& kernel, Index query_tile, Index key_tile, Index decode_key_tile, bool check_finite) {
            constexpr const char* fn = "exact_attention";
            const attnx::Exact e{exact_options(fn, scale, causal, key_padding_mask, kernel, query_tile, key_tile,
                                               decode_key_tile, check_finite)};
            return call_mechanism(fn, e, q, k, v);
        },
        arg("q"), arg("k"), arg("v"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
        arg("key_padding_mask") = py::none(), arg("kernel") = "streaming", arg("query_tile") = 128,
        arg("key_tile") = 128, arg("decode_key_tile") = 256, arg("check_finite") = true,
        R"doc(softmax(scale · Q Kᵀ + mask) V. q: (n_q, d), k: (n_k, d), v: (n_k, d_v); returns (n_q, d_v).
scale defaults to 1/sqrt(d); causal aligns bottom-right (query i sees keys j <= i + n_k - n_q);
key_padding_mask: bool (n_k,), True = padding; kernel: 'streaming' (O(n·d) memory) or 'materialized';
query_tile, key_tile: the streaming kernel's tiles; decode_key_tile: its key tile when n_q = 1.)doc");

    py::class_<attnx::Nystrom>(m, "Nystrom", "Nyström attention as a value: Nystrom(**options)(q, k, v).")
        .def(py::init([](Index num_landmarks, const std::string& pinv, int pinv_iterations, py::handle scale,
                         bool causal, py::handle key_padding_mask, py::handle query_padding_mask,
                         py::handle conv_kernel, bool check_finite) {
                 return attnx::Nystrom{nystrom_options("Nystrom", num_landmarks, pinv, pinv_iterations, scale, causal,
                                                       key_padding_mask, query_padding_mask, conv_kernel,
                                                       check_finite)};
             }),
             py::kw_only(), arg("num_landmarks") = 64, arg("pinv") = "iterative", arg("pinv_iterations") = 6,
             arg("scale") = py::none(), arg("causal") = false, arg("key_padding_mask") = py::none(),
             arg("query_padding_mask") = py::none(), arg("conv_kernel") = py::none(), arg("check_finite") = true)
        .def("__call__", [](const attnx::Nystrom& n, py::handle q, py::handle k, py::handle v) {
            return call_mechanism("nystrom_attention", n, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def("name", &attnx::Nystrom::name)
        .def("parameters", &attnx::Nystrom::parameters)
        .def("__repr__", [](const attnx::Nystrom& n) { return repr_of("Nystrom", n.name(), n.parameters()); });

    m.def(
        "nystrom_attention",
        [](py::handle q, py::handle k, py::handle v, Index num_landmarks, const std::string& pinv, int pinv_iterations,
           py::handle scale, bool causal, py::handle key_padding_mask, py::handle query_padding_mask,
           py::handle conv_kernel, bool check_finite, bool return_report) -> py::object {
            constexpr const char* fn = "nystrom_attention";
            const attnx::NystromOptions o = nystrom_options(fn, num_landmarks, pinv, pinv_iterations, scale, causal,
                                                            key_padding_mask, query_padding_mask, conv_kernel,
                                                            check_finite);
            const QKV a = qkv(fn, q, k, v);
            attnx::NystromReport report;
            attnx::NystromReport* rp = return_report ? &report : nullptr;
            py::array out = compute_any(a, [&](const auto& qr, const auto& kr, const auto& vr, auto o_) {
                using S = typename std::decay_t<decltype(qr)>::Scalar;
                run_nystrom<S>(o, qr, kr, vr, o_, rp);
            });
            if (return_report) return py::make_tuple(out, report);
            return std::move(out);
        },
        arg("q"), arg("k"), arg("v"), py::kw_only(), arg("num_landmarks") = 64, arg("pinv") = "iterative",
        arg("pinv_iterations") = 6, arg("scale") = py::none(), arg("causal") = false,
        arg("key_padding_mask") = py::none(), arg("query_padding_mask") = py::none(), arg("conv_kernel") = py::none(),
        arg("check_finite") = true, arg("return_report") = false,
        R"doc(Nyström attention (Xiong et al., arXiv:2102.03902): m = num_landmarks segment-mean landmarks,
Z ≈ A⁺ by pinv='iterative' (pinv_iterations) or 'exact'. query_padding_mask / key_padding_mask: bool,
True = padding; conv_kernel: odd-length weights of the depthwise convolution skip (self-attention).
return_report=True returns (out, NystromReport).)doc");

    py::class_<PyLinformer>(m, "Linformer", "Linformer attention as a value: Linformer(projection, **options)(q, k, v).")
        .def(py::init([](const Projection& p, py::handle scale, bool causal, py::handle key_padding_mask,
                         bool check_finite) {
                 return PyLinformer{p, common_options("Linformer", scale, causal, key_padding_mask, check_finite)};
             }),
             arg("projection"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
             arg("key_padding_mask") = py::none(), arg("check_finite") = true)
        .def("__call__", [](const PyLinformer& l, py::handle q, py::handle k, py::handle v) {
            return call_linformer("linformer_attention", l, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def("name", &PyLinformer::name)
        .def("parameters", &PyLinformer::parameters)
        .def("__repr__", [](const PyLinformer& l) { return repr_of("Linformer", l.name(), l.parameters()); });

    m.def(
        "linformer_attention",
        [](py::handle q, py::handle k, py::handle v, py::handle e, py::handle f, py::handle scale, bool causal,
           py::handle key_padding_mask, bool check_finite) {
            constexpr const char* fn = "linformer_attention";
            const attnx::AttentionOptions o = common_options(fn, scale, causal, key_padding_mask, check_finite);
            if (py::isinstance<Projection>(e)) {
                if (!f.is_none())
                    type_error(fn, ": E is a LinformerProjection, which holds F too; pass F=None");
                return call_linformer(fn, PyLinformer{e.cast<const Projection&>(), o}, q, k, v);
            }
            return call_linformer_raw(fn, q, k, v, e, f, o);
        },
        arg("q"), arg("k"), arg("v"), arg("E"), arg("F") = py::none(), py::kw_only(), arg("scale") = py::none(),
        arg("causal") = false, arg("key_padding_mask") = py::none(), arg("check_finite") = true,
        R"doc(softmax(scale · Q (E K)ᵀ) (F V) (Wang et al., arXiv:2006.04768). E, F: (k, n_k) arrays of q's dtype
(F=None: F = E), or E a LinformerProjection (its first n_k columns) and F None.)doc");

    py::class_<attnx::BlockSparse>(m, "BlockSparse",
                                   "Block-sparse attention as a value: BlockSparse(layout, **options)(q, k, v).")
        .def(py::init([](const attnx::BlockLayout& layout, py::handle scale, bool causal, py::handle key_padding_mask,
                         bool check_finite) {
                 return attnx::BlockSparse{layout,
                                           common_options("BlockSparse", scale, causal, key_padding_mask, check_finite)};
             }),
             arg("layout"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
             arg("key_padding_mask") = py::none(), arg("check_finite") = true)
        .def("__call__", [](const attnx::BlockSparse& b, py::handle q, py::handle k, py::handle v) {
            return call_mechanism("block_sparse_attention", b, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def_property_readonly("layout", [](const attnx::BlockSparse& b) { return b.layout; })
        .def("name", &attnx::BlockSparse::name)
        .def("parameters", &attnx::BlockSparse::parameters)
        .def("__repr__", [](const attnx::BlockSparse& b) { return repr_of("BlockSparse", b.name(), b.parameters()); });

    m.def(
        "block_sparse_attention",
        [](py::handle q, py::handle k, py::handle v, const attnx::BlockLayout& layout, py::handle scale, bool causal,
           py::handle key_padding_mask, bool check_finite) {
            constexpr const char* fn = "block_sparse_attention";
            const attnx::BlockSparse b{layout, common_options(fn, scale, causal, key_padding_mask, check_finite)};
            return call_mechanism(fn, b, q, k, v);
        },
        arg("q"), arg("k"), arg("v"), arg("layout"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
        arg("key_padding_mask") = py::none(), arg("check_finite") = true,
        "Exact softmax attention restricted to the blocks a BlockLayout keeps (built for n_q, n_k).");

    py::class_<attnx::BigBird>(m, "BigBird", "BigBird self-attention as a value: BigBird(**options)(q, k, v).")
        .def(py::init([](Index block, Index window, Index global, Index random, std::uint64_t seed, py::handle scale,
                         bool causal, py::handle key_padding_mask, bool check_finite) {
                 return attnx::BigBird{bigbird_options(block, window, global, random, seed),
                                       common_options("BigBird", scale, causal, key_padding_mask, check_finite)};
             }),
             py::kw_only(), arg("block") = 64, arg("window") = 3, arg("global_") = 2, arg("random") = 3,
             arg("seed") = 0, arg("scale") = py::none(), arg("causal") = false, arg("key_padding_mask") = py::none(),
             arg("check_finite") = true)
        .def("__call__", [](const attnx::BigBird& b, py::handle q, py::handle k, py::handle v) {
            return call_mechanism("bigbird_attention", b, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def("name", &attnx::BigBird::name)
        .def("parameters", &attnx::BigBird::parameters)
        .def("__repr__", [](const attnx::BigBird& b) { return repr_of("BigBird", b.name(), b.parameters()); });

    m.def(
        "bigbird_attention",
        [](py::handle q, py::handle k, py::handle v, Index block, Index window, Index global, Index random,
           std::uint64_t seed, py::handle scale, bool causal, py::handle key_padding_mask, bool check_finite) {
            constexpr const char* fn = "bigbird_attention";
            const attnx::BigBird b{bigbird_options(block, window, global, random, seed),
                                   common_options(fn, scale, causal, key_padding_mask, check_finite)};
            return call_mechanism(fn, b, q, k, v);
        },
        arg("q"), arg("k"), arg("v"), py::kw_only(), arg("block") = 64, arg("window") = 3, arg("global_") = 2,
        arg("random") = 3, arg("seed") = 0, arg("scale") = py::none(), arg("causal") = false,
        arg("key_padding_mask") = py::none(), arg("check_finite") = true,
        "BigBird self-attention: BlockLayout.bigbird(n, ...) then block_sparse_attention (n_q == n_k).");

    // ----- feature-map attention: linear attention (elu + 1) and Performer (FAVOR+)
    py::class_<Features>(m, "PerformerFeatures", R"doc(FAVOR+ random features W (num_features x d), float32 or float64
(Choromanski et al., arXiv:2009.14794, eq. 7, Lemma 1; orthogonal rows: Theorem 2). Immutable:
redraw() returns the next draw as a new object.)doc")
        .def_static(
            "draw",
            [](Index d, std::uint64_t seed, Index num_features, bool orthogonal, const std::string& norms,
               double stabilizer, py::handle dtype) {
                constexpr const char* fn = "PerformerFeatures.draw";
                attnx::RandomFeatureOptions o;
                o.num_features = num_features;
                o.orthogonal = orthogonal;
                o.norms = norms_of(fn, norms);
                o.stabilizer = stabilizer;
                const Dtype dt = dtype_arg(fn, dtype);
                py::gil_scoped_release release;
                if (dt == Dtype::F32) return Features::of(features_draw<float>(d, seed, o));
                return Features::of(features_draw<double>(d, seed, o));
            },
            arg("d"), arg("seed"), py::kw_only(), arg("num_features") = 256, arg("orthogonal") = true,
            arg("norms") = "chi", arg("stabilizer") = 1e-6, arg("dtype") = py::str("float32"),
            "W for head dimension d from attnx's seeded generator (the same on every platform): "
            "num_features = m rows, orthogonal in blocks of d (or iid Gaussian), row norms 'chi' "
            "(unbiased) or 'sqrt_d'.")
        .def_static(
            "from_matrix",
            [](py::handle w, double stabilizer) {
                constexpr const char* fn = "PerformerFeatures.from_matrix";
                const Array2 wa = array2(fn, "w", w, "(num_features, d)");
                py::gil_scoped_release release;
                if (wa.dtype == Dtype::F32) return Features::of(features_from<float>(view_of<float>(wa).ref(), stabilizer));
                return Features::of(features_from<double>(view_of<double>(wa).ref(), stabilizer));
            },
            arg("w"), arg("stabilizer") = 1e-6, "Given W (num_features, d), finite; the dtype is w's.")
        .def("redraw",
             [](const Features& f) {
                 return f.visit([](const auto& x) {
                     auto next = x;
                     next.redraw();
                     return Features::of(std::move(next));
                 });
             },
             "The next draw from the same seed (a new PerformerFeatures; this one is unchanged). "
             "ValueError for features from from_matrix.")
        .def_property_readonly("dtype", [](const Features& f) {
            return f.dtype() == Dtype::F32 ? py::dtype::of<float>() : py::dtype::of<double>();
        })
        .def("num_features", [](const Features& f) { return f.visit([](const auto& x) { return x.num_features(); }); })
        .def("dim", [](const Features& f) { return f.visit([](const auto& x) { return x.dim(); }); })
        .def("stabilizer", [](const Features& f) { return f.visit([](const auto& x) { return x.stabilizer(); }); })
        .def("seeded", [](const Features& f) { return f.visit([](const auto& x) { return x.seeded(); }); })
        .def("seed", [](const Features& f) { return f.visit([](const auto& x) { return x.seed(); }); })
        .def("draw_index", [](const Features& f) { return f.visit([](const auto& x) { return x.draw_index(); }); })
        .def(
            "matrix",
            [](py::object self) {
                const Features& f = self.cast<const Features&>();
                return f.visit([&](const auto& x) { return matrix_view(x.matrix(), self); });
            },
            "W (num_features x d), a read-only view.")
        .def("__repr__", [](const Features& f) {
            return f.visit([&](const auto& x) {
                return "attnx.PerformerFeatures(" + x.name() + ", dtype=" + dtype_name(f.dtype()) + ")";
            });
        });

    py::class_<attnx::Linear<>>(m, "Linear",
                                "Linear attention (elu(x) + 1 features) as a value: Linear(**options)(q, k, v).")
        .def(py::init([](py::handle scale, bool causal, py::handle key_padding_mask, double eps, Index chunk,
                         bool check_finite) {
                 return attnx::Linear<>{{},
                                        linear_options("Linear", scale, causal, key_padding_mask, eps, chunk,
                                                       check_finite)};
             }),
             py::kw_only(), arg("scale") = py::none(), arg("causal") = false, arg("key_padding_mask") = py::none(),
             arg("eps") = 1e-6, arg("chunk") = 64, arg("check_finite") = true,
             "scale must stay None: elu + 1 has no scale (a set one is a ValueError when called).")
        .def("__call__", [](const attnx::Linear<>& l, py::handle q, py::handle k, py::handle v) {
            return call_mechanism("linear_attention", l, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def("name", &attnx::Linear<>::name)
        .def("parameters", &attnx::Linear<>::parameters)
        .def("__repr__", [](const attnx::Linear<>& l) { return repr_of("Linear", l.name(), l.parameters()); });

    m.def(
        "linear_attention",
        [](py::handle q, py::handle k, py::handle v, py::handle scale, bool causal, py::handle key_padding_mask,
           double eps, Index chunk, bool check_finite) {
            constexpr const char* fn = "linear_attention";
            const attnx::Linear<> l{{}, linear_options(fn, scale, causal, key_padding_mask, eps, chunk, check_finite)};
            return call_mechanism(fn, l, q, k, v);
        },
        arg("q"), arg("k"), arg("v"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
        arg("key_padding_mask") = py::none(), arg("eps") = 1e-6, arg("chunk") = 64, arg("check_finite") = true,
        R"doc(Linear attention (Katharopoulos et al., arXiv:2006.16236, eqs. 4-7): φ(x) = elu(x) + 1,
out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)ᵀ Σ_j φ(k_j) + eps) over the visible keys j (causal: j <= i,
bottom-right aligned). O(n·d·d_v); causal in chunks of `chunk` tokens. scale must stay None (φ has
none; a set one is a ValueError saying so).)doc");

    py::class_<PyPerformer>(m, "Performer",
                            "Performer (FAVOR+) attention as a value: Performer(features, **options)(q, k, v).")
        .def(py::init([](const Features& f, py::handle scale, bool causal, py::handle key_padding_mask, double eps,
                         Index chunk, bool check_finite) {
                 return PyPerformer{f, linear_options("Performer", scale, causal, key_padding_mask, eps, chunk,
                                                      check_finite)};
             }),
             arg("features"), py::kw_only(), arg("scale") = py::none(), arg("causal") = false,
             arg("key_padding_mask") = py::none(), arg("eps") = 1e-6, arg("chunk") = 64, arg("check_finite") = true)
        .def("__call__", [](const PyPerformer& p, py::handle q, py::handle k, py::handle v) {
            return call_performer("performer_attention", p, q, k, v);
        }, arg("q"), arg("k"), arg("v"))
        .def_property_readonly("features", [](const PyPerformer& p) { return p.features; })
        .def("name", &PyPerformer::name)
        .def("parameters", &PyPerformer::parameters)
        .def("__repr__", [](const PyPerformer& p) { return repr_of("Performer", p.name(), p.parameters()); });

    m.def(
        "performer_attention",
        [](py::handle q, py::handle k, py::handle v, const Features& features, py::handle scale, bool causal,
           py::handle key_padding_mask, double eps, Index chunk, bool check_finite) {
            constexpr const char* fn = "performer_attention";
            const PyPerformer p{features, linear_options(fn, scale, causal, key_padding_mask, eps, chunk, check_finite)};
            return call_performer(fn, p, q, k, v);
        },
        arg("q"), arg("k"), arg("v"), arg("features"), py::kw_only(), arg("scale") = py::none(),
        arg("causal") = false, arg("key_padding_mask") = py::none(), arg("eps") = 1e-6, arg("chunk") = 64,
        arg("check_finite") = true,
        R"doc(Performer FAVOR+ attention (Choromanski et al., arXiv:2009.14794, eq. 7): linear_attention with the
positive random features φ(x) = exp(Wx - ||x||²/2)/sqrt(m), x = sqrt(scale)·q (scale defaults to
1/sqrt(d)), an unbiased estimate of softmax(scale · Q Kᵀ) V. features: PerformerFeatures of q's dtype.
O(n·m·(d + d_v)).)doc");

    py::class_<PyState>(m, "LinearAttentionState", R"doc(The decode state of linear attention or Performer for one
sequence and head (Katharopoulos et al., eqs. 16-20): S = Σ φ(k_j) v_jᵀ and z = Σ φ(k_j), C x (d_v + 1),
whatever the number of tokens absorbed. step(q, k, v) absorbs one token and returns its output in
O(C·(d + d_v)); stepping through a sequence gives the causal batch result. Calls on one state are
serialised (a lock), so threads may share it.)doc")
        .def(py::init([](Index d, Index d_v, py::object features, py::handle scale, double eps, Index chunk,
                         bool check_finite, py::handle dtype) {
                 constexpr const char* fn = "LinearAttentionState";
                 attnx::LinearAttentionOptions o = linear_options(fn, scale, false, py::none(), eps, chunk, check_finite);
                 if (features.is_none()) {
                     const Dtype dt = dtype.is_none() ? Dtype::F64 : dtype_arg(fn, dtype);
                     if (dt == Dtype::F32) return std::make_unique<PyState>(EluState<float>(attnx::EluPlusOne{}, d, d_v, o));
                     return std::make_unique<PyState>(EluState<double>(attnx::EluPlusOne{}, d, d_v, o));
                 }
                 if (!py::isinstance<Features>(features))
                     type_error(fn, ": features must be None (elu + 1) or attnx.PerformerFeatures, got ",
                                type_name(features));
                 const Features& f = features.cast<const Features&>();
                 if (!dtype.is_none() && dtype_arg(fn, dtype) != f.dtype())
                     type_error(fn, ": dtype is ", dtype_name(dtype_arg(fn, dtype)), " but the features have ",
                                dtype_name(f.dtype()));
                 if (f.dtype() == Dtype::F32) return std::make_unique<PyState>(FavorState<float>(*f.f32, d, d_v, o));
                 return std::make_unique<PyState>(FavorState<double>(*f.f64, d, d_v, o));
             }),
             arg("d"), arg("d_v"), py::kw_only(), arg("features") = py::none(), arg("scale") = py::none(),
             arg("eps") = 1e-6, arg("chunk") = 64, arg("check_finite") = true, arg("dtype") = py::none(),
             "features=None: elu + 1 (scale must stay None), dtype float64 unless given; features: FAVOR+ "
             "with their dtype.")
        .def(
            "prefill",
            [](PyState& p, py::handle k, py::handle v) {
                const StateArgs a = state_args("LinearAttentionState.prefill", p, py::handle(), k, v);
                with_state(p, a, -1, [](auto& s, const auto&, const auto& kr, const auto& vr, auto) {
                    using State = std::decay_t<decltype(s)>;
                    state_absorb<State, state_scalar<State>>(s, kr, vr);
                });
            },
            arg("k"), arg("v"), "Absorbs K (n, d) and V (n, d_v) (the chunked algorithm, in parallel).")
        .def(
            "prefill",
            [](PyState& p, py::handle q, py::handle k, py::handle v) {
                constexpr const char* fn = "LinearAttentionState.prefill";
                const StateArgs a = state_args(fn, p, q, k, v);
                return with_state(p, a, a.q->rows, [](auto& s, const auto& qr, const auto& kr, const auto& vr, auto out) {
                    using State = std::decay_t<decltype(s)>;
                    state_prefill<State, state_scalar<State>>(s, qr, kr, vr, out);
                });
            },
            arg("q"), arg("k"), arg("v"),
            "Absorbs K, V and returns the causal outputs of Q (n, d_v): row i attends to every token absorbed "
            "before and to keys 0..i of this call.")
        .def(
            "step",
            [](PyState& p, py::handle q, py::handle k, py::handle v) {
                constexpr const char* fn = "LinearAttentionState.step";
                return p.visit([&](auto& s) -> py::array {
                    using State = std::decay_t<decltype(s)>;
                    using S = state_scalar<State>;
                    const py::array_t<S> qa = vector_of<S>(fn, "q", q, s.dim(), "d");
                    const py::array_t<S> ka = vector_of<S>(fn, "k", k, s.dim(), "d");
                    const py::array_t<S> va = vector_of<S>(fn, "v", v, s.value_dim(), "d_v");
                    py::array_t<S> out(static_cast<py::ssize_t>(s.value_dim()));
                    S* data = out.mutable_data();
                    {
                        py::gil_scoped_release release;
                        const std::lock_guard<std::mutex> lock(p.mutex);
                        Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>> o(data, 1, s.value_dim(), Eigen::OuterStride<>(1));
                        state_step<State, S>(s, row_ref(qa.data(), s.dim()), row_ref(ka.data(), s.dim()),
                                             row_ref(va.data(), s.value_dim()), Out<S>(o));
                    }
                    return out;
                });
            },
            arg("q"), arg("k"), arg("v"),
            "Absorbs one token (k: (d,), v: (d_v,)) and returns the output of its query q (d,): a (d_v,) array "
            "over every absorbed token, itself included.")
        .def(
            "query",
            [](PyState& p, py::handle q) {
                const StateArgs a = state_args("LinearAttentionState.query", p, q, py::handle(), py::handle());
                return with_state(p, a, a.q->rows, [](auto& s, const auto& qr, const auto&, const auto&, auto out) {
                    using State = std::decay_t<decltype(s)>;
                    state_query<State, state_scalar<State>>(s, qr, out);
                });
            },
            arg("q"), "Attention of every row of Q (n, d) over the absorbed tokens (non-causal), state unchanged.")
        .def("reset", [](PyState& p) {
            py::gil_scoped_release release;
            const std::lock_guard<std::mutex> lock(p.mutex);
            p.visit([](auto& s) { s.reset(); });
        }, "Forgets every absorbed token.")
        .def_property_readonly("tokens", [](PyState& p) { return p.visit([](const auto& s) { return s.tokens(); }); })
        .def_property_readonly("dim", [](PyState& p) { return p.visit([](const auto& s) { return s.dim(); }); })
        .def_property_readonly("value_dim", [](PyState& p) { return p.visit([](const auto& s) { return s.value_dim(); }); })
        .def_property_readonly("feature_dim", [](PyState& p) { return p.visit([](const auto& s) { return s.feature_dim(); }); })
        .def_property_readonly("dtype", [](PyState& p) {
            return p.dtype() == Dtype::F32 ? py::dtype::of<float>() : py::dtype::of<double>();
        })
        .def("__repr__", &state_repr);

    // ----- estimate_error
    py::class_<attnx::ErrorEstimate>(m, "ErrorEstimate",
                                     "Estimated relative Frobenius error of a mechanism, with a confidence interval.")
        .def_readonly("rel_fro", &attnx::ErrorEstimate::rel_fro, "the ratio estimate of ||A - E||_F / ||E||_F")
        .def_readonly("ci_low", &attnx::ErrorEstimate::ci_low)
        .def_readonly("ci_high", &attnx::ErrorEstimate::ci_high)
        .def_readonly("max_abs_sampled", &attnx::ErrorEstimate::max_abs_sampled,
                      "max |A_ij - E_ij| over the sampled rows (a lower bound of max_abs)")
        .def_readonly("samples", &attnx::ErrorEstimate::samples)
        .def_readonly("population", &attnx::ErrorEstimate::population)
        .def("__repr__", [](const attnx::ErrorEstimate& e) {
            std::ostringstream os;
            os.precision(6);
            os << "ErrorEstimate(rel_fro=" << e.rel_fro << ", ci=[" << e.ci_low << ", " << e.ci_high
               << "], max_abs_sampled=" << e.max_abs_sampled << ", samples=" << e.samples
               << ", population=" << e.population << ")";
            return os.str();
        });

    m.def(
        "estimate_error",
        [](py::handle mechanism, py::handle q, py::handle k, py::handle v, Index samples, double confidence,
           std::uint64_t seed, py::handle approx) {
            constexpr const char* fn = "estimate_error";
            const QKV a = qkv(fn, q, k, v);
            std::optional<Array2> ap;
            if (!approx.is_none()) {
                ap = array2(fn, "approx", approx, "(n_q, d_v)");
                check_same_dtype(fn, "approx", *ap, "q", a.q);
            }
            attnx::EstimateOptions o;
            o.samples = samples;
            o.confidence = confidence;
            o.seed = seed;
            attnx::ErrorEstimate result;
            auto body = [&](auto tag) {
                using S = decltype(tag);
                with_mechanism<S>(fn, mechanism, [&](const auto& mech) {
                    using M = std::decay_t<decltype(mech)>;
                    py::gil_scoped_release release;
                    const View<S> qv = view_of<S>(a.q), kv = view_of<S>(a.k), vv = view_of<S>(a.v);
                    if (ap) {
                        const View<S> av = view_of<S>(*ap);
                        const In<S> ar = av.ref();
                        result = estimate<M, S>(mech, qv.ref(), kv.ref(), vv.ref(), &ar, o);
                    } else {
                        result = estimate<M, S>(mech, qv.ref(), kv.ref(), vv.ref(), nullptr, o);
                    }
                });
            };
            if (a.q.dtype == Dtype::F32)
                body(float{});
            else
                body(double{});
            return result;
        },
        arg("mechanism"), arg("q"), arg("k"), arg("v"), py::kw_only(), arg("samples") = 256,
        arg("confidence") = 0.95, arg("seed") = 0, arg("approx") = py::none(),
        R"doc(Estimates ||A - E||_F / ||E||_F for A = mechanism(q, k, v) and E = exact attention with the
mechanism's options, from `samples` exact query rows (O(samples·n_k·d)), with a `confidence`
interval (ratio estimator). approx: mechanism(q, k, v) if already computed (then only the exact
rows are computed). Returns ErrorEstimate(rel_fro, ci_low, ci_high, max_abs_sampled, samples,
population).)doc");

    // ----- multi-head
    m.def(
        "multi_head_attention",
        [](py::handle mechanism, py::handle q, py::handle k, py::handle v, const std::string& layout,
           py::handle num_kv_heads, py::handle scale, bool causal, py::handle key_lengths, py::handle query_lengths,
           py::handle key_padding_mask) {
            constexpr const char* fn = "multi_head_attention";
            const bool bhnd = layout_is_bhnd(fn, layout);
            const Heads qh = heads_of(fn, "q", q, bhnd), kh = heads_of(fn, "k", k, bhnd), vh = heads_of(fn, "v", v, bhnd);
            if (kh.dtype != qh.dtype || vh.dtype != qh.dtype)
                type_error(fn, ": ", kh.dtype != qh.dtype ? "k" : "v", " has dtype ",
                           dtype_name(kh.dtype != qh.dtype ? kh.dtype : vh.dtype), " but q has ", dtype_name(qh.dtype),
                           " (all arrays of one call share one dtype)");
            if (!num_kv_heads.is_none() && num_kv_heads.cast<Index>() != kh.size[2])
                value_error(fn, ": num_kv_heads = ", num_kv_heads.cast<Index>(), " but k has ", kh.size[2],
                            " heads (shape ", shape_string(kh.array), ")");
            attnx::MultiHeadOptions o;
            o.scale = scale_of(fn, scale);
            o.causal = causal;
            o.key_lengths = lengths_of(fn, "key_lengths", key_lengths);
            o.query_lengths = lengths_of(fn, "query_lengths", query_lengths);
            o.key_padding_mask = batch_mask(fn, key_padding_mask);
            const Index B = qh.size[0], N = qh.size[1], H = qh.size[2], Dv = vh.size[3];
            const std::vector<py::ssize_t> shape =
                bhnd ? std::vector<py::ssize_t>{B, H, N, Dv} : std::vector<py::ssize_t>{B, N, H, Dv};
            auto body = [&](auto tag) {
                using S = decltype(tag);
                py::array out(py::dtype::of<S>(), shape);  // C order in the input's layout
                const auto item = static_cast<Index>(sizeof(S));
                const Index sb = out.strides(0) / item;
                const Index sn = out.strides(bhnd ? 2 : 1) / item, sh = out.strides(bhnd ? 1 : 2) / item;
                const attnx::HeadsView<S> ov =
                    attnx::HeadsView<S>::strided(static_cast<S*>(out.mutable_data()), B, N, H, Dv, sb, sn, sh, 1);
                with_mechanism<S>(fn, mechanism, [&](const auto& mech) {
                    using M = std::decay_t<decltype(mech)>;
                    py::gil_scoped_release release;
                    run_multi_head<M, S>(mech, view_of_heads<S>(qh), view_of_heads<S>(kh), view_of_heads<S>(vh), ov, o);
                });
                return out;
            };
            if (qh.dtype == Dtype::F32) return body(float{});
            return body(double{});
        },
        arg("mechanism"), arg("q"), arg("k"), arg("v"), py::kw_only(), arg("layout") = "bnhd",
        arg("num_kv_heads") = py::none(), arg("scale") = py::none(), arg("causal") = false,
        arg("key_lengths") = py::none(), arg("query_lengths") = py::none(), arg("key_padding_mask") = py::none(),
        R"doc(out[b, :, h, :] = mechanism(q[b, :, h, :], k[b, :, h_kv, :], v[b, :, h_kv, :]), h_kv = h // (H_q / H_kv):
multi-head, grouped-query (H_kv divides H_q) and multi-query (H_kv = 1) attention over 4-d arrays, read
in place whatever their strides. layout 'bnhd': (B, N, H, D); 'bhnd': (B, H, N, D) (PyTorch's SDPA).
Returns a C-ordered array in the same layout, (B, N_q, H_q, D_v) or (B, H_q, N_q, D_v).
key_lengths / query_lengths: B lengths (sequence b is cut to its first L_q queries, L_k keys);
key_padding_mask: (B, N_k) bool, True = padding; num_kv_heads: checked against k.)doc");

    // ----- compare
    m.def(
        "compare",
        [](py::handle approx, py::handle reference) {
            constexpr const char* fn = "compare";
            const Array2 a = array2(fn, "approx", approx, "(n, d)"), r = array2(fn, "reference", reference, "(n, d)");
            py::gil_scoped_release release;
            auto with_r = [&](const auto& ar) {
                if (r.dtype == Dtype::F32) return attnx_py::compare(ar, view_of<float>(r).ref());
                return attnx_py::compare(ar, view_of<double>(r).ref());
            };
            if (a.dtype == Dtype::F32) return with_r(view_of<float>(a).ref());
            return with_r(view_of<double>(a).ref());
        },
        arg("approx"), arg("reference"),
        "ErrorMetrics (rel_fro, max_abs, mean_row_cosine, in double) of approx against reference, same shape; "
        "the dtypes may differ.");
}
