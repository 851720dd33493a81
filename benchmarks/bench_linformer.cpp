// SPDX-License-Identifier: MIT
// Linformer attention, d = 64, float, all OpenMP threads: n in {512 .. 65536} x k in {64, 128, 256},
// Gaussian projections (separate E and F, drawn outside the timing).
// Counters: tokens_per_s; GFLOPs on the nominal 8·n·k·d; gemm_ratio against Eigen GEMMs of the
// same shapes (E K, F V, Q K̄ᵀ, P V̄) in this run; for n <= 8192 rel_err, the relative Frobenius
// error against exact attention in double (computed once, outside the timing); for k = 256,
// speedup_vs_torch = PyTorch's median time (shared/peers/README.md: torch 1.13 on CPU, 2 threads,
// OpenBLAS, glibc with transparent huge pages, measured on a machine of this kind) / ours;
// peak_extra_MiB, heap beyond inputs, projection and output, on one extra call.
//
// Targets (2-core machine): time(65536) / time(4096) <= 18; gemm_ratio >= 0.5; >= 2x faster than
// PyTorch at its best (speedup_vs_torch >= 2, e.g. 22.7 ms at n = 16384, k = 256).
#include <attnx/exact.hpp>
#include <attnx/linformer.hpp>
#include <attnx/random.hpp>

#include <map>

#include "../examples/example_inputs.hpp"
#include "gemm_baseline.hpp"
#include "memory_probe.hpp"

namespace {

constexpr attnx::Index kD = 64;

// PyTorch Linformer (k = 256, d = 64, float32, 2 threads, glibc-thp) median ms, from
// /work/shared/peers/README.md ("PyTorch figures to beat"). Reference figures, not measured here.
double torch_ms_k256(attnx::Index n) {
    static const std::map<attnx::Index, double> ms = {{512, 0.93},  {1024, 1.69},  {2048, 2.90},
                                                      {4096, 5.67}, {8192, 26.7}, {16384, 22.7}};
    const auto it = ms.find(n);
    return it == ms.end() ? 0.0 : it->second;
}

void BM_Linformer(benchmark::State& state) {
    const attnx::Index n = state.range(0), k = state.range(1);
    const auto x = examples::realistic_inputs<float>(n, kD, kD, 7);
    const auto proj = attnx::LinformerProjection<float>::gaussian(k, n, 11);
    attnx::Matrix<float> out(n, kD);
    bench::record_peak_extra(state, [&] { attnx::linformer_attention(x.q, x.k, x.v, proj, out); });
    const double seconds = bench::timed_loop(state, [&] {
        attnx::linformer_attention(x.q, x.k, x.v, proj, out);
        benchmark::DoNotOptimize(out.data());
    });
    state.SetLabel("k=" + std::to_string(k));
    state.counters["tokens_per_s"] = static_cast<double>(n) / seconds;
    if (n <= 8192) {
        const Eigen::MatrixXd ref = attnx::exact_attention(x.q.cast<double>(), x.k.cast<double>(), x.v.cast<double>());
        state.counters["rel_err"] = attnx::compare(out, ref).rel_fro;
    }
    if (k == 256 && torch_ms_k256(n) > 0) state.counters["speedup_vs_torch"] = torch_ms_k256(n) * 1e-3 / seconds;
    const double flops = 8.0 * static_cast<double>(n) * static_cast<double>(k) * kD;
    bench::report_flops(state, flops, seconds, {{k, n, kD}, {k, n, kD}, {n, kD, k}, {n, k, kD}});
}

void sizes(benchmark::internal::Benchmark* b) {
    for (attnx::Index k : {64, 128, 256})
        for (attnx::Index n = 512; n <= 65536; n *= 2) b->Args({n, k});
}

}  // namespace

BENCHMARK(BM_Linformer)->Apply(sizes)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
