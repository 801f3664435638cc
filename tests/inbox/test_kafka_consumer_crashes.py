"""Consumers killed at random points, relays killed while publishing, two consumers of one
group rebalancing: the consumer's state still counts each committed event exactly once, in
each aggregate's commit order (real PostgreSQL and Kafka)."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import anyio
import pytest
from aiokafka import AIOKafkaProducer

from outboxkit.message import Message, broker_headers
from tests.inbox.consumer_worker import setup_sql
from tests.inbox.inbox_support import (
    Process,
    check_state,
    consumer_process,
    kafka_topic,
    relay_process,
    scratch_schema,
    wait_for,
    write_events,
)
from tests.support.kafka import consumer_from_start

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AGGREGATES, PER_AGGREGATE = 20, 40
TOTAL = AGGREGATES * PER_AGGREGATE


async def _applied(scratch, schema: str) -> int:  # type: ignore[no-untyped-def]
    conn = await scratch.connect()
    try:
        return int(await conn.fetchval(f"SELECT coalesce(sum(applied), 0) FROM {schema}.state"))
    finally:
        await conn.close()


async def _pending(scratch) -> int:  # type: ignore[no-untyped-def]
    conn = await scratch.connect()
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {scratch.schema}.outbox"))
    finally:
        await conn.close()


async def _topic_duplicates(bootstrap: str, topic: str) -> int:
    """Records of the topic whose message id came before (the relay's re-sends)."""
    consumer = consumer_from_start(bootstrap, topic)
    await consumer.start()
    seen: set[bytes] = set()
    records = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                return records - len(seen)
            for batch in batches.values():
                for record in batch:
                    records += 1
                    seen.add(dict(record.headers)["outboxkit-id"])
    finally:
        await consumer.stop()


async def _chaos(
    processes: list[Process], rng: random.Random, rounds: int, pause: tuple[float, float]
) -> int:
    """Kill (SIGKILL) and restart a random one of ``processes``, ``rounds`` times."""
    kills = 0
    for _ in range(rounds):
        await anyio.sleep(rng.uniform(*pause))
        victim = rng.choice(processes)
        victim.kill()
        kills += 1
        await anyio.sleep(rng.uniform(0.0, 0.3))
        victim.start()
    return kills


@pytest.mark.parametrize("batch", ["poll", "one"])
async def test_killed_consumer_and_relay_apply_each_event_once_in_order(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path, batch: str
) -> None:
    """SIGKILL of the consumer at random points (and, 1 in 10, right after its database
    commit, before the offset commit) and of the relay while it publishes: redeliveries and
    re-sends are skipped by the inbox."""
    rng = random.Random(7)
    async with (
        kafka_topic(kafka_bootstrap) as topic,
        scratch_schema(postgres_url, []) as scratch,
    ):
        conn = await scratch.connect()
        for statement in setup_sql(scratch.schema):
            await conn.execute(statement)
        await conn.close()
        committed: dict[str, list[str]] = {}
        relay = relay_process(scratch, kafka_bootstrap, tmp_path, "relay").start()
        consumer = consumer_process(
            scratch,
            kafka_bootstrap,
            topic,
            tmp_path,
            "consumer",
            BATCH=batch,
            CRASH_AFTER_COMMIT="0.1",
            MAX_POLL="20",
            INBOX=os.environ.get("OKT_INBOX_CONTROL", "on"),
        ).start()
        procs = [relay, consumer]
        try:
            async with anyio.create_task_group() as tg:

                async def write() -> None:
                    committed.update(
                        await write_events(scratch, topic, AGGREGATES, PER_AGGREGATE, pause=0.01)
                    )

                tg.start_soon(write)
                kills = await _chaos(procs, rng, rounds=8, pause=(0.3, 1.2))
            for p in procs:  # restart whatever killed itself
                if not p.running:
                    p.start()

            async def done() -> bool:
                if not consumer.running:
                    consumer.start()
                return (
                    await _pending(scratch) == 0
                    and await _applied(scratch, scratch.schema) >= TOTAL
                )

            await wait_for(done, 120, f"{TOTAL} events applied")
            await anyio.sleep(2)  # let redeliveries after the last crash arrive
        finally:
            for p in procs:
                p.kill()
        problems, applied = await check_state(scratch, committed)
        conn = await scratch.connect()
        unrecorded = TOTAL - int(
            await conn.fetchval(f"SELECT count(*) FROM {scratch.schema}.inbox")
        )
        await conn.close()
        log = consumer.log()
        starts = log.count("consumer started")
        skipped = sum(int(n) for n in re.findall(r"skipped (\d+)", log))
        resent = await _topic_duplicates(kafka_bootstrap, topic)
        print(
            f"kills={kills} consumer starts={starts} relay re-sent={resent} "
            f"inbox skipped={skipped} applied={applied} {problems[:5]}"
        )
        assert not problems, problems[:10]
        assert applied == TOTAL
        assert unrecorded == 0
        assert starts > 1 and skipped > 0, "no redelivery happened: the test proved nothing"


async def test_two_consumers_rebalancing_mid_stream_apply_each_event_once(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Consumers join and leave one group while the stream flows (each rebalance revokes
    partitions whose processed records are not committed yet: their offset commit fails and
    the new owner reads them again)."""
    async with (
        kafka_topic(kafka_bootstrap, partitions=6) as topic,
        scratch_schema(postgres_url) as scratch,
    ):
        conn = await scratch.connect()
        for statement in setup_sql(scratch.schema):
            await conn.execute(statement)
        await conn.close()
        committed: dict[str, list[str]] = {}
        relay = relay_process(scratch, kafka_bootstrap, tmp_path, "relay").start()
        settings = {
            "MAX_POLL": "10",
            "COMMIT_DELAY": "0.3",
            "INBOX": os.environ.get("OKT_INBOX_CONTROL", "on"),
        }
        a = consumer_process(scratch, kafka_bootstrap, topic, tmp_path, "a", **settings).start()
        b = consumer_process(scratch, kafka_bootstrap, topic, tmp_path, "b", **settings)
        try:
            async with anyio.create_task_group() as tg:

                async def write() -> None:
                    committed.update(
                        await write_events(scratch, topic, AGGREGATES, PER_AGGREGATE, pause=0.01)
                    )

                tg.start_soon(write)
                for _ in range(3):  # b joins, a leaves (killed), a joins again, b leaves ...
                    await anyio.sleep(1.5)
                    b.start()
                    await anyio.sleep(2.0)
                    a.kill()
                    await anyio.sleep(1.5)
                    a.start()
                    await anyio.sleep(2.0)
                    b.kill()

            async def done() -> bool:
                return (
                    await _pending(scratch) == 0
                    and await _applied(scratch, scratch.schema) >= TOTAL
                )

            await wait_for(done, 120, f"{TOTAL} events applied")
            await anyio.sleep(8)  # a last rebalance may hand records over again
        finally:
            for p in (relay, a, b):
                p.kill()
        problems, applied = await check_state(scratch, committed)
        skipped = sum(int(n) for n in re.findall(r"skipped (\d+)", a.log() + b.log()))
        failed = (a.log() + b.log()).count("offset commit failed")
        print(f"applied={applied} skipped={skipped} failed offset commits={failed} {problems[:5]}")
        assert not problems, problems[:10]
        assert applied == TOTAL
        assert skipped > 0, "no record was read twice: the test proved nothing"


async def test_unreadable_records_go_to_the_error_handler_and_change_nothing(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A record without outboxkit headers and one whose JSON payload is broken, between
    good events: two one-line errors in the consumer's error table, the good events applied,
    nothing of the bad ones."""
    async with (
        kafka_topic(kafka_bootstrap, partitions=1) as topic,
        scratch_schema(postgres_url) as scratch,
    ):
        conn = await scratch.connect()
        for statement in setup_sql(scratch.schema):
            await conn.execute(statement)
        good = [
            Message.create(
                aggregate_type="account",
                aggregate_id="acc",
                event_type="credited",
                payload={"amount": n},
                topic=topic,
            )
            for n in range(2)
        ]
        broken = Message.create(
            aggregate_type="account", aggregate_id="acc", event_type="credited", topic=topic
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, **_record(good[0]))
            await producer.send_and_wait(topic, b'{"amount": 5}', key=b"acc")
            await producer.send_and_wait(topic, **_record(broken, b"{broken"))
            await producer.send_and_wait(topic, **_record(good[1]))
        finally:
            await producer.stop()
        consumer = consumer_process(scratch, kafka_bootstrap, topic, tmp_path, "c").start()
        try:

            async def both_errors() -> bool:
                n = await conn.fetchval(f"SELECT count(*) FROM {scratch.schema}.errors")
                return int(n) == 2 and await _applied(scratch, scratch.schema) == 2

            await wait_for(both_errors, 60, "2 errors and 2 applied events")
        finally:
            consumer.kill()
        errors = await conn.fetch(f"SELECT source, error FROM {scratch.schema}.errors")
        state = await conn.fetch(f"SELECT ids FROM {scratch.schema}.state")
        recorded = await conn.fetchval(f"SELECT count(*) FROM {scratch.schema}.inbox")
        await conn.close()
        assert [r["source"] for r in errors] == [f"{topic}[0]@1", f"{topic}[0]@2"]
        assert "no outboxkit headers" in errors[0]["error"]
        assert "not valid JSON" in errors[1]["error"] and str(broken.id) in errors[1]["error"]
        assert all("\n" not in r["error"] for r in errors)
        assert [list(r["ids"]) for r in state] == [[str(m.id) for m in good]]
        assert recorded == 2


def _record(message: Message, payload: bytes | None = None) -> dict[str, object]:
    headers = [(k, v.encode()) for k, v in broker_headers(message)]
    headers.append(("content-type", message.content_type.encode()))
    value = message.payload if payload is None else payload
    return {"value": value, "key": message.aggregate_id.encode(), "headers": headers}
