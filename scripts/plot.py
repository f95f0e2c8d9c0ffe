#!/usr/bin/env python3
"""Throughput vs array size per backend, from the CSV that scripts/sweep.sh writes.

Needs matplotlib:

    pip install matplotlib

Usage:

    scripts/sweep.sh                                   # writes docs/throughput.csv
    python3 scripts/plot.py [CSV] [--out PNG] [--title TEXT]
                                                       # defaults: docs/throughput.csv,
                                                       # target/plot/throughput.png

The committed figure (docs/throughput.png) is only overwritten when asked:
`--out docs/throughput.png`.

The CSV has one row per (size, backend): size_bytes, backend, median_gbytes_per_s,
min_gbytes_per_s, max_gbytes_per_s[, runs]. The top panel draws the median GB/s
(10^9 bytes/s) against the array size on a log axis, one line per backend, with min-max
error bars; the bottom panel draws the ratio of the medians, uring/blocking, when both
backends are in the CSV.
"""

import argparse
import csv
import json
import os
import platform
import sys
from collections import defaultdict

STYLE = {"uring": ("#1f77b4", "o"), "blocking": ("#ff7f0e", "s")}


def size_label(n):
    """4096 -> '4 KiB', 67108864 -> '64 MiB', 400000000 -> '400 MB': the largest unit,
    binary or decimal, that divides the size exactly."""
    units = (
        ("GiB", 1 << 30),
        ("GB", 10**9),
        ("MiB", 1 << 20),
        ("MB", 10**6),
        ("KiB", 1 << 10),
        ("KB", 10**3),
    )
    for unit, div in units:
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def read_rows(path):
    series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series[row["backend"]].append(
                (
                    int(row["size_bytes"]),
                    float(row["median_gbytes_per_s"]),
                    float(row["min_gbytes_per_s"]),
                    float(row["max_gbytes_per_s"]),
                    int(row.get("runs") or 0),
                )
            )
    for rows in series.values():
        rows.sort()
    return series


def default_title(csv_path, series):
    """Names the machine the figures come from: the `host` block of the sweep's JSON lines
    (CSV.jsonl, written by sweep.sh) when it is there, else this machine."""
    system, cpus = None, None
    jsonl = os.path.splitext(csv_path)[0] + ".jsonl"
    try:
        with open(jsonl) as f:
            host = json.loads(f.readline()).get("host", {})
        system, cpus = f"Linux {host['kernel_release']}", host["cpus"]
    except (OSError, ValueError, KeyError):
        system = f"Linux {platform.release()}" if sys.platform.startswith("linux") else sys.platform
        cpus = os.cpu_count() or 0
    runs = sorted({r[4] for rows in series.values() for r in rows if r[4]})
    of = f", {'/'.join(map(str, runs))} runs per point" if runs else ""
    return f"ringxfer bench, loopback TCP, {system}, {cpus} CPUs{of}"


DEFAULT_OUT = "target/plot/throughput.png"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="?", default="docs/throughput.csv")
    ap.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"the PNG to write (default: {DEFAULT_OUT}; the committed docs/throughput.png "
        "only when given here)",
    )
    ap.add_argument("--title", default=None, help="plot title (default: says the machine)")
    return ap.parse_args(argv)


def main():
    args = parse_args()

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot.py needs matplotlib: pip install matplotlib")

    series = read_rows(args.csv)
    if not series:
        sys.exit(f"plot.py: {args.csv} has no rows")
    both = "uring" in series and "blocking" in series
    fig, axes = plt.subplots(
        2 if both else 1,
        1,
        figsize=(8, 6.5 if both else 4.5),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1.2]} if both else None,
        squeeze=False,
    )
    ax = axes[0][0]
    sizes = sorted({r[0] for rows in series.values() for r in rows})
    order = sorted(
        series, key=lambda k: (k not in STYLE, list(STYLE).index(k) if k in STYLE else 0, k)
    )
    for i, backend in enumerate(order):
        rows = series[backend]
        color, marker = STYLE.get(backend, (None, "^"))
        # Nudge each backend sideways a little (log axis) so the error bars do not overlap.
        dodge = 1.06 ** (i - (len(order) - 1) / 2)
        xs = [r[0] * dodge for r in rows]
        med = [r[1] for r in rows]
        err = [[r[1] - r[2] for r in rows], [r[3] - r[1] for r in rows]]
        ax.errorbar(
            xs,
            med,
            yerr=err,
            label=backend,
            color=color,
            marker=marker,
            capsize=4,
            linewidth=1.5,
            markersize=5,
        )
    ax.set_xscale("log")
    ax.set_ylabel("GB/s ($10^9$ bytes/s): median, min-max bars")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="backend")
    title = args.title or default_title(args.csv, series)
    ax.set_title(title)

    if both:
        rx = axes[1][0]
        u = {r[0]: r[1] for r in series["uring"]}
        b = {r[0]: r[1] for r in series["blocking"]}
        common = [s for s in sizes if s in u and s in b and b[s] > 0]
        ratios = [u[s] / b[s] for s in common]
        rx.plot(common, ratios, color="#2ca02c", marker="D", markersize=4)
        for s, q in zip(common, ratios):
            rx.annotate(
                f"{q:.2f}",
                (s, q),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        rx.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        rx.set_ylabel("uring / blocking")
        rx.set_ylim(0, max(1.2, max(ratios, default=1) * 1.25))
        rx.grid(True, which="major", alpha=0.3)
    bottom = axes[-1][0]
    bottom.set_xscale("log")
    bottom.set_xticks(sizes)
    bottom.set_xticklabels([size_label(s) for s in sizes])
    bottom.minorticks_off()
    bottom.set_xlabel("array size (log scale)")
    fig.tight_layout()
    d = os.path.dirname(args.out)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
