// SPDX-License-Identifier: MIT
/// \file inputs.hpp
/// Test inputs: seeded random Q, K, V from attnx's own generator, and the conformance cases
/// copied from ../shared/conformance into tests/data (see tests/data/README.md).
#ifndef ATTNX_TESTS_SUPPORT_INPUTS_HPP
#define ATTNX_TESTS_SUPPORT_INPUTS_HPP

#include <attnx/core.hpp>
#include <attnx/random.hpp>

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "../../examples/npy.hpp"

namespace testing_support {

using attnx::Index;
using attnx::Matrix;

/// Q, K, V with N(0, sigma^2) entries. sigma = 1.5 makes softmax rows peaked (logit std
/// ~ 2.25 with the default scale), so a kernel that drops the scale or a segment fails visibly.
template <typename Scalar>
struct Qkv {
    Matrix<Scalar> q, k, v;
};

template <typename Scalar>
Qkv<Scalar> random_qkv(Index n_q, Index n_k, Index d, Index dv, std::uint64_t seed, double sigma = 1.5) {
    Qkv<Scalar> x;
    x.q = attnx::random_normal<Scalar>(n_q, d, seed, 1, 0.0, sigma);
    x.k = attnx::random_normal<Scalar>(n_k, d, seed, 2, 0.0, sigma);
    x.v = attnx::random_normal<Scalar>(n_k, dv, seed, 3);
    return x;
}

/// How attnx names a non-finite input entry (detail::check_finite), e.g. "k (300x8) has a
/// non-finite entry k(5, 1)": what a test of the input scan expects in the message.
inline std::string non_finite_entry(char name, Index rows, Index cols, Index r, Index c) {
    return std::string(1, name) + " (" + std::to_string(rows) + "x" + std::to_string(cols) +
           ") has a non-finite entry " + name + "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

inline std::string data_dir() { return ATTNX_TEST_DATA_DIR; }

/// Reads tests/data/<case>/<array>.npy as a double matrix.
inline Eigen::MatrixXd load(const std::string& case_name, const std::string& array) {
    return npy::read(data_dir() + "/" + case_name + "/" + array + ".npy").data;
}

inline bool has(const std::string& case_name, const std::string& array) {
    return static_cast<bool>(std::ifstream(data_dir() + "/" + case_name + "/" + array + ".npy"));
}

/// The manifest entry of a conformance case.
inline nlohmann::json manifest_case(const std::string& case_name) {
    std::ifstream in(data_dir() + "/manifest.json");
    const nlohmann::json m = nlohmann::json::parse(in);
    for (const auto& c : m.at("cases"))
        if (c.at("name") == case_name) return c;
    throw std::runtime_error("no conformance case " + case_name);
}

inline std::vector<std::string> case_names() {
    std::ifstream in(data_dir() + "/manifest.json");
    const nlohmann::json m = nlohmann::json::parse(in);
    std::vector<std::string> names;
    for (const auto& c : m.at("cases")) names.push_back(c.at("name").get<std::string>());
    return names;
}

}  // namespace testing_support

#endif  // ATTNX_TESTS_SUPPORT_INPUTS_HPP
