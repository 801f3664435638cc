"""End to end, the table store woken by the log (``--pg-wake-from-log``) → relays → Kafka.

Writers add rows without NOTIFY (``PostgresOutbox(notify=False)``); the relays poll only
every 60 s, so a message delivered within seconds was woken by the slot holder's coalesced
NOTIFY. One relay holds the slot (fenced lease); the checks are those of ``test_pg_kafka.py``
for what the log adds: commit once and rollback nothing, 3 relays and 8 writers in order, a
killed holder replaced within the lease time, a paused holder whose stream is ended.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from outboxkit_postgres import PostgresOutbox

from tests.e2e.checks import eventually, slot_tenures
from tests.e2e.test_pg_kafka import LEASE_TTL, Rig, _assert_clean
from tests.support.kafka import topics
from tests.support.postgres import wal_outbox

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

POLL = 60.0
"""The relays' poll interval: far beyond every wait of these tests."""


class LogRig(Rig):
    def relay_env(self, batch_size: int, **settings: object) -> dict[str, str]:
        defaults: dict[str, object] = dict(pg_wake_from_log="true", poll_interval=POLL)
        return super().relay_env(batch_size, **(defaults | settings))


@pytest.fixture
async def rig(postgres_url: str, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[LogRig]:
    async with (
        topics(kafka_bootstrap, partitions=6, prefix="okt-logwake") as (topic,),
        wal_outbox(postgres_url, shards=6, mode="table", wake_from_log=True) as schema,
    ):
        rig = LogRig(postgres_url, kafka_bootstrap, schema, topic, tmp_path)
        async with rig.running(PostgresOutbox(schema=schema, notify=False)):
            yield rig


@pytest.mark.timeout(60)
async def test_commits_without_notify_are_woken_by_the_log(rig: LogRig) -> None:
    rig.start_relay("relay-a")
    await rig.lease.holder()
    await anyio.sleep(POLL / 60)  # past the relay's first round of claims
    writers = rig.writers
    committed = await writers.commit("order-1", 3)
    async with writers.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        doomed = [writers.message("order-2", n) for n in range(2)]
        await writers.outbox.add_many(conn, doomed)
        await tx.rollback()
    committed += await writers.commit("order-3", 1)

    result = await rig.delivered(timeout=5, settle=1)

    _assert_clean(result, rig, max_duplicates=0)
    read = [d.message_id for d in rig.reader.deliveries]
    assert sorted(read) == sorted(str(m.id) for m in committed), "exactly once, nothing else"


@pytest.mark.timeout(150)
async def test_three_relays_eight_writers_in_order_woken_by_one_slot_holder(
    rig: LogRig,
) -> None:
    await rig.start_relays(["relay-a", "relay-b", "relay-c"], batch_size=200, shards_each=2)
    await rig.lease.holder()
    aggregates = [f"agg-{n}" for n in range(500)]

    await rig.writers.run(20_000, aggregates, writers=8)
    result = await rig.delivered(timeout=40)

    _assert_clean(result, rig, max_duplicates=0)
    tenures, ended = slot_tenures([r.log() for r in rig.relays])
    assert tenures == ended + 1, f"{tenures} tenures of the slot, {ended} ended:\n{rig.logs()}"


@pytest.mark.timeout(120)
async def test_sigkill_of_the_slot_holder_standby_wakes_the_rest(rig: LogRig) -> None:
    await rig.start_relays(["relay-a", "relay-b"], batch_size=50, shards_each=3)
    victim = await rig.lease.holder()
    survivor = next(r for r in rig.relays if r is not victim)
    async with rig.writing(3000, read_first=500):
        victim.signal(signal.SIGKILL)
        took = await rig.lease.wait_for_holder(survivor.name, timeout=LEASE_TTL * 5)
    result = await rig.delivered(timeout=POLL / 2)

    _assert_clean(result, rig, max_duplicates=50 * 6)
    assert took <= LEASE_TTL * 2.5, f"takeover after {took:.1f}s (lease ttl {LEASE_TTL}s)"


@pytest.mark.timeout(120)
async def test_paused_slot_holder_is_fenced(rig: LogRig) -> None:
    await rig.start_relays(["relay-a", "relay-b"], batch_size=50, shards_each=3)
    paused = await rig.lease.holder()
    _, old_token, old_pid = await rig.lease.state()
    other = next(r for r in rig.relays if r is not paused)
    async with rig.writing(3000, read_first=500):
        paused.signal(signal.SIGSTOP)
        try:
            await rig.lease.wait_for_holder(other.name, timeout=LEASE_TTL * 10)
            new_token, new_pid = await rig.lease.new_reader(old_pid, LEASE_TTL * 5)
        finally:
            paused.signal(signal.SIGCONT)
    result = await rig.delivered(timeout=POLL / 2)

    assert new_token > old_token
    assert new_pid is not None and new_pid != old_pid, "the paused holder's stream was ended"
    try:
        await eventually(paused.saw_slot_loss, 15, "the paused holder saw its loss")
    except TimeoutError:
        raise AssertionError(paused.log()[-3000:]) from None
    _assert_clean(result, rig, max_duplicates=50 * 6)


@pytest.mark.timeout(90)
async def test_exit_when_idle_stops_once_the_table_is_drained(rig: LogRig) -> None:
    """The table decides idleness: messages committed before the relay starts and while it
    runs are all at the broker, exactly once and in order, when it stops by itself."""
    status = await rig.relay_exiting_when_idle(before=600, during=400, poll_interval=2)
    result = await rig.delivered(timeout=10)

    assert status == 0, rig.logs()
    assert "nothing pending: stopping (exit_when_idle)" in rig.relays[0].log()
    _assert_clean(result, rig, max_duplicates=0)
