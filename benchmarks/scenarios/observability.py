"""Scenario 7: what metrics and tracing cost the relay (pg -> kafka from a backlog).

The same backlog is relayed in three modes, alternating within each round (the order
rotates from round to round, so no mode always runs first on a cold cache):

- ``off``: a bare :class:`ShardedRelay`, nothing measured;
- ``metrics``: run by a :class:`RelayObserver` as ``outboxkit relay --http-port`` runs it
  (instrumented store and publisher, ``/metrics`` served and scraped every second, the
  store and publisher checks of ``/readyz``), tracing off;
- ``metrics + tracing``: the same with an OpenTelemetry SDK tracer provider (one span per
  message, exported in batches to an exporter that discards them); every message carries a
  writer's ``traceparent``, in every mode, so the spans have a parent.

Each rate is messages / seconds until the broker acknowledged the last one, the harmonic
mean over the rounds. Bar: metrics on >= 0.95 x off.
"""

from __future__ import annotations

import importlib
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec

from benchmarks.support.consumers import Consume
from benchmarks.support.context import Context
from benchmarks.support.correctness import Tally
from benchmarks.support.progress import progress, say
from benchmarks.support.relay_in_process import relay_until
from benchmarks.support.run_results import Bar, Measure
from benchmarks.support.targets import BrokerTarget
from benchmarks.support.workload import make_messages
from outboxkit.message import Message
from outboxkit.observability import ObservabilitySettings, RelayObserver
from outboxkit.relay.settings import RelaySettings

__all__ = ["MODES", "run"]

SCENARIO = "7 observability"
MODES = ("off", "metrics", "metrics + tracing")
METRICS_BAR = Bar(op=">=", limit=0.95, text="metrics on >= 0.95 x off")
SCRAPE_INTERVAL = 1.0
"""Seconds between scrapes of ``/metrics`` (Prometheus' own default is 60 s; 1 s is harsh)."""


def traced(messages: Sequence[Message]) -> list[Message]:
    """``messages``, each with the ``traceparent`` of a writer's span of its own."""
    return [
        msgspec.structs.replace(
            m,
            headers={
                **m.headers,
                "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            },
        )
        for m in messages
    ]


def discarding_provider() -> Any:
    """An OpenTelemetry SDK tracer provider exporting in batches to an exporter that drops
    the spans (they are still built, ended and batched)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider


@asynccontextmanager
async def observer(mode: str) -> AsyncIterator[RelayObserver | None]:
    """The observer of ``mode`` (None when off), scraped while the block runs."""
    if mode == "off":
        yield None
        return
    provider = discarding_provider() if mode == "metrics + tracing" else None
    settings = ObservabilitySettings(http_port=0, tracing=provider is not None, summary_interval=0)
    watched = RelayObserver(settings, "pg", "kafka", tracer_provider=provider)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scrape, watched)
            yield watched
            tg.cancel_scope.cancel()
    finally:
        if provider is not None:
            provider.shutdown()


async def scrape(watched: RelayObserver) -> None:
    """GET ``/metrics`` every :data:`SCRAPE_INTERVAL` seconds once the endpoint listens."""
    while True:
        await anyio.sleep(SCRAPE_INTERVAL)
        if watched.port is None:
            continue
        async with await anyio.connect_tcp("127.0.0.1", watched.port) as stream:
            await stream.send(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            answer = b""
            try:
                while True:
                    answer += await stream.receive()
            except anyio.EndOfStream:
                pass
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def relay_rate(
    ctx: Context, broker: BrokerTarget, mode: str, label: str
) -> tuple[float, float]:
    """Messages/s of the relay in ``mode`` draining a backlog of the run's size, and the
    CPU microseconds per message this process spent meanwhile (less sensitive to the
    machine's other load than the rate)."""
    size = ctx.size
    step = f"pg -> kafka, {mode}{label}"
    async with (
        broker.destination("obs_pg_kafka") as topic,
        ctx.backlog("pg", "obs_pg") as backlog,
    ):
        messages = traced(make_messages(topic, size.messages, size.aggregates, size.payload_bytes))
        async with progress(f"{SCENARIO} {step}: filling pg", len(messages)) as tracker:
            await backlog.fill(messages, tracker)
        settings = RelaySettings(batch_size=size.batch_size, drain_timeout=5.0)
        async with (
            progress(f"{SCENARIO} {step}: relay", len(messages)) as tracker,
            observer(mode) as watched,
        ):
            cpu = time.process_time()
            seconds, _ = await relay_until(
                backlog.store(),
                broker.publisher(topic),
                len(messages),
                tracker,
                settings,
                observer=watched,
            )
            cpu = time.process_time() - cpu
        tally = Tally(messages)  # read back by an independent consumer
        await broker.consume(topic, Consume(tally, idle=15.0))
        ctx.results.correctness.append(tally.result(SCENARIO, step))
    return len(messages) / seconds, cpu * 1e6 / len(messages)


async def run(ctx: Context) -> None:
    # imported once before timing: ~80 ms of the first metrics run on this machine, a
    # start-up cost of `outboxkit relay --http-port`, not a throughput cost
    importlib.import_module("prometheus_client")
    broker = ctx.broker("kafka")
    rounds = ctx.size.observability_rounds
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for index in range(rounds):
        label = f" (round {index + 1})" if rounds > 1 else ""
        order = MODES[index % len(MODES) :] + MODES[: index % len(MODES)]
        for mode in order:
            rate, cpu_us = await relay_rate(ctx, broker, mode, label)
            rates[mode].append(rate)
            cpu[mode].append(cpu_us)
    off = statistics.harmonic_mean(rates["off"])
    for mode in MODES:
        rate = statistics.harmonic_mean(rates[mode])
        cpu_us = statistics.mean(cpu[mode])
        say(
            f"{SCENARIO} pg -> kafka, {mode}: {rate:,.0f} msg/s ({rate / off:.3f} x off), "
            f"{cpu_us:.0f} CPU us/msg"
        )
        ctx.results.measures.append(
            Measure(
                scenario=SCENARIO,
                step=f"pg -> kafka, {mode}",
                value=rate,
                unit="msg/s",
                baseline=None if mode == "off" else off,
                baseline_label="" if mode == "off" else "metrics and tracing off",
                ratio=None if mode == "off" else rate / off,
                ratio_label="" if mode == "off" else "x off",
                bar=METRICS_BAR if mode == "metrics" else None,
                details={
                    "messages": ctx.size.messages,
                    "rounds": rounds,
                    "per_round": rates[mode],
                    "cpu_us_per_msg": cpu_us,
                    "cpu_us_per_msg_per_round": cpu[mode],
                    "scrape_interval_s": SCRAPE_INTERVAL,
                },
            )
        )
