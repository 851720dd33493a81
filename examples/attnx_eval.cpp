// SPDX-License-Identifier: MIT
// attnx_eval: "which method for my data?" Reads Q, K, V from .npy files, runs every attnx
// mechanism over a grid of budgets on every head, and prints per head: method, budget, time,
// speed-up over exact attention, and the relative Frobenius error against exact attention —
// computed exactly when n <= --exact-limit, else estimated from --samples exact rows with its
// confidence interval (attnx::estimate_error). Computes in float.
//
//   attnx_eval (--q q.npy --k k.npy --v v.npy | --synthetic N) [--heads H] [--head-layout bnhd|bhnd] [--causal]
//              [--methods nystrom,linformer,longformer,bigbird,performer,linear] [--reps 3] [--exact-limit 4096]
//              [--samples 256] [--seed 0] [--confidence 0.95] [--json FILE]
//
// Shapes: 2-d (n, d) is one head, or H heads side by side (n, H*d) with --heads H; 3-d
// (H, n, d); 4-d (B, N, H, D) (--head-layout bnhd, the default) or (B, H, N, D) (bhnd), each
// (batch, head) pair evaluated as one head. K and V may have fewer heads than Q when they divide
// it (grouped-query attention: query head h reads key/value head h / (H_q / H_kv)).
// --synthetic N evaluates the demo's synthetic "realistic" inputs (examples/example_inputs.hpp,
// n = N, d = 64, seed --seed) instead, for comparison. Exit status 2 with one line on stderr for bad files or options.
#include <attnx/attnx.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "example_inputs.hpp"
#include "npy.hpp"

namespace {

using attnx::Index;
using Mat = attnx::Matrix<float>;
using Clock = std::chrono::steady_clock;

struct Config {
    std::string q, k, v, json, layout = "bnhd";
    Index heads = 0;  // 0: from the shape
    Index synthetic = 0;  // > 0: the demo's synthetic inputs with n = synthetic, d = 64, instead of files
    bool causal = false;
    std::vector<std::string> methods;  // empty: all
    int reps = 3;
    Index exact_limit = 4096, samples = 256;
    std::uint64_t seed = 0;
    double confidence = 0.95;
};

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "attnx_eval: %s\n", msg.c_str());
    std::exit(2);
}

[[noreturn]] void usage(const std::string& msg) {
    std::fprintf(stderr,
                 "%s\nusage: attnx_eval (--q Q.npy --k K.npy --v V.npy | --synthetic N) [--heads H] [--head-layout bnhd|bhnd] "
                 "[--causal]\n       [--methods nystrom,linformer,longformer,bigbird,performer,linear] [--reps R] [--exact-limit N] "
                 "[--samples S]\n       [--seed S] [--confidence C] [--json FILE]\n",
                 msg.c_str());
    std::exit(2);
}

Config parse(int argc, char** argv) {
    Config c;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") usage("attnx_eval: which attention approximation suits these inputs?");
        if (a == "--causal") {
            c.causal = true;
            continue;
        }
        if (i + 1 >= argc) usage("attnx_eval: missing value after " + a);
        const std::string val = argv[++i];
        try {
            if (a == "--q") c.q = val;
            else if (a == "--k") c.k = val;
            else if (a == "--v") c.v = val;
            else if (a == "--json") c.json = val;
            else if (a == "--head-layout") c.layout = val;
            else if (a == "--heads") c.heads = std::stoll(val);
            else if (a == "--synthetic") c.synthetic = std::stoll(val);
            else if (a == "--reps") c.reps = std::stoi(val);
            else if (a == "--exact-limit") c.exact_limit = std::stoll(val);
            else if (a == "--samples") c.samples = std::stoll(val);
            else if (a == "--seed") c.seed = std::stoull(val);
            else if (a == "--confidence") c.confidence = std::stod(val);
            else if (a == "--methods") {
                std::stringstream ss(val);
                std::string tok;
                while (std::getline(ss, tok, ',')) c.methods.push_back(tok);
            } else
                usage("attnx_eval: unknown option " + a);
        } catch (const std::logic_error&) {
            usage("attnx_eval: bad value '" + val + "' for " + a);
        }
    }
    if (c.synthetic < 0) usage("attnx_eval: --synthetic must be >= 1");
    if (c.synthetic == 0 && (c.q.empty() || c.k.empty() || c.v.empty()))
        usage("attnx_eval: --q, --k and --v are required (or --synthetic N)");
    if (c.layout != "bnhd" && c.layout != "bhnd") usage("attnx_eval: --head-layout must be bnhd or bhnd, not " + c.layout);
    if (c.reps < 1 || c.heads < 0 || c.exact_limit < 0) usage("attnx_eval: --reps must be >= 1, --heads and --exact-limit >= 0");
    for (const std::string& m : c.methods)
        if (m != "nystrom" && m != "linformer" && m != "longformer" && m != "bigbird")
            usage("attnx_eval: unknown method '" + m + "' (known: nystrom, linformer, longformer, bigbird)");
    return c;
}

/// A .npy array of any rank, as float in C order.
struct Tensor {
    std::vector<std::int64_t> shape;
    std::vector<float> data;
};

Tensor read_tensor(const std::string& path) {
    std::ifstream in;
    const npy::Header h = npy::detail::read_header(in, path);
    if (!h.is_float()) npy::detail::fail(path, "has dtype " + h.type_name() + "; expected float32 or float64");
    Tensor t;
    t.shape = h.shape;
    const std::size_t count = static_cast<std::size_t>(h.data_bytes / static_cast<std::uint64_t>(h.item_size));
    std::vector<char> raw(static_cast<std::size_t>(h.data_bytes));
    if (!raw.empty() && !in.read(raw.data(), static_cast<std::streamsize>(raw.size())))
        npy::detail::fail(path, "read error in the data");
    std::vector<float> flat(count);
    npy::detail::convert<float>(h, raw.data(), static_cast<Index>(count), flat.data(), 1);
    if (!h.fortran_order || h.shape.size() < 2) {
        t.data = std::move(flat);
        return t;
    }
    // Fortran order: the first index runs fastest; reorder into C order.
    const std::size_t nd = h.shape.size();
    std::vector<std::size_t> fstride(nd, 1);
    for (std::size_t d = 1; d < nd; ++d) fstride[d] = fstride[d - 1] * static_cast<std::size_t>(h.shape[d - 1]);
    t.data.resize(count);
    std::vector<std::size_t> idx(nd, 0);
    for (std::size_t c = 0; c < count; ++c) {
        std::size_t off = 0;
        for (std::size_t d = 0; d < nd; ++d) off += idx[d] * fstride[d];
        t.data[c] = flat[off];
        for (std::size_t d = nd; d-- > 0;) {  // C-order increment
            if (++idx[d] < static_cast<std::size_t>(h.shape[d])) break;
            idx[d] = 0;
        }
    }
    return t;
}

/// A tensor seen as heads of n x d matrices: element (head, token, j) of the flat C-order data.
struct Heads {
    Index count = 0, n = 0, d = 0;
    std::function<Mat(Index)> head;  // the n x d matrix of one head
    std::string describe;
};

Heads as_heads(const Tensor& t, const std::string& path, const Config& cfg) {
    Heads h;
    const std::vector<std::int64_t>& s = t.shape;
    const float* p = t.data.data();
    std::ostringstream os;
    for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "(") << s[i];
    os << ")";
    h.describe = os.str();
    if (s.size() == 2) {
        const Index heads = cfg.heads > 0 ? cfg.heads : 1;
        if (s[1] % heads != 0)
            fail(path + ": shape " + h.describe + " has " + std::to_string(s[1]) + " columns, not a multiple of --heads " +
                 std::to_string(heads));
        h.count = heads;
        h.n = s[0];
        h.d = s[1] / heads;
        const Index cols = s[1], n = h.n, d = h.d;
        h.head = [p, cols, n, d](Index hh) {
            Mat m(n, d);
            for (Index i = 0; i < n; ++i)
                for (Index j = 0; j < d; ++j) m(i, j) = p[i * cols + hh * d + j];
            return m;
        };
    } else if (s.size() == 3) {
        h.count = s[0];
        h.n = s[1];
        h.d = s[2];
        const Index n = h.n, d = h.d;
        h.head = [p, n, d](Index hh) {
            Mat m(n, d);
            for (Index i = 0; i < n; ++i)
                for (Index j = 0; j < d; ++j) m(i, j) = p[(hh * n + i) * d + j];
            return m;
        };
    } else if (s.size() == 4) {
        const bool bnhd = cfg.layout == "bnhd";
        const Index b = s[0], nh = bnhd ? s[2] : s[1], n = bnhd ? s[1] : s[2], d = s[3];
        h.count = b * nh;
        h.n = n;
        h.d = d;
        h.head = [p, bnhd, nh, n, d](Index item) {
            const Index bb = item / nh, hh = item % nh;
            Mat m(n, d);
            for (Index i = 0; i < n; ++i)
                for (Index j = 0; j < d; ++j)
                    m(i, j) = bnhd ? p[((bb * n + i) * nh + hh) * d + j] : p[((bb * nh + hh) * n + i) * d + j];
            return m;
        };
    } else {
        fail(path + ": shape " + h.describe + " has " + std::to_string(s.size()) +
             " dimensions; expected 2 (n, d), 3 (heads, n, d) or 4 (B, N, H, D / B, H, N, D)");
    }
    if (cfg.heads > 0 && s.size() == 4 && path == cfg.q && (cfg.layout == "bnhd" ? s[2] : s[1]) != cfg.heads)
        fail(path + ": --heads " + std::to_string(cfg.heads) + " but the array " + h.describe + " has " +
             std::to_string(cfg.layout == "bnhd" ? s[2] : s[1]) + " heads in layout " + cfg.layout);
    if (h.count < 1 || h.n < 1 || h.d < 1) fail(path + ": shape " + h.describe + " is empty");
    return h;
}

/// One row of the grid: a mechanism at one budget.
struct Method {
    std::string name, budget, params;
    double budget_value = 0;
    std::function<void(const Mat&, const Mat&, const Mat&, Mat&)> run;
    std::function<attnx::ErrorEstimate(const Mat&, const Mat&, const Mat&, const Mat&, const attnx::EstimateOptions&)>
        estimate;
};

template <typename M>
Method make(const std::string& name, const std::string& budget, double value, const M& mech) {
    Method m;
    m.name = name;
    m.budget = budget;
    m.budget_value = value;
    m.params = mech.parameters();
    m.run = [mech](const Mat& q, const Mat& k, const Mat& v, Mat& out) { mech(q, k, v, out); };
    m.estimate = [mech](const Mat& q, const Mat& k, const Mat& v, const Mat& approx, const attnx::EstimateOptions& eo) {
        return attnx::estimate_error(mech, q, k, v, approx, eo);
    };
    return m;
}

bool wanted(const Config& c, const std::string& name) {
    return c.methods.empty() || std::find(c.methods.begin(), c.methods.end(), name) != c.methods.end();
}

/// The grid of budgets for sequences of n tokens (self-attention, n_q = n_k = n).
std::vector<Method> grid(const Config& cfg, Index n, Index d) {
    std::vector<Method> g;
    attnx::AttentionOptions common;
    common.causal = cfg.causal;
    if (wanted(cfg, "nystrom") && !cfg.causal)  // Nyström and Linformer have no causal form
        for (Index m : {8, 16, 32, 64, 128, 256}) {
            if (m > n / 2) break;
            attnx::NystromOptions o;
            o.num_landmarks = m;
            g.push_back(make("nystrom", "m = " + std::to_string(m), static_cast<double>(m), attnx::Nystrom{o}));
        }
    if (wanted(cfg, "linformer") && !cfg.causal)
        for (Index r : {16, 32, 64, 128, 256}) {
            if (r > n / 2) break;
            g.push_back(make("linformer", "k = " + std::to_string(r), static_cast<double>(r),
                             attnx::Linformer<float>(attnx::LinformerProjection<float>::gaussian(r, n, 1), common)));
        }
    if (wanted(cfg, "longformer"))
        for (Index b : {8, 16, 32, 64}) {
            if (n / b < 4) break;
            const attnx::BlockLayout layout = attnx::BlockLayout::longformer(n, b, 3, b);
            std::ostringstream os;
            os.precision(2);
            os << "b = " << b << ", w 3, 1 global block (density ";
            os << layout.density() << ")";
            g.push_back(make("longformer", "b = " + std::to_string(b), layout.density(), attnx::BlockSparse{layout, common}));
            g.back().params = os.str();
        }
    if (wanted(cfg, "bigbird"))
        for (Index b : {8, 16, 64}) {
            if (n / b < 8) continue;
            attnx::BigBirdOptions bo;
            bo.block = b;
            const double density = attnx::BlockLayout::bigbird(n, bo).density();
            g.push_back(make("bigbird", "b = " + std::to_string(b), density, attnx::BigBird{bo, common}));
            std::ostringstream os;
            os.precision(2);
            os << g.back().params << " (density ";
            os << density << ")";
            g.back().params = os.str();
        }
    if (wanted(cfg, "performer"))  // FAVOR+ features are drawn for the head dimension d
        for (Index m : {64, 256, 1024}) {
            attnx::RandomFeatureOptions fo;
            fo.num_features = m;
            g.push_back(make("performer", "m = " + std::to_string(m), static_cast<double>(m),
                             attnx::Performer<float>{attnx::PositiveRandomFeatures<float>::draw(d, 1, fo), common}));
        }
    if (wanted(cfg, "linear"))  // elu + 1: a different model, one row for reference
        g.push_back(make("linear", "elu + 1", static_cast<double>(d), attnx::Linear<>{attnx::EluPlusOne{}, common}));
    return g;
}

double best_ms(int reps, const std::function<void()>& f) {
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        f();
        best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return best;
}

struct Row {
    Index head;
    std::string method, budget, params;
    double budget_value, ms, speedup;
    attnx::ErrorEstimate err;
    bool exact_error;
};

/// A JSON number, or null for inf (an unbounded interval).
std::string num(double x) {
    if (!std::isfinite(x)) return "null";
    std::ostringstream os;
    os.precision(6);
    os << x;
    return os.str();
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    const Config cfg = parse(argc, argv);
    Tensor tq, tk, tv;
    if (cfg.synthetic > 0) {  // one head of the demo's inputs, as a (n, 64) array each
        const auto x = examples::realistic_inputs<float>(cfg.synthetic, 64, 64, cfg.seed);
        for (auto [t, m] : {std::make_pair(&tq, &x.q), std::make_pair(&tk, &x.k), std::make_pair(&tv, &x.v)}) {
            t->shape = {cfg.synthetic, 64};
            const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = *m;
            t->data.assign(rm.data(), rm.data() + rm.size());
        }
    } else {
        try {
            tq = read_tensor(cfg.q);
            tk = read_tensor(cfg.k);
            tv = read_tensor(cfg.v);
        } catch (const npy::error& e) {
            fail(e.what());
        }
    }
    const Heads hq = as_heads(tq, cfg.q, cfg), hk = as_heads(tk, cfg.k, cfg), hv = as_heads(tv, cfg.v, cfg);
    if (hk.count != hv.count || hk.n != hv.n)
        fail("k " + hk.describe + " and v " + hv.describe + " need the same heads and tokens");
    if (hk.count < 1 || hq.count % hk.count != 0)
        fail("q has " + std::to_string(hq.count) + " heads, k and v " + std::to_string(hk.count) +
             " (must divide the query heads)");
    if (hq.d != hk.d) fail("q " + hq.describe + " and k " + hk.describe + " need the same head dimension");
    if (hq.n != hk.n) fail("q " + hq.describe + " and k " + hk.describe + " need the same number of tokens (self-attention)");
    const Index n = hq.n, group = hq.count / hk.count;
    const bool exact_errors = n <= cfg.exact_limit;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::printf("attnx %d.%d.%d eval: q %s, k %s, v %s -> %lld head(s), n = %lld, d = %lld, d_v = %lld%s; float, %d "
                "thread(s), best of %d\n",
                ATTNX_VERSION_MAJOR, ATTNX_VERSION_MINOR, ATTNX_VERSION_PATCH, hq.describe.c_str(), hk.describe.c_str(),
                hv.describe.c_str(), static_cast<long long>(hq.count), static_cast<long long>(n),
                static_cast<long long>(hq.d), static_cast<long long>(hv.d), cfg.causal ? ", causal" : "", threads,
                cfg.reps);
    if (exact_errors)
        std::printf("errors: exact, ||out - exact||_F / ||exact||_F over all %lld rows (n <= --exact-limit %lld)\n",
                    static_cast<long long>(n), static_cast<long long>(cfg.exact_limit));
    else
        std::printf("errors: estimated from %lld sampled exact rows (seed %llu), %.0f%% confidence interval\n",
                    static_cast<long long>(cfg.samples), static_cast<unsigned long long>(cfg.seed),
                    100 * cfg.confidence);

    const std::vector<Method> methods = grid(cfg, n, hq.d);
    if (methods.empty()) fail("no method fits n = " + std::to_string(n) + (cfg.causal ? " with --causal" : ""));
    attnx::ExactOptions exact_opts;
    exact_opts.causal = cfg.causal;
    attnx::EstimateOptions eo;
    eo.samples = std::min(cfg.samples, n);
    eo.seed = cfg.seed;
    eo.confidence = cfg.confidence;

    std::vector<Row> rows;
    const auto start = Clock::now();
    auto last_progress = start;
    try {
        for (Index h = 0; h < hq.count; ++h) {
            const Mat q = hq.head(h), k = hk.head(h / group), v = hv.head(h / group);
            Mat exact(n, hv.d), out(n, hv.d);
            const double exact_ms = best_ms(cfg.reps, [&] { attnx::exact_attention(q, k, v, exact, exact_opts); });
            std::printf("\nhead %lld: exact attention %.3f ms\n%-11s %-9s %10s %9s %10s   %-21s %s\n",
                        static_cast<long long>(h), exact_ms, "method", "budget", "time ms", "speed-up", "rel error",
                        exact_errors ? "" : "interval", "parameters");
            for (const Method& m : methods) {
                const double ms = best_ms(cfg.reps, [&] { m.run(q, k, v, out); });
                Row r{h, m.name, m.budget, m.params, m.budget_value, ms, exact_ms / ms, {}, exact_errors};
                if (exact_errors) {
                    const attnx::ErrorMetrics e = attnx::compare(out, exact);
                    r.err.rel_fro = r.err.ci_low = r.err.ci_high = e.rel_fro;
                    r.err.max_abs_sampled = e.max_abs;
                    r.err.samples = r.err.population = n;
                } else {
                    r.err = m.estimate(q, k, v, out, eo);
                }
                char interval[64] = "";
                if (!exact_errors) std::snprintf(interval, sizeof interval, "[%.3g, %.3g]", r.err.ci_low, r.err.ci_high);
                std::printf("%-11s %-9s %10.3f %8.1fx %10.3g   %-21s %s\n", m.name.c_str(), m.budget.c_str(), ms,
                            r.speedup, r.err.rel_fro, interval, m.params.c_str());
                std::fflush(stdout);
                rows.push_back(r);
                const auto now = Clock::now();
                if (std::chrono::duration<double>(now - last_progress).count() > 2.0) {
                    std::fprintf(stderr, "attnx_eval: progress: head %lld of %lld, %s %s done, %.0f s elapsed\n",
                                 static_cast<long long>(h + 1), static_cast<long long>(hq.count), m.name.c_str(),
                                 m.budget.c_str(), std::chrono::duration<double>(now - start).count());
                    last_progress = now;
                }
            }
        }
    } catch (const attnx::invalid_argument& e) {
        fail(e.what());
    }

    // Summary: for each method and budget, the error over the heads (min / max), and the time.
    std::printf("\nsummary over %lld head(s): rel error min / max, mean speed-up\n", static_cast<long long>(hq.count));
    for (const Method& m : methods) {
        double lo = 1e300, hi = 0, sp = 0;
        int cnt = 0;
        for (const Row& r : rows)
            if (r.method == m.name && r.budget == m.budget) {
                lo = std::min(lo, r.err.rel_fro);
                hi = std::max(hi, r.err.rel_fro);
                sp += r.speedup;
                ++cnt;
            }
        std::printf("%-11s %-9s %10.3g / %-10.3g %8.1fx\n", m.name.c_str(), m.budget.c_str(), lo, hi, sp / cnt);
    }
    if (!cfg.json.empty()) {
        std::ofstream js(cfg.json);
        js << "{\n  \"n\": " << n << ", \"d\": " << hq.d << ", \"d_v\": " << hv.d << ", \"heads\": " << hq.count
           << ", \"causal\": " << (cfg.causal ? "true" : "false") << ", \"threads\": " << threads
           << ", \"exact_errors\": " << (exact_errors ? "true" : "false") << ", \"samples\": " << eo.samples
           << ", \"confidence\": " << cfg.confidence << ",\n  \"rows\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            js << "    {\"head\": " << r.head << ", \"method\": \"" << r.method << "\", \"budget\": \""
               << json_escape(r.budget) << "\", \"budget_value\": " << r.budget_value << ", \"params\": \""
               << json_escape(r.params) << "\", \"ms\": " << num(r.ms) << ", \"speedup\": " << num(r.speedup)
               << ", \"rel_fro\": " << num(r.err.rel_fro) << ", \"ci_low\": " << num(r.err.ci_low)
               << ", \"ci_high\": " << num(r.err.ci_high) << ", \"max_abs\": " << num(r.err.max_abs_sampled)
               << ", \"exact_error\": " << (r.exact_error ? "true" : "false") << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
        }
        js << "  ]\n}\n";
        if (!js) fail("could not write " + cfg.json);
        std::printf("wrote %s\n", cfg.json.c_str());
    }
    return 0;
}
