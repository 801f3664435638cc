"""``results.png``: headroom against each bar, relay vs floor vs raw throughput, latency
percentiles, per-second p99 at the latency bar's load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from benchmarks.scenarios.latency import BAR_LOAD as LATENCY_BAR_LOAD
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
    # one position per row: a measure with two bars (raw and floor) has two rows of one label,
    # which matplotlib would draw at one categorical position
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows])
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for y, (_, _, text) in enumerate(rows):
        ax.text(0.02, y, text, va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("headroom: measured ratio relative to its bar (>= 1 passes)")
    ax.set_title("Ratios against the bars (same-run baselines and floors)")


def _throughput(ax: Axes, results: RunResults) -> None:
    """Relay, floor and raw client rates of every pipeline of scenario 1 and of any other
    relay rate measured against a raw client (scenario 9's WAL-only pg -> kafka)."""
    rows = [
        m
        for m in results.measures
        if m.baseline is not None and (m.scenario == THROUGHPUT or m.ratio_label == "x raw")
    ]
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
    """Commit -> receive percentiles, one group of horizontal bars per step (commit -> ack
    is in the table)."""
    rows = [x for x in results.latencies if x.kind == "commit->receive"]
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
    ax.set_xlabel("commit -> consumer receive, milliseconds (log)")
    ax.set_title("End-to-end latency percentiles")
    ax.legend(fontsize=7)


def _per_second(ax: Axes, results: RunResults) -> None:
    """Commit -> receive p99 of each second of the runs at the latency bar's load."""
    rows = [
        x
        for x in results.latencies
        if x.kind == "commit->receive" and x.per_second and x.offered == LATENCY_BAR_LOAD
    ]
    if not rows:
        _empty(ax, "Per-second p99 at 1,000 msg/s", "per-second latency")
        return
    for x in rows:
        floor = "floor" in x.step
        ax.plot(
            range(len(x.per_second)),
            [second[1] for second in x.per_second],
            linestyle="--" if floor else "-",
            linewidth=1,
            label=x.step,
        )
    ax.axhline(15.0, color="black", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("second of the measured part (warm-up left out)")
    ax.set_ylabel("p99 of the second, ms (log)")
    ax.set_title("Commit -> consumer receive, p99 per second (dotted: the p99 bar)")
    ax.legend(fontsize=6)


def plot(results: RunResults, path: Path) -> None:
    """Draw the four panels to ``path``."""
    fig, (top, middle, bottom, seconds) = plt.subplots(
        4, 1, figsize=(11, 19), gridspec_kw={"height_ratios": [1, 0.7, 2, 1]}
    )
    _bars(top, results)
    _throughput(middle, results)
    _latencies(bottom, results)
    _per_second(seconds, results)
    fig.suptitle(f"outboxkit benchmark ({results.size}, {results.started})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
