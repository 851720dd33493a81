// SPDX-License-Identifier: MIT
/// \file gemm_baseline.hpp
/// The yardstick of every attnx benchmark: the throughput of plain Eigen GEMMs of the same
/// shapes and FLOP count, measured in the same process and run. A benchmark reports its own
/// GFLOP/s and gemm_ratio = (its GFLOP/s) / (GEMM GFLOP/s), so a noisy or slower machine
/// moves both sides together and cannot fake or hide a result.
#ifndef ATTNX_BENCHMARKS_GEMM_BASELINE_HPP
#define ATTNX_BENCHMARKS_GEMM_BASELINE_HPP

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bench {

using Index = Eigen::Index;

/// One product C (m x n) = A (m x k) * B (k x n).
struct Gemm {
    Index m, k, n;
};

inline double flops_of(const std::vector<Gemm>& shapes) {
    double f = 0;
    for (const Gemm& g : shapes) f += 2.0 * static_cast<double>(g.m) * static_cast<double>(g.k) * static_cast<double>(g.n);
    return f;
}

/// Operands of a list of products. A product whose output would exceed 64 Mi entries is run
/// in row strips (same FLOPs, bounded memory).
class GemmSet {
public:
    explicit GemmSet(std::vector<Gemm> shapes) : m_shapes(std::move(shapes)) {
        for (const Gemm& g : m_shapes) {
            const Index rows = std::max<Index>(1, std::min<Index>(g.m, (Index(64) << 20) / std::max<Index>(1, g.n)));
            m_strip.push_back(rows);
            m_a.push_back(Eigen::MatrixXf::Random(rows, g.k));
            m_b.push_back(Eigen::MatrixXf::Random(g.k, g.n));
            m_c.push_back(Eigen::MatrixXf::Zero(rows, g.n));
        }
    }
    /// Runs every product once (Eigen's own threading).
    void run() {
        for (std::size_t s = 0; s < m_shapes.size(); ++s) {
            const Index full = m_shapes[s].m / m_strip[s], rest = m_shapes[s].m % m_strip[s];
            for (Index p = 0; p < full; ++p) m_c[s].noalias() = m_a[s] * m_b[s];
            if (rest > 0) m_c[s].topRows(rest).noalias() = m_a[s].topRows(rest) * m_b[s];
            benchmark::DoNotOptimize(m_c[s].data());
        }
    }
    double flops() const { return flops_of(m_shapes); }

private:
    std::vector<Gemm> m_shapes;
    std::vector<Index> m_strip;
    std::vector<Eigen::MatrixXf> m_a, m_b, m_c;
};

/// GFLOP/s of Eigen running the given products one after the other (float), best of `reps`
/// passes after one warm-up pass. Cached per shape list within the process.
inline double gemm_gflops(const std::vector<Gemm>& shapes, int reps = 5) {
    static std::map<std::string, double> cache;
    std::ostringstream key;
    for (const Gemm& g : shapes) key << g.m << "x" << g.k << "x" << g.n << ";";
    const auto it = cache.find(key.str());
    if (it != cache.end()) return it->second;
    GemmSet set(shapes);
    set.run();
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        set.run();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double gf = set.flops() / best * 1e-9;
    cache[key.str()] = gf;
    return gf;
}

/// Times the benchmark loop itself: seconds per iteration of `body`.
template <typename F>
double timed_loop(benchmark::State& state, F&& body) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        body();
        benchmark::ClobberMemory();
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return dt / static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
}

/// The same-run speedup of `fast` over `slow` on a machine whose speed drifts (a shared 2-core
/// VM: one thread's GEMM rate moved between 33 and 51 GFLOP/s from one 30 ms run to the next):
/// nine alternating pairs, `fast` repeated within a pair until it has run at least 50 ms, and
/// the median of the pairs' ratios slow / fast. One timing of each, seconds apart, can be off by
/// the drift itself. `slow` runs once untimed first (buffers it keeps are then in place, as
/// `fast`'s are), and each timing starts after a 20 ms pause: on the 2-core VMs a
/// single-threaded call that began right after 50 ms of two-thread calls took 1.8x as long
/// (97 against 54 ms for the scalar FAVOR+ token loop, AVX2 build), with a 5 ms pause it did not.
template <typename Fast, typename Slow>
double paired_speedup(Fast&& fast, Slow&& slow) {
    using clock = std::chrono::steady_clock;
    const auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
    std::vector<double> ratios;
    slow();
    for (int pair = 0; pair < 9; ++pair) {
        pause();
        const auto t0 = clock::now();
        int calls = 0;
        do {
            fast();
            ++calls;
        } while (std::chrono::duration<double>(clock::now() - t0).count() < 0.05);
        const double t_fast = std::chrono::duration<double>(clock::now() - t0).count() / calls;
        pause();
        const auto t1 = clock::now();
        slow();
        const double t_slow = std::chrono::duration<double>(clock::now() - t1).count();
        ratios.push_back(t_slow / t_fast);
    }
    std::sort(ratios.begin(), ratios.end());
    return ratios[ratios.size() / 2];
}

/// Sets the flops counters of a finished benchmark: GFLOPs (nominal FLOPs / seconds per
/// iteration), gemm_GFLOPs of the baseline shapes in this run, and gemm_ratio.
inline void report_flops(benchmark::State& state, double nominal_flops, double seconds,
                         const std::vector<Gemm>& baseline) {
    const double gf = nominal_flops / seconds * 1e-9;
    const double gemm = gemm_gflops(baseline);
    state.counters["GFLOPs"] = gf;
    state.counters["gemm_GFLOPs"] = gemm;
    state.counters["gemm_ratio"] = gf / gemm;
}

inline int threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// Adds the machine description that every attnx benchmark prints next to its numbers.
inline void add_context() {
    benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                     std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                     std::to_string(EIGEN_MINOR_VERSION));
    benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
    benchmark::AddCustomContext("eigen_nb_threads", std::to_string(Eigen::nbThreads()));
    benchmark::AddCustomContext("omp_threads", std::to_string(threads()));
    benchmark::AddCustomContext("compiler", __VERSION__);
}

}  // namespace bench

#endif  // ATTNX_BENCHMARKS_GEMM_BASELINE_HPP
