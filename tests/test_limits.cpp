// SPDX-License-Identifier: MIT
// Inputs that validation accepts but that sit at the limits: size options up to INT64_MAX (a
// tile, block or window larger than the input means one tile / block / the whole sequence),
// exceptions inside a parallel region (carried out, never std::terminate), an `out` buffer that
// shares memory with an input (rejected, naming both), value types in a state their checks do
// not see (moved-from layouts and projections), every key padded (zero rows in every
// mechanism), and huge values at padded positions (they enter no logit, so they are accepted).
#include <attnx/attnx.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/inputs.hpp"

using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;
using E = attnx::invalid_argument;

namespace {

constexpr Index kMax = std::numeric_limits<Index>::max();

// ---- 1. size options near the integer limit ----

static_assert(attnx::detail::ceil_div(0, 5) == 0, "");
static_assert(attnx::detail::ceil_div(10, 3) == 4, "");
static_assert(attnx::detail::ceil_div(9, 3) == 3, "");
static_assert(attnx::detail::ceil_div(kMax, 1) == kMax, "");
static_assert(attnx::detail::ceil_div(kMax, kMax) == 1, "");
static_assert(attnx::detail::ceil_div(kMax - 1, kMax) == 1, "");
static_assert(attnx::detail::ceil_div(kMax, kMax - 1) == 2, "");
static_assert(attnx::detail::ceil_div(kMax, 2) == kMax / 2 + 1, "");

// A tile larger than the input is one tile: the same computation as the default tile on a
// 10-row input (also one tile), hence bit-identical, with and without causal masking.
TEST(SizeLimits, ExactTilesUpToInt64Max) {
    const auto x = random_qkv<double>(10, 10, 3, 3, 1);
    for (bool causal : {false, true}) {
        attnx::ExactOptions base;
        base.causal = causal;
        const Matrix<double> expected = attnx::exact_attention(x.q, x.k, x.v, base);
        ASSERT_TRUE(expected.allFinite());
        ASSERT_GT(expected.norm(), 0.1);
        for (Index tile : {kMax, kMax - 8, Index(1) << 40}) {
            attnx::ExactOptions o = base;
            o.key_tile = tile;
            EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, o), expected) << "key_tile " << tile;
            o = base;
            o.query_tile = tile;
            EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, o), expected) << "query_tile " << tile;
            o.key_tile = tile;
            Matrix<double> out(10, 3);
            attnx::exact_attention(x.q, x.k, x.v, out, o);
            EXPECT_EQ(out, expected) << "both tiles " << tile;
        }
    }
}

// The example: query_tile = 2^40 on a 10 x 4 input used to allocate 2^40 rows inside
// a parallel region (std::terminate); the workspace is now sized by the input.
TEST(SizeLimits, HugeQueryTileAllocatesWhatTheInputNeeds) {
    const auto x = random_qkv<float>(10, 10, 4, 4, 2);
    attnx::ExactOptions o;
    o.query_tile = Index(1) << 40;
    EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, o), attnx::exact_attention(x.q, x.k, x.v));
}

TEST(SizeLimits, BlockLargerThanTheSequenceIsOneBlock) {
    const auto x = random_qkv<double>(10, 10, 3, 3, 3);
    const Matrix<double> exact = attnx::exact_attention(x.q, x.k, x.v);
    // dense(10, INT64_MAX) used to crash the kernel (segmentation fault).
    for (Index block : {kMax, kMax - 1, Index(11)}) {
        const attnx::BlockLayout dense = attnx::BlockLayout::dense(10, block);
        EXPECT_EQ(dense.block_size(), block) << "reported as given";
        EXPECT_EQ(dense.query_blocks(), 1);
        EXPECT_LT(attnx::compare(attnx::block_sparse_attention(x.q, x.k, x.v, dense), exact).rel_fro, 1e-14);
        const attnx::BlockLayout lf = attnx::BlockLayout::longformer(10, block, kMax, kMax);
        EXPECT_LT(attnx::compare(attnx::block_sparse_attention(x.q, x.k, x.v, lf), exact).rel_fro, 1e-14);
    }
    attnx::BigBirdOptions bo;
    bo.block = kMax;
    bo.window = kMax;
    bo.global = kMax;
    bo.random = kMax;
    for (bool causal : {false, true}) {
        attnx::AttentionOptions o;
        o.causal = causal;
        attnx::ExactOptions eo(o);
        const Matrix<double> ref = attnx::exact_attention(x.q, x.k, x.v, eo);
        EXPECT_LT(attnx::compare(attnx::bigbird_attention(x.q, x.k, x.v, bo, o), ref).rel_fro, 1e-14);
        Matrix<double> out(10, 3);
        attnx::bigbird_attention(x.q, x.k, x.v, bo, out, o);
        EXPECT_LT(attnx::compare(out, ref).rel_fro, 1e-14);
    }
    // Huge windows, global and random counts on a real multi-block layout: every block kept.
    attnx::BigBirdOptions wide;
    wide.block = 3;
    wide.window = kMax;
    wide.global = 0;
    wide.random = kMax;
    EXPECT_DOUBLE_EQ(attnx::BlockLayout::bigbird(10, wide).density(), 1.0);
    EXPECT_DOUBLE_EQ(attnx::BlockLayout::longformer(10, 3, kMax - 1, 0).density(), 1.0);
    EXPECT_DOUBLE_EQ(attnx::BlockLayout::longformer(10, 3, 1, kMax).density(), 1.0);
}

TEST(SizeLimits, OverflowingSizesAreRejected) {
    attnx::BlockMask mask(2, 3);
    mask.setConstant(true);
    EXPECT_THAT([&] { attnx::BlockLayout::from_block_mask(mask, kMax / 2 + 1); },
                ThrowsMessage<E>(AllOf(HasSubstr("BlockLayout::from_block_mask: mask is 2x3 blocks of"),
                                       HasSubstr("overflow Index"))));
    EXPECT_THAT([&] { attnx::LinformerProjection<float>::gaussian(kMax, 2, 1); },
                ThrowsMessage<E>(AllOf(HasSubstr("LinformerProjection::gaussian: k * n_max = "),
                                       HasSubstr("overflow Index"))));
    const auto x = random_qkv<float>(10, 10, 3, 3, 4);
    attnx::NystromOptions no;
    no.num_landmarks = kMax;
    EXPECT_THAT([&] { attnx::nystrom_attention(x.q, x.k, x.v, no); },
                ThrowsMessage<E>(HasSubstr("must satisfy 1 <= m <= n (n = k.rows() = 10)")));
}

// ---- 2. no exception escapes a parallel region ----

// A key-tile list whose range() throws for one tile: a real exception raised inside the
// kernel's parallel region (standing in for std::bad_alloc from an Eigen product there).
struct ThrowingTiles {
    Index n_k = 0, bk = 0, tiles_per_query = 0, throw_qt = 0;
    Index count(Index) const { return tiles_per_query; }
    attnx::detail::KeyRange range(Index qt, Index t) const {
        if (qt == throw_qt && t == tiles_per_query - 1) throw std::bad_alloc();
        return {t * bk, std::min(n_k, (t + 1) * bk)};
    }
};

TEST(ParallelRegions, AnExceptionInsideTheKernelReachesTheCaller) {
    const auto x = random_qkv<float>(256, 256, 8, 8, 5);
    Matrix<float> out(256, 8);
    ThrowingTiles tiles;
    tiles.n_k = 256;
    tiles.bk = 16;
    tiles.tiles_per_query = 16;
    // 16 query tiles of 16 rows: the unsplit path; then 2 query tiles of 128: the split path.
    for (Index bq : {Index(16), Index(128)}) {
        tiles.throw_qt = 256 / bq - 1;
        EXPECT_THROW(attnx::detail::online_softmax_attention<float>(x.q, x.k, x.v, 0.5f, attnx::detail::MaskSpec{}, bq,
                                                                    16, tiles, out),
                     std::bad_alloc)
            << "bq " << bq;
    }
}

TEST(ParallelRegions, RegionErrorsCarriesTheExceptionOut) {
    attnx::detail::RegionErrors errors;
    std::vector<int> ran(64, 0);
    ATTNX_OMP(parallel for schedule(static, 1))
    for (int i = 0; i < 64; ++i)
        errors.run([&] {
            ran[static_cast<std::size_t>(i)] = 1;
            if (i == 0) throw std::runtime_error("first");
        });
    EXPECT_THAT([&] { errors.rethrow(); }, ThrowsMessage<std::runtime_error>(HasSubstr("first")));
    EXPECT_EQ(ran[0], 1);
}

// ---- 3. out sharing memory with an input ----

// n = 300, d = d_v = 4 as in the issue: with out aliasing an input the result used to differ
// from the separate-buffer call by up to 0.25.
TEST(OutOverlap, EveryOutOverloadRejectsAliasing) {
    auto x = random_qkv<double>(300, 300, 4, 4, 6);
    const auto shares = [](const char* fn, const char* name) {
        return ThrowsMessage<E>(AllOf(HasSubstr(std::string("attnx::") + fn + ": out (300x4) shares memory with " + name),
                                      HasSubstr("does not compute in place")));
    };
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, x.v); }, shares("exact_attention", "v"));
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, x.k); }, shares("exact_attention", "k"));
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, x.q); }, shares("exact_attention", "q"));
    const attnx::BlockLayout layout = attnx::BlockLayout::bigbird(300);
    EXPECT_THAT([&] { attnx::block_sparse_attention(x.q, x.k, x.v, layout, x.v); },
                shares("block_sparse_attention", "v"));
    EXPECT_THAT([&] { attnx::bigbird_attention(x.q, x.k, x.v, attnx::BigBirdOptions{}, x.k); },
                shares("bigbird_attention", "k"));
    attnx::NystromOptions no;
    no.num_landmarks = 16;
    no.conv_kernel = {0.25, 0.5, 0.25};
    EXPECT_THAT([&] { attnx::nystrom_attention(x.q, x.k, x.v, x.v, no); }, shares("nystrom_attention", "v"));
    const auto proj = attnx::LinformerProjection<double>::gaussian(8, 300, 1);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, proj, x.v); }, shares("linformer_attention", "v"));
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, proj.e(), proj.f(), x.q); },
                shares("linformer_attention", "q"));

    // A view into a wider buffer: overlapping columns are rejected, disjoint ones work.
    Matrix<double> wide(300, 12);
    wide.leftCols(4) = x.v;
    const auto v_view = wide.leftCols(4);
    auto overlapping = wide.middleCols(2, 4);
    auto disjoint = wide.rightCols(4);
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, v_view, overlapping); }, shares("exact_attention", "v"));
    attnx::exact_attention(x.q, x.k, v_view, disjoint);
    EXPECT_LT(attnx::compare(Matrix<double>(wide.rightCols(4)), attnx::exact_attention(x.q, x.k, x.v)).rel_fro, 1e-15);
    // An expression argument is evaluated into a temporary before the kernel writes: fine.
    Matrix<double> out = x.v;
    attnx::exact_attention(x.q, x.k, out * 1.0, out);
    EXPECT_LT(attnx::compare(out, attnx::exact_attention(x.q, x.k, x.v)).rel_fro, 1e-15);
}

// ---- 4. value types in a state their checks do not see ----

TEST(StaleObjects, MovedFromValuesAreEmptyAndRejected) {
    const auto x = random_qkv<float>(64, 64, 8, 8, 7);
    attnx::BlockLayout layout = attnx::BlockLayout::bigbird(64, attnx::BigBirdOptions{16, 3, 2, 1, 0});
    attnx::BlockLayout moved = std::move(layout);
    EXPECT_TRUE(moved.consistent());
    EXPECT_EQ(layout.block_size(), 0);  // NOLINT(bugprone-use-after-move): the documented state
    EXPECT_FALSE(layout.consistent());
    EXPECT_THAT([&] { attnx::block_sparse_attention(x.q, x.k, x.v, layout); },
                ThrowsMessage<E>(HasSubstr("layout is empty (default-constructed) or moved-from")));
    attnx::BlockLayout assigned = attnx::BlockLayout::dense(64, 16);
    assigned = std::move(moved);
    EXPECT_TRUE(assigned.consistent());
    EXPECT_EQ(attnx::block_sparse_attention(x.q, x.k, x.v, assigned),
              attnx::bigbird_attention(x.q, x.k, x.v, attnx::BigBirdOptions{16, 3, 2, 1, 0}));

    auto proj = attnx::LinformerProjection<float>::gaussian(8, 64, 1);
    const auto taken = std::move(proj);
    EXPECT_THAT([&] { attnx::linformer_attention(x.q, x.k, x.v, proj); },
                ThrowsMessage<E>(HasSubstr("the projection is empty")));
    const attnx::Linformer<float> none;
    EXPECT_THAT([&] { none(x.q, x.k, x.v); }, ThrowsMessage<E>(HasSubstr("holds no projection")));
}

// ---- also: every key padded gives zero rows; huge padded values are accepted ----

TEST(Padding, EveryKeyPaddedGivesZeroRowsInEveryMechanism) {
    const auto x = random_qkv<float>(32, 32, 8, 8, 8);
    attnx::AttentionOptions o;
    o.key_padding_mask.assign(32, true);
    const Matrix<float> zero = Matrix<float>::Zero(32, 8);
    EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, attnx::ExactOptions(o)), zero);
    attnx::NystromOptions no(o);
    no.num_landmarks = 8;  // larger than the 0 unpadded keys: not an error when no key is left
    attnx::NystromReport report;
    report.num_landmarks = 99;
    EXPECT_EQ(attnx::nystrom_attention(x.q, x.k, x.v, no, &report), zero);
    EXPECT_EQ(report.num_landmarks, 0);  // no landmark formed: the report is reset, not left stale
    no.conv_kernel = {0.5, 1.0, 0.5};  // the conv skip reads only unpadded values: zero too
    EXPECT_EQ(attnx::nystrom_attention(x.q, x.k, x.v, no), zero);
    EXPECT_EQ(attnx::linformer_attention(x.q, x.k, x.v, attnx::LinformerProjection<float>::gaussian(4, 32, 1), o), zero);
    EXPECT_EQ(attnx::bigbird_attention(x.q, x.k, x.v, attnx::BigBirdOptions{8, 3, 1, 1, 0}, o), zero);
    // A non-zero number of unpadded keys below m stays an error.
    no.key_padding_mask.assign(32, true);
    no.key_padding_mask[3] = false;
    EXPECT_THAT([&] { attnx::nystrom_attention(x.q, x.k, x.v, no); },
                ThrowsMessage<E>(HasSubstr("(n = 1 unpadded keys of k.rows() = 32)")));
}

// A float key of 1e37 at a padded position enters no logit: the call is accepted and equals the
// call with that key zeroed (bit for bit: the padded row's scores are overwritten by the mask,
// and its weight is exactly 0).
TEST(Padding, HugeValuesAtPaddedPositionsAreAccepted) {
    auto x = random_qkv<float>(40, 40, 8, 8, 9);
    attnx::AttentionOptions o;
    o.key_padding_mask.assign(40, false);
    o.key_padding_mask[5] = o.key_padding_mask[33] = true;
    auto clean = x;
    clean.k.row(5).setZero();
    clean.v.row(33).setZero();
    x.k.row(5).setConstant(1e37f);
    x.v.row(33).setConstant(-1e37f);
    attnx::NystromOptions no(o);
    no.num_landmarks = 8;
    attnx::BigBirdOptions bo;
    bo.block = 8;
    const auto proj = attnx::LinformerProjection<float>::gaussian(8, 40, 1);
    EXPECT_EQ(attnx::exact_attention(x.q, x.k, x.v, attnx::ExactOptions(o)),
              attnx::exact_attention(clean.q, clean.k, clean.v, attnx::ExactOptions(o)));
    EXPECT_EQ(attnx::nystrom_attention(x.q, x.k, x.v, no), attnx::nystrom_attention(clean.q, clean.k, clean.v, no));
    EXPECT_EQ(attnx::bigbird_attention(x.q, x.k, x.v, bo, o), attnx::bigbird_attention(clean.q, clean.k, clean.v, bo, o));
    EXPECT_EQ(attnx::linformer_attention(x.q, x.k, x.v, proj, o),
              attnx::linformer_attention(clean.q, clean.k, clean.v, proj, o));
    // Unpadded, the same key fails the logit bound (scale * d * max|q| * max|k| > max/16), which
    // rejects it where the scan runs before the work (the materialized kernel, Nyström). The
    // streaming kernel sees its own scores instead: they fit (below 1e38), so it accepts the key.
    o.key_padding_mask[5] = false;
    attnx::ExactOptions materialized(o);
    materialized.kernel = attnx::ExactKernel::Materialized;
    EXPECT_THAT([&] { attnx::exact_attention(x.q, x.k, x.v, materialized); },
                ThrowsMessage<E>(HasSubstr("logits may overflow float")));
    no.key_padding_mask[5] = false;
    EXPECT_THAT([&] { attnx::nystrom_attention(x.q, x.k, x.v, no); },
                ThrowsMessage<E>(HasSubstr("logits may overflow float")));
    EXPECT_TRUE(attnx::exact_attention(x.q, x.k, x.v, attnx::ExactOptions(o)).allFinite());
}

// attention_matrix has no V (it scans an n_k x 0 stand-in): with a key padding mask and a
// scale past float's range, the bound that re-measures max|v| over unpadded rows must cope with
// rows of no entries (a fuzzer found Eigen's assertion on maxCoeff of an empty row) and reach
// the logit bound's complaint.
TEST(Padding, AttentionMatrixWithAMaskAndAnOverflowingScaleIsRejected) {
    const auto x = random_qkv<float>(6, 6, 4, 4, 3);
    attnx::AttentionOptions o;
    o.key_padding_mask.assign(6, false);
    o.key_padding_mask[2] = true;
    o.scale = 1e300;
    EXPECT_THAT([&] { attnx::attention_matrix(x.q, x.k, o); },
                ThrowsMessage<E>(HasSubstr("logits may overflow float: scale * d * max|q| * max|k| = 1e+300 * 4")));
}

}  // namespace
