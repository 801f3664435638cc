"""Scenario 3: end-to-end latency under an open-loop offered load (pg -> kafka), as users see
it: from ``COMMIT`` returned in the application to a consumer's receipt.

Three processes, so that the relay's process runs the relay and nothing else:

- the writer (``python -m benchmarks.support.latency_writer_subprocess``) starts one
  single-message transaction (``PostgresOutbox.add``, NOTIFY on) every ``1/rate`` seconds on
  16 connections whatever the previous ones are doing (open loop), over 1,000 aggregates,
  and notes each message's commit time (wall clock, right after ``COMMIT`` returned). It
  first runs ``warmup_seconds`` at the same load: those messages are checked like the others
  but left out of the percentiles and the CPU figures (steady state only);
- the relay as users start it (``benchmarks.support.cli_relay``): ``outboxkit relay --store
  pg --publisher kafka``, default settings, configured through the environment;
- this process runs a Kafka consumer that matches deliveries by the ``outboxkit-id`` header
  and notes their receive time -- commit -> receive, the latency the bars hold -- and the
  record's timestamp, which the broker sets when it appends the record (the topic has
  ``message.timestamp.type=LogAppendTime``; millisecond resolution) -- commit -> ack.

Each run also gets per-second percentiles (by commit second) so that spikes show.

At the bar's load it also runs with ``benchmarks.support.floor_relay_subprocess`` in place of
the relay: a hand-written relay that does the least any LISTEN/NOTIFY relay can (one
``DELETE ... RETURNING`` and one produce request per wake-up, at most once), the floor of
this machine. With ``latency_rounds`` > 1 (``full``) outboxkit and the floor alternate that
many rounds; the bars must hold in every round (the measure shows the worst round).

All three clocks are the wall clock of the same host. The relay's and the writer's CPU time
per message are reported next to the percentiles, with the CPU time of the servers and of the
consumer and the machine's busy share while the writer ran (``benchmarks.support.cpu_load``).
Run once with LISTEN/NOTIFY wake-ups and once with ``--no-pg-notify`` (pure polling at the
relay's default ``poll_interval``). With ``--profile`` one more run at the bar's load profiles
an in-process relay (``benchmarks.support.relay_subprocess``) under pyinstrument.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import anyio
import msgspec
from anyio.abc import Process

from benchmarks.support.cli_relay import MODE_TEXT, CliRelay, Mode, cli_slot
from benchmarks.support.consumers import Consume, consume_kafka
from benchmarks.support.context import Context
from benchmarks.support.correctness import Tally
from benchmarks.support.cpu_load import CpuSample, busy_seconds, busy_share, role_seconds
from benchmarks.support.destinations import kafka_topic
from benchmarks.support.pg_backlog import pg_backlog
from benchmarks.support.progress import Progress, progress, say, wait_until
from benchmarks.support.run_results import Bar, Latency, Measure
from benchmarks.support.server_urls import REPO
from benchmarks.support.stats import latency_summary, percentile
from benchmarks.support.targets import unique

__all__ = ["run"]

SCENARIO = "3 latency"
BAR_LOAD = 1_000
BARS = {
    "p50": Bar(op="<=", limit=3.0, text="p50 <= 3 ms"),
    "p99": Bar(op="<=", limit=15.0, text="p99 <= 15 ms"),
}
AGGREGATES = 1_000
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
"""Topic config: record timestamps are the broker's append time (commit -> ack)."""
WRITE_CONNECTIONS = 16


class Probe:
    """Commit and receive times (wall clock) of one run, by message id."""

    def __init__(self) -> None:
        self.committed: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.tally = Tally()
        self.writing = True
        self.tracker: Progress | None = None
        self._offset = time.time() - time.perf_counter()

    def on_first(self, message_id: str, when: float) -> None:
        """``when`` is a ``perf_counter`` time (see :class:`Consume`)."""
        self.received[message_id] = when + self._offset
        if self.tracker is not None:
            self.tracker.add()


class Lines:
    """The stdout lines of a child process."""

    def __init__(self, process: Process, name: str) -> None:
        self.process = process
        self.name = name
        self._buffer = b""

    async def expect(self, word: bytes, timeout: float) -> None:
        """Read lines until one starts with ``word``."""
        assert self.process.stdout is not None
        with anyio.fail_after(timeout):
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    if line.startswith(word):
                        return
                try:
                    self._buffer += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    raise RuntimeError(f"{self.name} ended before printing {word!r}") from None

    async def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(line)


async def spawn(name: str, module: str, *args: str) -> Lines:
    process = await anyio.open_process([sys.executable, "-m", module, *args], cwd=REPO, stderr=None)
    lines = Lines(process, name)
    await lines.expect(b"ready", 60)
    return lines


async def stop(lines: Lines) -> None:
    """SIGTERM (the relay drains and releases its leases) and wait for the exit."""
    process = lines.process
    if process.returncode is None:
        process.terminate()
    assert process.stdout is not None
    with anyio.move_on_after(30):
        async for _ in process.stdout:
            pass
    with anyio.move_on_after(10):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


class SpawnedRelay:
    """A relay of the suite's own (the hand-written floor, or ``relay_subprocess`` under the
    profiler): it speaks the ``ready`` / ``owned`` protocol and writes its CPU time to
    ``--acks``."""

    def __init__(self, lines: Lines, acks: Path) -> None:
        self.lines = lines
        self.acks = acks

    async def owned(self) -> None:
        await self.lines.send(b"go\n")
        await self.lines.expect(b"owned", 30)

    async def stop(self) -> float:
        await stop(self.lines)
        if not self.acks.exists():
            return 0.0
        return float(msgspec.json.decode(self.acks.read_bytes()).get("cpu_s", 0.0))


async def start_relay(
    ctx: Context, schema: str, mode: Mode, tmp: Path, *, floor: bool, profile: bool
) -> CliRelay | SpawnedRelay:
    servers = ctx.servers
    if not (floor or profile):
        log = tmp / "relay.log"
        return await CliRelay.start(servers.postgres, schema, servers.kafka, mode=mode, log=log)
    assert mode in ("notify", "polling"), "the suite's own relays read no replication slot"
    acks = tmp / "acks.json"
    where = ("--dsn", servers.postgres, "--schema", schema, "--bootstrap", servers.kafka)
    if floor:
        module = "benchmarks.support.floor_relay_subprocess"
        lines = await spawn("floor relay process", module, *where, "--acks", str(acks))
    else:
        profile_to = ctx.out / f"profile_latency_{BAR_LOAD}"
        flag = "--notify" if mode == "notify" else "--no-notify"
        lines = await spawn(
            "profiled relay process",
            "benchmarks.support.relay_subprocess",
            *where,
            *("--name", "bench-latency-relay", "--shard-count", str(ctx.size.shard_count)),
            *(flag, "--acks", str(acks), "--profile", str(profile_to)),
        )
    return SpawnedRelay(lines, acks)


async def measure(
    ctx: Context,
    rate: int,
    mode: Mode,
    *,
    scenario: str = SCENARIO,
    profile: bool = False,
    floor: bool = False,
    round_no: int = 0,
) -> Run:
    """One offered load, one mode of the relay (and the writer users have in that mode);
    returns the commit -> receive summary and samples. A mode that reads the log gets its
    publication and slot from ``outboxkit migrate`` first and loses them to ``outboxkit
    drop-slot`` at the end. Extra runs, never held against a bar: ``profile``, an in-process
    relay under pyinstrument; ``floor``, the hand-written minimal relay of
    ``benchmarks.support.floor_relay_subprocess`` in place of ``outboxkit relay``.
    ``round_no`` (from 1) names one of several rounds of the same step; ``scenario`` names
    the scenario in progress lines, correctness rows and measures."""
    step = step_name(rate, mode, floor=floor) + (" (profiled)" if profile else "")
    step += f" (round {round_no})" if round_no else ""
    probe = Probe()
    total = int(rate * ctx.size.load_seconds)
    warm = int(rate * ctx.size.warmup_seconds)
    servers = ctx.servers
    consume = Consume(
        probe.tally,
        done=lambda: not probe.writing and probe.tally.complete(),
        idle=15.0 + ctx.size.warmup_seconds + ctx.size.load_seconds,
        on_first=probe.on_first,
    )
    with tempfile.TemporaryDirectory(prefix="outboxkit-latency-") as tmp:
        writes_file = Path(tmp) / "writes.json"
        async with (
            kafka_topic(servers.kafka, unique(f"lat_{rate}_{mode}"), APPEND_TIME) as topic,
            pg_backlog(
                servers.postgres,
                unique("lat"),
                ctx.size.shard_count,
                notify=mode == "notify",
                pool_size=1,
            ) as backlog,
            cli_slot(servers.postgres, backlog.settings.schema, mode),
        ):
            schema = backlog.settings.schema
            relay = await start_relay(ctx, schema, mode, Path(tmp), floor=floor, profile=profile)
            relay_cpu = 0.0
            try:
                writer = await spawn(
                    "writer process",
                    "benchmarks.support.latency_writer_subprocess",
                    *("--dsn", servers.postgres, "--schema", schema, "--topic", topic),
                    *("--rate", str(rate), "--seconds", str(ctx.size.load_seconds)),
                    *("--mode", mode),
                    *("--warmup", str(ctx.size.warmup_seconds)),
                    *("--aggregates", str(AGGREGATES), "--connections", str(WRITE_CONNECTIONS)),
                    *("--out", str(writes_file)),
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume_kafka, servers.kafka, topic, consume)
                    await relay.owned()
                    label = f"{scenario} {step}: received"
                    async with progress(label, warm + total) as probe.tracker:
                        await writer.send(b"go\n")
                        await writer.expect(b"measuring", ctx.size.warmup_seconds * 4 + 60)
                        before = CpuSample()
                        # the writer falls behind an offered load it cannot reach (5,000
                        # msg/s here: ~1,000-1,400 tx/s): allow for 200 tx/s at least
                        writing = max(ctx.size.load_seconds * 4, total / 200) + 60
                        await writer.expect(b"written", writing)
                        after = CpuSample()
                        await writer.expect(b"done", 60)
                        await writer.process.wait()
                        writes = msgspec.json.decode(writes_file.read_bytes())
                        for message_id, _aggregate, _seq, committed, measured in writes[
                            "committed"
                        ]:
                            if measured:  # warm-up messages count for correctness only
                                probe.committed[message_id] = committed
                            probe.tally.expected.add(message_id)
                        probe.writing = False
                        await wait_until(probe.tally.complete, 30)
            finally:
                relay_cpu = await relay.stop()
    if profile:
        shares = (ctx.out / f"profile_latency_{BAR_LOAD}").with_suffix(".json")
        if shares.exists():
            ctx.results.profile_latency = msgspec.json.decode(shares.read_bytes())
    achieved = float(writes["achieved"])
    cpu_us = cpu_per_message(relay_cpu, writes, before, after, warm, total)
    ctx.results.correctness.append(probe.tally.result(scenario, step))
    busy = busy_share(before, after)
    runs = {}
    for kind, ends in (("commit->ack", consume.broker_times), ("commit->receive", probe.received)):
        samples = [(t, ends[i] - t) for i, t in probe.committed.items() if i in ends]
        summary = latency_summary(step, kind, rate, achieved, [latency for _, latency in samples])
        summary.per_second = per_second(samples)
        summary.cpu_us = cpu_us
        summary.machine_busy = busy
        ctx.results.latencies.append(summary)
        runs[kind] = Run(summary, [latency for _, latency in samples])
        worst = max((second[1] for second in summary.per_second), default=0.0)
        say(
            f"{scenario} {step} {kind}: p50 {summary.p50:.1f} ms, p99 {summary.p99:.1f} ms, "
            f"worst second's p99 {worst:.1f} ms"
        )
    return runs["commit->receive"]


def per_second(samples: list[tuple[float, float]]) -> list[list[float]]:
    """[p50, p99, max] in milliseconds of the messages committed in each second of a run,
    from its first measured commit (latencies given in seconds)."""
    if not samples:
        return []
    first = min(committed for committed, _ in samples)
    seconds: dict[int, list[float]] = {}
    for committed, latency in samples:
        seconds.setdefault(int(committed - first), []).append(latency * 1000)
    rows = []
    for second in sorted(seconds):
        ms = sorted(seconds[second])
        rows.append([percentile(ms, 50), percentile(ms, 99), ms[-1]])
    return rows


@dataclass(frozen=True)
class Run:
    """The commit -> ack summary of one run, and its samples (seconds)."""

    summary: Latency
    samples: list[float]


def step_name(rate: int, mode: Mode, *, floor: bool = False) -> str:
    """The step of a load and mode (``floor``: run with the hand-written relay)."""
    floor_text = ", floor: hand-written minimal relay" if floor else ""
    return f"{rate:,} msg/s, {MODE_TEXT[mode]}{floor_text}"


def pooled(ctx: Context, runs: list[Run], step: str) -> Latency:
    """One summary over the samples of several rounds (added to the latency table)."""
    if len(runs) == 1:
        return runs[0].summary
    first, summaries = runs[0].summary, [run.summary for run in runs]
    samples = [sample for run in runs for sample in run.samples]
    step = f"{step}, {len(runs)} rounds"
    achieved = mean(x.achieved for x in summaries)
    summary = latency_summary(step, first.kind, first.offered, achieved, samples)
    roles = dict.fromkeys(role for x in summaries for role in x.cpu_us)
    summary.cpu_us = {role: mean(x.cpu_us.get(role, 0.0) for x in summaries) for role in roles}
    busy = [x.machine_busy for x in summaries if x.machine_busy is not None]
    summary.machine_busy = mean(busy) if busy else None
    ctx.results.latencies.append(summary)
    return summary


def cpu_per_message(
    relay_s: float,
    writes: dict[str, Any],
    before: CpuSample,
    after: CpuSample,
    warm: int,
    total: int,
) -> dict[str, float]:
    """CPU microseconds per message of each role. The relay's own count covers the whole run
    (warm-up included), the rest the measured part; ``other`` is what the machine was busy
    with beyond the roles: kernel work, short-lived processes (autovacuum workers)."""
    us = {"relay": relay_s * 1e6 / (warm + total), "writer": float(writes["cpu_s"]) * 1e6 / total}
    us |= {role: seconds * 1e6 / total for role, seconds in role_seconds(before, after).items()}
    busy = busy_seconds(before, after)
    if busy is not None:
        us["other"] = max(0.0, busy * 1e6 / total - sum(us.values()))
    return {role: value for role, value in us.items() if value >= 1}  # idle servers left out


def percentile_measure(
    summary: Latency,
    name: str,
    value: float,
    suffix: str = "",
    scenario: str = SCENARIO,
    **extra: Any,
) -> Measure:
    """Percentile ``name`` (``"p50"``, ...) of a commit -> receive step, as a measure."""
    return Measure(
        scenario=scenario,
        step=f"{summary.step}, commit->receive {name}{suffix}",
        value=value,
        unit="ms",
        **extra,
    )


def bars(
    pooled_summary: Latency, rounds: list[Run], scenario: str = SCENARIO, *, held: bool = True
) -> list[Measure]:
    """The bars, on outboxkit's commit -> receive percentiles at the bar's load: each must
    hold in every round, so the measure is the worst round's (``held=False``: the same
    measures with no bar, at another load)."""
    measures = []
    for name, bar in BARS.items():
        per_round = [float(getattr(run.summary, name)) for run in rounds]
        worst = max(per_round)
        measures.append(
            percentile_measure(
                pooled_summary,
                name,
                worst,
                " (worst round)" if len(rounds) > 1 else "",
                scenario,
                ratio=worst,
                ratio_label="ms",
                bar=bar if held else None,
                details={
                    "per_round": per_round,
                    "achieved_rate": [run.summary.achieved for run in rounds],
                    "worst_second_p99_per_round": [
                        max((s[1] for s in run.summary.per_second), default=0.0) for run in rounds
                    ],
                },
            )
        )
    return measures


def over_floor(ours: Latency, floor: Latency) -> list[Measure]:
    """outboxkit's commit -> receive p50 and p99 over the floor's (same run, same load)."""
    measures = []
    for name in ("p50", "p99"):
        value, base = float(getattr(ours, name)), float(getattr(floor, name))
        measures.append(
            percentile_measure(
                ours,
                name,
                value,
                " vs a minimal at-most-once relay",
                baseline=base,
                baseline_label="hand-written floor",
                ratio=value / base if base else None,
                ratio_label="x floor",
            )
        )
    return measures


async def run(ctx: Context) -> None:
    # the bar's load (the smoke run's highest, so that CI runs the floor too)
    floor_load = BAR_LOAD if BAR_LOAD in ctx.size.loads else max(ctx.size.loads)
    rounds = ctx.size.latency_rounds

    def round_no(n: int) -> int:  # rounds are numbered only when there are several
        return n if rounds > 1 else 0

    ours: list[Run] = []
    modes: tuple[Mode, ...] = ("notify", "polling")
    for mode in modes:
        for rate in ctx.size.loads:
            at_floor_load = mode == "notify" and rate == floor_load
            one = await measure(ctx, rate, mode, round_no=round_no(1) if at_floor_load else 0)
            if at_floor_load:
                ours.append(one)
    # at that load, rounds alternate with the floor: this machine's latency swings from run
    # to run; the bars must hold in every round
    floors: list[Run] = []
    for n in range(1, rounds + 1):
        floors.append(await measure(ctx, floor_load, "notify", floor=True, round_no=round_no(n)))
        if n < rounds:
            ours.append(await measure(ctx, floor_load, "notify", round_no=n + 1))
    summary = pooled(ctx, ours, step_name(floor_load, "notify"))
    if BAR_LOAD in ctx.size.loads:
        ctx.results.measures += bars(summary, ours)
    floor = pooled(ctx, floors, step_name(floor_load, "notify", floor=True))
    ctx.results.measures += over_floor(summary, floor)
    if ctx.profile and BAR_LOAD in ctx.size.loads:
        await measure(ctx, BAR_LOAD, "notify", profile=True)
