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

template <typename A, typename R>
attnx::ErrorMetrics compare(const In<A>& approx, const In<R>& reference) {
    return attnx::compare(approx, reference);
}

#define ATTNX_PY_INSTANTIATE(S)                                                                                     \
    template void run<attnx::Exact, S>(const attnx::Exact&, const In<S>&, const In<S>&, const In<S>&, Out<S>);      \
    template void run<attnx::Nystrom, S>(const attnx::Nystrom&, const In<S>&, const In<S>&, const In<S>&, Out<S>);  \
    template void run<attnx::Linformer<S>, S>(const attnx::Linformer<S>&, const In<S>&, const In<S>&, const In<S>&, \
                                              Out<S>);                                                              \
    template void run<attnx::BlockSparse, S>(const attnx::BlockSparse&, const In<S>&, const In<S>&, const In<S>&,   \
                                             Out<S>);                                                               \
    template void run<attnx::BigBird, S>(const attnx::BigBird&, const In<S>&, const In<S>&, const In<S>&, Out<S>);  \
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
