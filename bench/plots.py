"""Plots for benchmark results: latency CDFs a person can read at a glance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def latency_plot(series: dict[str, list[float]], path: Path, *, title: str) -> None:
    """One CDF line per series, log-scaled latency axis, p50/p99 marked in the legend."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, samples in series.items():
        ordered = sorted(samples)
        n = len(ordered)
        p50, p99 = ordered[n // 2], ordered[min(n - 1, int(n * 0.99))]
        ax.plot(ordered, [(i + 1) / n for i in range(n)], label=f"{label} (p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bar_plot(values: dict[str, float], path: Path, *, title: str, unit: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    names = list(values)
    bars = ax.barh(names, [values[n] for n in names], color="#4a7bb7")
    labels = [f"{values[n]:,.0f}" if values[n] >= 100 else f"{values[n]:.2f}" for n in names]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def grouped_bar_plot(results: dict[str, dict[str, float]], path: Path, *, title: str) -> None:
    """Keys "server | scenario | connections": throughput and p99 side by side, one bar per server in each group."""
    groups = list(dict.fromkeys(" ".join(name.split(" | ")[1:]) for name in results))
    servers = list(dict.fromkeys(name.split(" | ")[0] for name in results))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    width = 0.8 / len(servers)
    for panel, (metric, label) in zip(axes, (("rps", "requests/s"), ("p99", "p99 latency (ms)")), strict=True):
        for i, server in enumerate(servers):
            cells = [(j, results.get(f"{server} | {g.replace(' ', ' | ')}")) for j, g in enumerate(groups)]
            measured = [(j + i * width, cell[metric]) for j, cell in cells if cell is not None]  # a peer may lack one
            bars = panel.bar([x for x, _ in measured], [v for _, v in measured], width, label=server)
            panel.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for _, v in measured], fontsize=7)
        panel.set_xticks([j + width * (len(servers) - 1) / 2 for j in range(len(groups))], groups, fontsize=8,
                         rotation=20)
        panel.set_ylabel(label)
        panel.grid(True, axis="y", alpha=0.3)
    axes[1].set_yscale("log")  # p99s from ~1 ms to ~100 ms: on a linear axis the small ones vanish
    axes[1].set_ylabel("p99 latency (ms, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(servers), fontsize=8)  # below: over the bars it hid some
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path)
    plt.close(fig)
