// SPDX-License-Identifier: MIT
/// \file kernels.cpp
/// The one translation unit of the Python module that instantiates attnx's kernels (see
/// kernels.hpp): float and double, one argument type each.
#include "kernels.hpp"

namespace attnx_py {

template <typename Mech, typename S>
void run(const Mech& mech, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out) {
    mech(q, k, v, out);
}

template <typename S>
void run_nystrom(const attnx::NystromOptions& o, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out,
                 attnx::NystromReport* report) {
    attnx::nystrom_attention(q, k, v, out, o, report);
}

template <typename S>
void run_linformer_raw(const In<S>& q, const In<S>& k, const In<S>& v, const In<S>& e, const In<S>& f,
                       const attnx::AttentionOptions& o, Out<S> out) {
    attnx::linformer_attention(q, k, v, e, f, out, o);
}

template <typename S>
attnx::LinformerProjection<S> projection_from(const In<S>& e, const In<S>* f) {
    if (f == nullptr) return attnx::LinformerProjection<S>::from_matrix(e);
    return attnx::LinformerProjection<S>::from_matrices(e, *f);
}

template <typename Mech, typename S>
attnx::ErrorEstimate estimate(const Mech& mech, const In<S>& q, const In<S>& k, const In<S>& v, const In<S>* approx,
                              const attnx::EstimateOptions& o) {
    if (approx != nullptr) return attnx::estimate_error(mech, q, k, v, *approx, o);
    return attnx::estimate_error(mech, q, k, v, o);
}

template <typename Mech, typename S>
void run_multi_head(const Mech& mech, const attnx::HeadsView<const S>& q, const attnx::HeadsView<const S>& k,
                    const attnx::HeadsView<const S>& v, const attnx::HeadsView<S>& out,
                    const attnx::MultiHeadOptions& o) {
    attnx::multi_head_attention(mech, q, k, v, out, o);
}

template <typename State, typename S>
void state_absorb(State& state, const In<S>& k, const In<S>& v) {
    state.prefill(k, v);
}

template <typename State, typename S>
void state_prefill(State& state, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out) {
    state.prefill(q, k, v, out);
}

template <typename State, typename S>
void state_step(State& state, const In<S>& q, const In<S>& k, const In<S>& v, Out<S> out) {
    state.step(q.row(0), k.row(0), v.row(0), out.row(0));
}

template <typename State, typename S>
void state_query(const State& state, const In<S>& q, Out<S> out) {
    out = state.query(q);
}

template <typename S>
attnx::PositiveRandomFeatures<S> features_draw(Index d, std::uint64_t seed, const attnx::RandomFeatureOptions& o) {
    return attnx::PositiveRandomFeatures<S>::draw(d, seed, o);
}

template <typename S>
attnx::PositiveRandomFeatures<S> features_from(const In<S>& w, double stabilizer) {
    return attnx::PositiveRandomFeatures<S>::from_matrix(w, stabilizer);
}

template <typename A, typename R>
attnx::ErrorMetrics compare(const In<A>& approx, const In<R>& reference) {
    return attnx::compare(approx, reference);
}

// Every generic entry point, for one mechanism type M and Scalar S.
#define ATTNX_PY_PER_MECHANISM(M, S)                                                                  \
    template void run<M, S>(const M&, const In<S>&, const In<S>&, const In<S>&, Out<S>);              \
    template attnx::ErrorEstimate estimate<M, S>(const M&, const In<S>&, const In<S>&, const In<S>&, \
                                                 const In<S>*, const attnx::EstimateOptions&);      \
    template void run_multi_head<M, S>(const M&, const attnx::HeadsView<const S>&, const attnx::HeadsView<const S>&, \
                                       const attnx::HeadsView<const S>&, const attnx::HeadsView<S>&,                  \
                                       const attnx::MultiHeadOptions&);

// Every decode-state entry point, for one state type T and Scalar S.
#define ATTNX_PY_PER_STATE(T, S)                                                                      \
    template void state_absorb<T, S>(T&, const In<S>&, const In<S>&);                                 \
    template void state_prefill<T, S>(T&, const In<S>&, const In<S>&, const In<S>&, Out<S>);          \
    template void state_step<T, S>(T&, const In<S>&, const In<S>&, const In<S>&, Out<S>);             \
    template void state_query<T, S>(const T&, const In<S>&, Out<S>);

#define ATTNX_PY_INSTANTIATE(S)                                                                                     \
    ATTNX_PY_PER_MECHANISM(attnx::Exact, S)                                                                         \
    ATTNX_PY_PER_MECHANISM(attnx::Nystrom, S)                                                                       \
    ATTNX_PY_PER_MECHANISM(attnx::Linformer<S>, S)                                                                  \
    ATTNX_PY_PER_MECHANISM(attnx::BlockSparse, S)                                                                   \
    ATTNX_PY_PER_MECHANISM(attnx::BigBird, S)                                                                       \
    ATTNX_PY_PER_MECHANISM(attnx::Linear<>, S)                                                                      \
    ATTNX_PY_PER_MECHANISM(attnx::Performer<S>, S)                                                                  \
    ATTNX_PY_PER_STATE(EluState<S>, S)                                                                              \
    ATTNX_PY_PER_STATE(FavorState<S>, S)                                                                            \
    template attnx::PositiveRandomFeatures<S> features_draw<S>(Index, std::uint64_t, const attnx::RandomFeatureOptions&); \
    template attnx::PositiveRandomFeatures<S> features_from<S>(const In<S>&, double);                              \
    template void run_nystrom<S>(const attnx::NystromOptions&, const In<S>&, const In<S>&, const In<S>&, Out<S>,    \
                                 attnx::NystromReport*);                                                            \
    template void run_linformer_raw<S>(const In<S>&, const In<S>&, const In<S>&, const In<S>&, const In<S>&,        \
                                       const attnx::AttentionOptions&, Out<S>);                                     \
    template attnx::LinformerProjection<S> projection_from<S>(const In<S>&, const In<S>*);

ATTNX_PY_INSTANTIATE(float)
ATTNX_PY_INSTANTIATE(double)

template attnx::ErrorMetrics compare<float, float>(const In<float>&, const In<float>&);
template attnx::ErrorMetrics compare<float, double>(const In<float>&, const In<double>&);
template attnx::ErrorMetrics compare<double, float>(const In<double>&, const In<float>&);
template attnx::ErrorMetrics compare<double, double>(const In<double>&, const In<double>&);

}  // namespace attnx_py
