// SPDX-License-Identifier: MIT
// Instantiates every public entry point for float and double, so that -Werror sees the
// template bodies, not just their declarations.
#include <attnx/attnx.hpp>

#include "../support/mechanism_cases.hpp"

template <typename Scalar>
Scalar instantiate() {
    const attnx::Matrix<Scalar> q = attnx::random_normal<Scalar>(64, 16, 1, 1);
    const attnx::Matrix<Scalar> k = attnx::random_normal<Scalar>(64, 16, 1, 2);
    const attnx::Matrix<Scalar> v = attnx::random_normal<Scalar>(64, 8, 1, 3);
    Scalar acc = 0;
    attnx::ExactOptions eo;
    acc += attnx::exact_attention(q, k, v, eo).sum();
    eo.kernel = attnx::ExactKernel::Materialized;
    acc += attnx::exact_attention(q, k, v, eo).sum();
    acc += attnx::attention_matrix(q, k).sum();
    acc += static_cast<Scalar>(attnx::compare(q, k).rel_fro);
    attnx::NystromOptions no;
    no.num_landmarks = 8;
    no.conv_kernel = {0.25, 0.5, 0.25};
    no.key_padding_mask.assign(64, false);
    no.query_padding_mask.assign(64, false);
    attnx::NystromReport report;
    acc += attnx::nystrom_attention(q, k, v, no, &report).sum();
    no.pinv = attnx::PinvMethod::Exact;
    attnx::Matrix<Scalar> out(64, 8);
    attnx::nystrom_attention(q, k, v, out, no);
    acc += out.sum() + static_cast<Scalar>(report.pinv_residual);
    const auto lp = attnx::LinformerProjection<Scalar>::gaussian(8, 64, 1);
    const auto lp_kv = attnx::LinformerProjection<Scalar>::gaussian(8, 80, 1, attnx::LinformerSharing::KeyValue);
    attnx::AttentionOptions lo;
    lo.key_padding_mask.assign(64, false);
    acc += attnx::linformer_attention(q, k, v, lp, lo).sum();
    acc += attnx::linformer_attention(q, k, v, lp.e(), lp.f(), lo).sum();
    attnx::Matrix<Scalar> lout(64, 8);
    attnx::linformer_attention(q, k, v, lp_kv, lout, lo);
    acc += lout.sum();
    attnx::linformer_attention(q, k, v, lp.e(), lp.e(), lout);
    acc += lout.sum();
    acc += attnx::linformer_attention(q, k, v, attnx::LinformerProjection<Scalar>::from_matrices(lp.e(), lp.f())).sum();
    acc += attnx::linformer_attention(q, k, v, attnx::LinformerProjection<Scalar>::from_matrix(lp.e())).sum();
    acc += attnx::linformer_attention(q, k, v, attnx::LinformerProjection<Scalar>::identity(64)).sum();
    attnx::BigBirdOptions bo;
    bo.block = 16;
    const attnx::BlockLayout bl = attnx::BlockLayout::bigbird(64, bo);
    attnx::AttentionOptions bso;
    bso.causal = true;
    bso.key_padding_mask.assign(64, false);
    acc += attnx::block_sparse_attention(q, k, v, bl, bso).sum();
    attnx::Matrix<Scalar> bout(64, 8);
    attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::longformer(64, 16, 3, 8), bout);
    acc += bout.sum() + attnx::bigbird_attention(q, k, v, bo, bso).sum();
    acc += attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::dense(64, 16)).sum();
    acc += attnx::block_sparse_attention(q, k, v, attnx::BlockLayout::from_block_mask(bl.to_block_mask(), 16)).sum();
    acc += static_cast<Scalar>(bl.density() + static_cast<double>(bl.to_dense_mask().count()));
    attnx::LinearAttentionOptions fo;
    fo.causal = true;
    fo.key_padding_mask.assign(64, false);
    acc += attnx::linear_attention(q, k, v, attnx::EluPlusOne{}, fo).sum();
    auto prf = attnx::PositiveRandomFeatures<Scalar>::draw(16, 1);
    prf.redraw();
    attnx::Matrix<Scalar> fout(64, 8);
    attnx::performer_attention(q, k, v, prf, fout, fo);
    acc += fout.sum() + attnx::performer_attention(q, k, v, attnx::PositiveRandomFeatures<Scalar>::from_matrix(prf.matrix())).sum();
    attnx::linear_attention(q, k, v, prf, fout);
    acc += fout.sum();
    attnx::LinearAttentionState<Scalar, attnx::PositiveRandomFeatures<Scalar>> st(prf, 16, 8);
    st.prefill(k, v);
    acc += st.prefill(q, k, v).sum() + st.step(q.row(0), k.row(0), v.row(0)).sum() + st.query(q).sum();
    attnx::Matrix<Scalar> mout(64, 8);
    testing_support::for_each_case<Scalar>([&](auto c) {  // every mechanism value, both call forms
        using Case = typename decltype(c)::Case;
        const auto mech = Case::template make<Scalar>(64);
        mech(q, k, v, mout);
        acc += mout.sum() + mech(q, k, v).sum() + static_cast<Scalar>(mech.name().size() + mech.parameters().size());
        attnx::EstimateOptions est;  // the estimator over every mechanism value, both call forms
        est.samples = 16;
        acc += static_cast<Scalar>(attnx::estimate_error(mech, q, k, v, est).rel_fro +
                                   attnx::estimate_error(mech, q, k, v, mout, est).ci_high);
    });
    return acc;
}

int main() { return instantiate<float>() + instantiate<double>() > 0 ? 0 : 1; }
