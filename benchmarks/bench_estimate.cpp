// SPDX-License-Identifier: MIT
// attnx::estimate_error at n = 65536, d = 64, s = 256 (float, all OpenMP threads, the demo's
// realistic inputs), for Nyström m = 64 and 128, Linformer k = 256 and BigBird (b 64, w 3, g 2,
// r 3). Each benchmark times, in the same run and on the same inputs, the mechanism alone
// (approx_ms, best of 5) and estimate_error (estimate_ms, best of 5: the mechanism on the whole
// input plus 256 exact rows, 4·s·n·d = 4.3 GFLOP; loop_ms is the benchmark loop's mean), and reports
//   ratio_to_approx = estimate time / mechanism time      (target <= 2),
//   exact_rows_ms   = the 256 exact rows alone (the estimate on a precomputed output),
//   rel_fro, ci_low, ci_high: the estimate itself (the true error at this n is out of reach).
#include <attnx/estimate.hpp>
#include <attnx/mechanisms.hpp>

#include <chrono>

#include "../examples/example_inputs.hpp"
#include "gemm_baseline.hpp"

namespace {

constexpr attnx::Index kN = 65536, kD = 64, kSamples = 256;

const examples::Inputs<float>& inputs() {
    static const examples::Inputs<float> x = examples::realistic_inputs<float>(kN, kD, kD, 7);
    return x;
}

template <typename F>
double best_ms(int reps, F&& f) {
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

template <typename M>
void run(benchmark::State& state, const M& mech) {
    const auto& x = inputs();
    attnx::Matrix<float> out(kN, kD);
    mech(x.q, x.k, x.v, out);  // warm-up
    const double approx_ms = best_ms(5, [&] {
        mech(x.q, x.k, x.v, out);
        benchmark::DoNotOptimize(out.data());
    });
    attnx::EstimateOptions eo;
    eo.samples = kSamples;
    eo.seed = 1;
    attnx::ErrorEstimate e;
    const double rows_ms = best_ms(5, [&] { e = attnx::estimate_error(mech, x.q, x.k, x.v, out, eo); });
    const double seconds = bench::timed_loop(state, [&] {
        e = attnx::estimate_error(mech, x.q, x.k, x.v, eo);
        benchmark::DoNotOptimize(&e);
    });
    state.counters["approx_ms"] = approx_ms;
    state.counters["exact_rows_ms"] = rows_ms;
    const double estimate_ms = best_ms(5, [&] { e = attnx::estimate_error(mech, x.q, x.k, x.v, eo); });
    state.counters["estimate_ms"] = estimate_ms;
    state.counters["loop_ms"] = seconds * 1e3;
    state.counters["ratio_to_approx"] = estimate_ms / approx_ms;  // best of 5 on both sides
    state.counters["rel_fro"] = e.rel_fro;
    state.counters["ci_low"] = e.ci_low;
    state.counters["ci_high"] = e.ci_high;
    state.SetLabel(mech.name() + " " + mech.parameters());
}

void BM_EstimateNystrom(benchmark::State& state) {
    attnx::NystromOptions o;
    o.num_landmarks = state.range(0);
    run(state, attnx::Nystrom{o});
}

void BM_EstimateLinformer(benchmark::State& state) {
    run(state, attnx::Linformer<float>(attnx::LinformerProjection<float>::gaussian(state.range(0), kN, 1)));
}

void BM_EstimateBigBird(benchmark::State& state) { run(state, attnx::BigBird{attnx::BigBirdOptions{}, {}}); }

}  // namespace

BENCHMARK(BM_EstimateNystrom)->Arg(64)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EstimateLinformer)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EstimateBigBird)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
