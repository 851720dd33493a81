#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Error against budget on real attention (local heads, broad heads) beside the demo's
synthetic inputs, from attnx_eval's JSON output.

    benchmarks/plot_realdata.py [--dir docs/realdata] [--out docs/realdata_error.png]

Reads <dir>/{dickens,gettysburg}_{L0,L1}.json (attnx_eval on tests/data/realdata) and
<dir>/synthetic_n128.json (attnx_eval --synthetic 128 --seed 7); scripts/realdata writes them.
A head is "local" when attention_matrix puts at least half of each row's weight on the
diagonal +-1 on average: heads 1-3 of layer 0 (test_realdata checks this); every other head is
"broad". One panel per method, x = its budget (landmarks m, rank k, kept fraction of the
attention matrix for the block-sparse layouts), y = relative Frobenius error against exact
attention: the median over the heads of a kind, the band from the best to the worst head.
Needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3).
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = {("L0", 1), ("L0", 2), ("L0", 3)}
METHODS = [("nystrom", "Nyström: landmarks m"), ("linformer", "Linformer (Gaussian E, F): rank k"),
           ("longformer", "Longformer (w 3, 1 global block): density"),
           ("bigbird", "BigBird (w 3, g 2, r 3): density")]
KINDS = [("local", "real, local heads (6)", "#ff7f0e"), ("broad", "real, broad heads (10)", "#1f77b4"),
         ("synthetic", "demo's synthetic input", "#7f7f7f")]


def load(args):
    pts = []  # (kind, method, budget_value, rel_fro)
    for text in ("dickens", "gettysburg"):
        for layer in ("L0", "L1"):
            path = os.path.join(args.dir, f"{text}_{layer}.json")
            if not os.path.exists(path):
                print(f"plot_realdata: {path} missing, skipped", file=sys.stderr)
                continue
            for r in json.load(open(path))["rows"]:
                kind = "local" if (layer, r["head"]) in LOCAL else "broad"
                pts.append((kind, r["method"], r["budget_value"], r["rel_fro"]))
    path = os.path.join(args.dir, "synthetic_n128.json")
    if os.path.exists(path):
        for r in json.load(open(path))["rows"]:
            pts.append(("synthetic", r["method"], r["budget_value"], r["rel_fro"]))
    return pts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(ROOT, "docs", "realdata"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "realdata_error.png"))
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    pts = load(args)
    if not pts:
        print("plot_realdata: no data", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(METHODS), figsize=(16, 4.2), sharey=True)
    for ax, (method, title) in zip(axes, METHODS):
        for kind, label, colour in KINDS:
            by_budget = {}
            for k, m, b, e in pts:
                if k == kind and m == method:
                    by_budget.setdefault(b, []).append(e)
            if not by_budget:
                continue
            xs = sorted(by_budget)
            med = [sorted(by_budget[x])[len(by_budget[x]) // 2] for x in xs]
            ax.plot(xs, med, "o-", color=colour, label=label)
            if len(by_budget[xs[0]]) > 1:
                ax.fill_between(xs, [min(by_budget[x]) for x in xs], [max(by_budget[x]) for x in xs], color=colour,
                                alpha=0.18)
        ax.set_title(title, fontsize=10)
        if method in ("nystrom", "linformer"):
            ax.set_xscale("log")
            ax.set_xticks(sorted({b for k, m, b, e in pts if m == method}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("rel. Frobenius error vs exact")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Error against budget, n = 128: real attention (Universal Sentence Encoder Lite, 2 texts x 2 layers "
                 "x 4 heads) vs the demo's synthetic input", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
