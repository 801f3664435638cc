"""Checking that destination topics exist before anything is sent to them, creating them if
``create_topics`` is on.

With topic auto-creation off, aiokafka's ``send()`` to a missing topic polls the cluster
metadata for a whole ``request_timeout_ms`` and then raises — far too slow, and it leaves the
topic in the producer's metadata list for good. Instead, a topic the producer has no metadata
for is looked up once with a single metadata request (auto-creation explicitly off). A missing
topic is then either created with the admin API (``create_topics``: ``topic_partitions``
partitions, ``topic_replication_factor`` replicas; ``TopicAlreadyExistsError`` means another
relay won the race and is fine) or fails its messages at once, non-retriably; a forbidden
topic always fails. A 'missing' answer is cached briefly so a batch of messages to it costs
one request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import anyio
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.metadata import MetadataRequest

from outboxkit.closing import CLOSE_TIMEOUT, close_within
from outboxkit.protocols import Failed
from outboxkit_kafka.connection import admin_options
from outboxkit_kafka.errors import classify, unknown_topic
from outboxkit_kafka.settings import KafkaSettings

__all__ = ["TopicCheck", "TopicCreator", "check_topic_name"]

log = logging.getLogger("outboxkit.kafka")

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


class TopicCreator:
    """Creates topics with the admin API; its client is started on first use."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = anyio.Lock()

    async def create(self, topics: list[str]) -> dict[str, Failed]:
        """Create ``topics``; the failures of those that could not be created."""
        settings = self._settings
        new = [
            NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
            for t in topics
        ]
        try:
            async with self._lock:
                if self._admin is None:
                    admin = AIOKafkaAdminClient(**admin_options(settings))
                    await admin.start()
                    self._admin = admin
                response = await self._admin.create_topics(new)
        except Exception as exc:
            return {t: classify(exc, t) for t in topics}
        failures: dict[str, Failed] = {}
        for topic_error in response.topic_errors:
            topic, error = topic_error[0], kafka_errors.for_code(topic_error[1])
            if error is kafka_errors.NoError:
                log.info(
                    "created Kafka topic %r (%d partitions, replication factor %d)",
                    topic,
                    settings.topic_partitions,
                    settings.topic_replication_factor,
                )
            elif error is not kafka_errors.TopicAlreadyExistsError:  # else: another relay won
                detail = topic_error[2] if len(topic_error) > 2 and topic_error[2] else ""
                failures[topic] = Failed(
                    f"cannot create Kafka topic {topic!r} ({error.__name__}"
                    f"{': ' + detail if detail else ''}): create it yourself or fix "
                    "topic_partitions and topic_replication_factor",
                    retriable=bool(error.retriable),
                )
        return failures

    async def close(self) -> None:
        """Stop the admin client, if it was started, within
        :data:`~outboxkit.closing.CLOSE_TIMEOUT` seconds. Idempotent."""
        admin, self._admin = self._admin, None
        if admin is not None:
            with anyio.CancelScope(shield=True):
                try:
                    if not await close_within(admin.close, CLOSE_TIMEOUT):
                        log.warning("the Kafka admin client did not close in time: gave up")
                except Exception as exc:
                    log.warning("closing the Kafka admin client failed: %s", exc)


class TopicCheck:
    """Finds the topics that messages cannot be sent to, through an aiokafka client; creates
    the missing ones first if given a :class:`TopicCreator`."""

    def __init__(self, client: Any, creator: TopicCreator | None = None) -> None:
        self._client = client
        self._creator = creator
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
        """Like :meth:`_lookup`, but a topic is only reported missing if it stays missing
        (after creating it, with a creator)."""
        failures = await self._lookup(topics)
        created: list[str] = []
        if self._creator is not None:
            missing = [t for t, f in failures.items() if f == unknown_topic(t)]
            if missing:
                refused = await self._creator.create(missing)
                created = [t for t in missing if t not in refused]
                for topic in missing:
                    del failures[topic]
                failures.update(refused)
                failures.update(await self._lookup(created))
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
            if topic in created and failure == unknown_topic(topic):
                failures[topic] = Failed(
                    f"Kafka topic {topic!r} was created but is not in the metadata yet",
                    retriable=True,
                )
            elif failure == unknown_topic(topic):
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
