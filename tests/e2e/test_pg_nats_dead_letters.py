"""End to end: order after a dead letter, PostgreSQL outbox → ``outboxkit relay`` → NATS.

One aggregate writes m1, m2, m3 in three transactions; m2 goes to a subject that no JetStream
stream captures, so NATS refuses it for good and the relay dead-letters it. With the default
``on_dead_letter=block`` the stream must not see m3 before m2 is replayed (after fixing the
cause) or discarded; with ``skip``, m3 goes on at once (the old behaviour). The relay and the
``dead-letters`` commands run as processes, configured through ``OUTBOXKIT_*`` variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from outboxkit_postgres import PostgresOutbox, PostgresWalOutbox

from outboxkit.message import HEADER_ID, Message
from tests.e2e.checks import eventually
from tests.e2e.relays import RelayProcess, outboxkit_env
from tests.support.nats import Stream, make_stream
from tests.support.postgres import outbox_schema, pg_connection, wal_outbox

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

WAIT = 3.0
"""Seconds to watch that m3 stays parked (six poll intervals, many claims)."""


@dataclass
class Rig:
    """One test's outbox schema, stream, subjects and relay settings."""

    dsn: str
    schema: str
    js: JetStreamContext
    stream: Stream
    refused_subject: str
    env: dict[str, str]
    log_dir: Path
    mode: str = "table"

    def relay(self, policy: str | None) -> RelayProcess:
        env = dict(self.env)
        if policy is not None:
            env["OUTBOXKIT_ON_DEAD_LETTER"] = policy
        name = f"relay-{uuid.uuid4().hex[:6]}"
        return RelayProcess(name, env, self.log_dir, store="pg", publisher="nats").start()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``outboxkit ARGS --store pg`` with the relay's settings."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOXKIT_")}
        return subprocess.run(
            [sys.executable, "-m", "outboxkit.cli", *args, "--store", "pg"],
            cwd=self.log_dir,
            env=environ | self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    async def write_m1_m2_m3(self) -> list[Message]:
        aggregate = f"order-{uuid.uuid4().hex[:8]}"
        topics = [
            self.stream.subject("orders"),
            self.refused_subject,
            self.stream.subject("orders"),
        ]
        messages = [
            Message.create(
                aggregate_type="order",
                aggregate_id=aggregate,
                event_type="OrderChanged",
                topic=topic,
                payload={"n": n},
            )
            for n, topic in enumerate(topics, 1)
        ]
        outbox: PostgresOutbox | PostgresWalOutbox = PostgresOutbox(schema=self.schema)
        if self.mode == "wal":
            outbox = PostgresWalOutbox(schema=self.schema)
        async with pg_connection(self.dsn) as conn:
            for message in messages:
                async with conn.transaction():
                    await outbox.add(conn, message)
        return messages

    async def fix_the_cause(self) -> None:
        """Let the stream capture m2's subject too."""
        info = await self.js.stream_info(self.stream.name)
        config = info.config
        config.subjects = [*(config.subjects or []), self.refused_subject]
        await self.js.update_stream(config)

    async def published(self) -> list[str]:
        """Message ids in the stream, in stream order, whatever their subject."""
        last = (await self.js.stream_info(self.stream.name)).state.last_seq
        found = [await self.js.get_msg(self.stream.name, seq) for seq in range(1, last + 1)]
        return [(m.headers or {}).get(HEADER_ID, "") for m in found]

    async def dead_letters(self) -> int:
        async with pg_connection(self.dsn) as conn:
            count: int = await conn.fetchval(f"SELECT count(*) FROM {self.schema}.outbox_dead")
        return count


@pytest.fixture(params=["table", "wal"])
async def rig(
    postgres_url: str, nats_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    mode: str = request.param
    client: Client = await nats.connect(nats_url, connect_timeout=5)
    js = client.jetstream()
    stream = await make_stream(js, duplicate_window=120.0)
    outbox = wal_outbox(postgres_url, 2) if mode == "wal" else outbox_schema(postgres_url, 2)
    try:
        async with outbox as schema:
            env = outboxkit_env(
                pg_mode=mode,
                pg_dsn=postgres_url,
                pg_schema=schema,
                nats_servers=nats_url,
                lease_ttl=2,
                poll_interval=0.5,
                max_attempts=3,
                backoff_initial=0.1,
                backoff_max=0.2,
            )
            refused = f"obkt-unrouted.{uuid.uuid4().hex[:12]}.orders"
            yield Rig(postgres_url, schema, js, stream, refused, env, tmp_path, mode)
    finally:
        await js.delete_stream(stream.name)
        await client.close()


async def _dead_lettered(rig: Rig, relay: RelayProcess) -> None:
    async def one() -> bool:
        assert relay.running, relay.log()
        return await rig.dead_letters() == 1

    await eventually(one, 30, "m2 dead-lettered")


async def _holds(rig: Rig, ids: list[str], relay: RelayProcess) -> None:
    async def holds() -> bool:
        return await rig.published() == ids

    try:
        await eventually(holds, 30, f"the stream holding {len(ids)} messages", interval=0.3)
    except TimeoutError:
        pytest.fail(f"stream holds {await rig.published()}, expected {ids}\n{relay.log()}")


@pytest.mark.parametrize("end", ["replay", "discard"])
async def test_block_keeps_the_aggregate_in_order(rig: Rig, end: str) -> None:
    m1, m2, m3 = (str(m.id) for m in await rig.write_m1_m2_m3())
    relay = rig.relay(None)  # the default policy
    try:
        await _dead_lettered(rig, relay)
        await anyio.sleep(WAIT)
        assert await rig.published() == [m1], "m3 must wait behind the dead letter m2"
        status = rig.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert '"blocked_aggregates":1' in status.stdout and '"parked":1' in status.stdout

        if end == "replay":
            await rig.fix_the_cause()
            ended = rig.cli("dead-letters", "replay", "--all")
            expected = [m1, m2, m3]
        else:
            ended = rig.cli("dead-letters", "discard", "--id", m2)
            expected = [m1, m3]
        assert ended.returncode == 0, ended.stderr
        await _holds(rig, expected, relay)
    finally:
        assert relay.stop() == 0, relay.log()


async def test_skip_publishes_past_the_dead_letter(rig: Rig) -> None:
    m1, m2, m3 = (str(m.id) for m in await rig.write_m1_m2_m3())
    relay = rig.relay("skip")
    try:
        await _dead_lettered(rig, relay)
        await _holds(rig, [m1, m3], relay)

        await rig.fix_the_cause()
        replayed = rig.cli("dead-letters", "replay", "--all")
        assert replayed.returncode == 0, replayed.stderr
        await _holds(rig, [m1, m3, m2], relay)
    finally:
        assert relay.stop() == 0, relay.log()
