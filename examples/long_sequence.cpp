// SPDX-License-Identifier: MIT
// Nyström attention on a sequence of a million tokens (n = 1,048,576, d = 64, m = 64, float),
// printing the time and the peak memory of each step, with a progress line for the long ones.
//
//   long_sequence [--n 1048576] [--d 64] [--landmarks 64] [--seed 1] [--check-rows 64]
//
// Exact attention at this n would need 4·n²·d = 2.8e14 flops and, materialized, a 4 TiB score
// matrix; Nyström needs about 8·n·m·d = 3.4e10 flops and memory linear in n. The inputs
// (Q, K, V: 3 x 256 MiB) and the output (256 MiB) are 1 GiB together; they are generated in
// chunks of rows, so the generator needs no second full-size buffer. The accuracy is measured
// on --check-rows query rows spread over the sequence: for those rows exact attention against
// all n keys is affordable (each row is independent), and both results are compared.
#include <attnx/exact.hpp>
#include <attnx/metrics.hpp>
#include <attnx/nystrom.hpp>
#include <attnx/random.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using attnx::Index;
using Mat = attnx::Matrix<float>;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- memory: VmHWM (peak resident set) and VmRSS from /proc/self/status, in MiB ------------

double proc_status_mib(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string prefix = std::string(key) + ":";
    while (std::getline(in, line))
        if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(prefix.size())) / 1024.0;  // kB
    if (std::string(key) == "VmHWM") {  // no /proc: getrusage's peak (kB on Linux)
        rusage u{};
        getrusage(RUSAGE_SELF, &u);
        return static_cast<double>(u.ru_maxrss) / 1024.0;
    }
    return -1;
}
double peak_mib() { return proc_status_mib("VmHWM"); }
double rss_mib() { return proc_status_mib("VmRSS"); }

/// Resets VmHWM to the current RSS (Linux >= 4.0), so the next peak is that of one step.
bool reset_peak() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    f.flush();
    return static_cast<bool>(f);
}

// ---- progress ---------------------------------------------------------------------------------

/// A progress line: rewritten in place on a terminal, one line per quarter otherwise (logs).
class Progress {
public:
    Progress(std::string label, Index total) : m_label(std::move(label)), m_total(total), m_tty(isatty(1) != 0) {}
    void update(Index done) {
        const int pct = static_cast<int>(100 * done / std::max<Index>(1, m_total));
        if (m_tty) {
            std::printf("\r  %s: %3d%% (%lld / %lld), %.1f s", m_label.c_str(), pct, static_cast<long long>(done),
                        static_cast<long long>(m_total), seconds_since(m_t0));
        } else if (pct / 25 > m_last_quarter) {
            m_last_quarter = pct / 25;
            std::printf("  %s: %3d%% (%lld / %lld), %.1f s\n", m_label.c_str(), pct, static_cast<long long>(done),
                        static_cast<long long>(m_total), seconds_since(m_t0));
        }
        std::fflush(stdout);
    }
    void finish() {
        if (m_tty) std::printf("\n");
    }

private:
    std::string m_label;
    Index m_total;
    bool m_tty;
    int m_last_quarter = 0;
    Clock::time_point m_t0 = Clock::now();
};

/// Runs f while a heartbeat line reports the elapsed time every second (for one long call
/// that cannot report progress itself).
template <typename F>
double with_heartbeat(const char* label, F&& f) {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    const Clock::time_point t0 = Clock::now();
    const bool tty = isatty(1) != 0;
    std::thread beat([&] {
        std::unique_lock<std::mutex> lock(mu);
        int ticks = 0;
        while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; })) {
            ++ticks;
            if (tty)
                std::printf("\r  %s: running, %.0f s", label, seconds_since(t0));
            else if (ticks % 5 == 0)
                std::printf("  %s: running, %.0f s\n", label, seconds_since(t0));
            std::fflush(stdout);
        }
    });
    f();
    const double s = seconds_since(t0);
    {
        std::lock_guard<std::mutex> lock(mu);
        done = true;
    }
    cv.notify_one();
    beat.join();
    std::printf("%s  %s: done in %.2f s\n", tty ? "\r" : "", label, s);
    return s;
}

// ---- inputs -----------------------------------------------------------------------------------

/// The "realistic" inputs of examples/example_inputs.hpp (latent factors smoothed along the
/// sequence, plus noise), generated chunk by chunk: the same formula and the same random
/// numbers, but only O(chunk · (d + rank)) doubles of temporaries instead of 3 · n · d.
void chunked_inputs(Index n, Index d, std::uint64_t seed, Mat& q, Mat& k, Mat& v) {
    constexpr Index rank = 8, window = 16, chunk = 32768;
    const double sw = 1.5 / std::sqrt(static_cast<double>(rank));
    const Eigen::MatrixXd wq = attnx::random_normal<double>(rank, d, seed, 11, 0.0, sw);
    const Eigen::MatrixXd wk = attnx::random_normal<double>(rank, d, seed, 12, 0.0, sw);
    const Eigen::MatrixXd wv = attnx::random_normal<double>(rank, d, seed, 13, 0.0, 1.0 / std::sqrt(static_cast<double>(rank)));
    const attnx::CounterRng latent(seed, 10);
    const attnx::CounterRng noise_q(seed, 14), noise_k(seed, 15), noise_v(seed, 16);
    q.resize(n, d);
    k.resize(n, d);
    v.resize(n, d);

    // raw(i, j) = element i * rank + j of the latent stream (as attnx::random_normal lays it out).
    const auto raw_rows = [&](Index r0, Index rows) {
        Eigen::MatrixXd raw(rows, rank);
        for (Index i = 0; i < rows; ++i)
            for (Index j = 0; j < rank; ++j) raw(i, j) = latent.normal(static_cast<std::uint64_t>((r0 + i) * rank + j));
        return raw;
    };
    Eigen::RowVectorXd run = raw_rows(0, window).colwise().sum();
    Eigen::MatrixXd z(chunk, rank), noise(chunk, d);
    Progress progress("generating Q, K, V", n);
    for (Index r0 = 0; r0 < n; r0 += chunk) {
        const Index rows = std::min(chunk, n - r0);
        const Eigen::MatrixXd raw = raw_rows(r0, rows + window);
        for (Index i = 0; i < rows; ++i) {  // moving average along the sequence, carried across chunks
            z.row(i) = run / std::sqrt(static_cast<double>(window));
            run += raw.row(i + window) - raw.row(i);
        }
        const auto fill = [&](const attnx::CounterRng& rng, const Eigen::MatrixXd& w, Mat& out) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
            for (Index i = 0; i < rows; ++i)
                for (Index j = 0; j < d; ++j)
                    noise(i, j) = 0.3 * rng.normal(static_cast<std::uint64_t>((r0 + i) * d + j));
            Eigen::MatrixXd block(rows, d);
            block.noalias() = z.topRows(rows) * w;
            block += noise.topRows(rows);
            out.middleRows(r0, rows) = block.cast<float>();
        };
        fill(noise_q, wq, q);
        fill(noise_k, wk, k);
        fill(noise_v, wv, v);
        progress.update(r0 + rows);
    }
    progress.finish();
}

[[noreturn]] void usage(const std::string& msg) {
    std::fprintf(stderr,
                 "%s\nusage: long_sequence [--n 1048576] [--d 64] [--landmarks 64] [--seed 1] [--check-rows 64]\n",
                 msg.c_str());
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Index n = Index(1) << 20, d = 64, m = 64, check_rows = 64;
    std::uint64_t seed = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") usage("long_sequence: Nystrom attention on a million tokens");
        if (i + 1 >= argc) usage("missing value after " + a);
        const std::string val = argv[++i];
        try {
            if (a == "--n")
                n = std::stoll(val);
            else if (a == "--d")
                d = std::stoll(val);
            else if (a == "--landmarks")
                m = std::stoll(val);
            else if (a == "--seed")
                seed = std::stoull(val);
            else if (a == "--check-rows")
                check_rows = std::stoll(val);
            else
                usage("unknown option " + a);
        } catch (const std::logic_error&) {
            usage("bad value '" + val + "' for " + a);
        }
    }
    if (n < 1 || d < 1 || m < 1 || check_rows < 0 || check_rows > n) usage("need n, d, m >= 1 and 0 <= check-rows <= n");

    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    const double io_mib = 4.0 * static_cast<double>(n) * static_cast<double>(d) * sizeof(float) / (1 << 20);
    std::printf("attnx long_sequence: Nystrom, n = %lld tokens, d = %lld, m = %lld landmarks, float, %d thread(s)\n",
                static_cast<long long>(n), static_cast<long long>(d), static_cast<long long>(m), threads);
    std::printf("inputs Q, K, V and output: %.0f MiB together; peak RSS at start %.0f MiB\n", io_mib, peak_mib());

    try {
        Mat q, k, v;
        const Clock::time_point tg = Clock::now();
        chunked_inputs(n, d, seed, q, k, v);
        std::printf("inputs: %.2f s, peak RSS %.0f MiB\n", seconds_since(tg), peak_mib());

        Mat out(n, d);
        out.setZero();  // touch the output now, so the call's peak is the call's own memory
        const double rss_before = rss_mib();
        const bool reset = reset_peak();
        attnx::NystromOptions o;
        o.num_landmarks = m;
        attnx::NystromReport report;
        const double secs = with_heartbeat("nystrom_attention", [&] { attnx::nystrom_attention(q, k, v, out, o, &report); });
        const double peak = peak_mib();
        std::printf("nystrom_attention: %.3f s, %.2f M tokens/s, pinv residual ||I - A Z||_F = %.3g\n", secs,
                    static_cast<double>(n) / secs * 1e-6, report.pinv_residual);
        if (reset)
            std::printf("memory: RSS before the call %.0f MiB (inputs + output), peak during it %.0f MiB: "
                        "%.1f MiB beyond inputs and output\n",
                        rss_before, peak, peak - rss_before);
        else
            std::printf("memory: RSS before the call %.0f MiB, peak of the process %.0f MiB\n", rss_before, peak);
        if (!out.allFinite()) {
            std::printf("error: the output has non-finite entries\n");
            return 1;
        }

        if (check_rows > 0) {
            // Rows spread evenly over the sequence; exact attention of those rows against all keys.
            Mat q_rows(check_rows, d), nys_rows(check_rows, d);
            for (Index i = 0; i < check_rows; ++i) {
                const Index r = (2 * i + 1) * n / (2 * check_rows);
                q_rows.row(i) = q.row(r);
                nys_rows.row(i) = out.row(r);
            }
            Mat exact_rows(check_rows, d);
            with_heartbeat("exact attention on the check rows",
                           [&] { attnx::exact_attention(q_rows, k, v, exact_rows); });
            const attnx::ErrorMetrics e = attnx::compare(nys_rows, exact_rows);
            std::printf("error on %lld rows against exact attention: rel_fro = %.4f, mean row cosine = %.4f\n",
                        static_cast<long long>(check_rows), e.rel_fro, e.mean_row_cosine);
        }
        std::printf("peak RSS of the process: %.0f MiB\n", peak_mib());
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "long_sequence: out of memory (n = %lld needs about %.0f MiB); try a smaller --n\n",
                     static_cast<long long>(n), io_mib * 1.2);
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "long_sequence: %s\n", e.what());
        return 2;
    }
    return 0;
}
