"""Classifying aiokafka errors into retriable and non-retriable failures.

Non-retriable (the relay dead-letters the message): it can never be accepted as it is — the
record is over ``max_request_size`` or the broker's limit, the topic does not exist (and
``create_topics`` is off) or its name is invalid, the relay may not write to it, the broker
does not support the request, the record is refused as corrupt or by policy.

Retriable: anything transient or whose outcome is unknown — timeouts, leader changes, nodes not
ready, lost connections, too few in-sync replicas. Re-publishing after an unknown outcome may
duplicate a record; consumers drop duplicates by the ``outboxkit-id`` header.
"""

from __future__ import annotations

import asyncio  # aiokafka cancels deliveries with asyncio.CancelledError

from aiokafka import errors as kafka_errors

from outboxkit.protocols import Failed

__all__ = [
    "classify",
    "not_acknowledged",
    "over_max_request_size",
    "partition_failed",
    "unknown_topic",
]

_NOT_RETRIABLE: tuple[type[BaseException], ...] = (
    kafka_errors.RecordTooLargeError,
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.PolicyViolationError,
    kafka_errors.AuthenticationFailedError,
)

_RETRIABLE: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NotEnoughReplicasError,
    kafka_errors.NotEnoughReplicasAfterAppendError,
    kafka_errors.ProducerClosed,
    kafka_errors.ProducerFenced,
    kafka_errors.OutOfOrderSequenceNumber,
    TimeoutError,
    asyncio.CancelledError,
    OSError,
)

_HINTS: dict[type[BaseException], str] = {
    kafka_errors.MessageSizeTooLargeError: (
        "the record is over max_request_size or the broker's message.max.bytes: store large "
        "data elsewhere and reference it, or raise both limits"
    ),
    kafka_errors.RecordTooLargeError: (
        "the record is over max_request_size: store large data elsewhere and reference it"
    ),
    kafka_errors.TopicAuthorizationFailedError: "grant the relay's Kafka user WRITE on it",
    kafka_errors.InvalidTopicError: "check topic_template and the message fields",
    kafka_errors.UnsupportedVersionError: "the broker is too old for an idempotent producer",
}


def unknown_topic(topic: str) -> Failed:
    """The failure of a message to ``topic``, which does not exist on the cluster."""
    return Failed(
        f"Kafka topic {topic!r} does not exist and topics are not auto-created: create it, "
        "let the relay create it (--kafka-create-topics) or fix topic_template",
        retriable=False,
    )


def partition_failed(topic: str, partition: int) -> Failed:
    """The outcome of a record not sent because an earlier batch of its partition failed."""
    return Failed(
        f"not sent: an earlier batch to partition {partition} of {topic!r} failed", retriable=True
    )


def over_max_request_size(size: int, topic: str) -> Failed:
    """The outcome of a record of ``size`` bytes, over ``max_request_size`` (the error
    ``AIOKafkaProducer.send()`` raises)."""
    return classify(
        kafka_errors.MessageSizeTooLargeError(
            f"The message is {size} bytes when serialized which is larger than the maximum "
            "request size you have configured with the max_request_size configuration"
        ),
        topic,
    )


def not_acknowledged(topic: str, timeout_ms: int) -> Failed:
    """The outcome of a record still unacknowledged when the publish call gives up."""
    return Failed(
        f"no acknowledgement from Kafka for a record to {topic!r} within "
        f"delivery_timeout_ms={timeout_ms}; its outcome is unknown and a retry may duplicate it",
        retriable=True,
    )


def classify(exc: BaseException, topic: str) -> Failed:
    """The outcome of a record to ``topic`` whose send or delivery raised ``exc``."""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
        return unknown_topic(topic)
    if isinstance(exc, _NOT_RETRIABLE):
        hint = next((h for t, h in _HINTS.items() if isinstance(exc, t)), "")
        text = f"Kafka refused a record to {topic!r} ({name}: {detail})"
        return Failed(f"{text}; {hint}" if hint else text, retriable=False)
    if isinstance(exc, _RETRIABLE):
        return Failed(f"publish to Kafka topic {topic!r} failed ({name}): {detail}", True)
    # A broker error code knows whether it is transient; anything else is a client-side
    # surprise that a retry (bounded by the relay's attempt limit) may cure.
    retriable = not isinstance(exc, kafka_errors.BrokerResponseError) or bool(exc.retriable)
    return Failed(
        f"publish to Kafka topic {topic!r} failed unexpectedly ({name}): {detail}", retriable
    )
