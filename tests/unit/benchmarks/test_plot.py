"""``results.png`` is drawn for any subset of scenarios (``python -m benchmarks --only ...``)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from benchmarks.support.plot import plot
from benchmarks.support.run_results import Bar, Latency, Measure, RunResults

THROUGHPUT = Measure(
    scenario="1 throughput", step="mongodb -> kafka", value=400.0, unit="msg/s", baseline=12e3
)
BARRED = Measure(
    scenario="1 throughput",
    step="pg -> kafka",
    value=25e3,
    unit="msg/s",
    baseline=30e3,
    ratio=0.83,
    bar=Bar(op=">=", limit=0.8, text=">= 0.8"),
)
LATENCY = Latency(
    step="1,000 msg/s",
    kind="commit->ack",
    offered=1e3,
    achieved=1e3,
    count=10,
    p50=3.0,
    p95=8.0,
    p99=12.0,
    max=20.0,
)


@pytest.mark.parametrize(
    ("measures", "latencies"),
    [([THROUGHPUT], []), ([], [LATENCY]), ([BARRED, THROUGHPUT], [LATENCY]), ([], [])],
    ids=["throughput-without-bar", "latency-only", "all", "nothing"],
)
def test_plot_writes_a_png_for_any_subset(
    tmp_path: Path, measures: list[Measure], latencies: list[Latency]
) -> None:
    target = tmp_path / "results.png"
    plot(RunResults(started="now", size="smoke", measures=measures, latencies=latencies), target)
    assert target.read_bytes().startswith(b"\x89PNG")


def test_a_measure_with_two_bars_gets_two_rows_of_headroom() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from benchmarks.support.plot import _bars

    both = msgspec.structs.replace(
        BARRED, floor=40e3, floor_ratio=0.6, floor_bar=Bar(op=">=", limit=0.9, text=">= 0.9")
    )
    fig, ax = plt.subplots()
    try:
        _bars(ax, RunResults(started="now", size="smoke", measures=[both]))
        rows = sorted(p.get_y() for p in ax.patches if isinstance(p, Rectangle))
        assert len(rows) == 2 and rows[0] != rows[1]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["1 throughput: pg -> kafka"] * 2
    finally:
        plt.close(fig)
