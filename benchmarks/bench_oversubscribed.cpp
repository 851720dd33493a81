// SPDX-License-Identifier: MIT
// attnx on a busy machine: every mechanism at n in {1024, 8192} (d = 64, float), while one
// busy-looping competitor process per core runs, started and stopped by this benchmark.
//
// Each case times, interleaved call by call, the same call with all OpenMP threads (the
// default, T = omp_get_num_procs()) and with 1 thread, first on the idle machine and then
// with the competitors running. The benchmark's own time is the T-thread call under load;
// the counters are ratios of mean times in the same run:
//   busy_T_over_busy_1   T threads under load / 1 thread under load  (target <= 1)
//   busy_T_over_idle_T   T threads under load / T threads idle       (target <= 2)
//   busy_1_over_idle_1   1 thread under load / 1 thread idle          (the fair share: about 2)
// plus the mean times in ms. Means, not minima: a server sees the mean, including the calls
// where a thread of the team waited for a scheduler slice. Under load, the timed calls follow
// 1 s of untimed calls: the steady state of a busy server, after attnx's threading has seen the
// load (detail/parallel.hpp rule 9; attnx::set_adaptive_threading).
//
// Competitors are children of this process (fork), each a tight loop; they are killed when
// the case ends, also when the benchmark is interrupted (SIGINT/SIGTERM handler).
#include <attnx/attnx.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../examples/example_inputs.hpp"
#include "gemm_baseline.hpp"

namespace {

using attnx::Index;
using Mat = attnx::Matrix<float>;
constexpr Index kD = 64;

int cores() {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#endif
}

void set_threads(int t) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#else
    (void)t;
#endif
}

// The pids of running competitors, for the signal handler (async-signal-safe: kill only).
std::atomic<pid_t> g_children[256];
std::atomic<int> g_count{0};

void kill_children() {
    const int n = g_count.load();
    for (int i = 0; i < n; ++i) {
        const pid_t p = g_children[i].load();
        if (p > 0) kill(p, SIGKILL);
    }
}

extern "C" void on_signal(int sig) {
    kill_children();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

/// One busy-looping child process per core while alive.
class Competitors {
public:
    explicit Competitors(int count) {
        for (int i = 0; i < count && i < 256; ++i) {
            const pid_t p = fork();
            if (p == 0) {
                volatile unsigned long x = 0;
                for (;;) x = x + 1;  // killed by the parent
            }
            if (p < 0) break;
            g_children[g_count.fetch_add(1)].store(p);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let them reach the CPUs
    }
    ~Competitors() {
        kill_children();
        const int n = g_count.exchange(0);
        for (int i = 0; i < n; ++i) {
            const pid_t p = g_children[i].exchange(0);
            if (p > 0) waitpid(p, nullptr, 0);
        }
    }
    Competitors(const Competitors&) = delete;
    Competitors& operator=(const Competitors&) = delete;
};

double seconds_of(const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Mean seconds of `calls` calls with t threads, T threads interleaved with 1 thread.
struct Means {
    double many = 0, one = 0;
};
Means interleaved(const std::function<void()>& call, int team, int calls, benchmark::State* state) {
    Means m;
    for (int c = 0; c < calls; ++c) {
        set_threads(1);
        m.one += seconds_of(call);
        set_threads(team);
        const double t = seconds_of(call);
        m.many += t;
        if (state != nullptr) state->SetIterationTime(t);
    }
    m.one /= calls;
    m.many /= calls;
    return m;
}

void run_case(benchmark::State& state, const std::function<void(const Mat&, const Mat&, const Mat&, Mat&)>& mech) {
    const Index n = state.range(0);
    const auto x = examples::realistic_inputs<float>(n, kD, kD, 7);
    Mat out(n, kD);
    const auto call = [&] {
        mech(x.q, x.k, x.v, out);
        benchmark::DoNotOptimize(out.data());
    };
    const int team = cores();
    // A busy-machine back-off left by the previous case's competitors ends here (the idle
    // times below are with the default threading, as a user on an idle machine gets them).
    attnx::set_adaptive_threading(false);
    attnx::set_adaptive_threading(true);
    call();  // warm-up: first touch of out and of the workspaces
    const int calls = static_cast<int>(std::max<benchmark::IterationCount>(1, state.max_iterations));
    const Means idle = interleaved(call, team, calls, nullptr);
    Means busy;
    {
        Competitors competitors(team);
        // Steady state on a busy machine: the threading has seen the load (late teams start
        // attnx's back-off, which lengthens while the load lasts); 1 s of calls first.
        const auto warm_end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        set_threads(team);
        while (std::chrono::steady_clock::now() < warm_end) call();
        busy.one = busy.many = 0;
        int done = 0;
        for (auto _ : state) {
            const Means one_pair = interleaved(call, team, 1, &state);
            busy.one += one_pair.one;
            busy.many += one_pair.many;
            ++done;
        }
        busy.one /= std::max(1, done);
        busy.many /= std::max(1, done);
    }
    set_threads(team);
    state.counters["threads"] = team;
    state.counters["idle_1_ms"] = idle.one * 1e3;
    state.counters["idle_T_ms"] = idle.many * 1e3;
    state.counters["busy_1_ms"] = busy.one * 1e3;
    state.counters["busy_T_ms"] = busy.many * 1e3;
    state.counters["busy_T_over_busy_1"] = busy.many / busy.one;
    state.counters["busy_T_over_idle_T"] = busy.many / idle.many;
    state.counters["busy_1_over_idle_1"] = busy.one / idle.one;
}

template <typename Mechanism>
std::function<void(const Mat&, const Mat&, const Mat&, Mat&)> wrap(Mechanism mech) {
    return [mech](const Mat& q, const Mat& k, const Mat& v, Mat& out) { mech(q, k, v, out); };
}

void BM_Exact(benchmark::State& s) { run_case(s, wrap(attnx::Exact{})); }
void BM_Nystrom64(benchmark::State& s) {
    attnx::NystromOptions o;
    o.num_landmarks = 64;
    run_case(s, wrap(attnx::Nystrom{o}));
}
void BM_Linformer64(benchmark::State& s) {
    run_case(s, wrap(attnx::Linformer<float>(attnx::LinformerProjection<float>::gaussian(64, s.range(0), 1))));
}
void BM_BigBird(benchmark::State& s) { run_case(s, wrap(attnx::BigBird{})); }
void BM_LinearElu(benchmark::State& s) { run_case(s, wrap(attnx::Linear<>{})); }
void BM_Performer256(benchmark::State& s) {
    attnx::RandomFeatureOptions fo;
    fo.num_features = 256;
    run_case(s, wrap(attnx::Performer<float>{attnx::PositiveRandomFeatures<float>::draw(kD, 1, fo), {}}));
}

}  // namespace

// Iterations() applies to the whole family; register n = 1024 and n = 8192 separately.
#define ATTNX_OVERSUB(fn, it1024, it8192)                                                                   \
    BENCHMARK(fn)->Arg(1024)->Iterations(it1024)->UseManualTime()->Unit(benchmark::kMillisecond);         \
    BENCHMARK(fn)->Arg(8192)->Iterations(it8192)->UseManualTime()->Unit(benchmark::kMillisecond)

ATTNX_OVERSUB(BM_Exact, 50, 3);
ATTNX_OVERSUB(BM_Nystrom64, 200, 20);
ATTNX_OVERSUB(BM_Linformer64, 200, 20);
ATTNX_OVERSUB(BM_BigBird, 100, 20);
ATTNX_OVERSUB(BM_LinearElu, 200, 20);
ATTNX_OVERSUB(BM_Performer256, 100, 20);

int main(int argc, char** argv) {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    benchmark::Initialize(&argc, argv);
    bench::add_context();
    benchmark::AddCustomContext("competitors", std::to_string(cores()) + " busy-looping processes");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
