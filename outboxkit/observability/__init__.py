"""Seeing a running relay: Prometheus metrics, health endpoints, log lines and tracing.

Nothing here imports ``prometheus_client`` or OpenTelemetry until it is asked to: metrics
need the ``outboxkit[metrics]`` extra and an HTTP port; tracing needs ``outboxkit[otel]`` and a
configured tracer provider. See docs/operations.md.
"""

from __future__ import annotations

from outboxkit.observability.instruments import Histogram, RelayInstruments
from outboxkit.observability.observer import ObservabilitySettings, RelayObserver
from outboxkit.observability.wrappers import ObservedPublisher, ObservedStore

__all__ = [
    "Histogram",
    "ObservabilitySettings",
    "ObservedPublisher",
    "ObservedStore",
    "RelayInstruments",
    "RelayObserver",
]
