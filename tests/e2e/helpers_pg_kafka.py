"""Helpers of the Postgres → Kafka end-to-end tests: relay processes, a Kafka topic reader
keyed by the ``outboxkit-id`` header, and the loss / duplicate / order verdict."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import anyio
import anyio.abc
import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from outboxkit_postgres import PostgresOutbox

from outboxkit.message import HEADER_AGGREGATE_ID, HEADER_ID, Message
from outboxkit.testing import unique_name

__all__ = [
    "CommitLog",
    "Delivery",
    "RelayProcess",
    "TopicReader",
    "Verdict",
    "Writers",
    "eventually",
    "kafka_pid",
    "kafka_topic",
    "verdict",
]

REPO = Path(__file__).resolve().parents[2]


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


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``check`` until it is true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g}s: {what}")
        await anyio.sleep(interval)


class Delivery(NamedTuple):
    """One record read back: which message, of which aggregate, where."""

    aggregate_id: str
    message_id: str
    partition: int
    offset: int


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
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            max_poll_records=5000,
        )
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
                                headers[HEADER_AGGREGATE_ID], message_id, r.partition, r.offset
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


@dataclass
class Verdict:
    """What reached the broker compared with what was committed."""

    lost: list[str]
    duplicates: int
    unexpected: list[str]
    order_violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"lost={len(self.lost)} duplicates={self.duplicates} "
            f"unexpected={len(self.unexpected)} order_violations={len(self.order_violations)} "
            f"(first: {self.lost[:3]} {self.unexpected[:3]} {self.order_violations[:3]})"
        )


def verdict(deliveries: Sequence[Delivery], committed: Mapping[str, Sequence[str]]) -> Verdict:
    """Compare ``deliveries`` (in broker order per partition) with ``committed``: message ids
    per aggregate in commit order. Order is checked on first deliveries of each aggregate."""
    expected = {m for ids in committed.values() for m in ids}
    seen: set[str] = set()
    firsts: defaultdict[str, list[str]] = defaultdict(list)
    duplicates = 0
    partitions: defaultdict[str, set[int]] = defaultdict(set)
    for d in deliveries:
        partitions[d.aggregate_id].add(d.partition)
        if d.message_id in seen:
            duplicates += 1
            continue
        seen.add(d.message_id)
        firsts[d.aggregate_id].append(d.message_id)
    violations = [
        f"aggregate {a}: first deliveries {firsts[a][:6]}... differ from commit order {ids[:6]}..."
        for a, ids in committed.items()
        if firsts.get(a, []) != [m for m in ids if m in seen]
    ]
    violations += [
        f"aggregate {a} in partitions {sorted(p)}" for a, p in partitions.items() if len(p) > 1
    ]
    return Verdict(
        lost=sorted(expected - seen),
        duplicates=duplicates,
        unexpected=sorted(seen - expected),
        order_violations=violations,
    )


class RelayProcess:
    """``outboxkit relay --store STORE --publisher PUBLISHER`` in its own process (and
    session), logging to ``log_dir/NAME.log``; settings come from ``env`` (``OUTBOXKIT_*``)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        store: str = "pg",
        publisher: str = "kafka",
    ) -> None:
        self.name, self.store, self.publisher = name, store, publisher
        self.log_path = log_dir / f"{name}.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        self._env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        argv = [sys.executable, "-m", "outboxkit.cli", "relay", "--store", self.store]
        argv += ["--publisher", self.publisher, "--instance-id", self.name, "--log-level", "info"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (graceful: drain, release leases), SIGKILL if it does not exit in time;
        the exit status, or None if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None


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


class CommitLog:
    """Message ids per aggregate in commit order, as the writers committed them."""

    def __init__(self) -> None:
        self.by_aggregate: defaultdict[str, list[str]] = defaultdict(list)
        self.count = 0

    def record(self, messages: Sequence[Message]) -> None:
        for m in messages:
            self.by_aggregate[m.aggregate_id].append(str(m.id))
        self.count += len(messages)

    @property
    def ids(self) -> set[str]:
        return {m for ids in self.by_aggregate.values() for m in ids}


class Writers:
    """Concurrent business transactions that add outbox messages, without locking the
    aggregate's row (the outbox writer serialises writers of one aggregate itself)."""

    def __init__(self, pool: asyncpg.Pool, outbox: PostgresOutbox, business: str, topic: str):
        self.pool, self.outbox, self.business, self.topic = pool, outbox, business, topic
        self.log = CommitLog()

    async def create_business_table(self) -> None:
        await self.pool.execute(
            f"CREATE TABLE {self.business} (id bigserial PRIMARY KEY, aggregate_id text, n int)"
        )

    async def run(
        self, total: int, aggregates: Sequence[str], writers: int, pause: float = 0.0, seed: int = 1
    ) -> None:
        """``writers`` concurrent writers commit ``total`` messages over ``aggregates``, 1-4
        messages of one aggregate per transaction, pausing ``pause`` s between transactions."""
        remaining = [total]

        async def writer(rng: random.Random) -> None:
            while remaining[0] > 0:
                count = min(rng.randint(1, 4), remaining[0])
                remaining[0] -= count
                await self.commit(rng.choice(aggregates), count)
                if pause:
                    await anyio.sleep(pause)

        async with anyio.create_task_group() as tg:
            for n in range(writers):
                tg.start_soon(writer, random.Random(seed * 1000 + n))

    async def commit(self, aggregate_id: str, count: int) -> list[Message]:
        """One committed business transaction with ``count`` messages of ``aggregate_id``."""
        messages = [self.message(aggregate_id, n) for n in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self.business} (aggregate_id, n) VALUES ($1, $2)",
                aggregate_id,
                count,
            )
            await self.outbox.add_many(conn, messages)
            # Recorded before COMMIT but after the add: a writer of the same aggregate waits on
            # the outbox's advisory lock until this transaction ends, so it records later.
            self.log.record(messages)
        return messages

    def message(self, aggregate_id: str, n: int) -> Message:
        return Message.create(
            aggregate_type="order",
            aggregate_id=aggregate_id,
            event_type="order.changed",
            payload={"n": n},
            topic=self.topic,
        )
