#!/usr/bin/env python3
"""Every attnx method on real attention: error and time against the budget each one spends.

Loads the Q, K, V that a pretrained transformer (Universal Sentence Encoder Lite) computes on two
English texts (tests/data/realdata: 2 texts x 2 layers x 4 heads, 128 tokens, float32), runs
exact attention and each approximation at several budgets on every head, and prints one row per
method and budget: the budget, the relative Frobenius error against exact attention in float64
(mean over the 16 heads) and the time for all heads. Then it draws error against budget with
matplotlib.

Budget = the attention-matrix entries a method evaluates, as a fraction of exact attention's
n_q * n_k: (n*m + m*m + m*n) / n^2 for Nystrom with m landmarks, n*k / n^2 for Linformer with k
projected keys, the kept fraction (density) for BigBird and Longformer. The feature-map methods
evaluate no entry; each query meets C features instead of n keys, so their budget is C / n, as
Linformer's k / n: m random features for Performer (FAVOR+), d for linear attention (elu + 1,
a different similarity, one point at the mean head dimension, for reference).

    python3 examples/python/compare_methods.py [--data tests/data/realdata] [--out error_vs_budget.png]
"""
import argparse
import pathlib
import time

import numpy as np

import attnx

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_heads(data):
    """[(name, q, k, v)] for every head of every <text>_<layer>_{q,k,v}.npy in data."""
    heads = []
    for qfile in sorted(data.glob("*_q.npy")):
        stem = qfile.name[: -len("_q.npy")]
        q, k, v = (np.load(data / f"{stem}_{x}.npy") for x in "qkv")
        for h in range(q.shape[0]):
            heads.append((f"{stem}/h{h}", q[h], k[h], v[h]))
    return heads


def methods(n, dims):
    """(family, parameters, budget, mechanism_for) for each method and budget at sequence length n;
    mechanism_for(d) is the mechanism for a head of dimension d (dims: the head dimensions seen;
    only the random features depend on d)."""
    def same(mech):
        return lambda d: mech

    out = [("exact", "streaming", 1.0, same(attnx.Exact()))]
    for m in (4, 8, 16, 32, 64):
        out.append(("Nystrom", f"m = {m}", (2 * n * m + m * m) / n**2, same(attnx.Nystrom(num_landmarks=m))))
    for k in (8, 16, 32, 64):
        proj = attnx.LinformerProjection.gaussian(k, n, seed=1)
        out.append(("Linformer (random E, F)", f"k = {k}", k / n, same(attnx.Linformer(proj))))
    for r in (0, 1, 2, 3):
        layout = attnx.BlockLayout.bigbird(n, block=16, window=3, global_=1, random=r, seed=1)
        out.append(("BigBird", f"b 16, w 3, g 1, r {r}", layout.density(), same(attnx.BlockSparse(layout))))
    for w in (1, 3, 5):
        layout = attnx.BlockLayout.longformer(n, 16, w, 16)
        out.append(("Longformer", f"b 16, w {w}, 16 global", layout.density(), same(attnx.BlockSparse(layout))))
    for m in (16, 32, 64, 128):
        per_d = {d: attnx.Performer(attnx.PerformerFeatures.draw(d, seed=1, num_features=m, dtype="float32"))
                 for d in dims}
        out.append(("Performer (FAVOR+)", f"m = {m}", m / n, per_d.__getitem__))
    out.append(("linear (elu + 1)", "C = d", float(np.mean(dims)) / n, same(attnx.Linear())))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "tests" / "data" / "realdata")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("error_vs_budget.png"))
    parser.add_argument("--reps", type=int, default=3, help="timing: best of this many runs over all heads")
    args = parser.parse_args()

    heads = load_heads(args.data)
    if not heads:
        raise SystemExit(f"no *_q.npy files in {args.data}")
    n = heads[0][1].shape[0]
    # The reference: exact attention in float64 on the same (float32) inputs.
    reference = [attnx.exact_attention(*(x.astype(np.float64) for x in (q, k, v))) for _, q, k, v in heads]

    print(f"attnx {attnx.__version__}: {len(heads)} heads of real attention, n = {n}, float32, "
          f"{attnx.max_threads()} thread(s)")
    print(f"{'method':<24} {'parameters':<22} {'budget':>7} {'rel. error':>11} {'time ms':>8}")
    rows = []
    dims = [q.shape[1] for _, q, _, _ in heads]
    for family, params, budget, mechanism_for in methods(n, sorted(set(dims))):
        best = float("inf")
        for _ in range(args.reps):
            start = time.perf_counter()
            outs = [mechanism_for(q.shape[1])(q, k, v) for _, q, k, v in heads]
            best = min(best, time.perf_counter() - start)
        err = float(np.mean([attnx.compare(o, r).rel_fro for o, r in zip(outs, reference)]))
        rows.append((family, params, budget, err, best * 1e3))
        print(f"{family:<24} {params:<22} {budget:7.3f} {err:11.3e} {best * 1e3:8.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family in dict.fromkeys(r[0] for r in rows):
        pts = sorted((r[2], r[3]) for r in rows if r[0] == family)
        if family == "exact":
            ax.axvline(pts[0][0], color="grey", ls=":", label=f"exact (budget 1, error {pts[0][1]:.0e})")
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "s", label=family)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("budget: evaluated attention entries / (n_q n_k); features / n for feature maps")
    ax.set_ylabel("relative Frobenius error vs exact (mean over heads)")
    ax.set_title(f"attnx on real attention (USE Lite, {len(heads)} heads, n = {n})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
