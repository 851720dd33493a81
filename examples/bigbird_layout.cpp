// SPDX-License-Identifier: MIT
// Block-sparse layouts as pictures: builds the default BigBird layout and a Longformer layout,
// prints them as text (one character per block), writes them as PGM images (white = kept
// block), and shows what the sparsity costs in accuracy and buys in time on one input.
//
//   bigbird_layout [--n 4096] [--block 64] [--out DIR]    (writes DIR/bigbird.pgm, DIR/longformer.pgm)
#include <attnx/attnx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>

#include "example_inputs.hpp"

namespace {

double best_ms(const std::function<void()>& f) {
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    attnx::Index n = 4096, block = 64;
    std::string dir = ".";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], val = argv[i + 1];
        if (a == "--n")
            n = std::stoll(val);
        else if (a == "--block")
            block = std::stoll(val);
        else if (a == "--out")
            dir = val;
        else {
            std::fprintf(stderr, "usage: bigbird_layout [--n N] [--block B] [--out DIR]\n");
            return 2;
        }
    }
    try {
        attnx::BigBirdOptions bo;  // window 3, global 2 (first + last), random 3, seed 0
        bo.block = block;
        const attnx::BlockLayout bigbird = attnx::BlockLayout::bigbird(n, bo);
        const attnx::BlockLayout longformer = attnx::BlockLayout::longformer(n, block, 3, block);

        // A small one as text: 16 blocks of 8 tokens.
        attnx::BigBirdOptions small = bo;
        small.block = 8;
        std::cout << "BigBird, 128 tokens in blocks of 8 (# = kept block):\n"
                  << attnx::BlockLayout::bigbird(128, small) << "\n";

        const auto x = examples::realistic_inputs<float>(n, 64, 64, 1);
        attnx::Matrix<float> exact(n, 64), sparse(n, 64);
        const double exact_ms = best_ms([&] { attnx::exact_attention(x.q, x.k, x.v, exact); });
        std::printf("n = %lld, block = %lld: exact attention %.1f ms\n", static_cast<long long>(n),
                    static_cast<long long>(block), exact_ms);
        for (const auto& entry : {std::make_pair("bigbird", &bigbird), std::make_pair("longformer", &longformer)}) {
            const attnx::BlockLayout& l = *entry.second;
            const double ms = best_ms([&] { attnx::block_sparse_attention(x.q, x.k, x.v, l, sparse); });
            const std::string path = dir + "/" + entry.first + ".pgm";
            l.write_pgm(path, std::max<attnx::Index>(1, 512 / l.query_blocks()));
            std::printf("%-10s %lldx%lld blocks, density %.4f, %.1f ms (%.1fx), rel Frobenius error %.3f; wrote %s\n",
                        entry.first, static_cast<long long>(l.query_blocks()),
                        static_cast<long long>(l.key_blocks()), l.density(), ms, exact_ms / ms,
                        attnx::compare(sparse, exact).rel_fro, path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bigbird_layout: %s\n", e.what());
        return 1;
    }
    return 0;
}
