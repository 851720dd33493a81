// SPDX-License-Identifier: MIT
// Block-sparse attention with the default BigBird layout (b = 64, window 3, 2 global, 3 random
// blocks) and a Longformer layout (window 3 blocks + 64 global tokens), n in {1024 .. 65536},
// d = 64, float, all OpenMP threads. The layout is built once, outside the timing.
//
// Counters:
//  - density: kept entries / n²; GFLOPs on the kept FLOPs 4·kept_entries·d (QKᵀ and PV of the
//    kept blocks; the exp and the mask are not counted);
//  - gemm_ratio against the same-run throughput of Eigen GEMMs with the SAME FLOPs and the
//    shapes dense attention would have if every query saw only as many keys as the layout keeps
//    on average: S = Q (n x d) · K̂ᵀ (d x k̄), then P (n x k̄) · V̂ (k̄ x d), k̄ = kept_entries / n.
//    This is the work of the kept blocks done as two large GEMMs (a perfect gather), so
//    gemm_ratio = 1 would mean the sparsity costs nothing beyond its FLOPs, and time falls in
//    proportion to density when gemm_ratio stays flat across n. The products run in strips of
//    at most 8192 rows (same FLOPs): Eigen 3.4's own 2-thread GEMM of a 32768 x 319 by 319 x 64
//    product runs at ~18 GFLOP/s on the 2-core machine against ~95 single-threaded, which would
//    make an unstripped yardstick meaninglessly slow at n >= 32768;
//  - err_vs_exact (n <= 8192): relative Frobenius error against exact attention (streaming,
//    float) on the examples' "realistic" inputs (smooth latent factors), computed once outside
//    the timing loop;
//  - speedup_vs_exact (n <= 8192): time of the streaming exact kernel on the same inputs (best of
//    3 calls, same run) over the block-sparse time. BM_ExactStreaming/8192 prints the same
//    kernel as its own row.
//
// Targets (2-core machine): gemm_ratio >= 0.5; speedup_vs_exact >= 6 at n = 8192.
#include <attnx/bigbird.hpp>
#include <attnx/exact.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "../examples/example_inputs.hpp"
#include "gemm_baseline.hpp"
#include "memory_probe.hpp"

namespace {

using attnx::Index;
using Mat = attnx::Matrix<float>;
constexpr Index kD = 64;
constexpr Index kBlock = 64;

attnx::BlockLayout layout_for(Index n, int kind) {
    if (kind == 0) {
        attnx::BigBirdOptions o;  // block 64, window 3, global 2, random 3, seed 0
        o.block = kBlock;
        return attnx::BlockLayout::bigbird(n, o);
    }
    return attnx::BlockLayout::longformer(n, kBlock, 3, 64);
}

/// The yardstick (see the top of the file): S = Q K̂ᵀ and P V̂ for n queries against
/// k̄ = kept / n keys, in strips of at most 8192 query rows.
std::vector<bench::Gemm> same_flop_gemms(Index n, double kept) {
    const Index kbar = std::max<Index>(1, static_cast<Index>(std::llround(kept / static_cast<double>(n))));
    std::vector<bench::Gemm> shapes;
    for (Index i0 = 0; i0 < n; i0 += 8192) {
        const Index rows = std::min<Index>(8192, n - i0);
        shapes.push_back({rows, kD, kbar});
        shapes.push_back({rows, kbar, kD});
    }
    return shapes;
}

/// Best-of-3 seconds of the streaming exact kernel (one warm-up call first).
double exact_seconds(const Mat& q, const Mat& k, const Mat& v, Mat& out) {
    attnx::exact_attention(q, k, v, out);
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        attnx::exact_attention(q, k, v, out);
        benchmark::DoNotOptimize(out.data());
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

void BM_BlockSparse(benchmark::State& state) {
    const Index n = state.range(0);
    const int kind = static_cast<int>(state.range(1));
    const auto x = examples::realistic_inputs<float>(n, kD, kD, 1);
    const attnx::BlockLayout layout = layout_for(n, kind);
    Mat out(n, kD);
    bench::record_peak_extra(state, [&] { attnx::block_sparse_attention(x.q, x.k, x.v, layout, out); });
    double exact_s = 0;
    if (n <= 8192) {
        Mat exact(n, kD);
        exact_s = exact_seconds(x.q, x.k, x.v, exact);
        state.counters["err_vs_exact"] = attnx::compare(out, exact).rel_fro;
    }
    const double seconds = bench::timed_loop(state, [&] {
        attnx::block_sparse_attention(x.q, x.k, x.v, layout, out);
        benchmark::DoNotOptimize(out.data());
    });
    state.SetLabel(kind == 0 ? "bigbird w3 g2 r3" : "longformer w3 + 64 global");
    const double kept = static_cast<double>(layout.kept_entries());
    state.counters["density"] = layout.density();
    if (exact_s > 0) state.counters["speedup_vs_exact"] = exact_s / seconds;
    bench::report_flops(state, 4.0 * kept * kD, seconds, same_flop_gemms(n, kept));
}

// The streaming exact kernel at n = 8192 on the same inputs, as its own row.
void BM_ExactStreaming(benchmark::State& state) {
    const Index n = state.range(0);
    const auto x = examples::realistic_inputs<float>(n, kD, kD, 1);
    Mat out(n, kD);
    attnx::exact_attention(x.q, x.k, x.v, out);
    const double seconds = bench::timed_loop(state, [&] {
        attnx::exact_attention(x.q, x.k, x.v, out);
        benchmark::DoNotOptimize(out.data());
    });
    const double flops = 4.0 * static_cast<double>(n) * static_cast<double>(n) * kD;
    bench::report_flops(state, flops, seconds, {{n, kD, n}, {n, n, kD}});
}

void sizes(benchmark::internal::Benchmark* b) {
    for (int kind : {0, 1})
        for (Index n : {1024, 2048, 4096, 8192, 16384, 32768, 65536}) b->Args({n, kind});
}

}  // namespace

BENCHMARK(BM_BlockSparse)->Apply(sizes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ExactStreaming)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
