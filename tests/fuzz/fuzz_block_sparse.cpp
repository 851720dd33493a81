// SPDX-License-Identifier: MIT
// libFuzzer target: the BlockLayout builders (bigbird, longformer, dense, from_block_mask,
// default), the layout's own invariants, block_sparse_attention (both overloads) and
// bigbird_attention, with causal and key padding masks, against the contract of fuzz_common.hpp.
#include <attnx/bigbird.hpp>

#include "fuzz_common.hpp"

namespace {

void check_layout(const attnx::BlockLayout& l) {
    using attnx::Index;
    const Index b = l.block_size();
    if (b < 1) return;
    const Index nb_q = (l.n_q() + b - 1) / b, nb_k = (l.n_k() + b - 1) / b;
    if (l.query_blocks() != nb_q || l.key_blocks() != nb_k) fuzz::fail("BlockLayout", "wrong block counts");
    const auto& rp = l.row_ptr();
    const auto& ci = l.col_idx();
    if (static_cast<Index>(rp.size()) != nb_q + 1 || rp.front() != 0 || rp.back() != static_cast<Index>(ci.size()))
        fuzz::fail("BlockLayout", "bad row_ptr");
    for (Index i = 0; i < nb_q; ++i)
        for (Index p = rp[static_cast<std::size_t>(i)]; p < rp[static_cast<std::size_t>(i) + 1]; ++p) {
            const Index j = ci[static_cast<std::size_t>(p)];
            if (j < 0 || j >= nb_k) fuzz::fail("BlockLayout", "key block out of range");
            if (p > rp[static_cast<std::size_t>(i)] && ci[static_cast<std::size_t>(p) - 1] >= j)
                fuzz::fail("BlockLayout", "row not sorted and distinct");
        }
    const attnx::BlockMask dm = l.to_dense_mask();
    if (dm.rows() != l.n_q() || dm.cols() != l.n_k() || dm.count() != l.kept_entries())
        fuzz::fail("BlockLayout", "to_dense_mask disagrees with kept_entries");
    if (attnx::BlockLayout::from_block_mask(l.to_block_mask(), b, l.n_q(), l.n_k()) != l)
        fuzz::fail("BlockLayout", "from_block_mask(to_block_mask()) is not the same layout");
}

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::Index;
    using attnx::Matrix;
    const Index n_q = in.size(64);
    const Index n_k = in.flag() ? n_q : in.size(64);
    const Index d = in.size(16), dv = in.size(16);
    attnx::AttentionOptions o;
    const bool scale_ok = in.scale(o.scale);
    o.causal = in.flag();
    o.check_finite = in.byte() >= 16;
    o.key_padding_mask = in.mask(n_k);
    const int builder = in.byte() % 6;
    const Index block = in.range(-1, 20);
    attnx::BigBirdOptions bo;
    bo.block = block;
    bo.window = in.range(-1, 6);
    bo.global = in.range(-1, 5);
    bo.random = in.range(-1, 5);
    bo.seed = in.u64();
    const Index global_tokens = in.range(-1, 40);
    // The layout's sizes: usually those of q and k, sometimes off by one.
    const Index ln_q = n_q + (in.byte() >= 240 ? 1 : 0), ln_k = n_k + (in.byte() >= 240 ? 1 : 0);
    attnx::BlockMask mask;
    if (builder == 3 || builder == 4) {
        const Index b = std::max<Index>(block, 1);
        Index r = (ln_q + b - 1) / b, cc = (ln_k + b - 1) / b;
        if (in.byte() >= 240) r += 1;
        mask.resize(r, cc);
        for (Index j = 0; j < cc; ++j)
            for (Index i = 0; i < r; ++i) mask(i, j) = in.flag();
    }
    bool finite = true;
    double mx = 0;
    const Matrix<Scalar> q = fuzz::matrix<Scalar>(in, n_q, d, finite, mx);
    const Matrix<Scalar> k = fuzz::matrix<Scalar>(in, n_k, d, finite, mx);
    const Matrix<Scalar> v = fuzz::matrix<Scalar>(in, n_k, dv, finite, mx);

    fuzz::Case c;
    c.what = "BlockLayout builder";
    attnx::BlockLayout layout;
    bool built = true;
    switch (builder) {
        case 0: built = fuzz::call(c, [&] { layout = attnx::BlockLayout::bigbird(ln_q, bo); }); break;
        case 1:
            built = fuzz::call(c, [&] { layout = attnx::BlockLayout::longformer(ln_q, block, bo.window, global_tokens); });
            break;
        case 2: built = fuzz::call(c, [&] { layout = attnx::BlockLayout::dense(ln_q, ln_k, block); }); break;
        case 3: built = fuzz::call(c, [&] { layout = attnx::BlockLayout::from_block_mask(mask, block, ln_q, ln_k); }); break;
        case 4: built = fuzz::call(c, [&] { layout = attnx::BlockLayout::from_block_mask(mask, block); }); break;
        default: break;  // the default (empty) layout
    }
    if (built) check_layout(layout);

    c.inputs_finite = finite;
    c.check_finite = o.check_finite;
    c.moderate = scale_ok && mx <= 8 && (!o.scale || *o.scale <= 1e30);
    if (built) {
        c.what = "block_sparse_attention";
        Matrix<Scalar> out;
        if (fuzz::call(c, [&] { out = attnx::block_sparse_attention(q, k, v, layout, o); }))
            fuzz::check_output(c, out, n_q, dv);
        if (in.flag()) {
            Matrix<Scalar> buf(n_q, dv + (in.byte() >= 240 ? 1 : 0));
            c.what = "block_sparse_attention(out)";
            if (fuzz::call(c, [&] { attnx::block_sparse_attention(q, k, v, layout, buf, o); }))
                fuzz::check_output(c, buf, n_q, dv);
        }
    }
    if (in.flag()) {
        c.what = "bigbird_attention";
        Matrix<Scalar> out;
        if (fuzz::call(c, [&] { out = attnx::bigbird_attention(q, k, v, bo, o); })) fuzz::check_output(c, out, n_q, dv);
    }
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
