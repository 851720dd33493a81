// SPDX-License-Identifier: MIT
/// \file token_loop.hpp
/// The causal feature-map product token by token, the structure of the reference CPU kernels
/// (fast-transformers' causal_product_cpu, performer-pytorch's loop): the yardstick of
/// bench_feature_map. bench_feature_map.cpp compiles it as is (its inner loops vectorise);
/// token_loop_scalar.cpp compiles it again without auto-vectorisation (the reference kernels'
/// scalar code: they index through strided tensor accessors). Eigen's own SIMD (the feature
/// GEMMs) is on in both.
#ifndef ATTNX_BENCHMARKS_TOKEN_LOOP_HPP
#define ATTNX_BENCHMARKS_TOKEN_LOOP_HPP

#include <attnx/feature_maps.hpp>

#include <cmath>
#include <vector>

namespace bench {

using attnx::Index;

/// The causal product token by token, as the reference CPU kernels do it (fast-transformers'
/// causal_product_cpu, performer-pytorch's loop): features for the whole sequence first (one
/// GEMM each, as PyTorch would), then for every token S += w·φ(k)vᵀ, z += w·φ(k) and
/// out = φ(q)ᵀS / (φ(q)ᵀz + eps), in plain loops over row-major arrays (the inner loops
/// vectorise). Key weights w = exp(c_j − max c), the reference's global maximum. Its buffers
/// are kept between calls, per thread.
/// `static`: each unit keeps its own copy (the scalar unit's must not be merged with the
/// vectorised one by the linker, as an inline template would be).
template <typename Map>
static void token_loop(const Map& map, const attnx::Matrix<float>& q, const attnx::Matrix<float>& k,
                const attnx::Matrix<float>& v, attnx::Matrix<float>& out) {
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Index n = q.rows(), dv = v.cols();
    const Index d = q.cols();
    const Index c_dim = map.feature_dim(d);
    // Buffers kept between calls (resized only when the shape changes), as attnx's causal kernel
    // keeps its own: allocated per call, the FAVOR+ features (16 MiB at n = 4096) were faulted
    // in afresh by a call timed alone, up to 4x its steady-state time on these VMs.
    struct Buffers {
        attnx::Matrix<float> pq, pk;
        attnx::Vector<float> c;
        RowMajor fq, fk, vr;
        std::vector<float> s, z, row;
    };
    thread_local Buffers b;
    b.pq.resize(n, c_dim);
    b.pk.resize(n, c_dim);
    b.c.resize(n);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    map.queries(Eigen::Ref<const attnx::Matrix<float>>(q), scale, Eigen::Ref<attnx::Matrix<float>>(b.pq));
    map.keys(Eigen::Ref<const attnx::Matrix<float>>(k), scale, Eigen::Ref<attnx::Matrix<float>>(b.pk),
             Eigen::Ref<attnx::Vector<float>>(b.c));
    b.fq = b.pq;
    b.fk = b.pk;
    b.vr = v;
    const RowMajor& fq = b.fq;
    const RowMajor& fk = b.fk;
    const RowMajor& vr = b.vr;
    const attnx::Vector<float>& c = b.c;
    const float top = c.maxCoeff();
    b.s.assign(static_cast<std::size_t>(c_dim * dv), 0.0f);
    b.z.assign(static_cast<std::size_t>(c_dim), 0.0f);
    b.row.resize(static_cast<std::size_t>(dv));
    std::vector<float>& s = b.s;
    std::vector<float>& z = b.z;
    std::vector<float>& row = b.row;
    for (Index i = 0; i < n; ++i) {
        const float w = std::exp(c(i) - top);
        const float* ki = fk.data() + i * c_dim;
        const float* vi = vr.data() + i * dv;
        const float* qi = fq.data() + i * c_dim;
        for (Index e = 0; e < c_dim; ++e) {
            const float ke = w * ki[e];
            float* se = s.data() + e * dv;
            for (Index m = 0; m < dv; ++m) se[m] += ke * vi[m];
            z[static_cast<std::size_t>(e)] += ke;
        }
        float den = 0;
        for (Index m = 0; m < dv; ++m) row[static_cast<std::size_t>(m)] = 0;
        for (Index e = 0; e < c_dim; ++e) {
            const float qe = qi[e];
            const float* se = s.data() + e * dv;
            for (Index m = 0; m < dv; ++m) row[static_cast<std::size_t>(m)] += qe * se[m];
            den += qe * z[static_cast<std::size_t>(e)];
        }
        for (Index m = 0; m < dv; ++m) out(i, m) = row[static_cast<std::size_t>(m)] / (den + 1e-6f);
    }
}

/// The same loop compiled without auto-vectorisation (token_loop_scalar.cpp).
void token_loop_scalar(const attnx::PositiveRandomFeatures<float>& map, const attnx::Matrix<float>& q,
                       const attnx::Matrix<float>& k, const attnx::Matrix<float>& v, attnx::Matrix<float>& out);
void token_loop_scalar(const attnx::EluPlusOne& map, const attnx::Matrix<float>& q, const attnx::Matrix<float>& k,
                       const attnx::Matrix<float>& v, attnx::Matrix<float>& out);

}  // namespace bench

#endif  // ATTNX_BENCHMARKS_TOKEN_LOOP_HPP
