// SPDX-License-Identifier: MIT
// libFuzzer target: multi_head_attention with exact attention (the grouped decode path when every
// sequence has at most one query tile, the per-item path otherwise) against the loop of
// single-head exact_attention calls it promises to equal: for random batch, lengths, heads,
// grouping, head dims (up to 136), tiles, BNHD, BHND and head-innermost layouts, causal masks,
// padding masks, scales and
// values (NaN, Inf and huge ones included):
//  - if the loop succeeds, the layer returns the same bits (when the inputs are finite or
//    check_finite is on; with it off, NaN inputs may propagate differently);
//  - if an item of the loop throws, the layer throws the lowest failing item's message, prefixed
//    with "attnx::multi_head_attention: batch b, head h (key/value head g): ";
//  - the fuzz_common.hpp contract (only attnx::invalid_argument; finite results from finite
//    inputs with check_finite on).
#include <attnx/mechanisms.hpp>
#include <attnx/multi_head.hpp>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {

template <typename Scalar>
std::vector<Scalar> values(fuzz::Input& in, attnx::Index size, bool& finite, double& mx) {
    const attnx::Matrix<Scalar> m = fuzz::matrix<Scalar>(in, size, 1, finite, mx);
    return std::vector<Scalar>(m.data(), m.data() + size);
}

template <typename Scalar>
void run(fuzz::Input& in) {
    using attnx::HeadsView;
    using attnx::Index;
    using attnx::Matrix;
    const Index batch = in.range(0, 2), n_q = in.size(6), n_k = in.size(48);
    const Index h_kv = in.range(1, 3), group = in.range(1, 3), h_q = h_kv * group;
    // Mostly small head dims; sometimes D >= 128, where the one-query score product is sliced.
    const bool wide = in.byte() >= 224;
    const Index d = wide ? in.range(120, 136) : in.range(1, 9), dv = in.range(1, 9);
    attnx::Exact mech;
    in.scale(mech.options.scale);
    mech.options.query_tile = in.range(1, 8);
    mech.options.key_tile = in.range(1, 12);
    mech.options.decode_key_tile = mech.options.key_tile;  // no draw of its own (stored inputs)
    mech.options.check_finite = in.byte() >= 32;
    attnx::MultiHeadOptions o;
    o.causal = in.flag();
    if (in.flag())
        for (Index b = 0; b < batch; ++b) o.key_lengths.push_back(in.range(0, n_k));
    if (in.flag())
        for (Index b = 0; b < batch; ++b) o.query_lengths.push_back(in.range(0, n_q));
    if (o.key_lengths.empty() && in.flag()) {
        const std::uint8_t density = in.byte();
        for (Index j = 0; j < batch * n_k; ++j) o.key_padding_mask.push_back(in.byte() < density);
    }
    // Layouts: BNHD, BHND, or (B, N, D, H) with the head innermost (stride along D = H: the
    // gathers' strided path), as a strided view.
    const int layout = in.byte() % 3;
    const bool bhnd = layout == 1;
    bool finite = true;
    double mx = 0;
    const std::vector<Scalar> q = values<Scalar>(in, batch * n_q * h_q * d, finite, mx);
    const std::vector<Scalar> k = values<Scalar>(in, batch * n_k * h_kv * d, finite, mx);
    const std::vector<Scalar> v = values<Scalar>(in, batch * n_k * h_kv * dv, finite, mx);
    const auto view = [&](const std::vector<Scalar>& x, Index n, Index h, Index dim) {
        if (layout == 2) return HeadsView<const Scalar>::strided(x.data(), batch, n, h, dim, n * dim * h, dim * h, 1, h);
        return bhnd ? HeadsView<const Scalar>::bhnd(x.data(), batch, h, n, dim)
                    : HeadsView<const Scalar>::bnhd(x.data(), batch, n, h, dim);
    };
    const HeadsView<const Scalar> qv = view(q, n_q, h_q, d), kv = view(k, n_k, h_kv, d), vv = view(v, n_k, h_kv, dv);
    std::vector<Scalar> got(static_cast<std::size_t>(batch * n_q * h_q * dv), Scalar(-7));
    const HeadsView<Scalar> ov = bhnd ? HeadsView<Scalar>::bhnd(got.data(), batch, h_q, n_q, dv)
                                      : HeadsView<Scalar>::bnhd(got.data(), batch, n_q, h_q, dv);

    fuzz::Case c;
    c.what = "multi_head_attention(Exact)";
    c.inputs_finite = finite;
    c.check_finite = mech.options.check_finite;
    std::string layer_error;
    bool layer_ok = true;
    try {
        attnx::multi_head_attention(mech, qv, kv, vv, ov, o);
    } catch (const attnx::invalid_argument& e) {
        layer_ok = false;
        layer_error = e.what();
    }
    if (!layer_ok) fuzz::call(c, [&] { throw attnx::invalid_argument(layer_error); });  // the message contract

    // The loop of single-head calls on the cut sequences, in item order.
    std::vector<Scalar> want(got.size(), Scalar(0));
    const HeadsView<Scalar> wv = bhnd ? HeadsView<Scalar>::bhnd(want.data(), batch, h_q, n_q, dv)
                                      : HeadsView<Scalar>::bnhd(want.data(), batch, n_q, h_q, dv);
    std::string loop_error;
    for (Index b = 0; b < batch && loop_error.empty(); ++b)
        for (Index h = 0; h < h_q && loop_error.empty(); ++h) {
            const Index lq = o.query_lengths.empty() ? n_q : o.query_lengths[static_cast<std::size_t>(b)];
            const Index lk = o.key_lengths.empty() ? n_k : o.key_lengths[static_cast<std::size_t>(b)];
            if (lq == 0 || lk == 0) continue;
            attnx::Exact m = mech;
            if (o.causal) m.options.causal = true;
            if (!o.key_padding_mask.empty())
                m.options.key_padding_mask.assign(o.key_padding_mask.begin() + b * n_k,
                                                  o.key_padding_mask.begin() + (b + 1) * n_k);
            Matrix<Scalar> qs(lq, d), ks(lk, d), vs(lk, dv);
            for (Index n = 0; n < lq; ++n)
                for (Index j = 0; j < d; ++j) qs(n, j) = qv(b, n, h, j);
            for (Index n = 0; n < lk; ++n) {
                for (Index j = 0; j < d; ++j) ks(n, j) = kv(b, n, h / group, j);
                for (Index j = 0; j < dv; ++j) vs(n, j) = vv(b, n, h / group, j);
            }
            try {
                const Matrix<Scalar> r = m(qs, ks, vs);
                for (Index n = 0; n < lq; ++n)
                    for (Index j = 0; j < dv; ++j) wv(b, n, h, j) = r(n, j);
            } catch (const attnx::invalid_argument& e) {
                loop_error = "attnx::multi_head_attention: batch " + std::to_string(b) + ", head " + std::to_string(h) +
                             " (key/value head " + std::to_string(h / group) + "): " + e.what();
            }
        }
    if (layer_ok != loop_error.empty())
        fuzz::fail(c.what, layer_ok ? "the layer returned but the loop threw: " + loop_error
                                    : "the layer threw but the loop did not: " + layer_error);
    if (!layer_ok) {
        if (layer_error != loop_error)
            fuzz::fail(c.what, "the layer threw\n  " + layer_error + "\nbut the loop's first error is\n  " + loop_error);
        return;
    }
    if (!finite && !mech.options.check_finite) return;  // NaN may take another path through a max
    if (!got.empty() && std::memcmp(got.data(), want.data(), got.size() * sizeof(Scalar)) != 0)
        fuzz::fail(c.what, "the layer's result differs from the loop of single-head calls");
    fuzz::check_output(c, Eigen::Map<const Matrix<Scalar>>(got.data(), static_cast<Index>(got.size()), 1).eval(),
                       static_cast<Index>(got.size()), 1);
}

}  // namespace

ATTNX_FUZZ_FLOAT_AND_DOUBLE(run)
