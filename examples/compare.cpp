// SPDX-License-Identifier: MIT
// The demo behind scripts/demo: every attnx mechanism on one realistic input, with wall time
// (best of --reps runs), speed-up over the streaming exact kernel, and the error against exact
// attention computed in double.
//
//   compare [--n 4096] [--d 64] [--seed 1] [--reps 3] [--methods name,name,...] [--json FILE]
#include <attnx/attnx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "example_inputs.hpp"

namespace {

using attnx::Index;
using Mat = attnx::Matrix<float>;

struct Config {
    Index n = 4096, d = 64;
    std::uint64_t seed = 1;
    int reps = 3;
    std::vector<std::string> methods;  // empty: all
    std::string json;
};

/// One row of the table: a name, its parameters and a call of an attnx mechanism value, or the
/// reason it cannot run at this n (then `run` is empty).
struct Method {
    std::string name, params;
    std::function<Mat(const Mat&, const Mat&, const Mat&)> run;
    std::string skipped;  ///< why it does not run here, e.g. "needs n >= m = 64"
};

/// A row from any mechanism value (attnx/mechanisms.hpp); `params` replaces the mechanism's own
/// parameters() where the table says more (e.g. how the projections were drawn).
template <typename Mechanism>
Method row(std::string name, Mechanism mech, std::string params = {}) {
    static_assert(attnx::is_mechanism<Mechanism>::value, "compare: rows are attnx mechanism values");
    if (params.empty()) params = mech.parameters();
    return {std::move(name), std::move(params), [mech](const Mat& q, const Mat& k, const Mat& v) { return mech(q, k, v); },
            {}};
}

/// A row that cannot run at this n, with the reason.
Method skipped(std::string name, std::string reason) { return {std::move(name), {}, {}, std::move(reason)}; }

/// Every mechanism of the library, as rows of the table: one line (or loop) per mechanism.
std::vector<Method> all_methods(const Config& cfg) {
    std::vector<Method> m;
    m.push_back(row("exact-streaming", attnx::Exact{}, "tile 128x128"));
    {
        attnx::ExactOptions o;
        o.kernel = attnx::ExactKernel::Materialized;
        m.push_back(row("exact-materialized", attnx::Exact{o}, "n x n scores"));
    }
    for (Index landmarks : {32, 64, 128}) {
        const std::string name = "nystrom-" + std::to_string(landmarks);
        if (landmarks > cfg.n) {
            m.push_back(skipped(name, "needs n >= m = " + std::to_string(landmarks)));
            continue;
        }
        attnx::NystromOptions o;
        o.num_landmarks = landmarks;
        m.push_back(row(name, attnx::Nystrom{o}));
    }
    for (Index rank : {64, 128, 256}) {
        const std::string name = "linformer-" + std::to_string(rank);
        if (rank > cfg.n) {
            m.push_back(skipped(name, "needs n >= k = " + std::to_string(rank)));
            continue;
        }
        // The projection is a model parameter: drawn once here (fixed seed), not in the timing.
        m.push_back(row(name, attnx::Linformer<float>(attnx::LinformerProjection<float>::gaussian(rank, cfg.n, /*seed=*/1)),
                        "k = " + std::to_string(rank) + ", Gaussian E, F"));
    }
    for (Index features : {64, 256, 1024}) {
        // FAVOR+ features are a model parameter too: drawn once here (fixed seed), not in the timing.
        attnx::RandomFeatureOptions fo;
        fo.num_features = features;
        m.push_back(row("performer-" + std::to_string(features),
                        attnx::Performer<float>{attnx::PositiveRandomFeatures<float>::draw(cfg.d, /*seed=*/1, fo), {}},
                        "m = " + std::to_string(features) + ", orthogonal FAVOR+"));
    }
    m.push_back(row("linear-elu", attnx::Linear<>{}, "elu(x) + 1, C = d"));
    m.push_back(row("bigbird", attnx::BigBird{}, "b 64, w 3, g 2, r 3 (blocks)"));
    // The layout depends on n only: built once here, like a model's fixed pattern.
    m.push_back(row("longformer", attnx::BlockSparse{attnx::BlockLayout::longformer(cfg.n, 64, 3, 64), {}},
                    "b 64, w 3 blocks, 64 global"));
    return m;
}

/// "a (why), b (why)" for the rows that do not run.
std::string skipped_list(const std::vector<Method>& methods) {
    std::string s;
    for (const Method& m : methods)
        if (!m.skipped.empty()) s += (s.empty() ? "" : ", ") + m.name + " (" + m.skipped + ")";
    return s;
}

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "%s\nusage: compare [--n N] [--d D] [--seed S] [--reps R] [--methods a,b,...] [--json FILE]\n", msg);
    std::exit(2);
}

Config parse(int argc, char** argv) {
    Config c;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") usage("compare: every attnx mechanism against exact attention");
        if (i + 1 >= argc) usage(("missing value after " + a).c_str());
        const std::string val = argv[++i];
        try {
            if (a == "--n")
                c.n = std::stoll(val);
            else if (a == "--d")
                c.d = std::stoll(val);
            else if (a == "--seed")
                c.seed = std::stoull(val);
            else if (a == "--reps")
                c.reps = std::stoi(val);
            else if (a == "--json")
                c.json = val;
            else if (a == "--methods") {
                std::stringstream ss(val);
                std::string tok;
                while (std::getline(ss, tok, ',')) c.methods.push_back(tok);
            } else
                usage(("unknown option " + a).c_str());
        } catch (const std::logic_error&) {
            usage(("bad value '" + val + "' for " + a).c_str());
        }
    }
    if (c.n < 1 || c.d < 1 || c.reps < 1) usage("--n, --d and --reps must be >= 1");
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    const Config cfg = parse(argc, argv);
    const auto x = examples::realistic_inputs<float>(cfg.n, cfg.d, cfg.d, cfg.seed);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::printf("attnx %d.%d.%d compare: n = %lld, d = %lld, seed = %llu, float, %d thread(s), best of %d\n",
                ATTNX_VERSION_MAJOR, ATTNX_VERSION_MINOR, ATTNX_VERSION_PATCH, static_cast<long long>(cfg.n),
                static_cast<long long>(cfg.d), static_cast<unsigned long long>(cfg.seed), threads, cfg.reps);
    // The reference: exact attention in double on the same (float) inputs.
    const Eigen::MatrixXd reference =
        attnx::exact_attention(x.q.cast<double>(), x.k.cast<double>(), x.v.cast<double>());

    std::vector<Method> methods = all_methods(cfg);
    if (!cfg.methods.empty()) {
        std::vector<Method> chosen;
        for (const std::string& name : cfg.methods) {
            const auto it = std::find_if(methods.begin(), methods.end(), [&](const Method& m) { return m.name == name; });
            if (it == methods.end()) {
                std::fprintf(stderr, "compare: unknown method '%s'; known:", name.c_str());
                for (const Method& m : methods) std::fprintf(stderr, " %s", m.name.c_str());
                std::fprintf(stderr, "\n");
                return 2;
            }
            chosen.push_back(*it);
        }
        methods = chosen;
        if (std::all_of(methods.begin(), methods.end(), [](const Method& m) { return !m.skipped.empty(); })) {
            std::fprintf(stderr, "compare: nothing to run at n = %lld: skipped %s\n", static_cast<long long>(cfg.n),
                         skipped_list(methods).c_str());
            return 2;
        }
    }

    struct Row {
        std::string name, params;
        double ms, speedup;
        attnx::ErrorMetrics err;
    };
    std::vector<Row> rows;
    double exact_ms = 0;
    for (const Method& m : methods) {
        if (!m.skipped.empty()) continue;
        Mat out;
        double best = 1e300;
        for (int r = 0; r < cfg.reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            out = m.run(x.q, x.k, x.v);
            best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        if (m.name == "exact-streaming") exact_ms = best;
        rows.push_back({m.name, m.params, best, 0, attnx::compare(out, reference)});
    }
    if (exact_ms == 0) {  // the speed-up baseline was not among --methods: time it now
        exact_ms = 1e300;
        for (int r = 0; r < cfg.reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const Mat out = attnx::Exact{}(x.q, x.k, x.v);
            exact_ms = std::min(exact_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    std::printf("\n%-22s %-28s %10s %9s %11s %11s %9s\n", "method", "parameters", "time ms", "speed-up", "rel Frob",
                "max abs", "row cos");
    for (Row& r : rows) {
        r.speedup = exact_ms / r.ms;
        std::printf("%-22s %-28s %10.2f %8.1fx %11.2e %11.2e %9.5f\n", r.name.c_str(), r.params.c_str(), r.ms,
                    r.speedup, r.err.rel_fro, r.err.max_abs, r.err.mean_row_cosine);
    }
    const std::string skip = skipped_list(methods);
    if (!skip.empty()) std::printf("\nskipped at n = %lld: %s\n", static_cast<long long>(cfg.n), skip.c_str());
    std::printf("\nerrors are against exact attention in double; speed-up is over exact-streaming (%.2f ms)\n",
                exact_ms);
    if (!cfg.json.empty()) {
        std::ofstream js(cfg.json);
        js << "{\n  \"n\": " << cfg.n << ", \"d\": " << cfg.d << ", \"seed\": " << cfg.seed
           << ", \"threads\": " << threads << ",\n  \"methods\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            js << "    {\"name\": \"" << r.name << "\", \"params\": \"" << r.params << "\", \"ms\": " << r.ms
               << ", \"speedup\": " << r.speedup << ", \"rel_fro\": " << r.err.rel_fro
               << ", \"max_abs\": " << r.err.max_abs << ", \"mean_row_cosine\": " << r.err.mean_row_cosine << "}"
               << (i + 1 < rows.size() ? ",\n" : "\n");
        }
        js << "  ],\n  \"skipped\": [";
        bool first = true;
        for (const Method& m : methods) {
            if (m.skipped.empty()) continue;
            js << (first ? "\n" : ",\n") << "    {\"name\": \"" << m.name << "\", \"reason\": \"" << m.skipped << "\"}";
            first = false;
        }
        js << (first ? "]\n}\n" : "\n  ]\n}\n");
        if (!js) {
            std::fprintf(stderr, "compare: could not write %s\n", cfg.json.c_str());
            return 1;
        }
        std::printf("wrote %s\n", cfg.json.c_str());
    }
    return 0;
}
