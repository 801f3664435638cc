"""``results.png``: headroom against each bar, and latency percentiles per offered load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from benchmarks.results import RunResults

__all__ = ["plot"]


def _bars(ax: Axes, results: RunResults) -> None:
    rows = [m for m in results.measures if m.bar is not None and m.ratio is not None]
    labels = [f"{m.scenario}: {m.step}" for m in rows]
    values = [m.bar.headroom(m.ratio) for m in rows if m.bar and m.ratio is not None]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(labels, values, color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for y, m in enumerate(rows):
        ax.text(
            0.02,
            y,
            f"{m.ratio:.2f} {m.ratio_label} (bar {m.bar.text if m.bar else ''})",
            va="center",
            fontsize=7,
        )
    ax.invert_yaxis()
    ax.set_xlabel("headroom: measured ratio relative to its bar (>= 1 passes)")
    ax.set_title("Ratios against the bars (same-run baselines)")


def _latencies(ax: Axes, results: RunResults) -> None:
    """Commit -> ack percentiles, one group of horizontal bars per step (commit -> receive
    is in the table)."""
    rows = [x for x in results.latencies if x.kind == "commit->ack"]
    height = 0.27
    for i, (name, color) in enumerate(
        (("p50", "tab:blue"), ("p99", "tab:red"), ("max", "tab:gray"))
    ):
        ax.barh(
            [j + (i - 1) * height for j in range(len(rows))],
            [getattr(x, name) for x in rows],
            height,
            label=name,
            color=color,
        )
    ax.set_yticks(range(len(rows)), [x.step for x in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("commit -> broker ack, milliseconds (log)")
    ax.set_title("End-to-end latency percentiles")
    ax.legend(fontsize=7)


def plot(results: RunResults, path: Path) -> None:
    """Draw the two panels to ``path``."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 12), gridspec_kw={"height_ratios": [1, 2]})
    _bars(top, results)
    _latencies(bottom, results)
    fig.suptitle(f"outboxkit benchmark ({results.size}, {results.started})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
