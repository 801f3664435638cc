"""``results.png``: headroom against each bar, relay vs raw throughput, latency percentiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from benchmarks.scenarios.throughput import SCENARIO as THROUGHPUT
from benchmarks.support.run_results import RunResults

__all__ = ["plot"]


def _empty(ax: Axes, title: str, what: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no {what} in this run", ha="center", va="center")
    ax.set_axis_off()


def _bars(ax: Axes, results: RunResults) -> None:
    rows = []  # (label, headroom, text) of every ratio with a bar
    for m in results.measures:
        for bar, ratio, unit in (
            (m.bar, m.ratio, m.ratio_label),
            (m.floor_bar, m.floor_ratio, "x floor"),
        ):
            if bar is not None and ratio is not None:
                text = f"{ratio:.2f} {unit} (bar {bar.text})"
                rows.append((f"{m.scenario}: {m.step}", bar.headroom(ratio), text))
    if not rows:
        _empty(ax, "Ratios against the bars", "step with a bar")
        return
    values = [headroom for _, headroom, _ in rows]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh([label for label, _, _ in rows], values, color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for y, (_, _, text) in enumerate(rows):
        ax.text(0.02, y, text, va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("headroom: measured ratio relative to its bar (>= 1 passes)")
    ax.set_title("Ratios against the bars (same-run baselines and floors)")


def _throughput(ax: Axes, results: RunResults) -> None:
    """Relay, floor and raw client rates of every pipeline of scenario 1."""
    rows = [m for m in results.measures if m.scenario == THROUGHPUT and m.baseline is not None]
    if not rows:
        _empty(ax, "Relay throughput against the raw client and the floor", "throughput scenario")
        return
    height = 0.27
    series = (
        ("outboxkit relay", [m.value for m in rows], "tab:blue"),
        ("floor: hand-written at-most-once relay", [m.floor or 0.0 for m in rows], "tab:orange"),
        ("raw client (fastest way)", [m.baseline or 0.0 for m in rows], "tab:gray"),
    )
    for i, (label, values, color) in enumerate(series):
        offsets = [j + (i - 1) * height for j in range(len(rows))]
        ax.barh(offsets, values, height, label=label, color=color)
        for y, value in zip(offsets, values, strict=True):
            ax.text(value, y, f" {value:,.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [m.step for m in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("messages per second")
    ax.set_title("Relay throughput against the floor and the raw client (same run)")
    ax.legend(fontsize=7)


def _latencies(ax: Axes, results: RunResults) -> None:
    """Commit -> ack percentiles, one group of horizontal bars per step (commit -> receive
    is in the table)."""
    rows = [x for x in results.latencies if x.kind == "commit->ack"]
    if not rows:
        _empty(ax, "End-to-end latency percentiles", "latency scenario")
        return
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
    """Draw the three panels to ``path``."""
    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(11, 15), gridspec_kw={"height_ratios": [1, 0.7, 2]}
    )
    _bars(top, results)
    _throughput(middle, results)
    _latencies(bottom, results)
    fig.suptitle(f"outboxkit benchmark ({results.size}, {results.started})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
