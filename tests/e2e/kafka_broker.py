"""The Kafka side of the end-to-end tests: a fresh topic, a reader of it keyed by the
``outboxkit-id`` header, and the broker's pid (for outage tests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from checks import Delivery, eventually
from relays import REPO
from server_clients import consumer_from_start

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID
from outboxkit.testing import unique_name

__all__ = ["TopicReader", "kafka_pid", "kafka_topic", "listening_pid"]


@asynccontextmanager
async def kafka_topic(bootstrap: str, partitions: int = 6) -> AsyncIterator[str]:
    """A fresh topic (visible in the brokers' metadata on entry), deleted afterwards."""
    name = unique_name("okt-e2e").replace("_", "-")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        new = NewTopic(name=name, num_partitions=partitions, replication_factor=1)
        await admin.create_topics([new])

        async def visible() -> bool:
            return name in await admin.list_topics()

        await eventually(visible, 10, f"topic {name} in the brokers' metadata", 0.05)
        yield name
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await admin.delete_topics([name])
            finally:
                await admin.close()


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


def kafka_pid() -> int:
    """The pid of the Kafka broker (for outage tests).

    The pid file of ``scripts/services`` when it started Kafka; otherwise the process that
    listens on the bootstrap port (a broker this checkout reuses but did not start).
    """
    pid_file = REPO / ".services" / "run" / "kafka.pid"
    if pid_file.exists():
        return int(pid_file.read_text().strip())
    port = int(os.environ["OUTBOXKIT_TEST_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    return listening_pid(port)


def listening_pid(port: int) -> int:
    """The pid of the local process listening on TCP ``port`` (read from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"no process of ours listens on port {port}")
