// SPDX-License-Identifier: MIT
// attnx::estimate_error: the normal quantile, the row sampler (pinned, uniform, seeded), s = N
// giving the exact error with a zero-width interval, the exact rows under causal and padding
// masks, the coverage of the interval over 100 seeded trials, and every documented error; and
// estimate_error_per_head over the items of a multi-head layer.
#include <attnx/estimate.hpp>
#include <attnx/exact.hpp>
#include <attnx/mechanisms.hpp>
#include <attnx/metrics.hpp>
#include <attnx/multi_head.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "../examples/example_inputs.hpp"
#include "support/inputs.hpp"

using attnx::EstimateOptions;
using attnx::ErrorEstimate;
using attnx::Index;
using attnx::Matrix;
using testing::AllOf;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_support::random_qkv;

namespace {

attnx::Nystrom nystrom(Index m) {
    attnx::NystromOptions o;
    o.num_landmarks = m;
    return attnx::Nystrom{o};
}

attnx::BlockSparse longformer(Index n, Index b) {
    return attnx::BlockSparse{attnx::BlockLayout::longformer(n, b, 3, b), {}};
}

}  // namespace

TEST(NormalQuantile, MatchesAS241ReferenceValues) {
    // Reference: Python's statistics.NormalDist().inv_cdf (the same algorithm, AS241), printed
    // to 17 digits; both are correctly rounded to within a few ulp, so 1e-15 relative.
    EXPECT_NEAR(attnx::normal_quantile(0.975), 1.9599639845400536, 1e-15 * 2);
    EXPECT_NEAR(attnx::normal_quantile(0.025), -1.9599639845400538, 1e-15 * 2);
    EXPECT_EQ(attnx::normal_quantile(0.5), 0.0);
    EXPECT_NEAR(attnx::normal_quantile(0.9), 1.2815515655446008, 1e-15 * 2);
    EXPECT_NEAR(attnx::normal_quantile(0.3), -0.5244005127080407, 1e-15);
    EXPECT_NEAR(attnx::normal_quantile(1e-10), -6.361340902404056, 1e-15 * 7);   // second branch
    EXPECT_NEAR(attnx::normal_quantile(1e-20), -9.262340089798405, 1e-15 * 10);  // third branch
    EXPECT_THAT([] { attnx::normal_quantile(1.0); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("normal_quantile: p (1) must be in (0, 1)")));
}

TEST(SampleRows, DistinctAscendingSeededAndPinned) {
    const std::vector<Index> r = attnx::sample_rows(1000, 8, 1);
    ASSERT_EQ(r.size(), 8u);
    for (std::size_t i = 1; i < r.size(); ++i) EXPECT_LT(r[i - 1], r[i]);
    EXPECT_GE(r.front(), 0);
    EXPECT_LT(r.back(), 1000);
    EXPECT_EQ(attnx::sample_rows(1000, 8, 1), r);  // same seed, same rows
    EXPECT_NE(attnx::sample_rows(1000, 8, 2), r);
    // Pinned: the sampler is integer arithmetic on CounterRng bits, identical on every platform.
    EXPECT_EQ(r, (std::vector<Index>{31, 58, 206, 335, 425, 434, 693, 951}));
    // s = N takes every row; s = 0 none.
    EXPECT_EQ(attnx::sample_rows(5, 5, 3), (std::vector<Index>{0, 1, 2, 3, 4}));
    EXPECT_TRUE(attnx::sample_rows(5, 0, 3).empty());
    EXPECT_THAT([] { attnx::sample_rows(5, 6, 0); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("samples (s = 6) must satisfy 0 <= s <= population (5)")));
}

TEST(SampleRows, EveryRowEquallyLikely) {
    // N = 20, s = 5, 4000 seeds: each row is drawn Binomial(4000, 1/4) times, mean 1000, sd 27.4;
    // |count - 1000| <= 150 is 5.5 sd (a false alarm has probability < 1e-6 over all 20 rows),
    // while a sampler biased by 20% on any row fails it.
    std::vector<int> count(20, 0);
    for (std::uint64_t seed = 0; seed < 4000; ++seed)
        for (Index r : attnx::sample_rows(20, 5, seed)) ++count[static_cast<std::size_t>(r)];
    for (int c : count) EXPECT_NEAR(c, 1000, 150);
}

TEST(EstimateError, AllRowsGiveTheExactErrorWithZeroWidth) {
    const Index n = 256;
    const auto x = examples::realistic_inputs<float>(n, 32, 32, 3);
    const Matrix<float> exact = attnx::exact_attention(x.q, x.k, x.v);
    EstimateOptions eo;
    eo.samples = n;
    // Nyström and Longformer: the estimate over all rows is the relative Frobenius error that
    // compare() computes from the full matrices (same float exact rows: the gathered rows are
    // all of Q, run by the same kernel; the sums in double differ only in order, ~1e-15).
    for (int which = 0; which < 2; ++which) {
        ErrorEstimate e;
        Matrix<float> approx;
        if (which == 0) {
            e = attnx::estimate_error(nystrom(16), x.q, x.k, x.v, eo);
            approx = nystrom(16)(x.q, x.k, x.v);
        } else {
            e = attnx::estimate_error(longformer(n, 32), x.q, x.k, x.v, eo);
            approx = longformer(n, 32)(x.q, x.k, x.v);
        }
        const attnx::ErrorMetrics m = attnx::compare(approx, exact);
        EXPECT_GT(m.rel_fro, 0.01) << which;  // a real error, not a trivial 0 = 0
        EXPECT_NEAR(e.rel_fro, m.rel_fro, 1e-12 * m.rel_fro) << which;
        EXPECT_EQ(e.ci_low, e.rel_fro) << which;
        EXPECT_EQ(e.ci_high, e.rel_fro) << which;
        EXPECT_NEAR(e.max_abs_sampled, m.max_abs, 1e-12 * m.max_abs) << which;
        EXPECT_EQ(e.samples, n);
        EXPECT_EQ(e.population, n);
    }
}

TEST(EstimateError, ExactRowsKeepCausalLimitAndPaddingOfTheirPositions) {
    // Cross-attention n_q = 200 < n_k = 300, causal (bottom-right: query i sees keys j <= i + 100)
    // and 30 padded keys. A dense block layout computes exact attention with the same masks, so
    // the estimated error must be float rounding: any sampled row given the wrong causal limit
    // or the padding wrong differs by O(1) (its softmax runs over other keys).
    const Index n_q = 200, n_k = 300;
    const auto x = random_qkv<float>(n_q, n_k, 32, 24, 5);
    attnx::AttentionOptions o;
    o.causal = true;
    o.key_padding_mask.assign(n_k, false);
    for (Index j = 0; j < n_k; j += 10) o.key_padding_mask[static_cast<std::size_t>(j)] = true;
    const attnx::BlockSparse dense{attnx::BlockLayout::dense(n_q, n_k, 16), o};
    for (Index s : {2, 37, 200}) {
        EstimateOptions eo;
        eo.samples = s;
        eo.seed = 11;
        const ErrorEstimate e = attnx::estimate_error(dense, x.q, x.k, x.v, eo);
        // float: both sides round each of ~300 terms at eps 6e-8; 1e-5 is 100x the typical 1e-7.
        EXPECT_LT(e.rel_fro, 1e-5) << s;
        EXPECT_LT(e.ci_high, 1e-5) << s;
        EXPECT_LT(e.max_abs_sampled, 1e-5) << s;
    }
    // The same with causal off must see all (unpadded) keys: a causal mechanism is now wrong.
    attnx::BlockSparse causal_only = dense;
    attnx::Exact exact_all;
    exact_all.options.key_padding_mask = o.key_padding_mask;
    EstimateOptions eo;
    eo.samples = 50;
    const Matrix<float> causal_out = causal_only(x.q, x.k, x.v);
    const ErrorEstimate e = attnx::estimate_error(exact_all, x.q, x.k, x.v, causal_out, eo);
    EXPECT_GT(e.rel_fro, 0.1);  // rows past ~100 lose up to 1/3 of their keys
}

TEST(EstimateError, NystromQueryPaddingRowsAreLeftOut) {
    // Padded query rows are zero in Nyström's output and, by definition, in the reference; the
    // population is the 192 unpadded rows, and s = 192 reproduces the error over the full matrix
    // whose padded rows are zero on both sides.
    const Index n = 256;
    const auto x = examples::realistic_inputs<float>(n, 32, 32, 4);
    attnx::NystromOptions o;
    o.num_landmarks = 16;
    o.query_padding_mask.assign(n, false);
    for (Index i = 0; i < n; i += 4) o.query_padding_mask[static_cast<std::size_t>(i)] = true;
    const attnx::Nystrom mech{o};
    Matrix<float> exact = attnx::exact_attention(x.q, x.k, x.v);
    for (Index i = 0; i < n; i += 4) exact.row(i).setZero();
    const Matrix<float> approx = mech(x.q, x.k, x.v);
    const double truth = attnx::compare(approx, exact).rel_fro;
    EstimateOptions eo;
    eo.samples = 192;
    const ErrorEstimate e = attnx::estimate_error(mech, x.q, x.k, x.v, approx, eo);
    EXPECT_EQ(e.population, 192);
    EXPECT_NEAR(e.rel_fro, truth, 1e-12 * truth);
    EXPECT_EQ(e.ci_low, e.ci_high);
    EXPECT_THAT([&] {
        eo.samples = 193;
        attnx::estimate_error(mech, x.q, x.k, x.v, eo);
    }, ThrowsMessage<attnx::invalid_argument>(HasSubstr("samples (s = 193) must satisfy 2 <= s <= N (N = 192 unpadded query rows)")));
}

TEST(EstimateError, IntervalCoversTheTrueErrorInAtLeast90Of100Trials) {
    // n = 512, s = 64 (1/8 of the rows), 95% intervals, seeds 0..99. The true error is computed
    // from the full matrices. If the interval had its nominal coverage, the number of hits is
    // Binomial(100, 0.95): P(< 90) = 0.028, and the inputs and seeds are fixed, so the count
    // below is deterministic (measured: 94 for m = 16, 93 for m = 64); a wrong variance (e.g. missing the 1/s, or
    // the b̄² normalisation) drops it far below 90.
    const Index n = 512;
    const auto x = examples::realistic_inputs<float>(n, 64, 64, 9);
    const Matrix<float> exact = attnx::exact_attention(x.q, x.k, x.v);
    for (Index m : {16, 64}) {
        const attnx::Nystrom mech = nystrom(m);
        const Matrix<float> approx = mech(x.q, x.k, x.v);
        const double truth = attnx::compare(approx, exact).rel_fro;
        int covered = 0;
        double mean = 0, mean_sq = 0, half_width = 0;
        for (std::uint64_t seed = 0; seed < 100; ++seed) {
            EstimateOptions eo;
            eo.samples = 64;
            eo.seed = seed;
            const ErrorEstimate e = attnx::estimate_error(mech, x.q, x.k, x.v, approx, eo);
            ASSERT_LE(e.ci_low, e.rel_fro);
            ASSERT_LE(e.rel_fro, e.ci_high);
            covered += e.ci_low <= truth && truth <= e.ci_high;
            mean += e.rel_fro / 100;
            mean_sq += e.rel_fro * e.rel_fro / 100;
            half_width += (e.ci_high - e.ci_low) / 2 / 100;
        }
        // An interval that is too wide also covers: its half-width must match the spread of the
        // estimates over seeds, half_width ~ 1.96 sd.
        const double sd = std::sqrt(std::max(0.0, mean_sq - mean * mean));
        // Measured 1.008 (m = 16) and 0.988 (m = 64). The sd of 100 estimates is itself uncertain
        // by about 1/sqrt(2 * 99) = 7%; [0.75, 1.33] is over 3 of those either way, and an
        // interval without the 1/s (or with 1/b̄ instead of 1/b̄²) is off by a factor of 8 or more.
        const double ratio = half_width / (attnx::normal_quantile(0.975) * sd);
        EXPECT_GT(ratio, 0.75) << "m = " << m;
        EXPECT_LT(ratio, 1.33) << "m = " << m;
        EXPECT_GE(covered, 90) << "m = " << m;
        EXPECT_NEAR(mean, truth, 0.05 * truth) << "m = " << m;  // ratio estimator bias is O(1/s)
    }
}

TEST(EstimateError, ZeroReferenceRowsGiveAnUnboundedInterval) {
    // V = 0: every exact row is zero and so is Nyström's output; with s < N nothing is known
    // about the unsampled rows' norm beyond the sample: [0, +inf], never NaN.
    const auto x = random_qkv<float>(64, 64, 16, 16, 2);
    const Matrix<float> v = Matrix<float>::Zero(64, 16);
    EstimateOptions eo;
    eo.samples = 8;
    const ErrorEstimate e = attnx::estimate_error(nystrom(8), x.q, x.k, v, eo);
    EXPECT_EQ(e.rel_fro, 0.0);
    EXPECT_EQ(e.ci_low, 0.0);
    EXPECT_EQ(e.ci_high, std::numeric_limits<double>::infinity());
    eo.samples = 64;
    const ErrorEstimate all = attnx::estimate_error(nystrom(8), x.q, x.k, v, eo);
    EXPECT_EQ(all.rel_fro, 0.0);
    EXPECT_EQ(all.ci_high, 0.0);
}

TEST(EstimateError, BadOptionsThrowBeforeAnyWork) {
    const auto x = random_qkv<float>(100, 100, 16, 16, 1);
    const attnx::Nystrom mech = nystrom(8);
    EstimateOptions ten;
    ten.samples = 10;
    auto run = [&](Index s, double c) {
        EstimateOptions eo;
        eo.samples = s;
        eo.confidence = c;
        attnx::estimate_error(mech, x.q, x.k, x.v, eo);
    };
    EXPECT_THAT([&] { run(1, 0.95); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr(
                    "attnx::estimate_error: samples (s = 1) must satisfy 2 <= s <= N (N = 100 query rows = q.rows())")));
    EXPECT_THAT([&] { run(101, 0.95); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("samples (s = 101) must satisfy 2 <= s <= N (N = 100")));
    for (double c : {0.0, 1.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()})
        EXPECT_THAT([&] { run(10, c); },
                    ThrowsMessage<attnx::invalid_argument>(
                        AllOf(HasSubstr("estimate_error: confidence ("), HasSubstr(") must be in the open interval (0, 1)"))))
            << c;
    EXPECT_THAT([&] { attnx::estimate_error(mech, x.q, Matrix<float>(x.k.leftCols(8)), x.v, ten); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("estimate_error: k has 8 columns but q has 16")));
    EXPECT_THAT([&] { attnx::estimate_error(mech, x.q, x.k, x.v, Matrix<float>(x.q.topRows(3)), ten); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("estimate_error: approx is 3x16 but must be n_q x d_v = 100x16")));
    attnx::NystromOptions o;
    o.num_landmarks = 8;
    o.query_padding_mask.assign(99, false);
    EXPECT_THAT([&] { attnx::estimate_error(attnx::Nystrom{o}, x.q, x.k, x.v, ten); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("estimate_error: query_padding_mask has length 99 but there are n_q = q.rows() = 100")));
    Matrix<float> bad = x.k;
    bad(3, 2) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT([&] { attnx::estimate_error(mech, x.q, bad, x.v, ten); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("estimate_error: k (100x16) has a non-finite entry k(3, 2)")));
    // The mechanism's own errors come from its call, before it does any work.
    EXPECT_THAT([&] { attnx::estimate_error(nystrom(101), x.q, x.k, x.v, ten); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("nystrom_attention: num_landmarks (m = 101)")));
}

// ---- estimate_error_per_head: every item (b, h) of a multi-head layer

namespace {

/// Rows [0, rows) of head h of sequence b of a contiguous (B, N, H, D) buffer.
Matrix<double> head_slice(const Matrix<double>& bnhd, Index n, Index heads, Index d, Index b, Index h, Index rows) {
    Matrix<double> m(rows, d);
    for (Index t = 0; t < rows; ++t)
        for (Index j = 0; j < d; ++j) m(t, j) = bnhd.data()[((b * n + t) * heads + h) * d + j];
    return m;
}

}  // namespace

// With samples >= every item's rows, each item's estimate is its exact error: the single-head
// mechanism on the cut sequence (the layer's lengths, causal flag and scale applied) against
// exact attention with the same options, computed here by hand. Grouped-query heads (H_q = 4,
// H_kv = 2), two sequences of different lengths, one of a single query row (s = N = 1) and
// one item with no keys. Double: both sides compute the same rows in a different grouping,
// so they agree to rounding (1e-12 relative).
TEST(EstimateErrorPerHead, EveryRowGivesEachItemsExactError) {
    const Index B = 3, N = 20, Hq = 4, Hkv = 2, D = 8, Dv = 6;
    // Flat (B, N, H, D) buffers (1 x size matrices).
    const Matrix<double> qb = attnx::random_normal<double>(1, B * N * Hq * D, 5, 1, 0.0, 1.5);
    const Matrix<double> kb = attnx::random_normal<double>(1, B * N * Hkv * D, 5, 2, 0.0, 1.5);
    const Matrix<double> vb = attnx::random_normal<double>(1, B * N * Hkv * Dv, 5, 3, 0.0, 1.0);
    const auto qv = attnx::HeadsView<const double>::bnhd(qb.data(), B, N, Hq, D);
    const auto kv = attnx::HeadsView<const double>::bnhd(kb.data(), B, N, Hkv, D);
    const auto vv = attnx::HeadsView<const double>::bnhd(vb.data(), B, N, Hkv, Dv);
    attnx::MultiHeadOptions mo;
    mo.causal = true;
    mo.scale = 0.3;
    mo.query_lengths = {N, 1, 7};
    mo.key_lengths = {N, 9, 0};
    // FAVOR+ (any sizes, causal, with a scale): every item shape above is valid.
    attnx::RandomFeatureOptions fo;
    fo.num_features = 16;
    const attnx::Performer<double> mech{attnx::PositiveRandomFeatures<double>::draw(D, 4, fo), {}};
    EstimateOptions eo;
    eo.samples = 1000;
    const std::vector<ErrorEstimate> est = attnx::estimate_error_per_head(mech, qv, kv, vv, mo, eo);
    ASSERT_EQ(est.size(), static_cast<std::size_t>(B * Hq));
    for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < Hq; ++h) {
            const ErrorEstimate& e = est[static_cast<std::size_t>(b * Hq + h)];
            const Index lq = mo.query_lengths[static_cast<std::size_t>(b)], lk = mo.key_lengths[static_cast<std::size_t>(b)];
            SCOPED_TRACE("b = " + std::to_string(b) + ", h = " + std::to_string(h));
            if (lk == 0) {
                EXPECT_EQ(e.rel_fro, 0.0);
                EXPECT_EQ(e.ci_high, 0.0);
                EXPECT_EQ(e.samples, 0);
                EXPECT_EQ(e.population, lq);
                continue;
            }
            const Matrix<double> qs = head_slice(qb, N, Hq, D, b, h, lq);
            const Matrix<double> ks = head_slice(kb, N, Hkv, D, b, h / 2, lk);
            const Matrix<double> vs = head_slice(vb, N, Hkv, Dv, b, h / 2, lk);
            attnx::LinearAttentionOptions lo;
            lo.causal = true;
            lo.scale = 0.3;
            const Matrix<double> approx = attnx::performer_attention(qs, ks, vs, mech.features, lo);
            attnx::ExactOptions xo;
            xo.causal = true;
            xo.scale = 0.3;
            const Matrix<double> exact = attnx::exact_attention(qs, ks, vs, xo);
            const double want = attnx::compare(approx, exact).rel_fro;
            EXPECT_EQ(e.samples, lq);
            EXPECT_EQ(e.population, lq);
            EXPECT_NEAR(e.rel_fro, want, 1e-12 * want);
            EXPECT_EQ(e.ci_low, e.rel_fro);
            EXPECT_EQ(e.ci_high, e.rel_fro);
        }
}

// Sampled: each item's estimate is estimate_error on that item's slices with the same options
// and seed, bit for bit (same rows, same sums); Nyström, padded keys from a B x N_k mask.
TEST(EstimateErrorPerHead, SampledItemsEqualSingleHeadEstimates) {
    const Index B = 2, N = 64, H = 2, D = 8;
    Matrix<double> q = attnx::random_normal<double>(1, B * N * H * D, 7, 1, 0.0, 1.5);
    Matrix<double> k = attnx::random_normal<double>(1, B * N * H * D, 7, 2, 0.0, 1.5);
    Matrix<double> v = attnx::random_normal<double>(1, B * N * H * D, 7, 3, 0.0, 1.0);
    const auto qv = attnx::HeadsView<const double>::bnhd(q.data(), B, N, H, D);
    const auto kv = attnx::HeadsView<const double>::bnhd(k.data(), B, N, H, D);
    const auto vv = attnx::HeadsView<const double>::bnhd(v.data(), B, N, H, D);
    attnx::MultiHeadOptions mo;
    mo.key_padding_mask.assign(static_cast<std::size_t>(B * N), false);
    mo.key_padding_mask[3] = mo.key_padding_mask[N + 40] = true;
    EstimateOptions eo;
    eo.samples = 12;
    eo.seed = 3;
    const attnx::Nystrom mech = nystrom(8);
    const std::vector<ErrorEstimate> est = attnx::estimate_error_per_head(mech, qv, kv, vv, mo, eo);
    for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < H; ++h) {
            attnx::Nystrom item = mech;
            item.options.key_padding_mask.assign(mo.key_padding_mask.begin() + b * N,
                                                 mo.key_padding_mask.begin() + (b + 1) * N);
            const ErrorEstimate want = attnx::estimate_error(item, head_slice(q, N, H, D, b, h, N),
                                                             head_slice(k, N, H, D, b, h, N),
                                                             head_slice(v, N, H, D, b, h, N), eo);
            const ErrorEstimate& got = est[static_cast<std::size_t>(b * H + h)];
            EXPECT_EQ(got.rel_fro, want.rel_fro);
            EXPECT_EQ(got.ci_low, want.ci_low);
            EXPECT_EQ(got.ci_high, want.ci_high);
            EXPECT_EQ(got.samples, 12);
            EXPECT_EQ(got.population, N);
        }
}

TEST(EstimateErrorPerHead, BadArgumentsThrowBeforeAnyWork) {
    std::vector<float> x(2 * 8 * 2 * 4, 0.5f);
    const auto q = attnx::HeadsView<const float>::bnhd(x.data(), 2, 8, 2, 4);
    const auto k3 = attnx::HeadsView<const float>::bnhd(x.data(), 2, 8, 3, 4);
    EstimateOptions eo;
    eo.samples = 1;
    EXPECT_THAT([&] { attnx::estimate_error_per_head(attnx::Exact{}, q, q, q, {}, eo); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("estimate_error_per_head: samples (s = 1) must be >= 2")));
    eo.samples = 4;
    eo.confidence = 1.0;
    EXPECT_THAT([&] { attnx::estimate_error_per_head(attnx::Exact{}, q, q, q, {}, eo); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("confidence (1) must be in the open interval")));
    eo.confidence = 0.9;
    EXPECT_THAT([&] { attnx::estimate_error_per_head(attnx::Exact{}, q, k3, k3, {}, eo); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("not a multiple of the H_kv = 3")));
    // An item's own error carries the item: Nyström's m = 6 > the 5 keys of sequence 1.
    attnx::MultiHeadOptions mo;
    mo.key_lengths = {8, 5};
    mo.query_lengths = {8, 5};
    EXPECT_THAT([&] { attnx::estimate_error_per_head(nystrom(6), q, q, q, mo, eo); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("batch 1, head 0 (key/value head 0)")));
    // s = N is allowed for a single row (the exact error); below that the interval needs two.
    const Matrix<double> one = Matrix<double>::Ones(1, 4), keys = Matrix<double>::Ones(3, 4);
    eo.samples = 1;
    EXPECT_EQ(attnx::estimate_error(attnx::Exact{}, one, keys, keys, eo).samples, 1);
}
