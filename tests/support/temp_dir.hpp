// SPDX-License-Identifier: MIT
/// \file temp_dir.hpp
/// A private temporary directory for a test, removed with everything in it when the object goes
/// out of scope, so a test leaves nothing behind in $TMPDIR, also when its assertions fail
/// (a gtest fixture's members are destroyed after a failed ASSERT too).
#ifndef ATTNX_TESTS_SUPPORT_TEMP_DIR_HPP
#define ATTNX_TESTS_SUPPORT_TEMP_DIR_HPP

#include <stdlib.h>  // mkdtemp (POSIX)

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace testing_support {

class TempDir {
public:
    /// Creates $TMPDIR/<prefix>XXXXXX (or /tmp/...) with mode 0700.
    explicit TempDir(const std::string& prefix = "attnx_test_") {
        const char* env = std::getenv("TMPDIR");
        std::string templ = std::string(env != nullptr && *env != '\0' ? env : "/tmp") + "/" + prefix + "XXXXXX";
        if (mkdtemp(&templ[0]) == nullptr) throw std::runtime_error("TempDir: cannot create " + templ);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;  // never throw from a destructor; a leftover is better than an abort
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    /// path()/name: a file name inside the directory.
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

}  // namespace testing_support

#endif  // ATTNX_TESTS_SUPPORT_TEMP_DIR_HPP
