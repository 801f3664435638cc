"""The brokers read back as deliveries (message, aggregate, position) for the verdict: a
Kafka topic read in the background, a JetStream stream read once."""

from __future__ import annotations

import anyio
import anyio.abc
from nats.js.client import JetStreamContext

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID
from tests.e2e.checks import Delivery, eventually
from tests.support.kafka import consumer_from_start
from tests.support.nats import read_stream

__all__ = ["TopicReader", "read_deliveries"]


class TopicReader:
    """Reads a topic from its start in the background, in broker order per partition."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.deliveries: list[Delivery] = []
        self.ids: set[str] = set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read until cancelled."""
        consumer = consumer_from_start(self.bootstrap, self.topic, max_poll_records=5000)
        await consumer.start()
        task_status.started()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        message_id = headers[HEADER_ID]
                        self.deliveries.append(
                            Delivery(
                                headers[HEADER_AGGREGATE_ID],
                                message_id,
                                position=r.offset,
                                partition=r.partition,
                            )
                        )
                        self.ids.add(message_id)
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.stop()

    async def wait_for(self, ids: set[str], timeout: float, settle: float = 1.0) -> None:
        """Return once every id in ``ids`` was read (then ``settle`` s more, so late
        duplicates are counted too), or after ``timeout`` s."""
        with anyio.move_on_after(timeout):
            await eventually(lambda: ids <= self.ids, timeout + 1, "every message read")
        await anyio.sleep(settle)


async def read_deliveries(
    js: JetStreamContext, stream: str, subjects: str, timeout: float = 30.0
) -> list[Delivery]:
    """Every message of ``stream`` in stream order."""
    messages = await read_stream(js, stream, subjects, timeout=timeout)
    found = []
    for m in messages:
        headers = m.headers or {}
        found.append(
            Delivery(
                aggregate_id=headers.get(HEADER_AGGREGATE_ID, ""),
                message_id=headers.get(HEADER_ID, ""),
                position=m.metadata.sequence.stream,
                msg_id_header=headers.get("Nats-Msg-Id", ""),
            )
        )
    return sorted(found, key=lambda d: d.position)
