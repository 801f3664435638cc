"""Routing templates: the destination of a message (Kafka topic, NATS subject)."""

from __future__ import annotations

import pytest

from outboxkit import Message
from outboxkit.errors import ConfigurationError
from outboxkit.message import check_template, route


def order(topic: str | None) -> Message:
    return Message(aggregate_type="order", aggregate_id="o-1", event_type="Placed", topic=topic)


def test_the_default_template_is_the_topic_or_else_the_aggregate_type() -> None:
    assert route(order("payments"), "{topic}") == "payments"
    assert route(order(None), "{topic}") == "order"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{aggregate_type}.events", "order.events"),
        ("{topic}.{event_type}", "payments.Placed"),
        ("x.{aggregate_id}", "x.o-1"),
        ("fixed", "fixed"),
    ],
)
def test_templates_fill_every_routing_field(template: str, expected: str) -> None:
    assert route(order("payments"), check_template(template)) == expected


@pytest.mark.parametrize("template", ["{payload}", "{}", "{topic"])
def test_bad_templates_fail_clearly(template: str) -> None:
    with pytest.raises(ConfigurationError, match="routing template"):
        check_template(template)
