#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plots of the attnx benchmarks from Google Benchmark JSON files.

    benchmarks/plot.py [--out-dir docs] [FILE.json ...]

With no files, reads docs/bench/bench_*.json (what scripts/bench writes). Each file is the
output of a bench binary run with --benchmark_out=FILE --benchmark_out_format=json. Writes:

  bench_time.png      time per call against n, log-log, one line per method and budget
  bench_error.png     relative Frobenius error against exact attention as a function of each
                      method's budget: landmarks m (Nystrom), rank k (Linformer), random blocks r
                      (BigBird; the kept fraction of the attention matrix when r is not varied)
  bench_memory.png    peak heap beyond inputs and output (peak_extra_MiB) against n, log-log
  bench_tradeoff.png  error against time at one n, every method and budget on one chart

It plots whatever it finds: missing files, families or counters are skipped with a note, and
a plot with no data is not written. Needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import glob
import json
import math
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Colours per method (stable across plots), markers per budget value.
COLOURS = {
    "exact (streaming)": "#1f77b4",
    "exact (materialized)": "#7f7f7f",
    "GEMM, same FLOPs as exact": "#c7c7c7",
    "Nyström": "#d62728",
    "Linformer": "#2ca02c",
    "BigBird": "#9467bd",
    "Longformer": "#ff7f0e",
    "Performer m=256": "#8c564b",
    "Performer m=256 causal": "#e377c2",
    "linear (elu+1)": "#17becf",
    "linear (elu+1) causal": "#bcbd22",
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def note(msg):
    print("plot.py: " + msg, file=sys.stderr)


def n_label(v, _pos=None):
    """1024 -> '1k', 1048576 -> '1M' (for axes of powers of two)."""
    if v >= 1 << 20 and v % (1 << 20) == 0:
        return "%dM" % (v // (1 << 20))
    if v >= 1 << 10 and v % (1 << 10) == 0:
        return "%dk" % (v // (1 << 10))
    return "%g" % v


def n_axis(axis):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(base=2))
    axis.set_major_formatter(FuncFormatter(n_label))
    axis.set_minor_formatter(NullFormatter())


def value_axis(axis):
    """A log axis labelled 0.1, 0.2, 0.5, 1, 2, ... rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: "%g" % v))
    axis.set_minor_formatter(NullFormatter())


class Point:
    """One benchmark result: a method at one n and one budget."""

    def __init__(self, method, n, budget_name, budget, ms, counters, label):
        self.method = method          # "Nyström", "exact (streaming)", ...
        self.n = n
        self.budget_name = budget_name  # "m", "k", "r" or None
        self.budget = budget          # its value or None
        self.ms = ms
        self.counters = counters
        self.label = label

    @property
    def series(self):
        if self.budget_name is None:
            return self.method
        return "%s %s=%g" % (self.method, self.budget_name, self.budget)

    @property
    def rel_err(self):
        for key in ("rel_err", "err_vs_exact", "rel_fro"):
            if key in self.counters:
                return self.counters[key]
        return None


def classify(family, args, label):
    """(method, budget name, budget value) of a benchmark, or None to skip it."""
    if family == "BM_Exact" and len(args) >= 2:
        return ("exact (materialized)" if args[1] == 1 else "exact (streaming)", None, None)
    if family == "BM_Gemm":
        return ("GEMM, same FLOPs as exact", None, None)
    if family == "BM_ExactStreaming":
        return None  # the same kernel as BM_Exact/n/0, measured again next to the block-sparse runs
    if family == "BM_Nystrom" and len(args) >= 2:
        return ("Nyström", "m", args[1])
    if family == "BM_Linformer" and len(args) >= 2:
        return ("Linformer", "k", args[1])
    if family in ("BM_BlockSparse", "BM_BigBird", "BM_Longformer"):
        text = (label or "").lower()
        method = "Longformer" if ("longformer" in text or family == "BM_Longformer") else "BigBird"
        if method == "BigBird":
            r = re.search(r"\br\s*=?\s*(\d+)", text)
            if r:
                return (method, "r", int(r.group(1)))
            if len(args) >= 3:
                return (method, "r", args[2])
        return (method, None, None)
    if family in ("BM_Performer", "BM_Linear") and len(args) >= 2:
        # bench_feature_map: n, causal; FAVOR+ m = 256 and elu + 1 (C = d).
        method = "Performer m=256" if family == "BM_Performer" else "linear (elu+1)"
        return (method + (" causal" if args[1] else ""), None, None)
    if family in ("BM_TokenLoop", "BM_DecodeStepPerformer", "BM_DecodeStepLinear", "BM_PerformerCausalMillion",
                  "BM_Prefill", "BM_Decode"):
        return None  # not a time-against-n curve (bench_feature_map's extras, bench_multi_head)
    # Unknown family: its name, with the second argument as an unnamed budget.
    name = family[3:] if family.startswith("BM_") else family
    if len(args) >= 2:
        return (name, "arg", args[1])
    return (name, None, None)


def load(paths):
    """Points from the files, and the context of the first file that has one."""
    points, context = [], None
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            note("skipping %s: %s" % (path, e))
            continue
        if isinstance(data.get("context"), dict) and "competitors" in data["context"]:
            note("skipping %s: bench_oversubscribed (busy-machine ratios; the README tabulates them)" % path)
            continue
        if context is None and isinstance(data.get("context"), dict):
            context = data["context"]
        runs = defaultdict(list)
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                note("%s: %s failed: %s" % (path, b.get("name"), b.get("error_message")))
                continue
            # With repetitions, use the mean aggregate; otherwise the plain iteration runs.
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "mean":
                continue
            runs[b.get("run_name", b.get("name", ""))].append(b)
        for run_name, entries in runs.items():
            means = [e for e in entries if e.get("run_type") == "aggregate"]
            entries = means or entries
            b = sorted(entries, key=lambda e: e.get("real_time", 0))[len(entries) // 2]  # median
            parts = run_name.split("/")
            family = parts[0]
            args = []
            for p in parts[1:]:
                if re.fullmatch(r"-?\d+", p):
                    args.append(int(p))
            if not args:
                continue
            kind = classify(family, args, b.get("label", ""))
            if kind is None:
                continue
            unit = TIME_TO_MS.get(b.get("time_unit", "ns"), 1e-6)
            counters = {k: v for k, v in b.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            points.append(Point(kind[0], args[0], kind[1], kind[2], b["real_time"] * unit, counters,
                                b.get("label", "")))
    return points, context


def caption(context):
    if not context:
        return ""
    parts = []
    if "num_cpus" in context:
        cpu = "%s CPUs" % context["num_cpus"]
        if context.get("mhz_per_cpu"):
            cpu += " @ %s MHz" % context["mhz_per_cpu"]
        parts.append(cpu)
    if "omp_threads" in context:
        parts.append("%s OpenMP threads" % context["omp_threads"])
    if "compiler" in context:
        parts.append("compiler %s" % context["compiler"])
    if "eigen_version" in context:
        simd = str(context.get("eigen_simd", "")).split(",")[0].strip()
        parts.append("Eigen %s%s" % (context["eigen_version"], " (%s)" % simd if simd else ""))
    if "date" in context:
        parts.append(str(context["date"])[:10])
    return "float, d = 64; " + ", ".join(parts)


def series_style(points):
    """Colour by method, marker by the budget's rank within its method."""
    budgets = defaultdict(set)
    for p in points:
        budgets[p.method].add(p.budget)
    style = {}
    for p in points:
        values = sorted(budgets[p.method], key=lambda x: (x is None, x))
        i = values.index(p.budget)
        colour = COLOURS.get(p.method, "C%d" % (hash(p.method) % 10))
        style[p.series] = dict(color=colour, marker=MARKERS[i % len(MARKERS)],
                               linestyle=["-", "--", ":", "-."][i % 4])
    return style


def by_series(points, value):
    out = defaultdict(list)
    for p in points:
        y = value(p)
        if y is not None and y > 0 and math.isfinite(y):
            out[p.series].append((p.n, y))
    return {s: sorted(v) for s, v in out.items()}


def order_key(series):
    methods = list(COLOURS)
    for i, m in enumerate(methods):
        if series.startswith(m):
            nums = re.findall(r"=(\d+(?:\.\d+)?)", series)
            return (i, float(nums[0]) if nums else 0.0)
    return (len(methods), series)


def common_points(a, b, tol=0.03):
    """(points of b that lie on a, common n): at a common n the values differ by less than tol
    in log terms (3%: closer than the line width shows)."""
    ya = dict(a)
    common = [(ya[x], y) for x, y in b if x in ya]
    return sum(1 for u, v in common if abs(math.log(u / v)) < tol), len(common)


def draw_lines(ax, data, style):
    """One line per series, in legend order. A series with two or more points on a series drawn
    before it (e.g. BigBird's and Longformer's extra memory, the same tiles) is drawn on top with
    large hollow markers and a dashed line, so both stay visible; when it lies on the other all
    along, its label says so."""
    drawn = []
    for s in sorted(data, key=order_key):
        xs, ys = zip(*data[s])
        st = dict(style[s])
        on, hides = [], False
        for t in drawn:
            same, common = common_points(data[t], data[s])
            if same >= 2:
                hides = True
                if same >= 0.8 * common:
                    on.append(t)
        label = "%s (on %s)" % (s, ", ".join(on)) if on else s
        if hides:
            st.update(markerfacecolor="none", markeredgewidth=1.4, linestyle=(0, (5, 4)))
            ax.plot(xs, ys, label=label, markersize=9, linewidth=1.6, zorder=3, **st)
        else:
            ax.plot(xs, ys, label=label, markersize=5, linewidth=1.4, zorder=2, **st)
        drawn.append(s)


def fit_log_axis(ax, values, margin=1.35):
    """y limits of a log axis that fit the data (with a margin), so guides cannot stretch it."""
    lo, hi = min(values), max(values)
    ax.set_ylim(lo / margin, hi * margin)
    return lo / margin, hi * margin


def finish(fig, ax_list, context, path):
    cap = caption(context)
    if cap:
        fig.text(0.01, 0.005, cap, fontsize=7, color="#555555", ha="left", va="bottom")
    for ax in ax_list:
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=130)
    print("plot.py: wrote %s" % os.path.relpath(path))


def plot_time(plt, points, context, path):
    data = by_series(points, lambda p: p.ms)
    if not data:
        note("no timings: %s not written" % os.path.basename(path))
        return
    style = series_style(points)
    fig, ax = plt.subplots(figsize=(9, 6))
    draw_lines(ax, data, style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    # The axes fit the data; the slope guides (through the geometric mean of the times at the
    # smallest n) end where they leave it instead of stretching the axis.
    y_lo, y_hi = fit_log_axis(ax, [y for v in data.values() for _, y in v])
    n0 = min(x for v in data.values() for x, _ in v)
    n1 = max(x for v in data.values() for x, _ in v)
    at_n0 = [y for v in data.values() for x, y in v if x == n0]
    if n1 > n0 and at_n0:
        t0 = math.exp(sum(math.log(y) for y in at_n0) / len(at_n0))
        for power, text in ((1, "∝ n"), (2, "∝ n²")):
            n_end = min(n1, n0 * (y_hi / t0) ** (1.0 / power))
            t_end = t0 * (n_end / n0) ** power
            ax.plot([n0, n_end], [t0, t_end], color="black", alpha=0.3, linewidth=0.8, linestyle=(0, (1, 3)))
            ax.annotate(text, (n_end, t_end), fontsize=8, alpha=0.7, ha="right", va="top" if n_end < n1 else "bottom")
    n_axis(ax.xaxis)
    value_axis(ax.yaxis)
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel("time per call (ms, wall clock)")
    ax.set_title("attnx: time against n")
    ax.legend(fontsize=8, ncol=2)
    finish(fig, [ax], context, path)
    plt.close(fig)


def plot_memory(plt, points, context, path):
    data = by_series(points, lambda p: p.counters.get("peak_extra_MiB"))
    if not data:
        note("no peak_extra_MiB counters: %s not written" % os.path.basename(path))
        return
    style = series_style(points)
    fig, ax = plt.subplots(figsize=(9, 6))
    draw_lines(ax, data, style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    fit_log_axis(ax, [y for v in data.values() for _, y in v])
    n_axis(ax.xaxis)
    value_axis(ax.yaxis)
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel("peak heap beyond inputs and output (MiB)")
    ax.set_title("attnx: extra memory against n")
    ax.legend(fontsize=8, ncol=2)
    finish(fig, [ax], context, path)
    plt.close(fig)


def plot_error(plt, points, context, path):
    with_err = [p for p in points if p.rel_err is not None and p.rel_err > 0]
    if not with_err:
        note("no rel_err / err_vs_exact counters: %s not written" % os.path.basename(path))
        return
    rank = lambda m: list(COLOURS).index(m) if m in COLOURS else len(COLOURS)
    methods = sorted({p.method for p in with_err}, key=rank)
    # One panel per method whose budget was varied (error against the budget, a line per n);
    # the methods measured at one budget only (e.g. BigBird at fixed r, Longformer) share a
    # panel: error against the kept fraction of the attention matrix, which shrinks with n.
    panels, fixed = [], []
    for m in methods:
        pts = [p for p in with_err if p.method == m]
        if len({p.budget for p in pts if p.budget is not None}) >= 2:
            panels.append((m, pts, "budget"))
        else:
            fixed.extend(pts)
    if fixed:
        title = " and ".join(sorted({p.method for p in fixed}, key=rank))
        panels.append((title, fixed, "density" if all("density" in p.counters for p in fixed) else "n"))
    names = {"m": "landmarks m", "k": "projected keys k", "r": "random blocks r per query block", "arg": "budget"}
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols + 0.4, 4.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    cmap = plt.get_cmap("viridis")
    for ax, (title, pts, mode) in zip(flat, panels):
        if mode == "budget":
            ns = sorted({p.n for p in pts})
            budgets = sorted({p.budget for p in pts if p.budget is not None})
            for i, n in enumerate(ns):
                row = sorted((p.budget, p.rel_err) for p in pts if p.n == n and p.budget is not None)
                xs, ys = zip(*row)
                ax.plot(xs, ys, marker="o", markersize=4, color=cmap(i / max(1, len(ns) - 1)),
                        label="n = " + n_label(n))
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets)
            ax.set_xticklabels([str(b) for b in budgets])
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel(names.get(pts[0].budget_name, "budget"))
        else:
            groups = defaultdict(list)
            for p in pts:
                x = p.counters["density"] if mode == "density" else p.n
                groups[p.series].append((x, p.rel_err, p.n))
            for s, row in sorted(groups.items(), key=lambda kv: order_key(kv[0])):
                row.sort()
                xs, ys, ns = zip(*row)
                ax.plot(xs, ys, marker="o", markersize=4, label=s, color=COLOURS.get(s.split(" ")[0], None))
                if mode == "density":
                    for x, y, n in row:
                        ax.annotate("n=" + n_label(n), (x, y), fontsize=6, alpha=0.7, xytext=(3, 3),
                                    textcoords="offset points")
            ax.set_xscale("log")
            if mode == "density":
                value_axis(ax.xaxis)
                ax.set_xlabel("kept fraction of the attention matrix")
            else:
                n_axis(ax.xaxis)
                ax.set_xlabel("sequence length n")
        ax.set_yscale("log")
        value_axis(ax.yaxis)
        ax.set_title(title)
        ax.set_ylabel("relative error ‖A − exact‖_F / ‖exact‖_F")
        ax.legend(fontsize=7)
    fig.suptitle("attnx: error against exact attention (float, realistic inputs)")
    finish(fig, flat[:len(panels)], context, path)
    plt.close(fig)


def plot_tradeoff(plt, points, context, path, n_wanted):
    with_err = [p for p in points if p.rel_err is not None and p.rel_err > 0]
    if not with_err:
        note("no errors: %s not written" % os.path.basename(path))
        return
    ns = sorted({p.n for p in with_err})
    n = n_wanted if n_wanted in ns else max(ns)
    pts = [p for p in with_err if p.n == n]
    style = series_style(points)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for p in sorted(pts, key=lambda p: order_key(p.series)):
        st = style[p.series]
        ax.plot([p.ms], [p.rel_err], linestyle="none", marker=st["marker"], color=st["color"], markersize=8,
                label=p.series)
    exact = [p for p in points if p.n == n and p.method == "exact (streaming)"]
    if exact:
        ax.axvline(exact[0].ms, color=COLOURS["exact (streaming)"], linestyle="--", linewidth=1,
                   label="exact (streaming): %.3g ms, error 0" % exact[0].ms)
    ax.set_xscale("log")
    ax.set_yscale("log")
    value_axis(ax.xaxis)
    value_axis(ax.yaxis)
    ax.set_xlabel("time per call (ms)")
    ax.set_ylabel("relative error against exact attention")
    ax.set_title("attnx: error against time at n = %d (lower left is better)" % n)
    ax.legend(fontsize=8, ncol=2)
    finish(fig, [ax], context, path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="Google Benchmark JSON files (default: docs/bench/bench_*.json)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "docs"), help="where the PNGs go (default: docs/)")
    ap.add_argument("--tradeoff-n", type=int, default=8192,
                    help="n of the error-against-time chart (default 8192, else the largest n with errors)")
    args = ap.parse_args()

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # Debian's python3-matplotlib lives in the system interpreter, which may not be the
        # python3 on PATH (pyenv, a virtualenv): try that one once.
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
                and not os.environ.get("ATTNX_PLOT_REEXEC"):
            os.environ["ATTNX_PLOT_REEXEC"] = "1"
            os.execv(system, [system, os.path.abspath(__file__)] + sys.argv[1:])
        note("matplotlib is missing: apt-get install python3-matplotlib (or pip install matplotlib)")
        return 1

    files = args.files or sorted(glob.glob(os.path.join(ROOT, "docs", "bench", "bench_*.json")))
    present = [f for f in files if os.path.exists(f)]
    for f in files:
        if f not in present:
            note("%s does not exist, skipped" % f)
    if not present:
        note("no benchmark JSON files found; run scripts/bench first")
        return 1
    points, context = load(present)
    if not points:
        note("no benchmark results in %s" % ", ".join(present))
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    plot_time(plt, points, context, os.path.join(args.out_dir, "bench_time.png"))
    plot_error(plt, points, context, os.path.join(args.out_dir, "bench_error.png"))
    plot_memory(plt, points, context, os.path.join(args.out_dir, "bench_memory.png"))
    plot_tradeoff(plt, points, context, os.path.join(args.out_dir, "bench_tradeoff.png"), args.tradeoff_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
