"""Continuing the writer's trace when the relay publishes (the ``outboxkit[otel]`` extra).

Each message is published under a ``PRODUCER`` span whose parent is the writer's span (its
``traceparent`` was captured by :meth:`Message.create`); the message then carries that span's
``traceparent`` (and the writer's ``tracestate`` and ``baggage``), which consumers continue.
OpenTelemetry is imported only by :func:`publish_tracer`, and only when it is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import msgspec

from outboxkit.message import Message
from outboxkit.protocols import Delivered, Outcome

__all__ = ["PublishTracer", "publish_tracer"]


class PublishTracer:
    """Starts one span per message before a publish call and ends them with its outcomes."""

    def __init__(self, system: str, provider: Any = None) -> None:
        from opentelemetry import propagate, trace

        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("outboxkit.relay", tracer_provider=provider)
        self._system = system

    def start(self, messages: Sequence[Message]) -> tuple[list[Message], list[Any]]:
        """Spans for ``messages`` and the messages with their trace headers replaced."""
        trace, propagate = self._trace, self._propagate
        spans: list[Any] = []
        traced: list[Message] = []
        for message in messages:
            parent = propagate.extract(message.headers)
            destination = message.topic or message.aggregate_type
            span = self._tracer.start_span(
                f"publish {destination}",
                context=parent,
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": self._system,
                    "messaging.operation": "publish",
                    "messaging.destination.name": destination,
                    "messaging.message.id": str(message.id),
                    "outboxkit.aggregate_type": message.aggregate_type,
                    "outboxkit.event_type": message.event_type,
                },
            )
            headers = dict(message.headers)
            propagate.inject(headers, context=trace.set_span_in_context(span, parent))
            traced.append(msgspec.structs.replace(message, headers=headers))
            spans.append(span)
        return traced, spans

    def end(self, spans: Sequence[Any], outcomes: Sequence[Outcome]) -> None:
        """End the spans, marking those whose message was not delivered as errors."""
        error = self._trace.StatusCode.ERROR
        for span, outcome in zip(spans, outcomes, strict=False):
            if type(outcome) is not Delivered:
                span.set_status(self._trace.Status(error, getattr(outcome, "error", "")))
            span.end()
        for span in spans[len(outcomes) :]:
            span.set_status(self._trace.Status(error, "no outcome"))
            span.end()

    def fail(self, spans: Sequence[Any], exc: BaseException) -> None:
        """End the spans of a publish call that raised ``exc``."""
        for span in spans:
            span.record_exception(exc)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(exc).__name__))
            span.end()


def otel_installed() -> bool:
    """True if the OpenTelemetry API can be imported (without importing it)."""
    return importlib.util.find_spec("opentelemetry") is not None


def publish_tracer(system: str, provider: Any = None) -> PublishTracer | None:
    """A tracer of ``provider``, or of the global provider once one is configured (it is no
    longer the default proxy), when OpenTelemetry is installed; else None: no spans, no cost."""
    if provider is None and not otel_installed():
        return None
    from opentelemetry import trace

    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
    return PublishTracer(system, provider)
