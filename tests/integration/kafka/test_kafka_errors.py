"""Classification of aiokafka errors (pure function; the broker paths are in the other tests)."""

from __future__ import annotations

import pytest
from aiokafka import errors as kafka_errors
from outboxkit_kafka.errors import classify

RETRIABLE = [
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.NotLeaderForPartitionError(),
    kafka_errors.LeaderNotAvailableError(),
    kafka_errors.RequestTimedOutError(),
    kafka_errors.NodeNotReadyError("node 1"),
    kafka_errors.KafkaConnectionError("connection reset"),
    kafka_errors.NotEnoughReplicasError(),
    kafka_errors.KafkaError("Unexpected error during batch delivery"),
    TimeoutError(),
    ConnectionResetError(),
]
NOT_RETRIABLE = [
    kafka_errors.RecordTooLargeError(),
    kafka_errors.MessageSizeTooLargeError(),
    kafka_errors.UnknownTopicOrPartitionError(),
    kafka_errors.InvalidTopicError(),
    kafka_errors.TopicAuthorizationFailedError("t"),
    kafka_errors.UnsupportedVersionError(),
    kafka_errors.CorruptRecordException(),
    kafka_errors.PolicyViolationError(),
]


@pytest.mark.parametrize("exc", RETRIABLE, ids=lambda e: type(e).__name__)
def test_transient_errors_are_retriable(exc: BaseException) -> None:
    failure = classify(exc, "orders")
    assert failure.retriable and "'orders'" in failure.error


@pytest.mark.parametrize("exc", NOT_RETRIABLE, ids=lambda e: type(e).__name__)
def test_permanent_errors_are_not_retriable(exc: BaseException) -> None:
    failure = classify(exc, "orders")
    assert not failure.retriable and "'orders'" in failure.error
