// SPDX-License-Identifier: MIT
// attnx_run: one attnx attention call on NumPy .npy files, for checking attnx against a model
// in Python:
//
//   np.save("q.npy", q); np.save("k.npy", k); np.save("v.npy", v)          # Python
//   attnx_run --method nystrom --landmarks 64 --q q.npy --k k.npy --v v.npy --out out.npy
//   out = np.load("out.npy")                                                # Python
//
// Every option of every mechanism is a flag (attnx_run --help lists them). Inputs are float32
// or float64, C or Fortran order; the computation and the output use --dtype (default: the
// dtype of q). --compare REF.npy prints attnx::compare's metrics against a reference.
//
// Exit status: 0 success; 1 --max-rel-err exceeded; 2 any error (bad usage, missing or
// truncated file, wrong dtype, shape mismatch, invalid option value), with one line on stderr
// saying what is wrong. attnx::invalid_argument messages are printed as they are.
#include <attnx/attnx.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <map>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "npy.hpp"

namespace {

using attnx::Index;

/// Bad command-line usage (exit status 2).
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Methods and options: one table each. Adding a method = one row in kMethods, its options in
// kOptions (with the method's name in `methods`), and one branch in with_mechanism() that builds
// its mechanism value (attnx/mechanisms.hpp) from the flags; the rest is generic.
// ---------------------------------------------------------------------------------------------

struct MethodSpec {
    const char* name;
    const char* summary;
};

const MethodSpec kMethods[] = {
    {"exact", "exact softmax attention, streaming online-softmax kernel (O(n*d) memory)"},
    {"exact-materialized", "exact softmax attention forming the n_q x n_k probabilities (the reference)"},
    {"nystrom", "Nystrom landmark attention (Xiong et al. 2021)"},
    {"linformer", "Linformer, keys and values projected along the sequence (Wang et al. 2020)"},
    {"bigbird", "BigBird block-sparse self-attention: window + global + random blocks (Zaheer et al. 2020)"},
    {"longformer", "Longformer block-sparse self-attention: window + global tokens (Beltagy et al. 2020)"},
    {"block-sparse", "exact attention restricted to the blocks of a given layout (--layout, --block)"},
    {"linear", "linear attention, phi(x) = elu(x) + 1 (Katharopoulos et al. 2020): O(n), causal too"},
    {"performer", "Performer FAVOR+ positive random features (Choromanski et al. 2021): O(n), causal too"},
};

struct OptionSpec {
    const char* name;     ///< "--landmarks"
    const char* value;    ///< placeholder of the value ("M"), nullptr for a flag
    const char* methods;  ///< comma-separated methods it applies to; "" = every method
    const char* help;
};

const OptionSpec kOptions[] = {
    // Inputs and outputs.
    {"--method", "NAME", "", "the mechanism (required): see METHODS below"},
    {"--q", "FILE", "", "queries Q, n_q x d (.npy, float32 or float64; required)"},
    {"--k", "FILE", "", "keys K, n_k x d (required)"},
    {"--v", "FILE", "", "values V, n_k x d_v (required)"},
    {"--out", "FILE", "", "write the n_q x d_v output here (C order, in the computation dtype)"},
    {"--dtype", "TYPE", "", "float32 or float64: the computation and output dtype (default: that of q)"},
    {"--compare", "FILE", "", "print rel_fro, max_abs and mean_row_cosine of the output against this reference"},
    {"--max-rel-err", "T", "", "with --compare: exit with status 1 if rel_fro > T"},
    {"--report", nullptr, "", "print the method's diagnostics (Nystrom: pseudoinverse residuals; block layouts: density)"},
    {"--threads", "N", "", "OpenMP threads (default: OMP_NUM_THREADS or all cores)"},
    // Multi-head mode (attnx::multi_head_attention).
    {"--heads", "H", "", "multi-head mode: H query heads; q, k, v are 4-d (see --head-layout), or 2-d n x (H*D)"},
    {"--kv-heads", "H_KV", "", "multi-head mode: H_kv key/value heads (default: --heads; H must be a multiple of "
                               "H_kv, query head h reads key/value head h / (H / H_kv))"},
    {"--head-layout", "L", "", "multi-head mode: bnhd (default; arrays (B, N, H, D)) or bhnd ((B, H, N, D)); 3-d "
                               "arrays are one sequence; out has the layout of q; --key-padding then takes B x N_k flags"},
    // Common attention options.
    {"--scale", "S", "", "softmax scale s in softmax(s Q K^T) (default 1/sqrt(d)); finite, > 0"},
    {"--causal", nullptr, "", "causal mask: query i sees keys j <= i + n_k - n_q (Nystrom, Linformer reject it)"},
    {"--key-padding", "FILE", "", "key padding mask, n_k entries, 1/True = padding (ignored key), as PyTorch's "
                                  "key_padding_mask (HuggingFace's attention_mask is the opposite: pass 1 - mask); "
                                  "dtype bool, uint8, int or float holding 0 and 1"},
    {"--no-check-finite", nullptr, "", "skip the NaN/Inf scan of the inputs (non-finite inputs then give unspecified output)"},
    // exact
    {"--query-tile", "N", "exact", "rows of Q per tile of the streaming kernel (default 128)"},
    {"--key-tile", "N", "exact", "rows of K per tile of the streaming kernel (default 128)"},
    {"--decode-key-tile", "N", "exact", "the same when Q has one row (default 256)"},
    // nystrom
    {"--landmarks", "M", "nystrom", "number of landmarks m, 1 <= m <= n (default 64)"},
    {"--pinv", "KIND", "nystrom", "iterative (default; Razavi et al., as in the paper) or exact (complete orthogonal decomposition)"},
    {"--pinv-iterations", "N", "nystrom", "iterations of the iterative pseudoinverse (default 6)"},
    {"--conv", "FILE", "nystrom", "odd-length weights of the depthwise convolution skip connection on V (needs n_q == n_k)"},
    {"--query-padding", "FILE", "nystrom", "query padding mask, n_q entries, 1 = padding (zero output row, left out of the landmarks)"},
    // linformer
    {"--e", "FILE", "linformer", "key projection E, k x n (n >= n_k; the first n_k columns are used)"},
    {"--f", "FILE", "linformer", "value projection F, k x n (default: F = E)"},
    {"--rank", "K", "linformer", "instead of --e/--f: draw Gaussian E, F (entries N(0, 1/K)) with K rows from --seed"},
    {"--share-kv", nullptr, "linformer", "with --rank: one drawn matrix for keys and values (F = E)"},
    // linear and performer
    {"--features", "M", "performer", "number of random features m (default 256)"},
    {"--iid", nullptr, "performer", "iid Gaussian feature rows instead of orthogonal blocks"},
    {"--chunk", "T", "linear,performer", "tokens per chunk of the causal algorithm (default 64)"},
    {"--eps", "E", "linear,performer", "added to the denominator (default 1e-6); finite, > 0"},
    // linformer, bigbird and performer
    {"--seed", "S", "linformer,bigbird,performer",
     "seed of the drawn projections (linformer --rank), random blocks (bigbird) or features (performer); default 0"},
    // block-sparse family
    {"--block", "B", "bigbird,longformer,block-sparse", "tokens per block (default 64; required for block-sparse)"},
    {"--window", "W", "bigbird,longformer", "sliding window in blocks (default 3: blocks i-1, i, i+1)"},
    {"--global", "G", "bigbird", "global blocks: the first ceil(G/2) and last floor(G/2) (default 2)"},
    {"--random", "R", "bigbird", "random key blocks per query block (default 3)"},
    {"--global-tokens", "T", "longformer", "leading tokens with global attention, rounded up to whole blocks (default 1)"},
    {"--layout", "FILE", "block-sparse", "block mask, ceil(n_q/B) x ceil(n_k/B), nonzero = block kept"},
    // misc
    {"--help", nullptr, "", "print this help and exit"},
    {"--version", nullptr, "", "print the attnx version and exit"},
};

const std::map<std::string, std::string> kAliases = {{"-h", "--help"}, {"--k-proj", "--e"}, {"--v-proj", "--f"}};

const OptionSpec* find_option(const std::string& name) {
    for (const OptionSpec& o : kOptions)
        if (name == o.name) return &o;
    return nullptr;
}

bool applies_to(const OptionSpec& o, const std::string& method) {
    const std::string list = o.methods;
    if (list.empty()) return true;
    std::stringstream ss(list);
    std::string m;
    while (std::getline(ss, m, ','))
        if (m == method) return true;
    return false;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

std::string suggestion(const std::string& name) {
    std::string best;
    std::size_t best_d = 4;  // suggest only close matches
    for (const OptionSpec& o : kOptions) {
        const std::size_t d = edit_distance(name, o.name);
        if (d < best_d) {
            best_d = d;
            best = o.name;
        }
    }
    return best.empty() ? std::string() : " (did you mean " + best + "?)";
}

/// Word-wraps text to `width` columns, continuation lines indented by `indent`.
std::string wrap(const std::string& text, std::size_t indent, std::size_t width) {
    std::istringstream words(text);
    std::string word, out;
    std::size_t col = indent;
    while (words >> word) {
        if (col > indent && col + 1 + word.size() > width) {
            out += "\n" + std::string(indent, ' ');
            col = indent;
        } else if (col > indent) {
            out += ' ';
            ++col;
        }
        out += word;
        col += word.size();
    }
    return out;
}

void print_help() {
    std::printf(
        "attnx_run %d.%d.%d: one attnx attention call on NumPy .npy files.\n\n"
        "usage: attnx_run --method NAME --q Q.npy --k K.npy --v V.npy --out OUT.npy [options]\n\n"
        "Q is n_q x d, K is n_k x d, V is n_k x d_v (rows are tokens; one head). Inputs may be float32\n"
        "or float64, C or Fortran order; arrays of shape (1, .., 1, r, c) are read as r x c. The output\n"
        "is n_q x d_v in the computation dtype (--dtype, default that of q), C order.\n\n"
        "METHODS\n",
        ATTNX_VERSION_MAJOR, ATTNX_VERSION_MINOR, ATTNX_VERSION_PATCH);
    for (const MethodSpec& m : kMethods) std::printf("  %-20s %s\n", m.name, m.summary);
    const auto section = [](const char* title, const std::string& methods) {
        std::printf("\n%s\n", title);
        for (const OptionSpec& o : kOptions) {
            if (std::string(o.methods) != methods) continue;
            std::string flag = o.name;
            if (o.value != nullptr) flag += std::string(" ") + o.value;
            for (const auto& a : kAliases)
                if (a.second == o.name) flag += ", " + a.first;
            std::printf("  %-22s %s\n", flag.c_str(), wrap(o.help, 25, 100).c_str());
        }
    };
    section("OPTIONS (every method; --heads, --kv-heads and --head-layout select multi-head mode)", "");
    section("exact", "exact");
    section("nystrom", "nystrom");
    section("linformer (--e [--f] or --rank)", "linformer");
    section("linformer, bigbird and performer", "linformer,bigbird,performer");
    section("bigbird, longformer, block-sparse", "bigbird,longformer,block-sparse");
    section("bigbird and longformer", "bigbird,longformer");
    section("bigbird", "bigbird");
    section("longformer", "longformer");
    section("block-sparse", "block-sparse");
    section("linear and performer", "linear,performer");
    section("performer", "performer");
    std::printf(
        "\nAn option that does not apply to the chosen method is an error. Options also take the\n"
        "form --name=value.\n\n"
        "EXIT STATUS\n  0 success; 1 rel_fro above --max-rel-err; 2 any error (message on stderr).\n\n"
        "EXAMPLE (Python)\n"
        "  np.save('q.npy', q); np.save('k.npy', k); np.save('v.npy', v)\n"
        "  subprocess.run(['attnx_run', '--method', 'nystrom', '--landmarks', '64', '--q', 'q.npy',\n"
        "                  '--k', 'k.npy', '--v', 'v.npy', '--out', 'out.npy'], check=True)\n"
        "  out = np.load('out.npy')\n");
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Cli {
    std::map<std::string, std::string> values;  ///< option name -> value ("" for flags)

    bool has(const char* name) const { return values.count(name) != 0; }
    const std::string& str(const char* name) const { return values.at(name); }
};

Cli parse_args(int argc, char** argv) {
    Cli cli;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.size() < 2 || arg[0] != '-')
            throw usage_error("unexpected argument '" + arg + "' (options start with --; see --help)");
        std::optional<std::string> inline_value;
        const std::size_t eq = arg.find('=');
        if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            inline_value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        }
        const auto alias = kAliases.find(arg);
        if (alias != kAliases.end()) arg = alias->second;
        const OptionSpec* spec = find_option(arg);
        if (spec == nullptr) throw usage_error("unknown option '" + arg + "'" + suggestion(arg) + "; see --help");
        if (cli.has(spec->name)) throw usage_error(arg + " is given twice");
        if (spec->value == nullptr) {
            if (inline_value) throw usage_error(arg + " is a flag and takes no value (got '" + *inline_value + "')");
            cli.values[spec->name] = "";
        } else if (inline_value) {
            if (inline_value->empty()) throw usage_error(arg + " needs a value " + spec->value);
            cli.values[spec->name] = *inline_value;
        } else {
            if (i + 1 >= argc) throw usage_error(arg + " needs a value " + spec->value + " (missing at the end)");
            const std::string next = argv[i + 1];
            if (next.rfind("--", 0) == 0 && next.size() > 2 && !std::isdigit(static_cast<unsigned char>(next[2])))
                throw usage_error(arg + " needs a value " + spec->value + " but is followed by the option " + next);
            cli.values[spec->name] = next;
            ++i;
        }
    }
    return cli;
}

Index parse_index(const Cli& cli, const char* name, Index fallback) {
    if (!cli.has(name)) return fallback;
    const std::string& s = cli.str(name);
    std::size_t pos = 0;
    long long v = 0;
    try {
        v = std::stoll(s, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != s.size() || s.empty()) throw usage_error(std::string(name) + " needs an integer, got '" + s + "'");
    return static_cast<Index>(v);
}

double parse_double(const Cli& cli, const char* name, double fallback) {
    if (!cli.has(name)) return fallback;
    const std::string& s = cli.str(name);
    std::size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != s.size() || s.empty()) throw usage_error(std::string(name) + " needs a number, got '" + s + "'");
    return v;
}

std::uint64_t parse_u64(const Cli& cli, const char* name, std::uint64_t fallback) {
    if (!cli.has(name)) return fallback;
    const std::string& s = cli.str(name);
    std::size_t pos = 0;
    unsigned long long v = 0;
    const bool digits = !s.empty() && std::isdigit(static_cast<unsigned char>(s[0]));
    try {
        if (digits) v = std::stoull(s, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (!digits || pos != s.size()) throw usage_error(std::string(name) + " needs a non-negative integer, got '" + s + "'");
    return static_cast<std::uint64_t>(v);
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// A float matrix from an .npy file, converted to Scalar; a note on stderr if that narrows it.
template <typename Scalar>
attnx::Matrix<Scalar> load_float(const char* what, const std::string& path) {
    const npy::Header h = npy::inspect(path);
    if (!h.is_float())
        throw usage_error(std::string(what) + ": " + path + " has dtype " + h.type_name() + " ('" + h.descr +
                          "'); attnx_run reads float32 or float64 matrices (in NumPy: x.astype(np.float32))");
    if (h.item_size > static_cast<int>(sizeof(Scalar)))
        std::fprintf(stderr, "attnx_run: note: %s (%s) is %s, converted to %s\n", what, path.c_str(),
                     h.type_name().c_str(), sizeof(Scalar) == 4 ? "float32" : "float64");
    return npy::read_matrix<Scalar>(path);
}

/// A vector (shape (n,), (n, 1) or (1, n)) as doubles.
std::vector<double> load_vector(const char* what, const std::string& path) {
    npy::Header h;
    const Eigen::MatrixXd m = npy::read_matrix<double>(path, &h);
    if (m.rows() != 1 && m.cols() != 1)
        throw usage_error(std::string(what) + ": " + path + " has shape " + h.shape_string() +
                          "; expected a vector (n,)");
    return std::vector<double>(m.data(), m.data() + m.size());
}

/// A 0/1 mask vector (bool, integer or float dtype) as flags.
std::vector<bool> load_mask(const char* what, const std::string& path) {
    const std::vector<double> x = load_vector(what, path);
    std::vector<bool> mask(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (x[i] != 0 && x[i] != 1) {
            std::ostringstream os;
            os << what << ": " << path << "[" << i << "] = " << x[i]
               << "; a mask holds 0 (attend) and 1 (padding) only";
            throw usage_error(os.str());
        }
        mask[i] = x[i] == 1;
    }
    return mask;
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

#include "attnx_run_heads.hpp"

std::string shape_of(Index r, Index c) { return std::to_string(r) + "x" + std::to_string(c); }

void check_applicable(const Cli& cli, const std::string& method) {
    bool known = false;
    for (const MethodSpec& m : kMethods) known = known || method == m.name;
    if (!known) {
        std::string list;
        for (const MethodSpec& m : kMethods) list += std::string(list.empty() ? "" : ", ") + m.name;
        throw usage_error("unknown --method '" + method + "' (one of: " + list + ")");
    }
    for (const auto& kv : cli.values) {
        const OptionSpec* o = find_option(kv.first);
        if (!applies_to(*o, method))
            throw usage_error(kv.first + " does not apply to --method " + method + " (it is an option of " + o->methods +
                              ")");
    }
}

/// The common attention options (every method) from the flags.
attnx::AttentionOptions common_options(const Cli& cli) {
    attnx::AttentionOptions common;
    if (cli.has("--scale")) common.scale = parse_double(cli, "--scale", 0);
    common.causal = cli.has("--causal");
    if (cli.has("--key-padding")) common.key_padding_mask = load_mask("--key-padding", cli.str("--key-padding"));
    common.check_finite = !cli.has("--no-check-finite");
    return common;
}

/// The mechanism value (attnx/mechanisms.hpp) of --method, built from the flags: one branch per
/// method, the only place that knows the methods. Calls `visit(mechanism)` once; what the
/// --report line says about the mechanism's data (tiles, projection, layout) goes to `rep`.
template <typename Scalar, typename Visit>
void with_mechanism(const Cli& cli, const std::string& method, const attnx::AttentionOptions& common, Index n_q,
                    Index n_k, Index d, std::ostream& rep, Visit&& visit) {
    if (method == "exact" || method == "exact-materialized") {
        attnx::ExactOptions o(common);
        o.kernel = method == "exact" ? attnx::ExactKernel::Streaming : attnx::ExactKernel::Materialized;
        o.query_tile = parse_index(cli, "--query-tile", o.query_tile);
        o.key_tile = parse_index(cli, "--key-tile", o.key_tile);
        o.decode_key_tile = parse_index(cli, "--decode-key-tile", o.decode_key_tile);
        if (o.kernel == attnx::ExactKernel::Streaming)
            rep << "kernel=streaming query_tile=" << o.query_tile << " key_tile=" << o.key_tile
                << " decode_key_tile=" << o.decode_key_tile;
        else
            rep << "kernel=materialized";
        visit(attnx::Exact{o});
    } else if (method == "nystrom") {
        attnx::NystromOptions o(common);
        o.num_landmarks = parse_index(cli, "--landmarks", o.num_landmarks);
        if (cli.has("--pinv")) {
            const std::string& p = cli.str("--pinv");
            if (p == "iterative")
                o.pinv = attnx::PinvMethod::Iterative;
            else if (p == "exact")
                o.pinv = attnx::PinvMethod::Exact;
            else
                throw usage_error("--pinv must be 'iterative' or 'exact', got '" + p + "'");
        }
        const Index iters = parse_index(cli, "--pinv-iterations", o.pinv_iterations);
        if (iters < 0 || iters > 1000) throw usage_error("--pinv-iterations must be in [0, 1000], got " + cli.str("--pinv-iterations"));
        o.pinv_iterations = static_cast<int>(iters);
        if (cli.has("--conv")) o.conv_kernel = load_vector("--conv", cli.str("--conv"));
        if (cli.has("--query-padding")) o.query_padding_mask = load_mask("--query-padding", cli.str("--query-padding"));
        visit(attnx::Nystrom{o});  // its report comes from the call: see call() below
    } else if (method == "linformer") {
        const bool given = cli.has("--e") || cli.has("--f");
        if (given && cli.has("--rank")) throw usage_error("linformer: give either --e/--f or --rank, not both");
        if (!given && !cli.has("--rank"))
            throw usage_error("linformer needs projections: --e E.npy [--f F.npy] (k x n each), or --rank K [--seed S]");
        if (cli.has("--f") && !cli.has("--e")) throw usage_error("linformer: --f needs --e as well");
        if (given && (cli.has("--seed") || cli.has("--share-kv")))
            throw usage_error("linformer: --seed and --share-kv go with --rank, not with --e/--f");
        std::optional<attnx::LinformerProjection<Scalar>> proj;
        if (given) {
            const attnx::Matrix<Scalar> e = load_float<Scalar>("--e", cli.str("--e"));
            if (cli.has("--f")) {
                const attnx::Matrix<Scalar> f = load_float<Scalar>("--f", cli.str("--f"));
                proj = attnx::LinformerProjection<Scalar>::from_matrices(e, f);
                rep << "projection: E from " << cli.str("--e") << ", F from " << cli.str("--f");
            } else {
                proj = attnx::LinformerProjection<Scalar>::from_matrix(e);
                rep << "projection: E = F from " << cli.str("--e");
            }
        } else {
            const Index rank = parse_index(cli, "--rank", 0);
            const std::uint64_t seed = parse_u64(cli, "--seed", 0);
            const attnx::LinformerSharing sharing =
                cli.has("--share-kv") ? attnx::LinformerSharing::KeyValue : attnx::LinformerSharing::Separate;
            proj = attnx::LinformerProjection<Scalar>::gaussian(rank, n_k, seed, sharing);
            rep << "projection: Gaussian N(0, 1/k), seed " << seed << (cli.has("--share-kv") ? ", F = E" : "");
        }
        rep << ", k=" << proj->rank() << " n_max=" << proj->max_length();
        visit(attnx::Linformer<Scalar>(std::move(*proj), common));
    } else if (method == "linear" || method == "performer") {
        attnx::LinearAttentionOptions o(common);
        o.chunk = parse_index(cli, "--chunk", o.chunk);
        o.eps = parse_double(cli, "--eps", o.eps);
        if (method == "linear") {
            rep << "feature map: elu(x) + 1, C = d = " << d << ", chunk=" << o.chunk;
            visit(attnx::Linear<>{attnx::EluPlusOne{}, o});
        } else {
            attnx::RandomFeatureOptions fo;
            fo.num_features = parse_index(cli, "--features", fo.num_features);
            fo.orthogonal = !cli.has("--iid");
            attnx::PositiveRandomFeatures<Scalar> f =
                attnx::PositiveRandomFeatures<Scalar>::draw(d, parse_u64(cli, "--seed", 0), fo);
            rep << "features: " << f.name() << ", chunk=" << o.chunk;
            visit(attnx::Performer<Scalar>{std::move(f), o});
        }
    } else {  // the block-sparse family: a layout built once, outside the timed call
        attnx::BlockLayout layout;
        const Index block = parse_index(cli, "--block", 64);
        if (method == "block-sparse") {
            if (!cli.has("--layout")) throw usage_error("block-sparse needs --layout FILE and --block B");
            if (!cli.has("--block")) throw usage_error("block-sparse needs --block B (tokens per block of --layout)");
            const Eigen::MatrixXd m = npy::read_matrix<double>(cli.str("--layout"));
            const attnx::BlockMask mask = (m.array() != 0.0).matrix();
            layout = attnx::BlockLayout::from_block_mask(mask, block, n_q, n_k);
        } else {
            if (n_q != n_k)
                throw usage_error(method + " is self-attention: q has " + std::to_string(n_q) + " rows but k has " +
                                  std::to_string(n_k) + " (for cross-attention use --method block-sparse --layout)");
            if (method == "bigbird") {
                attnx::BigBirdOptions b;
                b.block = block;
                b.window = parse_index(cli, "--window", b.window);
                b.global = parse_index(cli, "--global", b.global);
                b.random = parse_index(cli, "--random", b.random);
                b.seed = parse_u64(cli, "--seed", b.seed);
                layout = attnx::BlockLayout::bigbird(n_q, b);
            } else {
                layout = attnx::BlockLayout::longformer(n_q, block, parse_index(cli, "--window", 3),
                                                        parse_index(cli, "--global-tokens", 1));
            }
        }
        rep << "layout: block=" << layout.block_size() << " blocks=" << layout.query_blocks() << "x"
            << layout.key_blocks() << " kept_blocks=" << layout.kept_blocks() << " density=" << layout.density();
        visit(attnx::BlockSparse{std::move(layout), common});
    }
}

/// One call of any mechanism value into `out`.
template <typename Mechanism, typename Scalar>
void call(const Mechanism& mech, const attnx::Matrix<Scalar>& q, const attnx::Matrix<Scalar>& k,
          const attnx::Matrix<Scalar>& v, attnx::Matrix<Scalar>& out, std::ostream&) {
    out = mech(q, k, v);
}

/// Nyström's diagnostics come out of the call itself (NystromReport), so it is called through
/// nystrom_attention with a report; the same computation as mech(q, k, v).
template <typename Scalar>
void call(const attnx::Nystrom& mech, const attnx::Matrix<Scalar>& q, const attnx::Matrix<Scalar>& k,
          const attnx::Matrix<Scalar>& v, attnx::Matrix<Scalar>& out, std::ostream& rep) {
    attnx::NystromReport r;
    out = attnx::nystrom_attention(q, k, v, mech.options, &r);
    rep << "num_landmarks=" << r.num_landmarks << " pinv=" << (r.pinv == attnx::PinvMethod::Exact ? "exact" : "iterative")
        << " pinv_iterations=" << r.pinv_iterations << " pinv_residual=" << r.pinv_residual
        << " (||I - A Z||_F) pinv_residual_aza=" << r.pinv_residual_aza
        << " (||A Z A - A||_F) max_column_sum=" << r.max_column_sum;
}

/// The attention call of the chosen method; fills `report` with its diagnostics. Returns seconds.
template <typename Scalar>
double compute(const Cli& cli, const std::string& method, const attnx::Matrix<Scalar>& q,
               const attnx::Matrix<Scalar>& k, const attnx::Matrix<Scalar>& v, attnx::Matrix<Scalar>& out,
               std::vector<std::string>& report) {
    using Clock = std::chrono::steady_clock;
    const attnx::AttentionOptions common = common_options(cli);
    std::ostringstream rep;
    double seconds = 0;
    with_mechanism<Scalar>(cli, method, common, q.rows(), k.rows(), q.cols(), rep, [&](const auto& mech) {
        const Clock::time_point t0 = Clock::now();
        call(mech, q, k, v, out, rep);
        seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    });
    report.push_back(rep.str());
    return seconds;
}

/// Fails early (before a long computation) if the output file cannot be written.
void check_writable(const std::string& path) {
    const bool existed = static_cast<bool>(std::ifstream(path));
    const bool ok = static_cast<bool>(std::ofstream(path, std::ios::binary | std::ios::app));
    if (ok && !existed) std::remove(path.c_str());
    if (!ok) throw usage_error("--out: cannot write " + path + " (does the directory exist and is it writable?)");
}

/// Multi-head mode: attnx::multi_head_attention on 4-d, 3-d (B = 1) or n x (H*D) arrays.
template <typename Scalar>
int run_heads(const Cli& cli, const std::string& method, const char* dtype) {
    using Clock = std::chrono::steady_clock;
    const std::string layout = cli.has("--head-layout") ? cli.str("--head-layout") : "bnhd";
    if (layout != "bnhd" && layout != "bhnd")
        throw usage_error("--head-layout must be bnhd or bhnd, got '" + layout + "'");
    if (cli.has("--query-padding"))
        throw usage_error("--query-padding does not apply in multi-head mode (pad keys with a B x N_k --key-padding)");
    const Index heads = parse_index(cli, "--heads", 0);
    Index kv_heads = parse_index(cli, "--kv-heads", 0);
    if (cli.has("--heads") && heads < 1) throw usage_error("--heads must be >= 1, got " + cli.str("--heads"));
    if (cli.has("--kv-heads") && kv_heads < 1) throw usage_error("--kv-heads must be >= 1, got " + cli.str("--kv-heads"));
    const HeadsArray<Scalar> q = load_heads<Scalar>("--q", cli.str("--q"), layout, heads);
    if (kv_heads == 0 && q.two_d) kv_heads = heads;
    const HeadsArray<Scalar> k = load_heads<Scalar>("--k", cli.str("--k"), layout, kv_heads);
    const HeadsArray<Scalar> v = load_heads<Scalar>("--v", cli.str("--v"), layout, kv_heads);
    const Index b = q.view.batch, n_q = q.view.tokens, h_q = q.view.heads, n_k = k.view.tokens, dv = v.view.dim;
    attnx::MultiHeadOptions mo;  // causal and padding per sequence; scale and checks in the mechanism
    mo.causal = cli.has("--causal");
    if (cli.has("--key-padding")) {
        npy::Header h;
        const Eigen::MatrixXd m = npy::read_matrix<double>(cli.str("--key-padding"), &h);
        const bool as_matrix = m.rows() == b && m.cols() == n_k;
        if (!as_matrix && !(m.size() == b * n_k && (m.rows() == 1 || m.cols() == 1)))
            throw usage_error("--key-padding: " + cli.str("--key-padding") + " has shape " + h.shape_string() +
                              "; in multi-head mode it needs B x N_k = " + std::to_string(b) + " x " +
                              std::to_string(n_k) + " flags");
        for (Index i = 0; i < b; ++i)
            for (Index j = 0; j < n_k; ++j) {
                const double x = as_matrix ? m(i, j) : m(i * n_k + j);
                if (x != 0 && x != 1) throw usage_error("--key-padding: a mask holds 0 (attend) and 1 (padding) only");
                mo.key_padding_mask.push_back(x == 1);
            }
    }
    attnx::AttentionOptions common;
    if (cli.has("--scale")) common.scale = parse_double(cli, "--scale", 0);
    common.check_finite = !cli.has("--no-check-finite");

    std::vector<Scalar> buffer(static_cast<std::size_t>(b * n_q * h_q * dv));
    const bool bhnd = layout == "bhnd" && !q.two_d;
    const attnx::HeadsView<Scalar> out = bhnd ? attnx::HeadsView<Scalar>::bhnd(buffer.data(), b, h_q, n_q, dv)
                                              : attnx::HeadsView<Scalar>::bnhd(buffer.data(), b, n_q, h_q, dv);
    std::vector<std::int64_t> out_shape = {b, n_q, h_q, dv};
    if (bhnd) out_shape = {b, h_q, n_q, dv};
    if (q.three_d) out_shape.erase(out_shape.begin());
    if (q.two_d) out_shape = {n_q, h_q * dv};
    std::optional<Eigen::MatrixXd> reference;
    if (cli.has("--compare")) reference = load_flat_reference(cli.str("--compare"), out_shape, dv);
    if (cli.has("--out")) check_writable(cli.str("--out"));

    std::ostringstream rep;
    double seconds = 0;
    with_mechanism<Scalar>(cli, method, common, n_q, n_k, q.view.dim, rep, [&](const auto& mech) {
        const Clock::time_point t0 = Clock::now();
        attnx::multi_head_attention(mech, q.view, k.view, v.view, out, mo);
        seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        rep << (rep.tellp() > 0 ? ", " : "") << mech.name() << " (" << mech.parameters() << ")";
    });
    if (cli.has("--out")) write_flat(cli.str("--out"), buffer, out_shape);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    // In the arrays' own order (--head-layout), as a NumPy user reads their shapes.
    const auto dims = [bhnd](const attnx::HeadsView<Scalar>& x) {
        const std::string b = std::to_string(x.batch), n = std::to_string(x.tokens), h = std::to_string(x.heads),
                          d = std::to_string(x.dim);
        if (bhnd) return "(B, H, N, D) = (" + b + ", " + h + ", " + n + ", " + d + ")";
        return "(B, N, H, D) = (" + b + ", " + n + ", " + h + ", " + d + ")";
    };
    std::printf("attnx_run: %s, %s, multi-head %s: q %s, k %s, v %s -> out %s%s%s, %.3f ms, %d thread(s)\n",
                method.c_str(), dtype, q.two_d ? "n x (H*D)" : layout.c_str(), dims(q.view).c_str(),
                dims(k.view).c_str(), dims(v.view).c_str(), shape_string(out_shape).c_str(),
                cli.has("--out") ? " written to " : "", cli.has("--out") ? cli.str("--out").c_str() : "",
                seconds * 1e3, threads);
    if (cli.has("--report"))
        std::printf("report: %s; query head h reads key/value head h / %ld\n", rep.str().c_str(),
                    static_cast<long>(h_q / k.view.heads));
    int status = 0;
    if (reference) {
        const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> flat(
            buffer.data(), reference->rows(), reference->cols());
        const Eigen::MatrixXd got = flat.template cast<double>();
        const attnx::ErrorMetrics e = attnx::compare(got, *reference);
        std::printf("compare: rel_fro=%.6e max_abs=%.6e mean_row_cosine=%.9f (against %s)\n", e.rel_fro, e.max_abs,
                    e.mean_row_cosine, cli.str("--compare").c_str());
        if (cli.has("--max-rel-err")) {
            const double tol = parse_double(cli, "--max-rel-err", 0);
            const bool ok = e.rel_fro <= tol;
            std::printf("compare: %s: rel_fro %.6e %s --max-rel-err %.6e\n", ok ? "PASS" : "FAIL", e.rel_fro,
                        ok ? "<=" : ">", tol);
            if (!ok) status = 1;
        }
    }
    return status;
}

template <typename Scalar>
int run(const Cli& cli, const std::string& method, const char* dtype) {
    const attnx::Matrix<Scalar> q = load_float<Scalar>("--q", cli.str("--q"));
    const attnx::Matrix<Scalar> k = load_float<Scalar>("--k", cli.str("--k"));
    const attnx::Matrix<Scalar> v = load_float<Scalar>("--v", cli.str("--v"));
    std::optional<Eigen::MatrixXd> reference;
    if (cli.has("--compare")) {
        const npy::Header h = npy::inspect(cli.str("--compare"));
        if (!h.is_float())
            throw usage_error("--compare: " + cli.str("--compare") + " has dtype " + h.type_name() +
                              "; expected float32 or float64");
        reference = npy::read_matrix<double>(cli.str("--compare"));
        if (reference->rows() != q.rows() || reference->cols() != v.cols())
            throw usage_error("--compare: " + cli.str("--compare") + " is " +
                              shape_of(reference->rows(), reference->cols()) + " but the output is n_q x d_v = " +
                              shape_of(q.rows(), v.cols()));
    }
    if (cli.has("--out")) check_writable(cli.str("--out"));

    attnx::Matrix<Scalar> out;
    std::vector<std::string> report;
    const double seconds = compute<Scalar>(cli, method, q, k, v, out, report);

    if (cli.has("--out")) npy::write(cli.str("--out"), out);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::printf("attnx_run: %s, %s, q %s, k %s, v %s -> out %s%s%s, %.3f ms, %d thread(s)\n", method.c_str(), dtype,
                shape_of(q.rows(), q.cols()).c_str(), shape_of(k.rows(), k.cols()).c_str(),
                shape_of(v.rows(), v.cols()).c_str(), shape_of(out.rows(), out.cols()).c_str(),
                cli.has("--out") ? " written to " : "", cli.has("--out") ? cli.str("--out").c_str() : "",
                seconds * 1e3, threads);
    if (cli.has("--report"))
        for (const std::string& line : report) std::printf("report: %s\n", line.c_str());
    int status = 0;
    if (reference) {
        const attnx::ErrorMetrics e = attnx::compare(out, *reference);
        std::printf("compare: rel_fro=%.6e max_abs=%.6e mean_row_cosine=%.9f (against %s)\n", e.rel_fro, e.max_abs,
                    e.mean_row_cosine, cli.str("--compare").c_str());
        if (cli.has("--max-rel-err")) {
            const double tol = parse_double(cli, "--max-rel-err", 0);
            const bool ok = e.rel_fro <= tol;
            std::printf("compare: %s: rel_fro %.6e %s --max-rel-err %.6e\n", ok ? "PASS" : "FAIL", e.rel_fro,
                        ok ? "<=" : ">", tol);
            if (!ok) status = 1;
        }
    }
    return status;
}

int main_impl(int argc, char** argv) {
    const Cli cli = parse_args(argc, argv);
    if (cli.has("--help")) {
        print_help();
        return 0;
    }
    if (cli.has("--version")) {
        std::printf("attnx_run (attnx %d.%d.%d)\n", ATTNX_VERSION_MAJOR, ATTNX_VERSION_MINOR, ATTNX_VERSION_PATCH);
        return 0;
    }
    if (!cli.has("--method")) throw usage_error("--method is required (see --help)");
    const std::string method = cli.str("--method");
    check_applicable(cli, method);
    for (const char* required : {"--q", "--k", "--v"})
        if (!cli.has(required)) throw usage_error(std::string(required) + " FILE is required");
    if (!cli.has("--out") && !cli.has("--compare"))
        throw usage_error("nothing to do: give --out FILE and/or --compare REF.npy");
    if (cli.has("--max-rel-err") && !cli.has("--compare")) throw usage_error("--max-rel-err needs --compare REF.npy");
    if (cli.has("--max-rel-err") && !(parse_double(cli, "--max-rel-err", 0) >= 0))
        throw usage_error("--max-rel-err must be >= 0, got " + cli.str("--max-rel-err"));
    if (cli.has("--threads")) {
        const Index t = parse_index(cli, "--threads", 1);
        if (t < 1 || t > 4096) throw usage_error("--threads must be in [1, 4096], got " + cli.str("--threads"));
#ifdef _OPENMP
        omp_set_num_threads(static_cast<int>(t));
#else
        if (t != 1) std::fprintf(stderr, "attnx_run: note: built without OpenMP, --threads is ignored\n");
#endif
    }

    std::string dtype;
    if (cli.has("--dtype")) {
        dtype = cli.str("--dtype");
        if (dtype == "f4" || dtype == "float") dtype = "float32";
        if (dtype == "f8" || dtype == "double") dtype = "float64";
        if (dtype != "float32" && dtype != "float64")
            throw usage_error("--dtype must be float32 or float64, got '" + cli.str("--dtype") + "'");
    } else {
        const npy::Header h = npy::inspect(cli.str("--q"));
        if (!h.is_float())
            throw usage_error("--q: " + cli.str("--q") + " has dtype " + h.type_name() + " ('" + h.descr +
                              "'); attnx_run reads float32 or float64 matrices (in NumPy: x.astype(np.float32))");
        dtype = h.item_size == 4 ? "float32" : "float64";
    }
    const bool heads_mode = cli.has("--heads") || cli.has("--kv-heads") || cli.has("--head-layout");
    if (heads_mode) {
        if (dtype == "float32") return run_heads<float>(cli, method, "float32");
        return run_heads<double>(cli, method, "float64");
    }
    if (dtype == "float32") return run<float>(cli, method, "float32");
    return run<double>(cli, method, "float64");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return main_impl(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "attnx_run: error: %s\n", e.what());
    } catch (const attnx::invalid_argument& e) {
        std::fprintf(stderr, "attnx_run: error: %s\n", e.what());
    } catch (const npy::error& e) {
        std::fprintf(stderr, "attnx_run: error: %s\n", e.what());
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "attnx_run: error: out of memory (the inputs or the method need more memory than is "
                             "available; exact-materialized needs n_q x n_k scalars)\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "attnx_run: error: %s\n", e.what());
    }
    return 2;
}
