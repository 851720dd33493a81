// SPDX-License-Identifier: MIT
// libFuzzer target: size options anywhere in [-2, INT64_MAX] (tiles, block, window, global
// tokens, random blocks, landmarks, projected keys) and `out` buffers that alias an input, on
// small moderate inputs, for every mechanism. The contract of fuzz_common.hpp holds, and in
// addition: a size option larger than the input means one tile / block / the whole sequence, so
// exact attention with huge tiles equals exact attention with the default tiles, and the dense
// block layout equals exact attention, to rounding; an out buffer that aliases q, k or v is
// always rejected, never silently wrong.
#include <attnx/bigbird.hpp>
#include <attnx/exact.hpp>
#include <attnx/linformer.hpp>
#include <attnx/metrics.hpp>
#include <attnx/nystrom.hpp>

#include <cmath>
#include <limits>

#include "fuzz_common.hpp"

namespace {

using attnx::Index;
using attnx::Matrix;

/// A size option: small (including 0 and negative), near a power of two, or near INT64_MAX.
Index size_option(fuzz::Input& in) {
    const std::uint8_t kind = in.byte();
    const Index big = std::numeric_limits<Index>::max();
    if (kind < 96) return in.range(-2, 40);
    if (kind < 160) return Index(1) << (in.byte() % 63);
    if (kind < 224) return big - static_cast<Index>(in.byte());
    return static_cast<Index>(in.u64() >> 1);  // anything in [0, INT64_MAX]
}

template <typename Scalar>
double tolerance() {
    return std::is_same<Scalar, float>::value ? 1e-4 : 1e-10;
}

template <typename Scalar>
void run(fuzz::Input& in) {
    const Index n = 1 + in.size(40), d = 1 + in.size(8), dv = 1 + in.size(8);
    // Moderate values in [-4, 4] only: this target is about sizes and aliasing, not magnitudes.
    Matrix<Scalar> q(n, d), k(n, d), v(n, dv);
    for (Matrix<Scalar>* m : {&q, &k, &v})
        for (Index j = 0; j < m->cols(); ++j)
            for (Index i = 0; i < m->rows(); ++i) (*m)(i, j) = static_cast<Scalar>(in.range(-64, 64)) / Scalar(16);
    attnx::AttentionOptions common;
    common.causal = in.flag();
    fuzz::Case c;
    c.moderate = true;

    const Matrix<Scalar> reference = attnx::exact_attention(q, k, v, attnx::ExactOptions(common));

    // Exact attention with tiles anywhere up to INT64_MAX.
    attnx::ExactOptions eo(common);
    eo.query_tile = size_option(in);
    eo.key_tile = size_option(in);
    eo.decode_key_tile = eo.key_tile;  // no draw of its own (stored inputs keep their meaning)
    Matrix<Scalar> out;
    c.what = "exact_attention(tiles)";
    if (fuzz::call(c, [&] { out = attnx::exact_attention(q, k, v, eo); })) {
        fuzz::check_output(c, out, n, dv);
        if (attnx::compare(out, reference).rel_fro > tolerance<Scalar>())
            fuzz::fail(c.what, "huge or odd tiles changed the result");
    } else if (eo.query_tile >= 1 && eo.key_tile >= 1 && eo.decode_key_tile >= 1) {
        fuzz::fail(c.what, "valid tiles (>= 1) were rejected");
    }

    // Block layouts with sizes up to INT64_MAX.
    const Index block = size_option(in), window = size_option(in), global = size_option(in);
    attnx::BigBirdOptions bo;
    bo.block = block;
    bo.window = window;
    bo.global = global;
    bo.random = size_option(in);
    c.what = "bigbird_attention(sizes)";
    if (fuzz::call(c, [&] { out = attnx::bigbird_attention(q, k, v, bo, common); })) fuzz::check_output(c, out, n, dv);
    c.what = "block_sparse_attention(dense, block)";
    if (fuzz::call(c, [&] { out = attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::dense(n, block), common); })) {
        fuzz::check_output(c, out, n, dv);
        if (attnx::compare(out, reference).rel_fro > tolerance<Scalar>())
            fuzz::fail(c.what, "the dense layout differs from exact attention");
    }
    c.what = "BlockLayout::longformer(sizes)";
    if (fuzz::call(c, [&] { out = attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::longformer(n, block, window, global), common); }))
        fuzz::check_output(c, out, n, dv);

    // Landmarks and projected keys up to INT64_MAX (non-causal mechanisms).
    attnx::AttentionOptions nc = common;
    nc.causal = false;
    attnx::NystromOptions no(nc);
    no.num_landmarks = size_option(in);
    c.what = "nystrom_attention(m)";
    if (fuzz::call(c, [&] { out = attnx::nystrom_attention(q, k, v, no); })) fuzz::check_output(c, out, n, dv);
    const Index rank = size_option(in);
    c.what = "LinformerProjection::gaussian(k)";
    if (rank <= 64) {  // a valid larger k would allocate k x n: the overflow check is what matters
        if (fuzz::call(c, [&] { out = attnx::linformer_attention(q, k, v, attnx::LinformerProjection<Scalar>::gaussian(rank, n, 1), nc); }))
            fuzz::check_output(c, out, n, dv);
    } else if (rank > std::numeric_limits<Index>::max() / n) {
        // k * n overflows Index: the complaint about overflow is the contract here, whatever
        // the data, so this call is never "moderate"; it must throw, not allocate.
        fuzz::Case overflowing = c;
        overflowing.moderate = false;
        if (fuzz::call(overflowing, [&] { attnx::LinformerProjection<Scalar>::gaussian(rank, n, 1); }))
            fuzz::fail(c.what, "k * n_max overflowing Index was accepted");
    }

    // out aliasing an input: always rejected (d = dv makes every input out's shape).
    if (d == dv) {
        const int which = in.byte() % 3;
        Matrix<Scalar>& alias = which == 0 ? q : which == 1 ? k : v;
        const Matrix<Scalar> saved = alias;
        const int mech = in.byte() % 4;
        c.what = "out aliasing an input";
        const bool returned = fuzz::call(c, [&] {
            if (mech == 0) attnx::exact_attention(q, k, v, alias, eo);
            if (mech == 1) attnx::bigbird_attention(q, k, v, bo, alias, common);
            if (mech == 2) attnx::nystrom_attention(q, k, v, alias, no);
            if (mech == 3) attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::dense(n, 8), alias, common);
        });
        if (returned) fuzz::fail(c.what, "an out buffer aliasing an input was accepted");
        if (!(alias == saved)) fuzz::fail(c.what, "a rejected call modified its input");
    }
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
