"""Checking that destination topics exist before anything is sent to them.

With topic auto-creation off, aiokafka's ``send()`` to a missing topic polls the cluster
metadata for a whole ``request_timeout_ms`` and then raises — far too slow, and it leaves the
topic in the producer's metadata list for good. Instead, a topic the producer has no metadata
for is looked up once with a single metadata request (auto-creation explicitly off); a missing
or forbidden topic fails its messages at once, non-retriably, and that answer is cached
briefly so a batch of messages to it costs one request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import anyio
from aiokafka import errors as kafka_errors
from aiokafka.protocol.metadata import MetadataRequest

from outboxkit.protocols import Failed
from outboxkit_kafka.errors import classify, unknown_topic

__all__ = ["TopicCheck", "check_topic_name"]

_LEGAL = re.compile(r"[a-zA-Z0-9._-]{1,249}")
NEGATIVE_TTL = 1.0
"""Seconds a 'topic missing' answer is reused (a topic created meanwhile is seen after it)."""
CONFIRM_DELAYS = (0.2, 0.4)
"""Pauses before asking again about a missing topic: a topic just created takes a moment to
reach every broker's metadata cache."""


def check_topic_name(topic: str) -> Failed | None:
    """A non-retriable failure if ``topic`` is not a legal Kafka topic name, else None."""
    if _LEGAL.fullmatch(topic) and topic not in (".", ".."):
        return None
    return Failed(
        f"{topic!r} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -): check "
        "topic_template and the message fields",
        retriable=False,
    )


class TopicCheck:
    """Finds the topics that messages cannot be sent to, through an aiokafka client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._missing: dict[str, tuple[float, Failed]] = {}

    async def unusable(self, topics: Iterable[str]) -> dict[str, Failed]:
        """The topics among ``topics`` that cannot take messages now, with the failure."""
        failures: dict[str, Failed] = {}
        lookup: list[str] = []
        now = time.monotonic()
        for topic in set(topics):
            if self._client.cluster.partitions_for_topic(topic) is not None:
                continue
            failure = check_topic_name(topic)
            cached = self._missing.get(topic)
            if failure is None and cached is not None and now - cached[0] < NEGATIVE_TTL:
                failure = cached[1]
            if failure is not None:
                failures[topic] = failure
            else:
                lookup.append(topic)
        if lookup:
            failures.update(await self._lookup_confirmed(sorted(lookup)))
        return failures

    async def confirm(self, topic: str, exc: BaseException) -> Failed:
        """The failure of a send to ``topic`` that raised UnknownTopicOrPartitionError.

        aiokafka raises that also when it merely could not refresh metadata in time; only a
        broker saying the topic does not exist makes it non-retriable.
        """
        self._missing.pop(topic, None)
        failure = (await self._lookup_confirmed([topic])).get(topic)
        if failure is not None:
            return failure
        return Failed(f"Kafka topic {topic!r} had no metadata in time ({exc!r})", retriable=True)

    async def _lookup_confirmed(self, topics: list[str]) -> dict[str, Failed]:
        """Like :meth:`_lookup`, but a topic is only reported missing if it stays missing."""
        failures = await self._lookup(topics)
        for delay in CONFIRM_DELAYS:
            missing = [t for t, f in failures.items() if f == unknown_topic(t)]
            if not missing:
                break
            await anyio.sleep(delay)
            for topic in missing:
                del failures[topic]
            failures.update(await self._lookup(missing))
        now = time.monotonic()
        for topic, failure in failures.items():
            if failure == unknown_topic(topic):
                self._missing[topic] = (now, failure)
        return failures

    async def _lookup(self, topics: list[str]) -> dict[str, Failed]:
        try:
            node = self._client.get_random_node()
            if node is None:
                raise kafka_errors.NoBrokersAvailable("no broker is known")
            request = MetadataRequest(topics, allow_auto_topic_creation=False)
            response = await self._client.send(node, request)
        except Exception as exc:
            return {topic: classify(exc, topic) for topic in topics}
        failures: dict[str, Failed] = {}
        for topic_data in response.topics:
            error_code, topic = topic_data[0], topic_data[1]
            error = kafka_errors.for_code(error_code)
            if error is kafka_errors.NoError:
                continue
            if error is kafka_errors.UnknownTopicOrPartitionError:
                failures[topic] = unknown_topic(topic)
            else:
                failures[topic] = classify(error(topic), topic)
        return failures
