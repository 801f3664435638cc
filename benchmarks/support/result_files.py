"""Writing a run: ``results.json``, ``results.md`` and ``results.png`` in a timestamped
directory, copied to ``latest/``."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from benchmarks.support.plot import plot
from benchmarks.support.run_results import RunResults

__all__ = ["markdown", "run_directory", "write_results"]


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _measures_table(results: RunResults) -> list[str]:
    header = (
        "Scenario",
        "Step",
        "outboxkit",
        "Baseline",
        "Ratio",
        "Floor",
        "Ratio",
        "Bars",
        "Pass",
    )
    rows = []
    for m in results.measures:
        baseline = f"{_num(m.baseline)} {m.unit} ({m.baseline_label})" if m.baseline else ""
        ratio = f"{_num(m.ratio)} {m.ratio_label}" if m.ratio is not None else ""
        floor = f"{_num(m.floor)} {m.unit} ({m.floor_label})" if m.floor else ""
        floor_ratio = f"{_num(m.floor_ratio)} x floor" if m.floor_ratio is not None else ""
        bars = ((m.bar, m.passed), (m.floor_bar, m.floor_passed))
        text = "; ".join(bar.text for bar, _ in bars if bar)
        verdicts = [{True: "yes", False: "**no**", None: ""}[passed] for bar, passed in bars if bar]
        rows.append(
            (
                m.scenario,
                m.step,
                f"{_num(m.value)} {m.unit}",
                baseline,
                ratio,
                floor,
                floor_ratio,
                text,
                "; ".join(verdicts),
            )
        )
    return _table(header, rows)


def _latency_table(results: RunResults) -> list[str]:
    header = (
        "Step",
        "Latency",
        "Offered msg/s",
        "Achieved msg/s",
        "Count",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "CPU us/msg",
        "Machine busy",
    )
    return _table(
        header,
        (
            (
                x.step,
                x.kind,
                f"{x.offered:,.0f}",
                f"{x.achieved:,.0f}",
                f"{x.count:,}",
                _num(x.p50),
                _num(x.p95),
                _num(x.p99),
                _num(x.max),
                ", ".join(f"{name} {us:,.0f}" for name, us in x.cpu_us.items()),
                "" if x.machine_busy is None else f"{x.machine_busy:.0%}",
            )
            for x in results.latencies
        ),
    )


def _correctness_table(results: RunResults) -> list[str]:
    header = (
        "Scenario",
        "Step",
        "Expected",
        "Received",
        "Lost",
        "Duplicates",
        "Order violations",
        "Unexpected",
    )
    return _table(
        header,
        (
            (
                c.scenario,
                c.step,
                f"{c.expected:,}",
                f"{c.received:,}",
                c.lost,
                c.duplicates,
                c.order_violations,
                c.unexpected,
            )
            for c in results.correctness
        ),
    )


def markdown(results: RunResults) -> str:
    """The run as Markdown: host, measures, latencies, correctness, errors."""
    host = results.host
    versions = ", ".join(f"{k} {v}" for k, v in results.versions.items())
    lines = [
        f"# outboxkit benchmark, size `{results.size}`, {results.started}",
        "",
        f"Host: {host.get('cpu', '?')}, {host.get('cores', '?')} cores, "
        f"{host.get('memory', '?')} RAM, {host.get('os', '?')}.",
        f"Versions: {versions}.",
        f"Run time: {results.seconds:.0f} s. Verdict: "
        f"{'correct' if results.ok else '**FAILED** (see correctness and errors)'}.",
        "",
        "## Throughput, overhead and scaling",
        "",
        *_measures_table(results),
        "",
        "## Latency",
        "",
        *_latency_table(results),
        "",
        "## Correctness (independent consumer)",
        "",
        *_correctness_table(results),
    ]
    profiles = (
        ("the pg -> kafka relay's time goes (scenario 1", results.profile),
        ("the relay process's time goes at 1,000 msg/s (scenario 3", results.profile_latency),
    )
    for title, shares in profiles:
        if shares:
            lines += [
                "",
                f"## Where {title}, pyinstrument, --profile)",
                "",
                *_table(("Layer", "Share of time"), ((k, f"{v:.1f} %") for k, v in shares.items())),
            ]
    if results.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in results.notes)]
    if results.errors:
        lines += ["", "## Errors", "", *(f"- {e}" for e in results.errors)]
    return "\n".join(lines) + "\n"


def run_directory(root: Path, started: str) -> Path:
    """``root/<timestamp>``, e.g. ``20250101T120000Z``."""
    return root / started.replace(":", "").replace("-", "")


def write_results(results: RunResults, root: Path) -> Path:
    """Write the run under ``root/<timestamp>/`` and copy it to ``root/latest/``."""
    target = run_directory(root, results.started)
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    (target / "results.md").write_text(markdown(results))
    plot(results, target / "results.png")
    latest = root / "latest"
    if latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(target, latest)
    return target
