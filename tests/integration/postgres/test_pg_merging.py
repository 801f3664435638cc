"""Claims (and acks) made in one event-loop turn share one query and do what separate ones
would: the same rows claimed; the same rows deleted, with each shard's lease checked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import asyncpg
import pytest
from outboxkit_postgres import PostgresSettings, PostgresStore
from outboxkit_postgres.merging import TurnMerger

from outboxkit.errors import LeaseLostError
from outboxkit.message import Message
from outboxkit.protocols import Envelope, Lease
from outboxkit.testing import make_message

pytestmark = pytest.mark.anyio


async def _leases(store: PostgresStore) -> list[Lease]:
    leases = [await store.acquire("merge-test", s, 60) for s in range(store.shard_count)]
    assert all(lease is not None for lease in leases)
    return [lease for lease in leases if lease is not None]


async def _together(store: PostgresStore, leases: list[Lease], limit: int) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}

    async def one(lease: Lease) -> None:
        out[lease.shard] = [(e.position, e.message.id) for e in await store.claim(lease, limit)]

    async with anyio.create_task_group() as tg:
        for lease in leases:
            tg.start_soon(one, lease)
    return out


async def test_merged_claims_equal_separate_claims_per_shard(
    store: PostgresStore, write: Callable[[Sequence[Message]], Awaitable[None]]
) -> None:
    await write([make_message(f"agg-{i % 40}", i) for i in range(400)])
    leases = await _leases(store)
    one_calls, many_calls = [0], [0]

    async def claim_one(shard: int, limit: int) -> list[Any]:
        one_calls[0] += 1
        return await store._claim_one(shard, limit)

    async def claim_many(requests: Sequence[tuple[int, int]]) -> dict[int, list[Any]]:
        many_calls[0] += 1
        return await store._claim_many(requests)

    store._claims = TurnMerger(claim_one, claim_many)
    merged = await _together(store, leases, 30)
    assert many_calls == [1] and one_calls == [0], "the claims did not share one query"

    for lease in leases:
        alone = [(e.position, e.message.id) for e in await store.claim(lease, 30)]
        assert merged[lease.shard] == alone
        assert len(alone) == 30  # 400 messages over 4 shards: every shard has more than 30
        assert [seq for seq, _ in alone] == sorted(seq for seq, _ in alone)
    assert one_calls == [len(leases)]


async def test_merged_claims_skip_aggregates_in_backoff(
    store: PostgresStore, write: Callable[[Sequence[Message]], Awaitable[None]]
) -> None:
    await write([make_message(f"agg-{i % 8}", i) for i in range(80)])
    leases = await _leases(store)
    first = await _together(store, leases, 1_000)
    # Back off the first message of the first shard that has any: its aggregate disappears
    # from that shard's merged claim, the other shards are unchanged.
    lease = next(x for x in leases if first[x.shard])
    envelopes = await store.claim(lease, 1)
    await store.retry(lease, envelopes, "broker down", 60)
    again = await _together(store, leases, 1_000)
    held_back = envelopes[0].message.aggregate_id
    claimed = {m.message.aggregate_id for m in await store.claim(lease, 1_000)}
    assert held_back not in claimed
    assert len(again[lease.shard]) == len(first[lease.shard]) - 10  # 80 msgs / 8 aggregates
    assert {s: v for s, v in again.items() if s != lease.shard} == {
        s: v for s, v in first.items() if s != lease.shard
    }


async def test_merged_acks_delete_what_separate_acks_would_and_fence_each_shard(
    store: PostgresStore,
    write: Callable[[Sequence[Message]], Awaitable[None]],
    conn: asyncpg.Connection,
    settings: PostgresSettings,
) -> None:
    await write([make_message(f"agg-{i % 40}", i) for i in range(400)])
    leases = await _leases(store)
    claimed = {lease.shard: await store.claim(lease, 30) for lease in leases}
    # Another relay takes the last shard over: its ack must change nothing and say so.
    stolen = leases[-1]
    await conn.execute(
        f"UPDATE {settings.schema}.{settings.table}_leases SET owner = 'thief', "
        "token = token + 1 WHERE shard = $1",
        stolen.shard,
    )
    many_calls = [0]
    many = store._ack_many

    async def ack_many(requests: Any) -> Any:
        many_calls[0] += 1
        return await many(requests)

    store._acks = TurnMerger(store._ack_one, ack_many)
    lost: list[int] = []

    async def ack(lease: Lease, envelopes: list[Envelope]) -> None:
        try:
            await store.ack(lease, envelopes[:20])
        except LeaseLostError:
            lost.append(lease.shard)

    async with anyio.create_task_group() as tg:
        for lease in leases:
            tg.start_soon(ack, lease, claimed[lease.shard])
    assert many_calls == [1], "the acks did not share one statement"
    assert lost == [stolen.shard]
    for lease in leases[:-1]:
        left = [e.position for e in await store.claim(lease, 1_000)]
        assert left[:10] == [e.position for e in claimed[lease.shard][20:]]
    after = [e.position for e in await store.claim(stolen, 1_000)]
    assert after[:30] == [e.position for e in claimed[stolen.shard]]
