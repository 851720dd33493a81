// SPDX-License-Identifier: MIT
/// \file memory_probe.hpp
/// Peak heap bytes of a call, for the benchmarks' memory targets. Include it in exactly one
/// translation unit: it interposes malloc/free/calloc/realloc/posix_memalign/aligned_alloc
/// (forwarding to glibc's __libc_* functions) and tracks live and peak bytes with atomics.
/// The stack (Eigen's small GEMM blocks) is not counted; it is bounded by 128 KiB a thread.
#ifndef ATTNX_BENCHMARKS_MEMORY_PROBE_HPP
#define ATTNX_BENCHMARKS_MEMORY_PROBE_HPP

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

extern "C" {
void* __libc_malloc(std::size_t);
void __libc_free(void*);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace bench {
namespace memprobe {
inline std::atomic<std::int64_t> live{0};
inline std::atomic<std::int64_t> peak{0};

inline void on_alloc(void* p) {
    if (!p) return;
    const auto sz = static_cast<std::int64_t>(malloc_usable_size(p));
    const std::int64_t now = live.fetch_add(sz, std::memory_order_relaxed) + sz;
    std::int64_t old = peak.load(std::memory_order_relaxed);
    while (now > old && !peak.compare_exchange_weak(old, now, std::memory_order_relaxed)) {
    }
}
inline void on_free(void* p) {
    if (p) live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}
}  // namespace memprobe

/// Measures the peak of live heap bytes above the level at construction.
class PeakHeap {
public:
    PeakHeap() : m_base(memprobe::live.load()) { memprobe::peak.store(m_base); }
    std::int64_t extra_bytes() const { return memprobe::peak.load() - m_base; }

private:
    std::int64_t m_base;
};

/// Runs `call` once under a PeakHeap and sets the counter peak_extra_MiB: the heap one call
/// needs beyond what existed before it (its inputs and its output buffer).
template <typename F>
void record_peak_extra(benchmark::State& state, F&& call) {
    const PeakHeap probe;
    call();
    state.counters["peak_extra_MiB"] = static_cast<double>(probe.extra_bytes()) / (1 << 20);
}

}  // namespace bench

extern "C" {
void* malloc(std::size_t n) {
    void* p = __libc_malloc(n);
    bench::memprobe::on_alloc(p);
    return p;
}
void free(void* p) {
    bench::memprobe::on_free(p);
    __libc_free(p);
}
void* calloc(std::size_t a, std::size_t b) {
    void* p = __libc_calloc(a, b);
    bench::memprobe::on_alloc(p);
    return p;
}
void* realloc(void* p, std::size_t n) {
    bench::memprobe::on_free(p);
    void* q = __libc_realloc(p, n);
    if (q)
        bench::memprobe::on_alloc(q);
    else if (p && n != 0)
        bench::memprobe::on_alloc(p);  // realloc failed: p is still live
    return q;
}
int posix_memalign(void** out, std::size_t align, std::size_t n) {
    void* p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    bench::memprobe::on_alloc(p);
    *out = p;
    return 0;
}
void* aligned_alloc(std::size_t align, std::size_t n) {
    void* p = __libc_memalign(align, n);
    bench::memprobe::on_alloc(p);
    return p;
}
void* memalign(std::size_t align, std::size_t n) {
    void* p = __libc_memalign(align, n);
    bench::memprobe::on_alloc(p);
    return p;
}
}

#endif  // ATTNX_BENCHMARKS_MEMORY_PROBE_HPP
