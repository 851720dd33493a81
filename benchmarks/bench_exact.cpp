// SPDX-License-Identifier: MIT
// Exact attention, both kernels, n in {512 .. 16384}, d = 64, float, all OpenMP threads.
// Counters: GFLOPs on the nominal 4·n²·d, gemm_ratio against Eigen GEMMs of the same shapes
// (S = Q Kᵀ, then P V, in row strips) measured in this run, and peak_extra_MiB: peak heap
// beyond the inputs and the output, measured on one extra call.
//
// Targets (2-core machine): streaming gemm_ratio >= 0.6 at n >= 2048; streaming
// peak_extra_MiB < 64 at n = 16384 (materialized needs 1 GiB there).
#include <attnx/exact.hpp>
#include <attnx/random.hpp>

#include "gemm_baseline.hpp"
#include "memory_probe.hpp"

namespace {

constexpr attnx::Index kD = 64;

void BM_Exact(benchmark::State& state) {
    const attnx::Index n = state.range(0);
    attnx::ExactOptions o;
    o.kernel = state.range(1) == 0 ? attnx::ExactKernel::Streaming : attnx::ExactKernel::Materialized;
    const attnx::Matrix<float> q = attnx::random_normal<float>(n, kD, 1, 1);
    const attnx::Matrix<float> k = attnx::random_normal<float>(n, kD, 1, 2);
    const attnx::Matrix<float> v = attnx::random_normal<float>(n, kD, 1, 3);
    attnx::Matrix<float> out(n, kD);
    bench::record_peak_extra(state, [&] { attnx::exact_attention(q, k, v, out, o); });
    const double seconds = bench::timed_loop(state, [&] {
        attnx::exact_attention(q, k, v, out, o);
        benchmark::DoNotOptimize(out.data());
    });
    state.SetLabel(o.kernel == attnx::ExactKernel::Streaming ? "streaming" : "materialized");
    const double flops = 4.0 * static_cast<double>(n) * static_cast<double>(n) * kD;
    bench::report_flops(state, flops, seconds, {{n, kD, n}, {n, n, kD}});
}

// The yardstick on its own row: the two GEMMs of unfused attention, same FLOPs (4·n²·d).
void BM_Gemm(benchmark::State& state) {
    const attnx::Index n = state.range(0);
    bench::GemmSet set({{n, kD, n}, {n, n, kD}});
    set.run();  // warm-up: first touch of the operands
    const double seconds = bench::timed_loop(state, [&] { set.run(); });
    state.counters["GFLOPs"] = set.flops() / seconds * 1e-9;
}

void sizes(benchmark::internal::Benchmark* b) {
    for (attnx::Index n : {512, 1024, 2048, 4096, 8192, 16384})
        for (int kernel : {0, 1}) b->Args({n, kernel});
}

}  // namespace

BENCHMARK(BM_Exact)->Apply(sizes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Gemm)->Arg(512)->Arg(1024)->Arg(2048)->Arg(4096)->Arg(8192)->Arg(16384)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
