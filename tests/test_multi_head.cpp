// SPDX-License-Identifier: MIT
// multi_head_attention and HeadsView (multi_head.hpp):
//  - every mechanism equals the loop of single-head calls on (b, h) slices copied into
//    column-major matrices, bit for bit (==), with causal masks, scales and lengths;
//  - BNHD, BHND, a packed (B, N, 3, H, D) QKV buffer and Eigen n x (H·D) matrices of either
//    storage order give the same bits;
//  - grouped-query attention: query head h reads key/value head h / (H_q / H_kv) for ratios
//    1, 2, 4 and H_q (multi-query), with distinct K and V per group, and not h % H_kv;
//  - variable lengths: each sequence's valid rows equal a single-sequence call on the cut
//    sequence, padded query rows are zero; a B x N_k mask equals the mechanism's own mask;
//  - 1, 2 and 3 OpenMP threads give the same bits, in both threading modes;
//  - every bad input throws attnx::invalid_argument naming the argument, before touching out;
//  - real attention inputs from a pretrained model (tests/data/realdata): exact attention viewed
//    as B = 1 BHND reproduces the model's own output to rel. Frobenius <= 1e-5.
#include <attnx/exact.hpp>
#include <attnx/mechanisms.hpp>
#include <attnx/metrics.hpp>
#include <attnx/multi_head.hpp>
#include <attnx/random.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../examples/npy.hpp"

using attnx::HeadsView;
using attnx::Index;
using attnx::Matrix;
using attnx::MultiHeadOptions;
using testing::HasSubstr;
using testing::ThrowsMessage;

namespace {

/// A batch of heads in BNHD order (contiguous std::vectors), N(0, 1.5²) queries and keys
/// (peaked softmax rows) and N(0, 1) values, from attnx's generator.
template <typename S>
struct Batch {
    Index b, n_q, n_k, h_q, h_kv, d, dv;
    std::vector<S> q, k, v;

    Batch(Index b_, Index n_q_, Index n_k_, Index h_q_, Index h_kv_, Index d_, Index dv_, std::uint64_t seed)
        : b(b_), n_q(n_q_), n_k(n_k_), h_q(h_q_), h_kv(h_kv_), d(d_), dv(dv_) {
        q = draw(b * n_q * h_q * d, seed, 1, 1.5);
        k = draw(b * n_k * h_kv * d, seed, 2, 1.5);
        v = draw(b * n_k * h_kv * dv, seed, 3, 1.0);
    }
    static std::vector<S> draw(Index size, std::uint64_t seed, std::uint64_t stream, double sigma) {
        const Matrix<S> m = attnx::random_normal<S>(size, 1, seed, stream, 0.0, sigma);
        return std::vector<S>(m.data(), m.data() + size);
    }
    HeadsView<const S> qv() const { return HeadsView<const S>::bnhd(q.data(), b, n_q, h_q, d); }
    HeadsView<const S> kv() const { return HeadsView<const S>::bnhd(k.data(), b, n_k, h_kv, d); }
    HeadsView<const S> vv() const { return HeadsView<const S>::bnhd(v.data(), b, n_k, h_kv, dv); }
    std::vector<S> out_buffer() const { return std::vector<S>(static_cast<std::size_t>(b * n_q * h_q * dv), S(-7)); }
    HeadsView<S> ov(std::vector<S>& o) const { return HeadsView<S>::bnhd(o.data(), b, n_q, h_q, dv); }
};

/// Rows [0, rows) of the (b, h) slice of a view, as a column-major matrix.
template <typename T>
Matrix<std::remove_const_t<T>> slice(const HeadsView<T>& x, Index b, Index h, Index rows) {
    Matrix<std::remove_const_t<T>> m(rows, x.dim);
    for (Index n = 0; n < rows; ++n)
        for (Index d = 0; d < x.dim; ++d) m(n, d) = x(b, n, h, d);
    return m;
}

/// The loop a user writes: one single-head call per (b, h) on the cut sequence, with the
/// layer's options applied to a copy of the mechanism's; padded query rows zero.
template <typename M, typename S>
std::vector<S> reference_loop(const M& mech, const Batch<S>& x, const MultiHeadOptions& o) {
    std::vector<S> out = x.out_buffer();
    const HeadsView<S> ov = x.ov(out);
    for (Index b = 0; b < x.b; ++b)
        for (Index h = 0; h < x.h_q; ++h) {
            const Index hk = h / (x.h_q / x.h_kv);
            const Index lq = o.query_lengths.empty() ? x.n_q : o.query_lengths[static_cast<std::size_t>(b)];
            const Index lk = o.key_lengths.empty() ? x.n_k : o.key_lengths[static_cast<std::size_t>(b)];
            M m = mech;
            if (o.scale) m.options.scale = o.scale;
            if (o.causal) m.options.causal = true;
            if (!o.key_padding_mask.empty())
                m.options.key_padding_mask.assign(o.key_padding_mask.begin() + b * x.n_k,
                                                  o.key_padding_mask.begin() + (b + 1) * x.n_k);
            Matrix<S> r = Matrix<S>::Zero(x.n_q, x.dv);
            if (lq > 0 && lk > 0)
                r.topRows(lq) = m(slice(x.qv(), b, h, lq), slice(x.kv(), b, hk, lk), slice(x.vv(), b, hk, lk));
            for (Index n = 0; n < x.n_q; ++n)
                for (Index d = 0; d < x.dv; ++d) ov(b, n, h, d) = r(n, d);
        }
    return out;
}

template <typename M, typename S>
std::vector<S> run_layer(const M& mech, const Batch<S>& x, const MultiHeadOptions& o = {}) {
    std::vector<S> out = x.out_buffer();
    attnx::multi_head_attention(mech, x.qv(), x.kv(), x.vv(), x.ov(out), o);
    return out;
}

template <typename S>
bool all_finite(const std::vector<S>& v) {
    for (S x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

attnx::LinformerProjection<float> projection() { return attnx::LinformerProjection<float>::gaussian(16, 64, 5); }

// ---------------------------------------------------------------------------------------------

TEST(MultiHead, EveryMechanismEqualsTheLoopOfSingleHeadCalls) {
    // B = 2, N = 48, H_q = 4, H_kv = 2, D = 16: 8 items, so with 2 or 3 threads they run in
    // parallel with single-threaded kernels inside (and in sequence with 1 thread).
    const Batch<float> x(2, 48, 48, 4, 2, 16, 16, 11);
    MultiHeadOptions causal;
    causal.causal = true;
    MultiHeadOptions scaled;
    scaled.scale = 0.4;

    attnx::ExactOptions materialized;
    materialized.kernel = attnx::ExactKernel::Materialized;  // 48x48x16: Eigen runs it on one thread
    attnx::NystromOptions ny;
    ny.num_landmarks = 8;
    attnx::BigBirdOptions bb;
    bb.block = 16;
    bb.random = 1;
    const attnx::BlockSparse longformer{attnx::BlockLayout::longformer(48, 16, 3, 16), {}};

    const auto expect_loop = [&](const auto& mech, const MultiHeadOptions& o, const char* what) {
        const std::vector<float> got = run_layer(mech, x, o);
        const std::vector<float> want = reference_loop(mech, x, o);
        ASSERT_TRUE(all_finite(got)) << what;
        EXPECT_EQ(got, want) << what;
    };
    expect_loop(attnx::Exact{}, {}, "exact streaming");
    expect_loop(attnx::Exact{}, causal, "exact streaming, causal");
    expect_loop(attnx::Exact{}, scaled, "exact streaming, scale 0.4");
    expect_loop(attnx::Exact{materialized}, causal, "exact materialized, causal");
    expect_loop(attnx::Nystrom{ny}, {}, "nystrom m = 8");
    expect_loop(attnx::Linformer<float>(projection()), scaled, "linformer k = 16");
    expect_loop(attnx::BigBird{bb, {}}, {}, "bigbird b = 16");
    expect_loop(attnx::BigBird{bb, {}}, causal, "bigbird b = 16, causal");
    expect_loop(longformer, causal, "block-sparse longformer layout, causal");

    // The layer's scale is applied: a different scale gives a different result.
    EXPECT_NE(run_layer(attnx::Exact{}, x, scaled), run_layer(attnx::Exact{}, x));
}

TEST(MultiHead, DoubleEqualsTheLoop) {
    const Batch<double> x(2, 37, 29, 6, 3, 8, 12, 12);  // cross-attention, D_v != D
    MultiHeadOptions o;
    o.causal = true;
    EXPECT_EQ(run_layer(attnx::Exact{}, x, o), reference_loop(attnx::Exact{}, x, o));
}

TEST(MultiHead, LayoutsGiveTheSameBits) {
    const Index b = 2, n = 33, h = 3, d = 8;
    const Batch<float> x(b, n, n, h, h, d, d, 13);
    const std::vector<float> want = run_layer(attnx::Exact{}, x);

    // BHND copies of q, k, v and a BHND output.
    const auto to_bhnd = [&](const std::vector<float>& src) {
        std::vector<float> dst(src.size());
        const HeadsView<const float> s = HeadsView<const float>::bnhd(src.data(), b, n, h, d);
        const HeadsView<float> t = HeadsView<float>::bhnd(dst.data(), b, h, n, d);
        for (Index i = 0; i < b; ++i)
            for (Index j = 0; j < n; ++j)
                for (Index k = 0; k < h; ++k)
                    for (Index l = 0; l < d; ++l) t(i, j, k, l) = s(i, j, k, l);
        return dst;
    };
    const std::vector<float> qb = to_bhnd(x.q), kb = to_bhnd(x.k), vb = to_bhnd(x.v);
    std::vector<float> ob(want.size());
    attnx::multi_head_attention(attnx::Exact{}, HeadsView<const float>::bhnd(qb.data(), b, h, n, d),
                                HeadsView<const float>::bhnd(kb.data(), b, h, n, d),
                                HeadsView<const float>::bhnd(vb.data(), b, h, n, d),
                                HeadsView<float>::bhnd(ob.data(), b, h, n, d));
    EXPECT_EQ(ob, to_bhnd(want)) << "BHND";

    // One packed (B, N, 3, H, D) buffer: q, k, v are strided views into it, no copy.
    std::vector<float> packed(static_cast<std::size_t>(b * n * 3 * h * d));
    const Index sb = n * 3 * h * d, sn = 3 * h * d;
    const auto view = [&](Index which) {
        return HeadsView<float>::strided(packed.data() + which * h * d, b, n, h, d, sb, sn, d, 1);
    };
    for (Index i = 0; i < b; ++i)
        for (Index j = 0; j < n; ++j)
            for (Index k = 0; k < h; ++k)
                for (Index l = 0; l < d; ++l) {
                    view(0)(i, j, k, l) = x.qv()(i, j, k, l);
                    view(1)(i, j, k, l) = x.kv()(i, j, k, l);
                    view(2)(i, j, k, l) = x.vv()(i, j, k, l);
                }
    std::vector<float> op(want.size());
    attnx::multi_head_attention(attnx::Exact{}, view(0), view(1), view(2), x.ov(op));  // mutable views convert
    EXPECT_EQ(op, want) << "packed QKV";

    // Eigen n x (H·D) matrices, B = 1, column-major and row-major: sequence 1 of the batch.
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const RowMajor qr = Eigen::Map<const RowMajor>(x.q.data() + n * h * d, n, h * d);
    const RowMajor kr = Eigen::Map<const RowMajor>(x.k.data() + n * h * d, n, h * d);
    const RowMajor vr = Eigen::Map<const RowMajor>(x.v.data() + n * h * d, n, h * d);
    const Matrix<float> qc = qr, kc = kr, vc = vr;
    Matrix<float> oc(n, h * d);
    RowMajor orow(n, h * d);
    attnx::multi_head_attention(attnx::Exact{}, attnx::heads_view(qc, h), attnx::heads_view(kc, h),
                                attnx::heads_view(vc, h), attnx::heads_view(oc, h));
    attnx::multi_head_attention(attnx::Exact{}, attnx::heads_view(qr, h), attnx::heads_view(kr, h),
                                attnx::heads_view(vr, h), attnx::heads_view(orow, h));
    const RowMajor want1 = Eigen::Map<const RowMajor>(want.data() + n * h * d, n, h * d);
    EXPECT_TRUE(oc == want1) << "Eigen column-major";
    EXPECT_TRUE(orow == want1) << "Eigen row-major";
    EXPECT_THAT([&] { (void)attnx::heads_view(qc, 5); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("24 columns, not a multiple of heads = 5")));
}

TEST(MultiHead, GroupedQueryHeadsReadKeyValueHeadHOverGroupSize) {
    for (const Index h_kv : {8, 4, 2, 1}) {  // ratios 1, 2, 4 and 8 = H_q (multi-query)
        const Batch<float> x(1, 24, 40, 8, h_kv, 16, 16, 20 + static_cast<std::uint64_t>(h_kv));
        const std::vector<float> got = run_layer(attnx::Exact{}, x);
        const HeadsView<const float> out = HeadsView<const float>::bnhd(got.data(), 1, 24, 8, 16);
        const Index group = 8 / h_kv;
        for (Index h = 0; h < 8; ++h) {
            const Matrix<float> q = slice(x.qv(), 0, h, 24);
            const Matrix<float> want = attnx::exact_attention(q, slice(x.kv(), 0, h / group, 40),
                                                              slice(x.vv(), 0, h / group, 40));
            EXPECT_TRUE(slice(out, 0, h, 24) == want) << "H_kv = " << h_kv << ", head " << h;
            // The modulo mapping h % H_kv reads another (distinct) key/value head here.
            if (h % h_kv != h / group) {
                const Matrix<float> modulo =
                    attnx::exact_attention(q, slice(x.kv(), 0, h % h_kv, 40), slice(x.vv(), 0, h % h_kv, 40));
                EXPECT_GT((slice(out, 0, h, 24) - modulo).norm(), 0.1 * want.norm()) << "H_kv = " << h_kv;
            }
        }
    }
}

TEST(MultiHead, LinformerProjectsOncePerKeyValueHead) {
    // A Linformer that counts its key-side calls: B = 2, H_kv = 2 -> 4, not B·H_q = 8.
    struct Counting : attnx::Linformer<float> {
        std::atomic<int>* calls = nullptr;
        using attnx::Linformer<float>::Linformer;
        void prepare_keys(const Eigen::Ref<const Matrix<float>>& k, const Eigen::Ref<const Matrix<float>>& v,
                          KeyState& state) const {
            ++*calls;
            attnx::Linformer<float>::prepare_keys(k, v, state);
        }
    };
    std::atomic<int> calls{0};
    Counting mech(projection());
    mech.calls = &calls;
    const Batch<float> x(2, 40, 40, 4, 2, 16, 16, 21);
    const std::vector<float> got = run_layer(mech, x);
    EXPECT_EQ(calls.load(), 4);
    EXPECT_EQ(got, reference_loop(attnx::Linformer<float>(projection()), x, {}));
}

TEST(MultiHead, VariableLengthsEqualTheCutSequences) {
    const Batch<float> x(3, 40, 40, 4, 2, 16, 16, 30);
    MultiHeadOptions o;
    o.causal = true;
    o.key_lengths = {40, 17, 0};
    o.query_lengths = {40, 23, 5};
    const std::vector<float> got = run_layer(attnx::Exact{}, x, o);
    const HeadsView<const float> out = HeadsView<const float>::bnhd(got.data(), 3, 40, 4, 16);
    // Sequence 1 by hand: rows < 23 = causal exact attention of the 23 queries against the 17
    // keys (query i sees keys j <= i + 17 - 23), rows >= 23 zero; sequence 2 (no keys) is zero.
    for (Index h = 0; h < 4; ++h) {
        attnx::ExactOptions eo;
        eo.causal = true;
        const Matrix<float> want = attnx::exact_attention(slice(x.qv(), 1, h, 23), slice(x.kv(), 1, h / 2, 17),
                                                          slice(x.vv(), 1, h / 2, 17), eo);
        const Matrix<float> all = slice(out, 1, h, 40);
        EXPECT_TRUE(all.topRows(23) == want) << "head " << h;
        EXPECT_TRUE(all.bottomRows(17).isZero(0)) << "head " << h;
        EXPECT_TRUE(all.topRows(6).isZero(0)) << "rows that see no key (i + 17 - 23 < 0) are zero";
        EXPECT_TRUE(slice(out, 2, h, 40).isZero(0)) << "key length 0: head " << h;
    }
    EXPECT_EQ(got, reference_loop(attnx::Exact{}, x, o));

    // Nyström with m = 8 on sequences of 17 and 40 keys: segments of the cut sequence.
    attnx::NystromOptions ny;
    ny.num_landmarks = 8;
    MultiHeadOptions lo;
    lo.key_lengths = {40, 17, 9};
    lo.query_lengths = {12, 40, 8};
    EXPECT_EQ(run_layer(attnx::Nystrom{ny}, x, lo), reference_loop(attnx::Nystrom{ny}, x, lo));

    // A B x N_k padding mask, any pattern: each sequence gets its row as key_padding_mask.
    MultiHeadOptions mo;
    mo.key_padding_mask.assign(3 * 40, false);
    for (Index j = 0; j < 3 * 40; j += 3) mo.key_padding_mask[static_cast<std::size_t>(j)] = true;
    for (Index j = 80; j < 120; ++j) mo.key_padding_mask[static_cast<std::size_t>(j)] = true;  // all of sequence 2
    const std::vector<float> masked = run_layer(attnx::Exact{}, x, mo);
    EXPECT_EQ(masked, reference_loop(attnx::Exact{}, x, mo));
    EXPECT_TRUE(slice(HeadsView<const float>::bnhd(masked.data(), 3, 40, 4, 16), 2, 3, 40).isZero(0));
}

TEST(MultiHead, OneTwoAndThreeThreadsGiveTheSameBits) {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    const Batch<float> many(2, 64, 64, 6, 3, 16, 16, 40);  // 12 items: parallel items for 2, 3 threads
    const Batch<float> few(1, 300, 300, 2, 1, 16, 16, 41);  // 2 items: heads in sequence, threaded kernels
    attnx::NystromOptions ny;
    ny.num_landmarks = 16;
    MultiHeadOptions o;
    o.causal = true;
    std::vector<std::vector<float>> first;
    for (const int t : {1, 2, 3}) {
        omp_set_num_threads(t);
        std::vector<std::vector<float>> r = {run_layer(attnx::Exact{}, many, o), run_layer(attnx::Exact{}, few, o),
                                             run_layer(attnx::Nystrom{ny}, many),
                                             run_layer(attnx::Linformer<float>(projection()), many),
                                             run_layer(attnx::Nystrom{ny}, few)};
        EXPECT_EQ(omp_get_max_threads(), t) << "the call leaves the caller's thread count alone";
        if (first.empty())
            first = r;
        else
            for (std::size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i], first[i]) << t << " threads, case " << i;
    }
    omp_set_num_threads(saved);
    EXPECT_EQ(first[0], reference_loop(attnx::Exact{}, many, o));
#else
    GTEST_SKIP() << "built without OpenMP: one thread only";
#endif
}

TEST(MultiHead, AnItemsErrorNamesTheItemForAnyThreadCount) {
    Batch<float> x(2, 32, 32, 4, 2, 8, 8, 50);
    x.q[static_cast<std::size_t>(((1 * 32 + 3) * 4 + 2) * 8 + 5)] = std::numeric_limits<float>::quiet_NaN();
    x.q[static_cast<std::size_t>(((1 * 32 + 7) * 4 + 3) * 8 + 1)] = std::numeric_limits<float>::infinity();
    std::vector<std::string> messages;
    for (const int t : {1, 2}) {
#ifdef _OPENMP
        const int saved = omp_get_max_threads();
        omp_set_num_threads(t);
#endif
        try {
            run_layer(attnx::Exact{}, x);
            ADD_FAILURE() << "no exception";
        } catch (const attnx::invalid_argument& e) {
            messages.push_back(e.what());
        }
#ifdef _OPENMP
        omp_set_num_threads(saved);
#endif
    }
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_THAT(messages[0], HasSubstr("attnx::multi_head_attention: batch 1, head 2 (key/value head 1): "
                                       "attnx::exact_attention: q (32x8) has a non-finite entry q(3, 5)"));
    EXPECT_EQ(messages[0], messages[1]);

    // A mechanism's own rule against an item's size: Nyström m = 8 > 5 keys of sequence 1.
    attnx::NystromOptions ny;
    ny.num_landmarks = 8;
    MultiHeadOptions o;
    o.key_lengths = {32, 5};
    const Batch<float> y(2, 32, 32, 4, 2, 8, 8, 51);
    EXPECT_THAT([&] { run_layer(attnx::Nystrom{ny}, y, o); },
                ThrowsMessage<attnx::invalid_argument>(
                    HasSubstr("batch 1, head 0 (key/value head 0): attnx::nystrom_attention: num_landmarks (m = 8)")));
    EXPECT_THAT([&] { run_layer(attnx::Linformer<float>(projection()), y, MultiHeadOptions{{}, true, {}, {}, {}}); },
                ThrowsMessage<attnx::invalid_argument>(HasSubstr("batch 0, key/value head 0: attnx::linformer_attention: "
                                                                 "causal = true is not defined")));
}

TEST(MultiHead, BadInputsThrowBeforeAnyWork) {
    const Batch<float> x(2, 16, 12, 4, 2, 8, 6, 60);
    std::vector<float> out = x.out_buffer();
    const std::vector<float> untouched = out;
    const auto q = x.qv(), k = x.kv(), v = x.vv();
    const HeadsView<float> o = x.ov(out);
    const attnx::Exact mech{};
    const auto expect = [&](const std::string& what, auto&& call) {
        EXPECT_THAT(call, ThrowsMessage<attnx::invalid_argument>(HasSubstr(what)));
        EXPECT_EQ(out, untouched) << what;
    };
    const auto with = [](HeadsView<const float> view, auto&& change) {
        change(view);
        return view;
    };
    expect("k has batch B = 3 but q has B = 2", [&] {
        attnx::multi_head_attention(mech, q, with(k, [](auto& w) { w.batch = 3; }), v, o);
    });
    expect("k has head dimension D = 7 but q has D = 8", [&] {
        attnx::multi_head_attention(mech, q, with(k, [](auto& w) { w.dim = 7; }), v, o);
    });
    expect("v has 1 heads but k has 2", [&] {
        attnx::multi_head_attention(mech, q, k, with(v, [](auto& w) { w.heads = 1; }), o);
    });
    expect("v has N = 11 tokens but k has N_k = 12", [&] {
        attnx::multi_head_attention(mech, q, k, with(v, [](auto& w) { w.tokens = 11; }), o);
    });
    expect("q has H_q = 3 heads, not a multiple of the H_kv = 2", [&] {
        attnx::multi_head_attention(mech, with(q, [](auto& w) { w.heads = 3; }), k, v,
                                    HeadsView<float>::bnhd(out.data(), 2, 16, 3, 6));
    });
    expect("out is (B, N, H, D) = (2, 16, 4, 8)", [&] {
        attnx::multi_head_attention(mech, q, k, v, HeadsView<float>::bnhd(out.data(), 2, 16, 4, 8));
    });
    expect("q.data is null but q has 1024 elements", [&] {
        attnx::multi_head_attention(mech, with(q, [](auto& w) { w.data = nullptr; }), k, v, o);
    });
    expect("k has 0 heads", [&] {
        attnx::multi_head_attention(mech, q, with(k, [](auto& w) { w.heads = 0; }), v, o);
    });
    expect("q.tokens = -1 is negative", [&] {
        attnx::multi_head_attention(mech, with(q, [](auto& w) { w.tokens = -1; }), k, v, o);
    });
    MultiHeadOptions bad;
    bad.key_lengths = {12, 13};
    expect("key_lengths[1] = 13 is out of range [0, N_k = 12]",
           [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    bad = {};
    bad.query_lengths = {-1, 3};
    expect("query_lengths[0] = -1 is out of range [0, N_q = 16]",
           [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    bad = {};
    bad.query_lengths = {3};
    expect("query_lengths has 1 entries but the batch has B = 2",
           [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    bad = {};
    bad.key_padding_mask.assign(12, false);
    expect("key_padding_mask has 12 entries but must have B * N_k = 2 * 12 = 24",
           [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    bad.key_padding_mask.assign(24, false);
    bad.key_lengths = {1, 2};
    expect("key_lengths and key_padding_mask are both set", [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    bad = {};
    bad.scale = -1.0;
    expect("scale (-1) must be finite and > 0", [&] { attnx::multi_head_attention(mech, q, k, v, o, bad); });
    attnx::Exact masked;
    masked.options.key_padding_mask.assign(12, false);
    expect("the mechanism's options carry a key_padding_mask",
           [&] { attnx::multi_head_attention(masked, q, k, v, o); });
    // out strides that alias: tokens and heads on the same stride.
    expect("the strides of out may make two of its elements share memory", [&] {
        attnx::multi_head_attention(mech, q, k, v, HeadsView<float>::strided(out.data(), 2, 16, 4, 6, 16 * 24, 6, 6, 1));
    });
    // out overlapping an input: an output view into q's own buffer (a copy, so q stays const).
    std::vector<float> shared(x.q.size() + 64);
    const auto qs = HeadsView<const float>::bnhd(shared.data(), 2, 16, 4, 8);
    expect("out overlaps the memory of q", [&] {
        attnx::multi_head_attention(mech, qs, k, v, HeadsView<float>::bnhd(shared.data() + 40, 2, 16, 4, 6));
    });
    // Q, K, V views into one packed buffer are fine as inputs: only out must be separate.
    EXPECT_NO_THROW(attnx::multi_head_attention(
        mech, HeadsView<const float>::bnhd(shared.data(), 1, 4, 2, 8),
        HeadsView<const float>::bnhd(shared.data(), 1, 4, 2, 8), HeadsView<const float>::bnhd(shared.data(), 1, 4, 2, 8),
        HeadsView<float>::bnhd(out.data(), 1, 4, 2, 8)));
}

// ---------------------------------------------------------------------------------------------
// Exact attention (streaming): the scan of Q, K and V is fused into the kernel's pass. Same
// values as without checks, and the same errors as the separate scan, even for keys that no
// query sees.

TEST(DecodeScan, FusedScanGivesTheSameValuesAndErrors) {
    const auto qkv = [](Index n_q, std::uint64_t seed) {
        return std::vector<Matrix<float>>{attnx::random_normal<float>(n_q, 16, seed, 1, 0.0, 1.5),
                                          attnx::random_normal<float>(700, 16, seed, 2, 0.0, 1.5),
                                          attnx::random_normal<float>(700, 12, seed, 3)};
    };
    for (const Index n_q : {1, 5, 128}) {  // one query tile: the fused path (128 = query_tile)
        for (const bool causal : {false, true}) {
            const auto x = qkv(n_q, 70 + static_cast<std::uint64_t>(n_q));
            attnx::ExactOptions on, off;
            on.causal = off.causal = causal;
            off.check_finite = false;
            const Matrix<float> checked = attnx::exact_attention(x[0], x[1], x[2], on);
            EXPECT_TRUE(checked == attnx::exact_attention(x[0], x[1], x[2], off)) << n_q << " queries";
            ASSERT_TRUE(checked.allFinite());
        }
    }
    const auto throws = [](const std::vector<Matrix<float>>& x, const attnx::ExactOptions& o, const std::string& what) {
        EXPECT_THAT([&] { attnx::exact_attention(x[0], x[1], x[2], o); },
                    ThrowsMessage<attnx::invalid_argument>(HasSubstr(what)));
    };
    attnx::ExactOptions causal;
    causal.causal = true;
    auto x = qkv(3, 80);
    x[1](650, 3) = std::numeric_limits<float>::quiet_NaN();
    x[1](690, 1) = std::numeric_limits<float>::infinity();
    throws(x, causal, "attnx::exact_attention: k (700x16) has a non-finite entry k(690, 1) = inf");  // column-major order
    x = qkv(1, 81);
    x[2](5, 2) = -std::numeric_limits<float>::infinity();
    attnx::ExactOptions padded;
    padded.key_padding_mask.assign(700, false);
    padded.key_padding_mask[5] = true;  // the key is masked: its value is never used, still rejected
    throws(x, padded, "v (700x12) has a non-finite entry v(5, 2) = -inf");
    // The fused scan learns finiteness from the scores: with q = 0 an infinite key reaches
    // them only as 0 * inf = NaN, which must still be caught.
    x = qkv(1, 85);
    x[0].setZero();
    x[1](300, 4) = std::numeric_limits<float>::infinity();
    throws(x, {}, "k (700x16) has a non-finite entry k(300, 4) = inf");
    x = qkv(1, 82);
    x[0](0, 0) = std::numeric_limits<float>::quiet_NaN();
    throws(x, {}, "q (1x16) has a non-finite entry q(0, 0) = nan");
    x = qkv(2, 83);
    x[0] *= 1e20f;  // logits near 1e40: they overflow float, and the bound names the cause
    x[1] *= 1e20f;
    throws(x, {}, "attnx::exact_attention: logits may overflow float: scale * d * max|q| * max|k|");
    // At 1e18 the bound (scale * d * max|q| * max|k| near 1e38) fails but every logit (near 1e36)
    // fits: the streaming kernel sees its own scores and accepts them, with the unchecked values.
    x = qkv(2, 83);
    x[0] *= 1e18f;
    x[1] *= 1e18f;
    attnx::ExactOptions unchecked;
    unchecked.check_finite = false;
    const Matrix<float> big = attnx::exact_attention(x[0], x[1], x[2]);
    EXPECT_TRUE(big.allFinite());
    EXPECT_TRUE(big == attnx::exact_attention(x[0], x[1], x[2], unchecked));
    attnx::ExactOptions materialized;
    materialized.kernel = attnx::ExactKernel::Materialized;  // scans before the work: the bound alone
    throws(x, materialized, "attnx::exact_attention: logits may overflow float: scale * d * max|q| * max|k|");
    x = qkv(1, 84);
    x[2] *= 3e37f;  // finite inputs, but the weighted sums of V overflow
    x[2].row(0).setConstant(3e38f);
    x[2].row(1).setConstant(3e38f);
    x[0].setZero();  // uniform weights
    throws(x, {}, "the result overflowed float");
}

// ---------------------------------------------------------------------------------------------
// Exact attention with at most one query tile per sequence (decoding) takes the grouped path:
// each key tile of a key/value head is read once for its whole group of query heads. Still the
// single-head loop's bits: key parts (sequences of 8 key tiles or more are split: 4000 keys at the
// default decode_key_tile of 256, 1500 keys at 128), D = 128 (Eigen's GEMV blocks 128+ columns by
// K's stride), causal, cross lengths, several query rows, any thread count.

TEST(MultiHead, GroupedDecodeEqualsTheLoopForAnyLayoutAndThreadCount) {
    const Batch<float> one(2, 1, 1500, 8, 2, 128, 128, 60);  // one query token, H_q 8, H_kv 2
    const Batch<float> few(2, 5, 1300, 4, 1, 128, 64, 61);   // 5 query rows: products, not GEMV
    const Batch<double> dbl(1, 1, 4100, 4, 2, 128, 64, 62);  // GEMV, K stride >= 32000 bytes in the loop
    MultiHeadOptions lengths;
    lengths.key_lengths = {1500, 1100};
    MultiHeadOptions causal;
    causal.causal = true;
    causal.key_lengths = {700, 1300};
    causal.query_lengths = {5, 2};
    MultiHeadOptions causal_dbl;
    causal_dbl.causal = true;
    causal_dbl.key_lengths = {4000};
    MultiHeadOptions padded;
    padded.key_padding_mask.assign(2 * 1300, false);
    for (std::size_t j = 0; j < padded.key_padding_mask.size(); j += 7) padded.key_padding_mask[j] = true;
    attnx::ExactOptions unchecked;
    unchecked.check_finite = false;
    attnx::ExactOptions tiles128;  // one query: 12 tiles of 128 keys, split into 3 parts
    tiles128.decode_key_tile = 128;
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    for (const int t : {1, 2, 3}) {
        omp_set_num_threads(t);
#else
    for (const int t : {1}) {
#endif
        EXPECT_EQ(run_layer(attnx::Exact{}, one), reference_loop(attnx::Exact{}, one, {})) << t << " threads";
        EXPECT_EQ(run_layer(attnx::Exact{}, one, lengths), reference_loop(attnx::Exact{}, one, lengths)) << t;
        EXPECT_EQ(run_layer(attnx::Exact{unchecked}, one), reference_loop(attnx::Exact{unchecked}, one, {})) << t;
        EXPECT_EQ(run_layer(attnx::Exact{tiles128}, one, lengths), reference_loop(attnx::Exact{tiles128}, one, lengths))
            << t;
        EXPECT_EQ(run_layer(attnx::Exact{}, few, causal), reference_loop(attnx::Exact{}, few, causal)) << t;
        EXPECT_EQ(run_layer(attnx::Exact{}, few, padded), reference_loop(attnx::Exact{}, few, padded)) << t;
        EXPECT_EQ(run_layer(attnx::Exact{}, dbl, causal_dbl), reference_loop(attnx::Exact{}, dbl, causal_dbl)) << t;
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    // Against float64 exact attention (not only against itself): head 5 reads key/value head 1.
    const std::vector<float> got = run_layer(attnx::Exact{}, one);
    const Matrix<double> want = attnx::exact_attention(slice(one.qv(), 1, 5, 1).cast<double>().eval(),
                                                       slice(one.kv(), 1, 1, 1500).cast<double>().eval(),
                                                       slice(one.vv(), 1, 1, 1500).cast<double>().eval());
    const Matrix<float> head = slice(HeadsView<const float>::bnhd(got.data(), 2, 1, 8, 128), 1, 5, 1);
    EXPECT_LE(attnx::compare(head.cast<double>().eval(), want).rel_fro, 1e-5);
}

// One query against a token-major cache: the step reads K and V rows in place
// (detail/single_query.hpp) and must still give the bits of the column-major copy the loop
// makes, for sizes that are not multiples of the packet size (dims, value dims, tile ends).
/// x (rows x cols) stored with outer stride ld = (rows or cols) + pad at the very end of a buffer
/// (the first `pad` entries of the buffer are unused): a read past the tile is past the buffer,
/// which the ASan stage of scripts/test reports.
template <typename S, int Order>
struct PaddedTile {
    std::vector<S> buf;
    Index pad, ld;
    PaddedTile(const Matrix<S>& x, Index pad_) : pad(pad_) {
        const Index inner = Order == Eigen::RowMajor ? x.cols() : x.rows();
        const Index outer = Order == Eigen::RowMajor ? x.rows() : x.cols();
        ld = inner + pad;
        buf.assign(static_cast<std::size_t>(ld * outer), S(0));
        for (Index r = 0; r < x.rows(); ++r)
            for (Index c = 0; c < x.cols(); ++c)
                buf[static_cast<std::size_t>(pad + (Order == Eigen::RowMajor ? r * ld + c : c * ld + r))] = x(r, c);
    }
    const S* data() const { return buf.data() + pad; }  // the last entry is the buffer's last
};

template <typename S>
void expect_single_query_layouts_agree(Index d, Index dv, Index n, std::uint64_t seed) {
    const Matrix<S> k = attnx::random_normal<S>(n, d, seed, 1, 0.0, 1.5);
    const Matrix<S> v = attnx::random_normal<S>(n, dv, seed, 2, 0.0, 1.0);
    Matrix<S> q = attnx::random_normal<S>(1, d, seed, 3, 0.0, 1.0);
    if (d > 2) q(0, 1) = S(0);  // some exact zeros and negative zeros in the products
    const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> k_rows = k, v_rows = v;
    // The same tiles with outer strides beyond their extent, ending where their buffers end.
    const PaddedTile<S, Eigen::ColMajor> k_col_pad(k, 3), v_col_pad(v, 5);
    const PaddedTile<S, Eigen::RowMajor> k_row_pad(k, 7), v_row_pad(v, 2);
    constexpr int P = attnx::detail::QueryPackets<S>::P;
    std::vector<S> q_pad(static_cast<std::size_t>(attnx::detail::ceil_div(d, Index(P)) * P), S(0));
    std::copy(q.data(), q.data() + d, q_pad.begin());
    // kernel (either single-query product) on x as a column-major, a row-major and the two padded
    // tiles: the four results must have the same bits; returns the column-major one.
    const auto in_four_layouts = [](auto kernel, const Matrix<S>& x, const auto& x_rows, const auto& col_pad,
                                    const auto& row_pad, const S* in, Index out_size, const char* what) {
        using attnx::detail::RowTileMap;
        using attnx::detail::TileMap;
        const Index r = x.rows(), c = x.cols();
        std::vector<S> col(static_cast<std::size_t>(out_size)), row(col.size()), col_p(col.size()), row_p(col.size());
        kernel(TileMap<S>(x.data(), r, c, Eigen::OuterStride<>(r)), in, col.data());
        kernel(RowTileMap<S>(x_rows.data(), r, c, Eigen::OuterStride<>(c)), in, row.data());
        kernel(TileMap<S>(col_pad.data(), r, c, Eigen::OuterStride<>(col_pad.ld)), in, col_p.data());
        kernel(RowTileMap<S>(row_pad.data(), r, c, Eigen::OuterStride<>(row_pad.ld)), in, row_p.data());
        const std::size_t bytes = col.size() * sizeof(S);
        EXPECT_EQ(0, std::memcmp(col.data(), row.data(), bytes)) << what << ", row-major, " << r << " x " << c;
        EXPECT_EQ(0, std::memcmp(col.data(), col_p.data(), bytes)) << what << ", strided column-major";
        EXPECT_EQ(0, std::memcmp(col.data(), row_p.data(), bytes)) << what << ", strided row-major";
        return col;
    };
    const std::vector<S> s_col = in_four_layouts(
        [](const auto& tile, const S* x, S* out) { attnx::detail::single_query_scores<S>(tile, x, out); }, k, k_rows,
        k_col_pad, k_row_pad, q_pad.data(), n, "scores");
    const Eigen::Matrix<double, Eigen::Dynamic, 1> s_ref = k.template cast<double>() * q.template cast<double>().transpose();
    for (Index j = 0; j < n; ++j)  // a sum of d products: |error| <= d eps sum |k_jc q_c|
        EXPECT_NEAR(double(s_col[static_cast<std::size_t>(j)]), s_ref(j),
                    double(d) * std::numeric_limits<S>::epsilon() *
                        (k.row(j).cwiseAbs().template cast<double>() * q.cwiseAbs().template cast<double>().transpose())(0, 0))
            << "score " << j;
    std::vector<S> p(s_col.size());
    for (std::size_t j = 0; j < p.size(); ++j) p[j] = j % 5 == 0 ? S(0) : std::exp(-std::abs(s_col[j]));
    const std::vector<S> o_col = in_four_layouts(
        [](const auto& tile, const S* x, S* out) { attnx::detail::single_query_weighted_sum<S>(tile, x, out); }, v,
        v_rows, v_col_pad, v_row_pad, p.data(), dv, "sums");
    const Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>> pm(p.data(), n);
    const Eigen::Matrix<double, Eigen::Dynamic, 1> o_ref = v.template cast<double>().transpose() * pm.template cast<double>();
    const Eigen::Matrix<double, Eigen::Dynamic, 1> o_abs =
        v.cwiseAbs().template cast<double>().transpose() * pm.template cast<double>();
    for (Index c = 0; c < dv; ++c)
        EXPECT_NEAR(double(o_col[static_cast<std::size_t>(c)]), o_ref(c), double(n) * std::numeric_limits<S>::epsilon() * o_abs(c))
            << "sum " << c;
}

TEST(MultiHead, SingleQueryProductsGiveTheSameBitsInEitherLayout) {
    for (const Index d : {1, 3, 8, 17, 48, 64, 100, 128, 200})
        for (const Index n : {1, 7, 16, 33, 128}) {
            expect_single_query_layouts_agree<float>(d, d == 17 ? 5 : d, n, std::uint64_t(70 + d + n));
            expect_single_query_layouts_agree<double>(d, d == 17 ? 5 : d, n, std::uint64_t(80 + d + n));
        }
}

/// The same bits (memcmp: unlike ==, tells -0 from +0 and passes equal NaNs).
template <typename S>
::testing::AssertionResult same_bits(const std::vector<S>& a, const std::vector<S>& b) {
    if (a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the results differ (sizes " << a.size() << ", " << b.size() << ")";
}

TEST(MultiHead, InPlaceDecodeEqualsTheLoopForOddSizes) {
    // d, d_v, N_k (with one-query key tiles of 256, 128 and 100: partial last tiles, key parts,
    // tiles shorter than a packet).
    const Batch<float> small(2, 1, 37, 4, 2, 17, 5, 90);
    const Batch<float> odd(1, 1, 1033, 6, 3, 100, 36, 91);
    const Batch<double> dbl(2, 1, 1031, 4, 1, 3, 9, 92);
    MultiHeadOptions lengths;
    lengths.key_lengths = {37, 9};
    MultiHeadOptions padded;
    padded.key_padding_mask.assign(2 * 1031, false);
    for (std::size_t j = 0; j < padded.key_padding_mask.size(); j += 3) padded.key_padding_mask[j] = true;
    MultiHeadOptions causal;  // one query: bottom-right aligned, so it sees every key (masks nothing)
    causal.causal = true;
    attnx::Exact tiles100;
    tiles100.options.decode_key_tile = 100;
    attnx::Exact tiles128;
    tiles128.options.decode_key_tile = 128;
    const Batch<float> split(1, 1, 2200, 2, 1, 64, 40, 93);  // 9 tiles of 256 keys: two key parts
    EXPECT_TRUE(same_bits(run_layer(attnx::Exact{}, split), reference_loop(attnx::Exact{}, split, {})));
    EXPECT_TRUE(same_bits(run_layer(attnx::Exact{}, small), reference_loop(attnx::Exact{}, small, {})));
    EXPECT_TRUE(same_bits(run_layer(attnx::Exact{}, small, lengths), reference_loop(attnx::Exact{}, small, lengths)));
    EXPECT_TRUE(same_bits(run_layer(attnx::Exact{}, odd), reference_loop(attnx::Exact{}, odd, {})));
    EXPECT_TRUE(same_bits(run_layer(tiles100, odd, causal), reference_loop(tiles100, odd, causal)));
    EXPECT_TRUE(same_bits(run_layer(tiles128, odd), reference_loop(tiles128, odd, {})));
    EXPECT_TRUE(same_bits(run_layer(attnx::Exact{}, dbl, padded), reference_loop(attnx::Exact{}, dbl, padded)));
    // BHND (unit stride along D, token stride D) is read in place too.
    std::vector<float> k_bhnd(odd.k.size()), v_bhnd(odd.v.size());
    const auto kv = odd.kv(), vv = odd.vv();
    const auto kb = HeadsView<float>::bhnd(k_bhnd.data(), 1, 3, 1033, 100);
    const auto vb = HeadsView<float>::bhnd(v_bhnd.data(), 1, 3, 1033, 36);
    for (Index h = 0; h < 3; ++h)
        for (Index n = 0; n < 1033; ++n) {
            for (Index c = 0; c < 100; ++c) kb(0, n, h, c) = kv(0, n, h, c);
            for (Index c = 0; c < 36; ++c) vb(0, n, h, c) = vv(0, n, h, c);
        }
    std::vector<float> ob = odd.out_buffer();
    attnx::multi_head_attention(attnx::Exact{}, odd.qv(), HeadsView<const float>::bhnd(k_bhnd.data(), 1, 3, 1033, 100),
                                HeadsView<const float>::bhnd(v_bhnd.data(), 1, 3, 1033, 36), odd.ov(ob));
    EXPECT_TRUE(same_bits(ob, reference_loop(attnx::Exact{}, odd, {}))) << "BHND";
}

TEST(MultiHead, GroupedDecodeReportsTheLowestFailingItemsError) {
    Batch<float> x(2, 1, 1200, 8, 2, 64, 64, 63);
    // Key 900 of sequence 1, key/value head 1 (query heads 4..7): infinite.
    x.k[static_cast<std::size_t>(((1 * 1200 + 900) * 2 + 1) * 64 + 3)] = std::numeric_limits<float>::infinity();
    // Sequence 0, head 6: a query of 3e38 in every entry makes its logits overflow float (the
    // other heads fit).
    Batch<float> y(2, 1, 1200, 8, 2, 64, 64, 64);
    for (Index j = 0; j < 64; ++j) y.q[static_cast<std::size_t>(6 * 64 + j)] = 3e38f;
    for (const int t : {1, 2}) {
#ifdef _OPENMP
        const int saved = omp_get_max_threads();
        omp_set_num_threads(t);
#endif
        EXPECT_THAT([&] { run_layer(attnx::Exact{}, x); },
                    ThrowsMessage<attnx::invalid_argument>(
                        HasSubstr("batch 1, head 4 (key/value head 1): attnx::exact_attention: k (1200x64) has a "
                                  "non-finite entry k(900, 3) = inf")));
        EXPECT_THAT([&] { run_layer(attnx::Exact{}, y); },
                    ThrowsMessage<attnx::invalid_argument>(
                        HasSubstr("batch 0, head 6 (key/value head 1): attnx::exact_attention: logits may overflow")));
#ifdef _OPENMP
        omp_set_num_threads(saved);
#endif
    }
    // With check_finite off nothing is checked, as in the single-head call: the other items are
    // still the loop's.
    attnx::ExactOptions unchecked;
    unchecked.check_finite = false;
    const std::vector<float> got = run_layer(attnx::Exact{unchecked}, x), want = reference_loop(attnx::Exact{unchecked}, x, {});
    for (std::size_t i = 0; i < got.size() / 2; ++i) ASSERT_EQ(got[i], want[i]) << i;  // sequence 0
}

// ---------------------------------------------------------------------------------------------
// Real inputs: tests/data/realdata (see ../shared/realdata/README.md), float32 [heads, 128, d_h].

std::vector<float> read_f32(const std::string& path, std::vector<std::int64_t>& shape) {
    const npy::Header h = npy::inspect(path);
    if (h.descr != "<f4" || h.fortran_order) throw std::runtime_error(path + ": expected C-order <f4");
    shape = h.shape;
    std::vector<float> data(static_cast<std::size_t>(h.data_bytes / 4));
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(h.data_offset));
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(h.data_bytes));
    if (!in) throw std::runtime_error(path + ": truncated");
    return data;
}

TEST(MultiHead, RealModelInputsReproduceTheModelsAttention) {
    for (const char* text : {"dickens", "gettysburg"})
        for (const char* layer : {"L0", "L1"}) {
            const std::string base = std::string(ATTNX_TEST_DATA_DIR) + "/realdata/" + text + "_" + layer + "_";
            std::vector<std::int64_t> sq, sk, sv, sr;
            const std::vector<float> q = read_f32(base + "q.npy", sq), k = read_f32(base + "k.npy", sk),
                                     v = read_f32(base + "v.npy", sv), ref = read_f32(base + "ctx_ref.npy", sr);
            ASSERT_EQ(sq.size(), 3u);
            ASSERT_EQ(sq, sr);
            const Index h = sq[0], n = sq[1], d = sq[2];
            EXPECT_EQ(n, 128);
            std::vector<float> out(ref.size());
            attnx::multi_head_attention(attnx::Exact{}, HeadsView<const float>::bhnd(q.data(), 1, h, n, d),
                                        HeadsView<const float>::bhnd(k.data(), 1, h, n, d),
                                        HeadsView<const float>::bhnd(v.data(), 1, h, n, d),
                                        HeadsView<float>::bhnd(out.data(), 1, h, n, d));
            const Eigen::Map<const Eigen::VectorXf> got(out.data(), static_cast<Index>(out.size()));
            const Eigen::Map<const Eigen::VectorXf> want(ref.data(), static_cast<Index>(ref.size()));
            // float rounding of 128-term softmax sums and products: ~sqrt(128)·6e-8 ≈ 1e-6 relative.
            const double rel = (got.cast<double>() - want.cast<double>()).norm() / want.cast<double>().norm();
            EXPECT_LE(rel, 1e-5) << text << " " << layer;
            EXPECT_GT(want.norm(), 1.0f);
        }
}

}  // namespace
