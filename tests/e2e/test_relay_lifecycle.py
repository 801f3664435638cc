"""Starting and stopping ``outboxkit relay --store pg --publisher kafka`` processes while a
server is down or does not answer.

The shared servers are never paused or stopped: a server that is down or does not answer is
a proxy in front of it (``tests/support/proxy.py``), or a port nothing listens on.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from outboxkit_postgres import PostgresOutbox

from outboxkit.message import Message
from tests.e2e.checks import eventually
from tests.e2e.readers import TopicReader
from tests.e2e.relays import RelayProcess, outboxkit_env
from tests.support.kafka import topics, topics_deleted_after
from tests.support.nats import LocalNatsServer
from tests.support.postgres import outbox_schema, pg_connection
from tests.support.proxy import KafkaProxy, TcpProxy, closed_port, proxy

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DRAIN = 3.0
STOPPED_WITHIN = DRAIN + 6 + 6 + 1.5
"""docs/operations.md: the drain, then at most 6 s to leave and 6 s to close; and the exit."""
AT_ONCE = 2 + 1.0
"""docs/operations.md: a second signal ends the process within 2 s."""


class Rig:
    """One test's outbox schema and topic, and the relay processes it starts."""

    def __init__(self, postgres_url: str, schema: str, topic: str, tmp: Path) -> None:
        self.postgres_url, self.schema, self.topic, self.tmp = postgres_url, schema, topic, tmp
        self.relays: list[RelayProcess] = []

    def start(self, dsn: str, bootstrap: str, **settings: object) -> RelayProcess:
        env = outboxkit_env(
            pg_dsn=dsn,
            pg_schema=self.schema,
            kafka_bootstrap_servers=bootstrap,
            kafka_connect_timeout_ms=3000,
            kafka_request_timeout_ms=3000,
            drain_timeout=DRAIN,
            lease_ttl=2,
            poll_interval=0.2,
            **settings,
        )
        name = f"relay-{len(self.relays)}"
        relay = RelayProcess(name, env, self.tmp, store="pg", publisher="kafka").start()
        self.relays.append(relay)
        return relay

    async def commit(self, count: int) -> set[str]:
        """Commit ``count`` messages to the topic (10 aggregates); their ids."""
        messages = [
            Message.create(
                aggregate_type="order",
                aggregate_id=f"agg-{n % 10}",
                event_type="OrderChanged",
                topic=self.topic,
                payload={"n": n},
            )
            for n in range(count)
        ]
        outbox = PostgresOutbox(schema=self.schema)
        async with pg_connection(self.postgres_url) as conn, conn.transaction():
            await outbox.add_many(conn, messages)
        return {str(m.id) for m in messages}

    async def published(self) -> bool:
        """Whether every committed message was acknowledged (the outbox is empty)."""
        async with pg_connection(self.postgres_url) as conn:
            return await conn.fetchval(f"SELECT count(*) FROM {self.schema}.outbox") == 0


@pytest.fixture
async def rig(postgres_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with outbox_schema(postgres_url, shards=4) as schema:
        made = Rig(postgres_url, schema, "", tmp_path)
        try:
            yield made
        finally:
            for relay in made.relays:
                relay.stop(timeout=5)


async def exit_status(relay: RelayProcess, within: float) -> int | None:
    """The relay's exit status once it exits, or None if it still runs after ``within`` s."""
    process = relay.process
    assert process is not None
    try:
        return await anyio.to_thread.run_sync(lambda: process.wait(within))
    except subprocess.TimeoutExpired:
        return None


async def wait_for_log(relay: RelayProcess, pattern: str, count: int = 1, timeout: float = 30):
    def seen() -> bool:
        return len(re.findall(pattern, relay.log())) >= count

    await eventually(seen, timeout, f"{count} x {pattern!r} in {relay.name}'s log")


# -- stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "second-sigterm"])
async def test_sigterm_stops_a_relay_whose_kafka_does_not_answer(
    rig: Rig, postgres_url: str, kafka_bootstrap: str, signals: int
) -> None:
    """A relay that creates its topics (so it also holds an admin client) is publishing when
    Kafka stops answering; SIGTERM stops it within drain timeout + its bounded steps, and a
    second SIGTERM at once with status 128 + 15."""
    async with topics_deleted_after(kafka_bootstrap) as (rig.topic,):
        with proxy(KafkaProxy, kafka_bootstrap) as kafka:
            relay = rig.start(postgres_url, kafka.address, kafka_create_topics="true")
            await rig.commit(50)
            await wait_for_log(relay, "created Kafka topic")
            await eventually(rig.published, 30, "the first messages published")

            kafka.set("silent")
            await rig.commit(50)  # claimed and sent, never acknowledged
            await anyio.sleep(1.5)
            assert relay.running
            started = time.monotonic()
            relay.signal(signal.SIGTERM)
            if signals == 2:
                await anyio.sleep(0.5)
                relay.signal(signal.SIGTERM)
            status = await exit_status(relay, STOPPED_WITHIN if signals == 1 else AT_ONCE)
            elapsed = time.monotonic() - started

    assert status == (0 if signals == 1 else 128 + signal.SIGTERM), relay.log()[-3000:]
    if signals == 1:
        assert elapsed < STOPPED_WITHIN
        assert "drain timed out" in relay.log()
        assert "exiting anyway" not in relay.log()  # the relay's own bounds did it


async def test_sigterm_stops_a_relay_whose_postgres_does_not_answer(
    rig: Rig, postgres_url: str, kafka_bootstrap: str
) -> None:
    host = postgres_url.split("@", 1)[1].split("/", 1)[0]
    async with topics(kafka_bootstrap, partitions=3) as (rig.topic,):
        with proxy(TcpProxy, host) as pg:
            relay = rig.start(postgres_url.replace(host, pg.address), kafka_bootstrap)
            await rig.commit(50)
            await eventually(rig.published, 30, "the first messages published")

            pg.set("silent")
            await rig.commit(50)
            await anyio.sleep(1.5)
            assert relay.running
            started = time.monotonic()
            relay.signal(signal.SIGTERM)
            status = await exit_status(relay, STOPPED_WITHIN)
            elapsed = time.monotonic() - started

    assert status == 0, relay.log()[-3000:]
    assert elapsed < STOPPED_WITHIN
    assert "exiting anyway" not in relay.log()


# -- starting --------------------------------------------------------------------------------


def _unreachable_lines(log: str, what: str) -> list[tuple[int, str]]:
    """(attempt, line) of each 'unreachable' warning about ``what``."""
    pattern = rf"^.*{what} unreachable \(attempt (\d+); next in [\d.]+s\): .*$"
    return [(int(m[1]), m[0]) for m in re.finditer(pattern, log, re.MULTILINE)]


def _one_down(postgres_url: str, kafka_bootstrap: str, down: str, port: int) -> tuple[str, str]:
    """The DSN and the bootstrap servers, the ``down`` one (store, publisher) at ``port``."""
    if down == "store":
        return f"postgresql://outbox:s3cr3t@127.0.0.1:{port}/outboxkit", kafka_bootstrap
    return postgres_url, f"127.0.0.1:{port}"


@pytest.mark.parametrize("down", ["store", "publisher"])
async def test_relay_keeps_trying_a_server_that_is_down(
    rig: Rig, postgres_url: str, kafka_bootstrap: str, down: str
) -> None:
    """One warning per attempt, naming the unreachable server (password masked), and no
    other line about it; SIGTERM while trying stops the relay with status 0."""
    port = closed_port()
    relay = rig.start(*_one_down(postgres_url, kafka_bootstrap, down, port))
    await wait_for_log(relay, rf"{down} unreachable \(attempt", count=4, timeout=20)
    assert relay.running

    relay.signal(signal.SIGTERM)
    assert await exit_status(relay, 5) == 0
    log = relay.log()
    lines = _unreachable_lines(log, down)
    assert [attempt for attempt, _ in lines] == list(range(1, len(lines) + 1))
    assert all(f"127.0.0.1:{port}" in line for _, line in lines)
    about_it = [line for line in log.splitlines()[1:] if f":{port}" in line]  # 1st: settings
    assert len(about_it) == len(lines)
    assert "s3cr3t" not in log


@pytest.mark.parametrize("down", ["store", "publisher"])
async def test_startup_timeout_gives_up_with_status_2(
    rig: Rig, postgres_url: str, kafka_bootstrap: str, down: str
) -> None:
    port = closed_port()
    started = time.monotonic()
    relay = rig.start(*_one_down(postgres_url, kafka_bootstrap, down, port), startup_timeout="2s")
    status = await exit_status(relay, 2 + 6)
    elapsed = time.monotonic() - started

    assert status == 2, relay.log()[-2000:]
    assert elapsed < 2 + 6  # start-up of the interpreter and the imports included
    last = relay.log().strip().splitlines()[-1]
    assert last.startswith("outboxkit: error: cannot connect to ")
    assert f"127.0.0.1:{port}" in last and "still failing after startup_timeout=2s" in last


@pytest.mark.parametrize("late", ["store", "publisher"])
async def test_relay_started_before_a_server_publishes_everything_once_it_is_up(
    rig: Rig, postgres_url: str, kafka_bootstrap: str, late: str
) -> None:
    host = postgres_url.split("@", 1)[1].split("/", 1)[0]
    async with topics(kafka_bootstrap, partitions=3) as (rig.topic,):
        ids = await rig.commit(60)
        reader = TopicReader(kafka_bootstrap, rig.topic)
        kind, target = (TcpProxy, host) if late == "store" else (KafkaProxy, kafka_bootstrap)
        with proxy(kind, target, state="refusing") as server:
            dsn = postgres_url.replace(host, server.address) if late == "store" else postgres_url
            bootstrap = server.address if late == "publisher" else kafka_bootstrap
            async with anyio.create_task_group() as tg:
                await tg.start(reader.run)
                relay = rig.start(dsn, bootstrap, exit_when_idle="true")
                await wait_for_log(relay, rf"{late} unreachable \(attempt 3;", timeout=20)
                server.set("forwarding")
                status = await exit_status(relay, 60)
                await reader.wait_for(ids, 20, settle=0)
                tg.cancel_scope.cancel()

    assert status == 0, relay.log()[-3000:]
    assert reader.ids >= ids
    assert f"{late} reachable after" in relay.log()


@pytest.mark.parametrize(
    ("dsn_change", "expected"),
    [
        (("postgres@", "no_such_role_okt@"), 'role "no_such_role_okt" does not exist'),
        (("/outboxkit", "/no_such_db_okt"), 'database "no_such_db_okt" does not exist'),
    ],
    ids=["unknown-role", "unknown-database"],
)
async def test_refused_connection_exits_at_once(
    rig: Rig, postgres_url: str, kafka_bootstrap: str, dsn_change: tuple[str, str], expected: str
) -> None:
    assert dsn_change[0] in postgres_url, "the test assumes the default test server URL"
    relay = rig.start(postgres_url.replace(*dsn_change), kafka_bootstrap)

    assert await exit_status(relay, 10) == 2, relay.log()[-2000:]
    assert "unreachable (attempt" not in relay.log()
    last = relay.log().strip().splitlines()[-1]
    assert last.startswith("outboxkit: error: cannot connect to PostgreSQL") and expected in last


async def test_refused_nats_credentials_exit_at_once(
    local_nats: Callable[..., LocalNatsServer], tmp_path: Path
) -> None:
    server = local_nats('token: "right-token"')
    db = tmp_path / "outbox.db"
    migrate = [sys.executable, "-m", "outboxkit.cli", "migrate", "--store", "sqlite"]
    await anyio.run_process([*migrate, "--sqlite-path", str(db)])
    env = outboxkit_env(sqlite_path=db, nats_servers=server.url, nats_token="wrong-token")
    relay = RelayProcess("relay", env, tmp_path, store="sqlite", publisher="nats").start()

    assert await exit_status(relay, 10) == 2, relay.log()[-2000:]
    log = relay.log()
    assert "unreachable (attempt" not in log and "wrong-token" not in log
    last = log.strip().splitlines()[-1]
    assert last.startswith("outboxkit: error: cannot connect to NATS") and "authorization" in last
