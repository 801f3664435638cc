"""The relay's Prometheus metrics (needs ``prometheus-client``: the ``outboxkit[metrics]`` extra).

Imported only when the relay serves ``/metrics``. Every value is read when Prometheus scrapes:
counters from :class:`~outboxkit.metrics.RelayMetrics`, histograms from
:class:`~outboxkit.observability.instruments.RelayInstruments`, backlog gauges from the last
store check. Labels are bounded: none carries an aggregate, message or shard id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from outboxkit import __version__
from outboxkit.observability.instruments import Histogram

if TYPE_CHECKING:
    from outboxkit.observability.observer import RelayObserver

__all__ = ["CONTENT_TYPE_LATEST", "RelayCollector", "exposition", "relay_registry"]

COUNTERS = (
    ("outboxkit_messages_published", "Messages the broker acknowledged", "published"),
    ("outboxkit_broker_duplicates", "Published messages the broker already had", "duplicates"),
    ("outboxkit_messages_retried", "Messages handed back to the store for a retry", "retried"),
    ("outboxkit_messages_dead_lettered", "Messages moved to the dead letters", "dead_lettered"),
    ("outboxkit_lease_losses", "Shard leases taken away while held", "lease_lost"),
    (
        "outboxkit_publish_calls",
        "Claimed batches published (batches of one event-loop turn may share a publisher call)",
        "batches",
    ),
)

HISTOGRAMS = (
    ("outboxkit_claim_duration_seconds", "Time of one claim call", "claim_seconds"),
    ("outboxkit_publish_duration_seconds", "Time of one publish call", "publish_seconds"),
    ("outboxkit_ack_duration_seconds", "Time of one ack call", "ack_seconds"),
    ("outboxkit_batch_size_messages", "Messages per publish call", "batch_size"),
    (
        "outboxkit_publish_lag_seconds",
        "Commit (created_at) to broker acknowledgement, per message",
        "lag_seconds",
    ),
)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name,
        documentation,
        buckets=[(le, float(count)) for le, count in histogram.buckets()],
        sum_value=histogram.sum,
    )


class RelayCollector(Collector):
    """Yields the relay's metrics from the observer's state at scrape time."""

    def __init__(self, observer: RelayObserver) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        observer = self._observer
        info = InfoMetricFamily("outboxkit_relay", "This relay instance")
        info.add_metric(
            [],
            {
                "instance_id": observer.instance_id,
                "store": observer.store_name,
                "publisher": observer.publisher_name,
                "version": __version__,
            },
        )
        yield info
        metrics = observer.metrics
        for name, documentation, attribute in COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(metrics, attribute))
        instruments = observer.instruments
        yield CounterMetricFamily("outboxkit_claims", "Claim calls", value=instruments.claims)
        for name, documentation, attribute in HISTOGRAMS:
            yield _histogram(name, documentation, getattr(instruments, attribute))
        yield GaugeMetricFamily(
            "outboxkit_owned_shards", "Shards this instance works on", value=observer.owned()
        )
        yield GaugeMetricFamily(
            "outboxkit_ready", "1 when /readyz answers 200", value=float(observer.ready().ok)
        )
        gauges = observer.gauges
        if gauges is None:
            return
        yield GaugeMetricFamily(
            "outboxkit_pending_messages",
            "Messages waiting in the outbox (whole store; an estimate when "
            "outboxkit_pending_estimated is 1)",
            value=gauges.pending,
        )
        yield GaugeMetricFamily(
            "outboxkit_pending_estimated",
            "1 when outboxkit_pending_messages is the store's estimate, not a count",
            value=float(gauges.pending_estimated),
        )
        yield GaugeMetricFamily(
            "outboxkit_oldest_pending_age_seconds",
            "Age of the oldest pending message (whole store; 0 when none)",
            value=gauges.oldest_pending_age or 0.0,
        )
        yield GaugeMetricFamily(
            "outboxkit_dead_letters", "Dead letters in the store", value=gauges.dead_letters
        )
        if gauges.blocked_aggregates is not None:
            yield GaugeMetricFamily(
                "outboxkit_blocked_aggregates",
                "Aggregates with a dead letter (their later messages wait when "
                "on_dead_letter=block; exact up to 10,000)",
                value=gauges.blocked_aggregates,
            )
        yield GaugeMetricFamily(
            "outboxkit_store_gauges_age_seconds",
            "Seconds since the backlog gauges were read from the store",
            value=observer.gauges_age(),
        )


def relay_registry(observer: RelayObserver) -> CollectorRegistry:
    """A registry of its own (not the global one) with the relay's and the process' metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(observer))
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> Callable[[], bytes]:
    """The function that renders ``/metrics``."""
    return lambda: generate_latest(registry)
