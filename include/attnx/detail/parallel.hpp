// SPDX-License-Identifier: MIT
/// \file detail/parallel.hpp
/// The threading policy of attnx, in one place. Not API, except attnx::set_adaptive_threading
/// and attnx::adaptive_threading at the end (every attnx header includes this one).
///
/// 1. OpenMP is optional: every pragma goes through ATTNX_OMP(...), which expands to
///    `#pragma omp ...` when compiled with OpenMP and to nothing otherwise. Without OpenMP every
///    kernel runs on one thread and gives the same results.
/// 2. Kernels built from Eigen products over tiles (the online-softmax kernel, Linformer's
///    projection, the block-sparse kernel) always run inside a parallel region, even for one
///    tile: inside a team of several threads Eigen's products run single-threaded, with the same
///    blocking (hence the same rounding) for any thread count.
/// 3. Plain passes over memory (the NaN/magnitude scans) run in parallel only above
///    min_parallel_scan entries; element-wise passes with real arithmetic per entry (exp,
///    random draws) only above min_parallel_compute entries. Below that a thread team costs
///    more than it saves.
/// 4. The work split of every parallel loop depends on the sizes only, never on the thread
///    count, and partial results are combined in a fixed order: results are bit-identical for
///    any number of threads (except the materialized exact kernel, whose Eigen GEMM blocks by
///    thread count). Where a split does follow the thread count (the causal feature-map
///    windows and their runs of chunks per thread), every value is still computed from the same operands in the same order.
/// 5. Nesting: inside an active parallel region of the caller, attnx's regions get one thread
///    each (OpenMP's default of one active level); nothing in attnx raises that level.
/// 6. No exception leaves a parallel region: workspaces are sized and allocated before the
///    region or at its top, and everything that can throw runs outside.
/// 7. A pass with Eigen products that must run on one thread does so through a SerialScope
///    (below), never an `if(false)` clause or num_threads(1) alone: in a team of one, Eigen sees
///    no enclosing team and threads its products again. Plain loops (rule 3) may use `if`.
/// 8. Few regions per call: every barrier of a team waits for its slowest thread, and on a busy
///    machine a descheduled thread makes each barrier wait a scheduler slice. A call opens one
///    region per pass over its inputs (small merges run inside it, after a barrier), and a call
///    too small to pay for a team (min_parallel_flops) runs on the calling thread alone.
/// 9. A busy machine: when two of the last three teams waited for the scheduler, attnx's own
///    regions run as teams of one for a back-off window (TeamProbe, parallel_region; plain loops test
///    machine_busy() in their `if`; attnx::set_adaptive_threading). Only work whose result does
///    not depend on the team size moves: Eigen's own threading outside the regions is untouched,
///    so every result stays a function of the inputs and the thread count, never of the timing.
#ifndef ATTNX_DETAIL_PARALLEL_HPP
#define ATTNX_DETAIL_PARALLEL_HPP

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>

#include "attnx/core.hpp"

#if defined(__linux__)
#include <sys/resource.h>
#include <time.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#define ATTNX_PRAGMA_(x) _Pragma(#x)
/// `ATTNX_OMP(parallel for schedule(static))` is `#pragma omp parallel for schedule(static)`
/// under OpenMP and nothing without it.
#define ATTNX_OMP(...) ATTNX_PRAGMA_(omp __VA_ARGS__)
#else
#define ATTNX_OMP(...)
#endif

namespace attnx {
namespace detail {

/// Entries below which a plain pass over memory (a scan) runs on one thread.
constexpr Index min_parallel_scan = Index(1) << 18;

/// Entries below which an element-wise pass with arithmetic per entry (exp, a random draw)
/// runs on one thread.
constexpr Index min_parallel_compute = 65536;

/// The number of threads a parallel region opened here gets at most: 1 inside an active region
/// of the caller when nesting is off (rule 5), omp_get_max_threads() otherwise, 1 without
/// OpenMP. Per-thread workspaces are allocated for this many threads before the region, which
/// then runs with num_threads(team_size()), so thread_index() < team_size() always holds.
inline int team_size() {
#ifdef _OPENMP
    if (omp_get_active_level() >= omp_get_max_active_levels()) return 1;
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// The number of threads in the innermost team: inside a region, the team the runtime granted,
/// which may be smaller than the team_size() asked for (1 without OpenMP).
inline int team_threads() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/// This thread's number in the innermost team (0 without OpenMP).
inline int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/// Carries the first exception thrown inside a parallel region out of it (rule 6): each loop
/// body runs through run(), which catches anything (e.g. std::bad_alloc from an Eigen product
/// that needs heap memory for its blocking), and once one has failed the remaining bodies are
/// skipped; after the region, rethrow() throws it on the calling thread. An exception that
/// escaped a region would call std::terminate.
class RegionErrors {
public:
    template <typename F>
    void run(F&& f) noexcept {
        if (m_failed.load(std::memory_order_relaxed)) return;
        try {
            f();
        } catch (...) {
            capture();
        }
    }
    /// True if a body threw (after the region: rethrow() will throw).
    bool failed() const { return m_error != nullptr; }
    /// Throws the captured exception, if any; call after the region.
    void rethrow() const {
        if (m_error) std::rethrow_exception(m_error);
    }

private:
    void capture() noexcept {
        ATTNX_OMP(critical(attnx_region_errors))
        {
            if (!m_error) m_error = std::current_exception();
        }
        m_failed.store(true, std::memory_order_relaxed);
    }

    std::exception_ptr m_error;
    std::atomic<bool> m_failed{false};
};

/// Rule 7: while a SerialScope(true) lives, the calling thread's OpenMP thread count (the
/// nthreads-var ICV, which is per thread) is 1. Every region it opens is then a team of one,
/// which costs no wake-up and no barrier wait, and Eigen's products run single-threaded (Eigen
/// asks omp_get_max_threads()) with the same blocking as inside a team of several threads, hence
/// the same rounding. The count is restored when the scope ends, also by an exception.
/// SerialScope(false) does nothing. Without OpenMP it does nothing either.
class SerialScope {
public:
    explicit SerialScope(bool serial = true) {
#ifdef _OPENMP
        if (serial) {
            const int threads = omp_get_max_threads();
            if (threads > 1) {
                m_saved = threads;
                omp_set_num_threads(1);
            }
        }
#else
        (void)serial;
#endif
    }
    ~SerialScope() {
#ifdef _OPENMP
        if (m_saved > 0) omp_set_num_threads(m_saved);
#endif
    }
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;

private:
#ifdef _OPENMP
    int m_saved = 0;
#endif
};

/// Runs f on the calling thread with single-threaded Eigen products (a SerialScope): for the
/// small (m x m) products of a call, where Eigen's own threading costs more than it gains.
template <typename F>
void with_serial_products(F&& f) {
    SerialScope serial;
    f();
}

/// Rule 9: a busy machine. After a late team (a thread of it waited for the scheduler: other
/// processes want the cores) that makes two of the last three late, attnx's regions run on the
/// calling thread alone for a back-off window: 100 ms, doubled after each further late team up to
/// 3.2 s, and reset by a team that ran cleanly. The first call after a window tries a team again.
/// One late team among clean ones opens no window: an idle virtual machine stalls a thread for a
/// few milliseconds now and then (on a 2-core VM, about once a second), and backing off for
/// 100 ms after each such stall cost more than the stall. A busy machine makes most teams late,
/// and alternating late and clean teams still count. Results do not change (rule 4), only who
/// computes them. See set_adaptive_threading.
struct BusyState {
    std::atomic<std::int64_t> until_ns{0};     ///< steady-clock time before which calls run serially
    std::atomic<int> level{0};                 ///< back-off doublings so far
    std::atomic<unsigned> recent{0};           ///< the last three teams, newest in bit 0: 1 = late
    std::atomic<bool> enabled{true};
    std::atomic<std::int64_t> last_team_ns{0};  ///< when the last timed team ended (0: never)
};
inline BusyState& busy_state() {
    static BusyState state;  // one per program (an inline function's static)
    return state;
}

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// True inside a back-off window (rule 9).
inline bool machine_busy() {
    const BusyState& b = busy_state();
    return b.enabled.load(std::memory_order_relaxed) && now_ns() < b.until_ns.load(std::memory_order_relaxed);
}

/// Records a team's outcome in BusyState::recent; returns how many of the last three were late.
inline int note_team(bool late) {
    BusyState& b = busy_state();
    unsigned old = b.recent.load(std::memory_order_relaxed), r = 0;
    do {
        r = ((old << 1) | (late ? 1u : 0u)) & 7u;
    } while (!b.recent.compare_exchange_weak(old, r, std::memory_order_relaxed));
    return int(r & 1u) + int((r >> 1) & 1u) + int((r >> 2) & 1u);
}

/// Records a late team (rule 9): opens or lengthens the back-off window if two of the last three
/// teams were late (this one included).
inline void note_late_team() {
    if (note_team(true) < 2) return;
    BusyState& b = busy_state();
    constexpr std::int64_t base_ns = 100'000'000;  // 100 ms
    constexpr int max_level = 5;                   // 100 ms << 5 = 3.2 s
    const int level = std::min(b.level.load(std::memory_order_relaxed), max_level);
    b.until_ns.store(now_ns() + (base_ns << level), std::memory_order_relaxed);
    b.level.store(std::min(level + 1, max_level), std::memory_order_relaxed);
}

/// Records a team that ran cleanly (rule 9): the doubling starts again from 100 ms.
inline void note_clean_team() {
    note_team(false);
    busy_state().level.store(0, std::memory_order_relaxed);
}

/// The CPU time (ns) and the involuntary context switches of the calling thread so far; false
/// where the platform does not tell (then only late entries are detected). The CPU time comes
/// from CLOCK_THREAD_CPUTIME_ID (the scheduler's own runtime, to the nanosecond), not from
/// getrusage: its user + system times are tick samples rescaled, and ran up to 3 ms behind or
/// ahead of the runtime on a 2-core VM, which made clean teams look preempted.
inline bool thread_usage(std::int64_t& cpu_ns, long& preempted) {
#if defined(__linux__) && defined(RUSAGE_THREAD) && defined(CLOCK_THREAD_CPUTIME_ID)
    rusage u;
    timespec cpu;
    if (getrusage(RUSAGE_THREAD, &u) != 0 || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) != 0) return false;
    cpu_ns = static_cast<std::int64_t>(cpu.tv_sec) * 1'000'000'000 + static_cast<std::int64_t>(cpu.tv_nsec);
    preempted = u.ru_nivcsw;
    return true;
#else
    (void)cpu_ns;
    (void)preempted;
    return false;
#endif
}

/// What the threads of one team waited for the scheduler, judged after the region (rule 9):
/// the last thread's late entry (a woken thread that found its core taken), and, for a thread
/// that the kernel preempted during the region (an involuntary context switch), the time it
/// spent off its core. Either one over 1 ms and over 1/3 of the region's time makes the team
/// late: an idle machine wakes a thread in microseconds and rarely preempts one for long, a
/// busy one takes a scheduler slice (milliseconds), and past 1/3 the wait costs more than a
/// second thread saves. A late entry counts only for a warm team (the previous timed team ended
/// under 0.2 ms before, while libgomp's threads still spin): threads that went to sleep, or are
/// being created (the program's first team), can take milliseconds to wake on an idle virtual
/// machine. Cost: a getrusage and a clock_gettime per thread at entry and exit (about 1 µs each).
class TeamProbe {
public:
    static constexpr int max_sampled = 64;  ///< threads beyond this are not timed

    TeamProbe() : m_open(now_ns()) {}
    void enter(int t) {
        if (t >= max_sampled) return;
        Sample& s = m_samples[t];
        s.wall_in = now_ns();
        s.usage = thread_usage(s.cpu_in, s.preempted_in);
    }
    void leave(int t) {
        if (t >= max_sampled) return;
        Sample& s = m_samples[t];
        s.usage = s.usage && thread_usage(s.cpu_out, s.preempted_out);
        s.wall_out = now_ns();
    }
    /// After the region of `team` threads: marks the machine busy, or clears the back-off level.
    void judge(int team) const {
        const std::int64_t close = now_ns();
        const int n = std::min(team, max_sampled);
        constexpr std::int64_t warm_ns = 200'000;  // 0.2 ms: libgomp's threads still spin
        const std::int64_t last = busy_state().last_team_ns.exchange(close, std::memory_order_relaxed);
        const bool warm = last > 0 && m_open - last < warm_ns;
        std::int64_t worst = 0;
        for (int t = 0; t < n; ++t) {
            const Sample& s = m_samples[t];
            if (warm) worst = std::max(worst, s.wall_in - m_open);
            if (s.usage && s.preempted_out > s.preempted_in)
                worst = std::max(worst, (s.wall_out - s.wall_in) - (s.cpu_out - s.cpu_in));
        }
        constexpr std::int64_t min_late_ns = 1'000'000;  // 1 ms
        if (worst > min_late_ns && worst * 3 > close - m_open)
            note_late_team();
        else
            note_clean_team();
    }

private:
    struct Sample {
        std::int64_t wall_in = 0, wall_out = 0, cpu_in = 0, cpu_out = 0;
        long preempted_in = 0, preempted_out = 0;
        bool usage = false;
    };
    std::int64_t m_open;
    Sample m_samples[max_sampled];
};

/// The parallel region of a kernel: runs body() on every thread of a team of `team` threads
/// (team_size(), for which the workspaces were allocated); body() uses thread_index() and
/// orphaned `omp for` / `omp single` constructs, which bind to this region. Always a region,
/// even for one thread (rule 2, and so that thread_index() is 0 and the worksharing constructs
/// bind here inside a caller's team). Teams of several threads are timed (rule 9).
template <typename F>
void parallel_region(int team, F&& body) {
#ifdef _OPENMP
    if (team <= 1 || machine_busy()) {
        // A team of one, also inside a back-off window that began after this call chose its
        // team (a late team of an earlier region); single-threaded Eigen products as below.
ATTNX_OMP(parallel num_threads(1))
        {
            omp_set_num_threads(1);
            body();
        }
        return;
    }
    TeamProbe probe;
ATTNX_OMP(parallel num_threads(team))
    {
        // Each thread's own thread count is 1 for the region (it ends with the region): Eigen's
        // products stay single-threaded with the same blocking whatever team the runtime granted
        // (OMP_DYNAMIC, a thread limit, a list in OMP_NUM_THREADS, a caller's region).
        omp_set_num_threads(1);
        const int t = omp_get_thread_num();
        probe.enter(t);
        body();
        probe.leave(t);
    }
    if (busy_state().enabled.load(std::memory_order_relaxed)) probe.judge(team);
#else
    (void)team;
    body();
#endif
}

/// Rule 8: nominal floating-point operations of a call below which the whole call runs on the
/// calling thread (a SerialScope around it). About 0.1 ms of one core's work: below it, waking
/// a team and waiting at its barriers costs more than the second thread saves on an idle
/// machine, and on a busy one every barrier can wait a whole scheduler slice (milliseconds) for
/// a descheduled thread of the team.
constexpr double min_parallel_flops = 4.0e6;

/// True when a call of `flops` nominal operations should run on one thread (rule 8). By size
/// only, never by the busy state (rule 9 acts in parallel_region): Eigen's own threaded
/// products outside attnx's regions (the materialized kernel, Nyström's report) round by
/// thread count, so what they get must not depend on the timing of earlier calls.
inline bool run_serially(double flops) { return flops < min_parallel_flops; }

}  // namespace detail

/// Turns the busy-machine back-off of attnx's threading on (the default) or off. On: when two of
/// the last three thread teams waited for the scheduler (another process held the cores), attnx
/// runs its own parallel regions on the calling thread alone for 0.1 s to 3.2 s, then tries a team again;
/// on a busy machine that is faster than a team whose every barrier waits a scheduler slice (the
/// benchmark bench_oversubscribed measures both). Eigen's own threaded products (the
/// materialized exact kernel) are not affected. Off: every call that is large enough uses all
/// OpenMP threads. Either way the results are the same, bit for bit. Thread-safe; affects the
/// whole program. Turning it off also ends a running back-off window.
inline void set_adaptive_threading(bool on) {
    detail::BusyState& b = detail::busy_state();
    b.enabled.store(on, std::memory_order_relaxed);
    if (!on) {
        b.until_ns.store(0, std::memory_order_relaxed);
        b.level.store(0, std::memory_order_relaxed);
        b.recent.store(0, std::memory_order_relaxed);
    }
}

/// Whether the busy-machine back-off is on (set_adaptive_threading).
inline bool adaptive_threading() { return detail::busy_state().enabled.load(std::memory_order_relaxed); }

}  // namespace attnx

#endif  // ATTNX_DETAIL_PARALLEL_HPP
