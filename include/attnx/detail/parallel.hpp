// SPDX-License-Identifier: MIT
/// \file detail/parallel.hpp
/// The threading policy of attnx, in one place. Not API.
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
///    thread count).
/// 5. Nesting: inside an active parallel region of the caller, attnx's regions get one thread
///    each (OpenMP's default of one active level); nothing in attnx raises that level.
/// 6. No exception leaves a parallel region: workspaces are sized and allocated before the
///    region or at its top, and everything that can throw runs outside.
#ifndef ATTNX_DETAIL_PARALLEL_HPP
#define ATTNX_DETAIL_PARALLEL_HPP

#include <Eigen/Core>

#include <atomic>
#include <exception>

#include "attnx/core.hpp"

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

/// Runs f so that the Eigen products inside it are single-threaded: within a team of several
/// OpenMP threads Eigen does not parallelise, so f runs on one thread of a two-thread team.
/// For the small (m x m) products of a call, where Eigen's own threading costs more than it
/// gains. Without OpenMP, or inside a parallel region already, f just runs.
template <typename F>
void with_serial_products(F&& f) {
#ifdef _OPENMP
    if (!omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel num_threads(2)
        {
#pragma omp single
            f();
        }
        return;
    }
#endif
    f();
}

}  // namespace detail
}  // namespace attnx

#endif  // ATTNX_DETAIL_PARALLEL_HPP
