// SPDX-License-Identifier: MIT
// The online-softmax tile loop allocates nothing: with EIGEN_RUNTIME_NO_MALLOC, Eigen aborts
// on any heap allocation while set_is_malloc_allowed(false) is in force. (The workspace is
// allocated once per call and thread, outside the loop; first touch of fresh pages costs
// ~10 us per 4 KiB here, so an allocation inside the loop would be a real slowdown.)
#define EIGEN_RUNTIME_NO_MALLOC
#include <attnx/exact.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "support/inputs.hpp"

using attnx::Index;
using attnx::Matrix;

template <typename Scalar>
void run_without_malloc(bool causal, bool padding) {
    const auto x = testing_support::random_qkv<Scalar>(128, 1000, 64, 64, 31);
    std::vector<bool> pad(1000, false);
    for (Index j = 0; j < 1000; j += 7) pad[static_cast<std::size_t>(j)] = true;
    attnx::AttentionOptions o;
    o.causal = causal;
    if (padding) o.key_padding_mask = pad;
    const attnx::detail::MaskSpec mask = attnx::detail::make_mask(o, 128, 1000);
    const Index bq = 128, bk = 128;
    attnx::detail::DenseKeyTiles tiles;
    tiles.n_q = 128;
    tiles.n_k = 1000;
    tiles.bq = bq;
    tiles.bk = bk;
    tiles.causal = causal;
    tiles.causal_offset = mask.causal_offset;
    const Eigen::Ref<const Matrix<Scalar>> q(x.q), k(x.k), v(x.v);
    attnx::detail::OnlineWorkspace<Scalar> ws(bq, bk, 64, 64);
    Matrix<Scalar> out(128, 64);
    // The kernel runs its products inside a parallel region, where Eigen stays single-threaded;
    // called directly here, Eigen would parallelise (and allocate) unless told not to.
    Eigen::setNbThreads(1);
    Eigen::internal::set_is_malloc_allowed(false);
    attnx::detail::online_tile<Scalar>(q, k, v, Scalar(0.125), mask, tiles, 0, 0, bq, 0, tiles.count(0), ws);
    attnx::detail::finish_rows(ws, bq, out);
    Eigen::internal::set_is_malloc_allowed(true);
    attnx::ExactOptions eo(o);
    eo.kernel = attnx::ExactKernel::Materialized;
    EXPECT_LE(attnx::compare(out, attnx::exact_attention(x.q, x.k, x.v, eo)).rel_fro, 2e-5);
}

TEST(NoMalloc, TileLoopFloat) {
    run_without_malloc<float>(false, false);
    run_without_malloc<float>(true, true);
}

TEST(NoMalloc, TileLoopDouble) {
    run_without_malloc<double>(false, false);
    run_without_malloc<double>(true, true);
}

// One query (decoding): the single-query products, on column-major tiles (online_tile) and on
// row-major tiles read in place (online_step_one, as multi_head_attention's grouped path does),
// allocate nothing either, and give the same bits.
template <typename Scalar>
void run_one_query_without_malloc() {
    const auto x = testing_support::random_qkv<Scalar>(1, 1000, 64, 48, 32);
    std::vector<bool> pad(1000, false);
    for (Index j = 0; j < 1000; j += 7) pad[static_cast<std::size_t>(j)] = true;
    attnx::AttentionOptions o;
    o.key_padding_mask = pad;
    const attnx::detail::MaskSpec mask = attnx::detail::make_mask(o, 1, 1000);
    const Index bk = 128;
    attnx::detail::DenseKeyTiles tiles;
    tiles.n_q = 1;
    tiles.n_k = 1000;
    tiles.bq = 1;
    tiles.bk = bk;
    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> k_rows = x.k, v_rows = x.v;
    const Eigen::Ref<const Matrix<Scalar>> q(x.q), k(x.k), v(x.v);
    attnx::detail::OnlineWorkspace<Scalar> ws_col(1, bk, 64, 48), ws_row(1, bk, 64, 48);
    Matrix<Scalar> out_col(1, 48), out_row(1, 48);
    Eigen::setNbThreads(1);
    Eigen::internal::set_is_malloc_allowed(false);
    attnx::detail::online_tile<Scalar>(q, k, v, Scalar(0.125), mask, tiles, 0, 0, 1, 0, tiles.count(0), ws_col);
    attnx::detail::finish_rows(ws_col, 1, out_col);
    attnx::detail::online_begin<Scalar>(q, Scalar(0.125), 0, 1, ws_row);
    for (Index j0 = 0; j0 < 1000; j0 += bk) {
        const Index rows = std::min<Index>(bk, 1000 - j0);
        attnx::detail::online_step_one<Scalar>(
            attnx::detail::RowTileMap<Scalar>(k_rows.data() + j0 * 64, rows, 64, Eigen::OuterStride<>(64)),
            attnx::detail::RowTileMap<Scalar>(v_rows.data() + j0 * 48, rows, 48, Eigen::OuterStride<>(48)), mask, 0,
            j0, ws_row, false);
    }
    attnx::detail::finish_rows(ws_row, 1, out_row);
    Eigen::internal::set_is_malloc_allowed(true);
    EXPECT_EQ(0, std::memcmp(out_col.data(), out_row.data(), 48 * sizeof(Scalar)));
    attnx::ExactOptions eo(o);
    eo.kernel = attnx::ExactKernel::Materialized;
    EXPECT_LE(attnx::compare(out_col, attnx::exact_attention(x.q, x.k, x.v, eo)).rel_fro, 2e-5);
}

TEST(NoMalloc, OneQueryEitherLayout) {
    run_one_query_without_malloc<float>();
    run_one_query_without_malloc<double>();
}
