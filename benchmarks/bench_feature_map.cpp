// SPDX-License-Identifier: MIT
// Feature-map attention, d = d_v = 64, float, all OpenMP threads: Performer FAVOR+ (m = 256
// orthogonal features) and linear attention (elu + 1, C = 64), non-causal and causal (chunk 64),
// n in {1024 .. 65536}; a token-by-token causal loop (the structure of the reference CPU kernels)
// in the same run; one decode step after 1024 and after 32768 tokens; causal FAVOR+ at n = 2^20.
// Counters: tokens_per_s; GFLOPs on the nominal FLOPs of the algorithm (feature GEMMs 2·n·d·C
// each for Q and K with FAVOR+, the states 2·n·C·(d_v + 1), the outputs 2·n·C·(d_v + 1), and in
// the causal case the chunks' 2·n·T'·(C + d_v + 1), with T' the mean number of keys a query
// row's tril products are formed against at T = 64: attnx forms them in blocks of 2 packets of
// rows, each against the keys its last row sees, T' = 48 with AVX-512's 32-row blocks, 40 with
// AVX2's 16); gemm_ratio against Eigen GEMMs of the same
// shapes in this run; for n <= 4096 rel_err of FAVOR+ against exact softmax attention (double)
// on the demo's inputs; speedup_vs_loop, the same-run ratio to the token-by-token loop
// (token_loop.hpp: the reference kernels' structure in plain loops, auto-vectorised), and
// speedup_vs_scalar_loop, to the same loop compiled without auto-vectorisation (the reference
// kernels' scalar code), each the median of nine alternating pairs of timings (paired_speedup in
// gemm_baseline.hpp: robust to a VM whose speed drifts; each timing after a 20 ms pause, the loop
// keeping its buffers between calls as the kernel does); for the decode steps ns_per_token; peak_extra_MiB on one extra call.
//
// Targets (2-core machine): causal gemm_ratio >= 0.5 at n >= 4096; causal >= 10x faster than the
// token-by-token loop; time(65536) / time(4096) <= 18; a decode step's time independent of n.
#include <attnx/exact.hpp>
#include <attnx/feature_maps.hpp>
#include <attnx/linear_attention.hpp>
#include <attnx/metrics.hpp>
#include <attnx/random.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "../examples/example_inputs.hpp"
#include "gemm_baseline.hpp"
#include "memory_probe.hpp"
#include "token_loop.hpp"

namespace {

using attnx::Index;
constexpr Index kD = 64;
constexpr Index kFeatures = 256;  // FAVOR+ m
constexpr Index kChunk = 64;

using Features = attnx::PositiveRandomFeatures<float>;

const Features& favor() {
    static const Features f = [] {
        attnx::RandomFeatureOptions o;
        o.num_features = kFeatures;
        return Features::draw(kD, 11, o);
    }();
    return f;
}

const examples::Inputs<float>& inputs(Index n) {
    static std::map<Index, examples::Inputs<float>> cache;
    auto it = cache.find(n);
    if (it == cache.end()) it = cache.emplace(n, examples::realistic_inputs<float>(n, kD, kD, 7)).first;
    return it->second;
}

/// The loop, vectorised or scalar.
template <typename Map>
void run_loop(bool scalar, const Map& map, const attnx::Matrix<float>& q, const attnx::Matrix<float>& k,
              const attnx::Matrix<float>& v, attnx::Matrix<float>& out) {
    if (scalar)
        bench::token_loop_scalar(map, q, k, v, out);
    else
        bench::token_loop(map, q, k, v, out);
}

/// Nominal FLOPs and the GEMM shapes of the same work.
struct Work {
    double flops = 0;
    std::vector<bench::Gemm> shapes;
};

/// Mean keys per query row of a chunk of t tokens that the causal tril products are formed
/// against: blocks of detail::causal_row_block<float>() rows (2 packets: 16 with AVX2, 32 with
/// AVX-512), each against the keys its last row sees.
Index tril_keys(Index t) {
    const Index rb = attnx::detail::causal_row_block<float>();
    Index sum = 0;
    for (Index r0 = 0; r0 < t; r0 += rb) sum += std::min(rb, t - r0) * std::min(t, r0 + rb);
    return sum / t;
}

Work work_of(Index n, Index c_dim, bool features, bool causal) {
    Work w;
    if (features) w.shapes.insert(w.shapes.end(), {{n, kD, c_dim}, {n, kD, c_dim}});
    w.shapes.insert(w.shapes.end(), {{c_dim, n, kD + 1}, {n, c_dim, kD + 1}});
    if (causal) {
        const Index keys = tril_keys(kChunk);
        w.shapes.push_back({n, c_dim, keys});
        w.shapes.push_back({n, keys, kD + 1});
    }
    w.flops = bench::flops_of(w.shapes);
    return w;
}

template <typename Map>
void run_attention(benchmark::State& state, const Map& map, bool features) {
    const Index n = state.range(0);
    const bool causal = state.range(1) != 0;
    const auto& x = inputs(n);
    attnx::LinearAttentionOptions o;
    o.causal = causal;
    o.chunk = kChunk;
    attnx::Matrix<float> out(n, kD);
    const auto call = [&] {
        attnx::linear_attention(x.q, x.k, x.v, map, out, o);
        benchmark::DoNotOptimize(out.data());
    };
    bench::record_peak_extra(state, call);
    const double seconds = bench::timed_loop(state, call);
    state.SetLabel(causal ? "causal" : "non-causal");
    state.counters["tokens_per_s"] = static_cast<double>(n) / seconds;
    if (features && n <= 4096) {
        attnx::AttentionOptions eo;
        eo.causal = causal;
        const Eigen::MatrixXd ref =
            attnx::exact_attention(x.q.cast<double>(), x.k.cast<double>(), x.v.cast<double>(), eo);
        state.counters["rel_err"] = attnx::compare(out, ref).rel_fro;
    }
    if (causal && n <= 16384) {
        attnx::Matrix<float> loop_out(n, kD);
        for (const bool scalar : {false, true})
            state.counters[scalar ? "speedup_vs_scalar_loop" : "speedup_vs_loop"] = bench::paired_speedup(
                call, [&] {
                    run_loop(scalar, map, x.q, x.k, x.v, loop_out);
                    benchmark::DoNotOptimize(loop_out.data());
                });
    }
    const Work w = work_of(n, map.feature_dim(kD), features, causal);
    bench::report_flops(state, w.flops, seconds, w.shapes);
}

void BM_Performer(benchmark::State& state) { run_attention(state, favor(), true); }
void BM_Linear(benchmark::State& state) { run_attention(state, attnx::EluPlusOne{}, false); }

/// The token-by-token loop itself, for the record (the ratios above use the same code):
/// n, elu (else FAVOR+ m = 256), scalar (else vectorised).
void BM_TokenLoop(benchmark::State& state) {
    const Index n = state.range(0);
    const bool elu = state.range(1) != 0, scalar = state.range(2) != 0;
    const auto& x = inputs(n);
    attnx::Matrix<float> out(n, kD);
    const double seconds = bench::timed_loop(state, [&] {
        if (elu)
            run_loop(scalar, attnx::EluPlusOne{}, x.q, x.k, x.v, out);
        else
            run_loop(scalar, favor(), x.q, x.k, x.v, out);
        benchmark::DoNotOptimize(out.data());
    });
    state.SetLabel(std::string(elu ? "elu+1" : "favor+ m=256") + (scalar ? ", scalar" : ", vectorised"));
    state.counters["tokens_per_s"] = static_cast<double>(n) / seconds;
}

/// One decode step after `n` tokens were prefilled: O(C·(d + d_v)), independent of n.
template <typename Map>
void run_decode(benchmark::State& state, const Map& map) {
    const Index n = state.range(0);
    const auto& x = inputs(n);
    attnx::LinearAttentionState<float, Map> st(map, kD, kD);
    st.prefill(x.k, x.v);
    const attnx::Matrix<float> step_q = attnx::random_normal<float>(64, kD, 5, 1);
    const attnx::Matrix<float> step_k = attnx::random_normal<float>(64, kD, 5, 2);
    const attnx::Matrix<float> step_v = attnx::random_normal<float>(64, kD, 5, 3);
    Eigen::Matrix<float, 1, Eigen::Dynamic> row(kD);
    Index t = 0;
    const double seconds = bench::timed_loop(state, [&] {
        st.step(step_q.row(t % 64), step_k.row(t % 64), step_v.row(t % 64), row);
        benchmark::DoNotOptimize(row.data());
        ++t;
    });
    state.counters["ns_per_token"] = seconds * 1e9;
    state.counters["tokens_before"] = static_cast<double>(n);
}

void BM_DecodeStepPerformer(benchmark::State& state) { run_decode(state, favor()); }
void BM_DecodeStepLinear(benchmark::State& state) { run_decode(state, attnx::EluPlusOne{}); }

/// Causal FAVOR+ over 2^20 tokens: linear in n and finite (the inputs alone are 768 MiB).
void BM_PerformerCausalMillion(benchmark::State& state) {
    const Index n = Index(1) << 20;
    const attnx::Matrix<float> q = attnx::random_normal<float>(n, kD, 3, 1), k = attnx::random_normal<float>(n, kD, 3, 2),
                               v = attnx::random_normal<float>(n, kD, 3, 3);
    attnx::LinearAttentionOptions o;
    o.causal = true;
    attnx::Matrix<float> out(n, kD);
    const double seconds = bench::timed_loop(state, [&] {
        attnx::performer_attention(q, k, v, favor(), out, o);
        benchmark::DoNotOptimize(out.data());
    });
    state.counters["finite"] = out.allFinite() ? 1 : 0;
    state.counters["tokens_per_s"] = static_cast<double>(n) / seconds;
}

void sizes(benchmark::internal::Benchmark* b) {
    for (const int causal : {0, 1})
        for (Index n = 1024; n <= 65536; n *= 4) b->Args({n, causal});
}

}  // namespace

BENCHMARK(BM_Performer)->Apply(sizes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Linear)->Apply(sizes)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TokenLoop)->Args({4096, 0, 0})->Args({4096, 1, 0})->Args({4096, 0, 1})->Args({4096, 1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeStepPerformer)->Arg(1024)->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_DecodeStepLinear)->Arg(1024)->Arg(32768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_PerformerCausalMillion)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
