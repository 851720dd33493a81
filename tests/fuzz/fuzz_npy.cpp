// SPDX-License-Identifier: MIT
// libFuzzer target: the .npy reader of examples/npy.hpp (used by attnx_run). The fuzz bytes are
// written to a private temporary file (outside the source tree) and read with inspect,
// read_matrix<float>, read_matrix<double> and read. Contract: success with a matrix whose shape
// matches the header, or npy::error whose message starts with "npy: <path>: "; anything else
// thrown, a crash or an out-of-bounds access (ASan) is a bug.
#include "../../examples/npy.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_common.hpp"

namespace {

const std::string& temp_path() {
    static const std::string path = [] {
        const char* dir = std::getenv("TMPDIR");
        std::string templ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/attnx_fuzz_npy_XXXXXX";
        const int fd = mkstemp(&templ[0]);
        if (fd < 0) fuzz::fail("fuzz_npy", "cannot create a temporary file");
        close(fd);
        std::atexit([] { std::remove(temp_path().c_str()); });
        return templ;
    }();
    return path;
}

template <typename F>
void expect_npy_contract(const char* what, F&& f) {
    try {
        f();
    } catch (const npy::error& e) {
        const std::string msg = e.what();
        if (msg.rfind("npy: " + temp_path() + ": ", 0) != 0 || msg.size() <= temp_path().size() + 7)
            fuzz::fail(what, "npy::error without the 'npy: <path>: <what>' form: " + msg);
    } catch (const std::exception& e) {
        fuzz::fail(what, std::string("threw something other than npy::error: ") + e.what());
    } catch (...) {
        fuzz::fail(what, "threw a non-std::exception");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string& path = temp_path();
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (f == nullptr) fuzz::fail("fuzz_npy", "cannot write the temporary file");
        if (size > 0 && std::fwrite(data, 1, size, f) != size) fuzz::fail("fuzz_npy", "short write");
        std::fclose(f);
    }
    npy::Header h;
    bool have_header = false;
    expect_npy_contract("npy::inspect", [&] {
        h = npy::inspect(path);
        have_header = true;
    });
    expect_npy_contract("npy::read_matrix<float>", [&] {
        const Eigen::MatrixXf m = npy::read_matrix<float>(path);
        if (!have_header) fuzz::fail("npy::read_matrix<float>", "read a file that inspect rejected");
        Eigen::Index count = 1;
        for (auto dim : h.shape) count *= static_cast<Eigen::Index>(dim);
        if (m.size() != count) fuzz::fail("npy::read_matrix<float>", "matrix size differs from the header's shape");
    });
    expect_npy_contract("npy::read_matrix<double>", [&] { (void)npy::read_matrix<double>(path); });
    expect_npy_contract("npy::read", [&] {
        const npy::Array a = npy::read(path);
        if (a.shape != h.shape || a.dtype != h.descr) fuzz::fail("npy::read", "shape or dtype differs from inspect");
    });
    return 0;
}
