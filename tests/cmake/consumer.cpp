// A user's program: built against an installed attnx (find_package) or a source tree
// (add_subdirectory). Prints "consumer ok" only if the answer is right.
#include <attnx/attnx.hpp>

#include <cstdio>

int main() {
    const attnx::Matrix<float> q = attnx::random_normal<float>(300, 32, 7, 1);
    const attnx::Matrix<float> k = attnx::random_normal<float>(300, 32, 7, 2);
    const attnx::Matrix<float> v = attnx::random_normal<float>(300, 32, 7, 3);
    attnx::ExactOptions ref;
    ref.kernel = attnx::ExactKernel::Materialized;
    const double err = attnx::compare(attnx::exact_attention(q, k, v), attnx::exact_attention(q, k, v, ref)).rel_fro;
    std::printf("attnx %d.%d.%d: streaming vs materialized rel error %.2e\n", ATTNX_VERSION_MAJOR,
                ATTNX_VERSION_MINOR, ATTNX_VERSION_PATCH, err);
    if (!(err < 1e-5)) return 1;
    std::printf("consumer ok\n");
    return 0;
}
