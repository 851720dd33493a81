// SPDX-License-Identifier: MIT
// Block-sparse attention (BigBird, Longformer, any BlockLayout): the dense layout is exact
// attention, every layout is the masked softmax of its to_dense_mask() (random layouts, partial
// last blocks, cross-attention, causal and padding on top), conformance with the stored BigBird
// layouts, the properties of the BigBird / Longformer builders, error against full attention
// falling as the layout grows, and every documented error.
#include <attnx/bigbird.hpp>
#include <attnx/exact.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "support/inputs.hpp"
#include "support/reference.hpp"

using attnx::AttentionOptions;
using attnx::BigBirdOptions;
using attnx::BlockLayout;
using attnx::BlockMask;
using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

template <typename Scalar>
struct Tol;
// float against the float64 reference: the two d-long dot products and the softmax sums each
// add a few eps_float·sqrt(d) of relative error (d <= 32 here, eps = 6e-8: ~3e-7 each); the
// measured worst case over these tests is ~4e-7, so 1e-6 (the bar of issue 5) holds with ~2x
// headroom, while a wrong block, a dropped mask or a missing scale gives errors of order 1e-1.
template <>
struct Tol<float> {
    static constexpr double rel = 1e-6;
};
// double: the same argument with eps_double = 1.1e-16.
template <>
struct Tol<double> {
    static constexpr double rel = 1e-13;
};

template <typename Scalar>
class BigBirdTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BigBirdTyped, Scalars, );

/// A random block mask with about `p` of its blocks set (attnx's generator; row i = stream i).
BlockMask random_block_mask(Index rows, Index cols, double p, std::uint64_t seed) {
    BlockMask m(rows, cols);
    for (Index i = 0; i < rows; ++i) {
        const attnx::CounterRng rng(seed, static_cast<std::uint64_t>(i));
        for (Index j = 0; j < cols; ++j) m(i, j) = rng.uniform(static_cast<std::uint64_t>(j)) < p;
    }
    return m;
}

/// visible = layout ∧ causal ∧ padding, as a token-level matrix for ref::attention.
ref::Visible visible_of(const BlockLayout& layout, const AttentionOptions& o) {
    const ref::Visible masks = ref::masked(layout.n_q(), layout.n_k(), o.causal, o.key_padding_mask);
    return layout.to_dense_mask().array() && masks.array();
}

template <typename Scalar>
Eigen::MatrixXd reference(const testing_support::Qkv<Scalar>& x, const BlockLayout& layout,
                          const AttentionOptions& o) {
    return ref::attention(x.q.template cast<double>(), x.k.template cast<double>(), x.v.template cast<double>(),
                          1.0 / std::sqrt(static_cast<double>(x.q.cols())), visible_of(layout, o));
}

/// Inputs with local structure: tokens driven by smooth latent factors (moving average over 16
/// tokens), queries and keys through the same projection W, so q_i·k_j ≈ z_i W Wᵀ z_jᵀ is high
/// for nearby tokens (similar latents), as in text; plus noise.
template <typename Scalar>
testing_support::Qkv<Scalar> local_inputs(Index n, Index d, std::uint64_t seed) {
    const Index rank = 8, window = 16;
    const Eigen::MatrixXd raw = attnx::random_normal<double>(n + window, rank, seed, 10);
    Eigen::MatrixXd z(n, rank);
    for (Index i = 0; i < n; ++i) z.row(i) = raw.middleRows(i, window).colwise().sum() / std::sqrt(static_cast<double>(window));
    const Eigen::MatrixXd w = attnx::random_normal<double>(rank, d, seed, 11, 0.0, 2.0 / std::sqrt(static_cast<double>(rank)));
    const Eigen::MatrixXd wv = attnx::random_normal<double>(rank, d, seed, 12, 0.0, 1.0 / std::sqrt(static_cast<double>(rank)));
    testing_support::Qkv<Scalar> x;
    x.q = (z * w + attnx::random_normal<double>(n, d, seed, 13, 0.0, 0.3)).template cast<Scalar>();
    x.k = (z * w + attnx::random_normal<double>(n, d, seed, 14, 0.0, 0.3)).template cast<Scalar>();
    x.v = (z * wv + attnx::random_normal<double>(n, d, seed, 15, 0.0, 0.3)).template cast<Scalar>();
    return x;
}

std::set<Index> window_of(Index i, Index w, Index nb) {
    std::set<Index> s;
    for (Index j = i - w / 2; j <= i + (w - 1) / 2; ++j)
        if (j >= 0 && j < nb) s.insert(j);
    return s;
}

std::vector<bool> every_third_padded(Index n_k) {
    std::vector<bool> pad(static_cast<std::size_t>(n_k), false);
    for (Index j = 1; j < n_k; j += 3) pad[static_cast<std::size_t>(j)] = true;
    return pad;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The exact limit and the masked-softmax identity.

TYPED_TEST(BigBirdTyped, DenseLayoutIsExactAttention) {
    using S = TypeParam;
    // {n_q, n_k, d, d_v, b}: whole blocks, a partial last block, cross-attention (n_q != n_k,
    // d_v != d), a single query, one block larger than n.
    const Index shapes[][5] = {{128, 128, 32, 32, 64}, {100, 100, 16, 24, 16}, {70, 130, 16, 8, 32},
                               {1, 300, 8, 5, 64},     {40, 40, 8, 8, 64}};
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], s[2], s[3], 40 + static_cast<std::uint64_t>(s[0]));
        const BlockLayout dense = BlockLayout::dense(s[0], s[1], s[4]);
        ASSERT_EQ(dense.density(), 1.0);
        for (bool causal : {false, true}) {
            AttentionOptions o;
            o.causal = causal;
            const Matrix<S> out = attnx::block_sparse_attention(x.q, x.k, x.v, dense, o);
            // The same kernel with the same tiles: bit-identical to the streaming exact kernel.
            attnx::ExactOptions eo(o);
            eo.query_tile = s[4];
            eo.key_tile = s[4];
            eo.decode_key_tile = s[4];  // the single-query shape
            EXPECT_TRUE(out == attnx::exact_attention(x.q, x.k, x.v, eo))
                << s[0] << "x" << s[1] << " b=" << s[4] << " causal=" << causal;
            // And the exact result itself (independent double reference).
            const Eigen::MatrixXd r = reference(x, dense, o);
            EXPECT_LE(attnx::compare(out, r).rel_fro, Tol<S>::rel) << s[0] << "x" << s[1] << " causal=" << causal;
        }
    }
}

TYPED_TEST(BigBirdTyped, AnyLayoutEqualsMaskedSoftmaxOfItsDenseMask) {
    using S = TypeParam;
    // {n_q, n_k, b}: whole blocks, partial last blocks on both sides, cross-attention both ways.
    const Index shapes[][3] = {{128, 128, 16}, {100, 100, 16}, {70, 130, 32}, {130, 70, 32}, {97, 61, 8}};
    std::uint64_t seed = 100;
    for (const auto& s : shapes) {
        const auto x = random_qkv<S>(s[0], s[1], 32, 24, ++seed);
        const Index nb_q = (s[0] + s[2] - 1) / s[2], nb_k = (s[1] + s[2] - 1) / s[2];
        for (double p : {0.15, 0.5}) {
            const BlockLayout layout =
                BlockLayout::from_block_mask(random_block_mask(nb_q, nb_k, p, ++seed), s[2], s[0], s[1]);
            for (bool causal : {false, true})
                for (bool pad : {false, true}) {
                    AttentionOptions o;
                    o.causal = causal;
                    if (pad) o.key_padding_mask = every_third_padded(s[1]);
                    const Matrix<S> out = attnx::block_sparse_attention(x.q, x.k, x.v, layout, o);
                    ASSERT_EQ(out.rows(), s[0]);
                    ASSERT_EQ(out.cols(), 24);
                    ASSERT_TRUE(out.allFinite());
                    const ref::Visible vis = visible_of(layout, o);
                    const Eigen::MatrixXd r = reference(x, layout, o);
                    EXPECT_LE(attnx::compare(out, r).rel_fro, Tol<S>::rel)
                        << s[0] << "x" << s[1] << " b=" << s[2] << " p=" << p << " causal=" << causal
                        << " pad=" << pad;
                    // Queries that see no key get exactly zero rows, never NaN.
                    Index empty_rows = 0;
                    for (Index i = 0; i < s[0]; ++i)
                        if (!vis.row(i).any()) {
                            ++empty_rows;
                            EXPECT_EQ(out.row(i).cwiseAbs().maxCoeff(), S(0)) << "row " << i;
                        }
                    if (p < 0.2 && !causal) {
                        EXPECT_GT(empty_rows, 0) << "the sparse masks are meant to leave some rows empty";
                    }
                }
        }
    }
}

TYPED_TEST(BigBirdTyped, BigBirdAndLongformerEqualMaskedSoftmax) {
    using S = TypeParam;
    for (Index n : {256, 250}) {  // 250: a partial last block of 10 tokens
        const auto x = random_qkv<S>(n, n, 32, 32, 7 + static_cast<std::uint64_t>(n));
        BigBirdOptions bo;
        bo.block = 16;
        bo.seed = 5;
        const BlockLayout bb = BlockLayout::bigbird(n, bo);
        const BlockLayout lf = BlockLayout::longformer(n, 16, 3, 20);
        for (bool causal : {false, true}) {
            AttentionOptions o;
            o.causal = causal;
            const Matrix<S> out_bb = attnx::bigbird_attention(x.q, x.k, x.v, bo, o);
            EXPECT_TRUE(out_bb == attnx::block_sparse_attention(x.q, x.k, x.v, bb, o));
            EXPECT_LE(attnx::compare(out_bb, reference(x, bb, o)).rel_fro, Tol<S>::rel) << n << " " << causal;
            const Matrix<S> out_lf = attnx::block_sparse_attention(x.q, x.k, x.v, lf, o);
            EXPECT_LE(attnx::compare(out_lf, reference(x, lf, o)).rel_fro, Tol<S>::rel) << n << " " << causal;
            // The sparse result really differs from full attention (the mask matters here).
            EXPECT_GT(attnx::compare(out_bb, attnx::exact_attention(x.q, x.k, x.v, attnx::ExactOptions(o))).rel_fro,
                      1e-2);
        }
    }
}

TYPED_TEST(BigBirdTyped, LargeLogitsStayFiniteAndCorrect) {
    using S = TypeParam;
    // Logits of order 1e4: a softmax without max subtraction overflows.
    auto x = random_qkv<S>(96, 96, 16, 16, 8, 1.0);
    x.q *= S(50);
    x.k *= S(50);
    BigBirdOptions bo;
    bo.block = 16;
    const BlockLayout layout = BlockLayout::bigbird(96, bo);
    const Matrix<S> out = attnx::block_sparse_attention(x.q, x.k, x.v, layout);
    ASSERT_TRUE(out.allFinite());
    // One-hot softmax up to exp(-O(100)); float logits of 1e4 carry absolute rounding ~6e-4,
    // which can only reorder near-ties: 1e-3 bounds that (as in test_exact).
    const double tol = std::is_same<S, float>::value ? 1e-3 : 1e-12;
    EXPECT_LE(attnx::compare(out, reference(x, layout, AttentionOptions{})).rel_fro, tol);
}

TEST(BigBird, ResultDoesNotDependOnThreadCountAndAcceptsRowMajorAndOut) {
    const auto x = random_qkv<float>(600, 600, 32, 32, 12);
    BigBirdOptions bo;
    bo.block = 32;
    const BlockLayout layout = BlockLayout::bigbird(600, bo);
    const Matrix<float> base = attnx::block_sparse_attention(x.q, x.k, x.v, layout);
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Matrix<float> one = attnx::block_sparse_attention(x.q, x.k, x.v, layout);
    omp_set_num_threads(2);
    const Matrix<float> two = attnx::block_sparse_attention(x.q, x.k, x.v, layout);
    omp_set_num_threads(saved);
    EXPECT_TRUE(one == two);  // the work split depends on sizes only
    EXPECT_TRUE(one == base);
#endif
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> qr = x.q;
    EXPECT_TRUE(attnx::block_sparse_attention(qr, x.k, x.v, layout) == base);
    Matrix<float> out(600, 32);
    attnx::block_sparse_attention(x.q, x.k, x.v, layout, out);
    EXPECT_TRUE(out == base);
    // An expression argument: 2·q with the scale halved gives the same logits.
    AttentionOptions o;
    o.scale = 0.5 / std::sqrt(32.0);
    EXPECT_LE(attnx::compare(attnx::block_sparse_attention(2.0f * x.q, x.k, x.v, layout, o), base).rel_fro, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Conformance with the stored BigBird layouts and float64 outputs (tests/data).

TEST(BigBird, ConformanceWithStoredLayouts) {
    int checked = 0;
    for (const std::string& name : testing_support::case_names()) {
        if (!testing_support::has(name, "bigbird_layout")) continue;
        const nlohmann::json c = testing_support::manifest_case(name);
        const Index b = c.at("bigbird_block").get<Index>(), n_q = c.at("n_q").get<Index>(),
                    n_k = c.at("n_k").get<Index>();
        const Eigen::MatrixXd stored = testing_support::load(name, "bigbird_layout");
        const BlockMask mask = stored.array() != 0.0;
        const BlockLayout layout = BlockLayout::from_block_mask(mask, b, n_q, n_k);
        EXPECT_TRUE(layout == BlockLayout::from_block_mask(mask, b)) << name;  // n = blocks · b here
        EXPECT_TRUE(layout.to_block_mask() == mask) << name;
        EXPECT_EQ(layout.kept_blocks(), static_cast<Index>(stored.sum())) << name;
        const Eigen::MatrixXd q = testing_support::load(name, "q"), k = testing_support::load(name, "k"),
                              v = testing_support::load(name, "v"), want = testing_support::load(name, "bigbird_f64");
        const Matrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
        // manifest tolerance_guidance: rel_fro <= 1e-5 in float against the f64 reference
        // (torch float32 itself lands at 2e-7..9e-7); in double the only differences are the
        // summation orders: 1e-12.
        EXPECT_LE(attnx::compare(attnx::block_sparse_attention(qf, kf, vf, layout), want).rel_fro, 1e-5) << name;
        EXPECT_LE(attnx::compare(attnx::block_sparse_attention(q, k, v, layout), want).rel_fro, 1e-12) << name;
        // The stored output is not just exact attention: the layout matters.
        EXPECT_GT(attnx::compare(attnx::exact_attention(q, k, v), want).rel_fro, 1e-2) << name;
        ++checked;
    }
    EXPECT_EQ(checked, 7);  // every case of the public set that has a BigBird layout
}

// ---------------------------------------------------------------------------------------------
// Layout builders.

TEST(BlockLayoutBigBird, EveryRowHasWindowGlobalAndExactlyTheRandomBlocks) {
    struct Case {
        Index n, block, window, global, random;
    };
    // Defaults; partial last block; even window; odd global count; more random blocks than free
    // ones (small n); no global; one block.
    const Case cases[] = {{4096, 64, 3, 2, 3}, {1000, 64, 3, 2, 3}, {2048, 64, 4, 3, 5}, {640, 64, 3, 2, 8},
                          {1024, 32, 5, 0, 2},  {50, 64, 3, 2, 3},  {3000, 40, 1, 1, 0}};
    for (const Case& c : cases) {
        BigBirdOptions o;
        o.block = c.block;
        o.window = c.window;
        o.global = c.global;
        o.random = c.random;
        o.seed = 17;
        const BlockLayout l = BlockLayout::bigbird(c.n, o);
        const Index nb = (c.n + c.block - 1) / c.block;
        ASSERT_EQ(l.query_blocks(), nb);
        ASSERT_EQ(l.key_blocks(), nb);
        ASSERT_EQ(l.n_q(), c.n);
        ASSERT_EQ(l.block_size(), c.block);
        std::set<Index> global;
        for (Index j = 0; j < (std::min(c.global, nb) + 1) / 2; ++j) global.insert(j);
        for (Index j = nb - std::min(c.global, nb) / 2; j < nb; ++j) global.insert(j);
        for (Index i = 0; i < nb; ++i) {
            const std::vector<Index> row = l.row(i);
            ASSERT_EQ(static_cast<Index>(row.size()), l.row_size(i));
            for (std::size_t t = 1; t < row.size(); ++t) ASSERT_LT(row[t - 1], row[t]) << "sorted, distinct";
            if (global.count(i)) {
                EXPECT_EQ(l.row_size(i), nb) << "global row " << i << " is dense";
                continue;
            }
            std::set<Index> fixed = window_of(i, c.window, nb);
            fixed.insert(global.begin(), global.end());
            for (Index j : fixed) EXPECT_TRUE(l.contains(i, j)) << "n=" << c.n << " row " << i << " block " << j;
            const Index free_blocks = nb - static_cast<Index>(fixed.size());
            EXPECT_EQ(l.row_size(i) - static_cast<Index>(fixed.size()), std::min(c.random, free_blocks))
                << "n=" << c.n << " row " << i;
            for (Index j : row) EXPECT_TRUE(j >= 0 && j < nb);
        }
        // Every query block attends to the global key blocks, and the global columns are full.
        for (Index j : global)
            for (Index i = 0; i < nb; ++i) EXPECT_TRUE(l.contains(i, j));
    }
}

TEST(BlockLayoutBigBird, SeedDeterminesTheLayout) {
    BigBirdOptions o;
    o.seed = 1;
    const BlockLayout a = BlockLayout::bigbird(4096, o), b = BlockLayout::bigbird(4096, o);
    EXPECT_TRUE(a == b);
    o.seed = 2;
    const BlockLayout c = BlockLayout::bigbird(4096, o);
    EXPECT_TRUE(a != c);
    // Only the random blocks differ: same block count per row.
    for (Index i = 0; i < a.query_blocks(); ++i) EXPECT_EQ(a.row_size(i), c.row_size(i));
    // Pinned: the generator is ours and portable (integer arithmetic only), so the drawn blocks
    // are part of the contract: row 10 of the default layout for n = 4096 (64 blocks), seed 1,
    // is its window 9..11, the global blocks 0 and 63, and three random blocks. A change here
    // changes every user's BigBird layout: bump the version and say so.
    EXPECT_EQ(a.row(10), (std::vector<Index>{0, 9, 10, 11, 30, 32, 39, 63}));
    // Different seeds differ in most rows, not just one.
    Index differing = 0;
    for (Index i = 0; i < a.query_blocks(); ++i) differing += a.row(i) != c.row(i) ? 1 : 0;
    EXPECT_GT(differing, a.query_blocks() / 2);
}

TEST(BlockLayoutBigBird, RandomBlocksAreUniformOverFreeBlocks) {
    // Row 10 of a 20-block layout: window {9, 10, 11} and global {0, 19} leave 15 free blocks;
    // r = 3 of them per seed. Over 4000 seeds each free block is drawn 4000·3/15 = 800 times on
    // average, with standard deviation sqrt(800·(1 - 1/5)) ≈ 25: 800 ± 150 (6σ) never fails by
    // chance but catches a biased rank-to-block map or a broken Floyd draw (which skew some
    // blocks by a factor).
    BigBirdOptions o;
    o.block = 1;
    std::vector<Index> hits(20, 0);
    for (std::uint64_t seed = 0; seed < 4000; ++seed) {
        o.seed = seed;
        const BlockLayout l = BlockLayout::bigbird(20, o);
        for (Index j : l.row(10)) ++hits[static_cast<std::size_t>(j)];
    }
    for (Index j = 0; j < 20; ++j) {
        const Index h = hits[static_cast<std::size_t>(j)];
        if (j == 0 || j == 19 || (j >= 9 && j <= 11))
            EXPECT_EQ(h, 4000) << "fixed block " << j;
        else
            EXPECT_NEAR(static_cast<double>(h), 800.0, 150.0) << "free block " << j;
    }
}

TEST(BlockLayoutLongformer, WindowPlusLeadingGlobalTokens) {
    // 1000 tokens, blocks of 32 (32 blocks, the last of 8 tokens), window 3, 40 global tokens
    // -> ceil(40/32) = 2 global blocks.
    const BlockLayout l = BlockLayout::longformer(1000, 32, 3, 40);
    const Index nb = 32;
    ASSERT_EQ(l.query_blocks(), nb);
    for (Index i = 0; i < nb; ++i)
        for (Index j = 0; j < nb; ++j) {
            const bool want = i < 2 || j < 2 || std::abs(i - j) <= 1;
            EXPECT_EQ(l.contains(i, j), want) << i << "," << j;
        }
    // global_tokens = 0: the band alone; window 1: the block diagonal.
    const BlockLayout diag = BlockLayout::longformer(256, 64, 1, 0);
    EXPECT_EQ(diag.kept_blocks(), 4);
    EXPECT_DOUBLE_EQ(diag.density(), 0.25);
    for (Index i = 0; i < 4; ++i) EXPECT_EQ(diag.row(i), std::vector<Index>{i});
    // Even window: leans to the past (i-1, i).
    const BlockLayout even = BlockLayout::longformer(256, 64, 2, 0);
    EXPECT_EQ(even.row(0), (std::vector<Index>{0}));
    EXPECT_EQ(even.row(2), (std::vector<Index>{1, 2}));
}

TEST(BlockLayout, DenseMaskDensityAndPicture) {
    // 70 x 45 tokens in blocks of 32: 3 x 2 blocks, the last ones partial (6 rows, 13 keys).
    BlockMask m(3, 2);
    m << true, false, false, true, false, false;
    const BlockLayout l = BlockLayout::from_block_mask(m, 32, 70, 45);
    EXPECT_EQ(l.query_blocks(), 3);
    EXPECT_EQ(l.key_blocks(), 2);
    EXPECT_EQ(l.kept_blocks(), 2);
    EXPECT_EQ(l.row_size(2), 0);
    EXPECT_EQ(l.kept_entries(), 32 * 32 + 32 * 13);
    EXPECT_DOUBLE_EQ(l.density(), (32.0 * 32 + 32 * 13) / (70.0 * 45));
    EXPECT_EQ(l.row_ptr(), (std::vector<Index>{0, 1, 2, 2}));
    EXPECT_EQ(l.col_idx(), (std::vector<Index>{0, 1}));
    const BlockMask dm = l.to_dense_mask();
    ASSERT_EQ(dm.rows(), 70);
    ASSERT_EQ(dm.cols(), 45);
    for (Index i = 0; i < 70; ++i)
        for (Index j = 0; j < 45; ++j) EXPECT_EQ(dm(i, j), m(i / 32, j / 32)) << i << "," << j;
    EXPECT_EQ(dm.count(), l.kept_entries());

    // PGM: header, then one byte per pixel, 255 where kept; 3 pixels per block.
    std::ostringstream pgm;
    l.write_pgm(pgm, 3);
    const std::string s = pgm.str();
    const std::string header = "P5\n6 9\n255\n";
    ASSERT_EQ(s.substr(0, header.size()), header);
    ASSERT_EQ(s.size(), header.size() + 6 * 9);
    for (Index y = 0; y < 9; ++y)
        for (Index x = 0; x < 6; ++x) {
            const unsigned char px = static_cast<unsigned char>(s[header.size() + static_cast<std::size_t>(y * 6 + x)]);
            EXPECT_EQ(px, m(y / 3, x / 3) ? 255 : 0) << x << "," << y;
        }
    std::ostringstream txt;
    txt << l;
    EXPECT_EQ(txt.str(), "#.\n.#\n..\n");

    const BlockLayout d = BlockLayout::dense(100, 30);
    EXPECT_EQ(d.kept_blocks(), 16);
    EXPECT_EQ(d.kept_entries(), 100 * 100);
    EXPECT_TRUE(d == BlockLayout::from_block_mask(BlockMask::Constant(4, 4, true), 30, 100, 100));
}

// ---------------------------------------------------------------------------------------------
// Accuracy against full attention improves as the layout grows.

TEST(BigBird, ErrorAgainstFullAttentionFallsAsWindowAndRandomGrow) {
    // n = 512 in blocks of 32 (16 blocks), inputs with local structure; the error is the mean
    // relative Frobenius distance to exact attention over 6 seeds (inputs and layouts both
    // change with the seed), all in double. Growing the window adds the most relevant
    // (nearby) keys; growing r adds random keys; either must lower the mean error.
    auto mean_error = [](Index window, Index random) {
        double sum = 0;
        for (std::uint64_t seed = 1; seed <= 6; ++seed) {
            const auto x = local_inputs<double>(512, 32, seed);
            BigBirdOptions o;
            o.block = 32;
            o.window = window;
            o.random = random;
            o.seed = seed;
            sum += attnx::compare(attnx::bigbird_attention(x.q, x.k, x.v, o), attnx::exact_attention(x.q, x.k, x.v))
                       .rel_fro;
        }
        return sum / 6;
    };
    std::vector<double> by_window, by_random;
    for (Index w : {1, 3, 5, 7}) by_window.push_back(mean_error(w, 0));
    for (Index r : {0, 2, 4, 8}) by_random.push_back(mean_error(3, r));
    for (std::size_t t = 1; t < 4; ++t) {
        EXPECT_LT(by_window[t], by_window[t - 1]) << "window step " << t;
        EXPECT_LT(by_random[t], by_random[t - 1]) << "random step " << t;
    }
    // Measured: window 1..7 gives 0.44, 0.40, 0.37, 0.33; r = 0..8 gives 0.40, 0.36, 0.31, 0.22.
    // The steps are real differences, not rounding: the sparse layouts are far from exact
    // attention, and 8 random blocks (13 of 16 blocks kept) remove a quarter of the error.
    EXPECT_GT(by_window[0], 0.1);
    EXPECT_LT(by_random[3], 0.75 * by_random[0]);
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(BigBird, BadInputThrowsNamingArgumentAndSizes) {
    using M = Matrix<float>;
    using E = attnx::invalid_argument;
    const M q = M::Ones(100, 16), k = M::Ones(100, 16), v = M::Ones(100, 8);
    const BlockLayout l100 = BlockLayout::dense(100, 32);
    auto bs = [&](const M& a, const M& b, const M& c, const BlockLayout& l, const AttentionOptions& o = {}) {
        return [=] { attnx::block_sparse_attention(a, b, c, l, o); };
    };
    EXPECT_THAT(bs(q, k, v, BlockLayout::dense(128, 32)),
                ThrowsMessage<E>(AllOf(HasSubstr("attnx::block_sparse_attention: layout was built for n_q = 128"),
                                       HasSubstr("n_k = 128 keys (block 32, 4x4 blocks)"),
                                       HasSubstr("q has 100 rows and k has 100 rows"))));
    EXPECT_THAT(bs(q, k, v, BlockLayout::dense(100, 120, 32)),
                ThrowsMessage<E>(HasSubstr("n_q = 100 queries and n_k = 120 keys")));
    EXPECT_THAT(bs(q, k, v, BlockLayout()), ThrowsMessage<E>(HasSubstr("layout is empty (default-constructed)")));
    EXPECT_THAT(bs(q, M::Ones(100, 12), v, l100), ThrowsMessage<E>(HasSubstr("k has 12 columns but q has 16")));
    EXPECT_THAT(bs(q, k, M::Ones(99, 8), l100), ThrowsMessage<E>(HasSubstr("v has 99 rows but k has 100")));
    EXPECT_THAT(bs(M(0, 16), k, v, l100), ThrowsMessage<E>(HasSubstr("q is empty (0x16)")));
    AttentionOptions pad;
    pad.key_padding_mask.assign(7, false);
    EXPECT_THAT(bs(q, k, v, l100, pad),
                ThrowsMessage<E>(HasSubstr("key_padding_mask has length 7 but there are n_k = k.rows() = 100 keys")));
    AttentionOptions sc;
    sc.scale = -1.0;
    EXPECT_THAT(bs(q, k, v, l100, sc), ThrowsMessage<E>(HasSubstr("scale (-1) must be finite and > 0")));
    M kn = k;
    kn(3, 5) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT(bs(q, kn, v, l100),
                ThrowsMessage<E>(HasSubstr("block_sparse_attention: k (100x16) has a non-finite entry k(3, 5) = nan")));
    M out(3, 3);
    EXPECT_THAT([&] { attnx::block_sparse_attention(q, k, v, l100, out); },
                ThrowsMessage<E>(HasSubstr("out is 3x3 but must be n_q x d_v = 100x8")));

    // bigbird_attention: self-attention only, and its options, named by the entry point.
    BigBirdOptions bo;
    EXPECT_THAT([&] { attnx::bigbird_attention(M::Ones(90, 16), k, v, bo); },
                ThrowsMessage<E>(AllOf(HasSubstr("attnx::bigbird_attention: q has 90 rows but k has 100"),
                                       HasSubstr("self-attention"))));
    auto bb = [&](const BigBirdOptions& o) { return [=] { attnx::bigbird_attention(q, k, v, o); }; };
    BigBirdOptions b0;
    b0.block = 0;
    EXPECT_THAT(bb(b0), ThrowsMessage<E>(HasSubstr("attnx::bigbird_attention: block (0) must be >= 1")));
    BigBirdOptions w0;
    w0.window = 0;
    EXPECT_THAT(bb(w0), ThrowsMessage<E>(HasSubstr("bigbird_attention: window (0) must be >= 1")));
    BigBirdOptions g;
    g.global = -1;
    EXPECT_THAT(bb(g), ThrowsMessage<E>(HasSubstr("global (-1) must be >= 0")));
    BigBirdOptions r;
    r.random = -2;
    EXPECT_THAT(bb(r), ThrowsMessage<E>(HasSubstr("random (-2) must be >= 0")));

    // Builders.
    EXPECT_THAT([&] { BlockLayout::bigbird(0, BigBirdOptions{}); },
                ThrowsMessage<E>(HasSubstr("attnx::BlockLayout::bigbird: n (0) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::bigbird(100, w0); },
                ThrowsMessage<E>(HasSubstr("BlockLayout::bigbird: window (0) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::longformer(100, 0, 3, 0); },
                ThrowsMessage<E>(HasSubstr("BlockLayout::longformer: block (0) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::longformer(100, 16, 0, 0); },
                ThrowsMessage<E>(HasSubstr("BlockLayout::longformer: window (0) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::longformer(100, 16, 3, -5); },
                ThrowsMessage<E>(HasSubstr("global_tokens (-5) must be >= 0")));
    EXPECT_THAT([&] { BlockLayout::dense(-3, 16); }, ThrowsMessage<E>(HasSubstr("BlockLayout::dense: n (-3) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::dense(10, 20, 0); }, ThrowsMessage<E>(HasSubstr("block (0) must be >= 1")));
    EXPECT_THAT([&] { BlockLayout::from_block_mask(BlockMask::Constant(3, 4, true), 32, 100, 100); },
                ThrowsMessage<E>(AllOf(HasSubstr("BlockLayout::from_block_mask: mask is 3x4"),
                                       HasSubstr("n_q = 100 and n_k = 100 in blocks of 32"),
                                       HasSubstr("= 4x4 blocks"))));
    EXPECT_THAT([&] { BlockLayout::from_block_mask(BlockMask(0, 4), 32); },
                ThrowsMessage<E>(HasSubstr("mask is empty (0x4)")));
    EXPECT_THAT([&] { BlockLayout::from_block_mask(BlockMask::Constant(2, 2, true), 0); },
                ThrowsMessage<E>(HasSubstr("from_block_mask: block (0) must be >= 1")));
    std::ostringstream os;
    EXPECT_THAT([&] { l100.write_pgm(os, 0); },
                ThrowsMessage<E>(HasSubstr("BlockLayout::write_pgm: pixels_per_block (0) must be >= 1")));
    EXPECT_THROW(l100.write_pgm(std::string("/nonexistent-dir/x.pgm")), std::runtime_error);
}

TEST(BlockSparse, NonFiniteInputOutsideEveryVisitedBlockIsReported) {
    // The input scan is fused into the kernel's reads when the layout visits every key block;
    // it must still see query rows whose block row keeps nothing, and a layout that leaves a key
    // block unread (or that causal masking leaves unread) gets the scan before the work.
    const Index b = 8, n = 24;
    const auto x = random_qkv<float>(n, n, 4, 4, 9, 1.0);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    BlockMask all_keys(3, 3), two_keys(3, 3), future_key(3, 3);
    all_keys << true, false, false, false, true, true, false, false, false;    // query block 2 keeps nothing
    two_keys << true, false, false, true, true, false, false, false, false;    // key block 2 unread
    future_key << false, true, false, true, false, false, false, false, true;  // causal leaves key block 1 unread
    struct Case {
        const BlockMask* mask;
        bool causal;
        char which;
        Index row;
    };
    const Case cases[] = {{&all_keys, false, 'q', 20}, {&all_keys, true, 'q', 23}, {&two_keys, false, 'k', 17},
                          {&two_keys, false, 'v', 23}, {&future_key, true, 'k', 9},  {&future_key, true, 'v', 15}};
    for (const Case& c : cases) {
        Matrix<float> q = x.q, k = x.k, v = x.v;
        Matrix<float>& m = c.which == 'q' ? q : c.which == 'k' ? k : v;
        m(c.row, 1) = nan;
        AttentionOptions o;
        o.causal = c.causal;
        const BlockLayout layout = BlockLayout::from_block_mask(*c.mask, b, n, n);
        const std::string want = testing_support::non_finite_entry(c.which, n, 4, c.row, 1);
        EXPECT_THAT([&] { attnx::block_sparse_attention(q, k, v, layout, o); },
                    ThrowsMessage<attnx::invalid_argument>(HasSubstr(want)))
            << want;
    }
}
