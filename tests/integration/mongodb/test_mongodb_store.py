"""The relay side: schema checks, claim order, exact acks, retries, dead letters, leases and
fencing, status: against the real server (FerretDB locally)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from outboxkit_mongodb import MongoOutbox, MongoSettings, MongoStore
from pymongo.asynchronous.database import AsyncDatabase

from outboxkit import Message
from outboxkit.errors import (
    ConfigurationError,
    DeadLetterNotFoundError,
    LeaseLostError,
    SchemaMissingError,
    StoreUnavailableError,
)
from outboxkit.protocols import Envelope, Lease, Store
from outboxkit.sharding import shard_of

pytestmark = pytest.mark.anyio


def msg(aggregate_id: str, event: str, **payload: Any) -> Message:
    return Message.create(
        aggregate_type="order", aggregate_id=aggregate_id, event_type=event, payload=payload
    )


async def write(db: AsyncDatabase[Any], outbox: MongoOutbox, doc: str, *events: str) -> None:
    await outbox.update_one(
        db["orders"], {"_id": doc}, {"$inc": {"n": 1}}, [msg(doc, e) for e in events], upsert=True
    )


async def lease_for(store: MongoStore, doc: str, owner: str = "r1", ttl: float = 30) -> Lease:
    lease = await store.acquire(owner, shard_of(doc, store.shard_count), ttl)
    assert lease is not None
    return lease


async def claim_a_and_b(
    store: MongoStore, db: AsyncDatabase[Any], outbox: MongoOutbox
) -> tuple[Lease, Envelope, Envelope]:
    """Messages ``a`` then ``b`` of document ``o1``, written, leased and claimed: the lease
    and the two claimed envelopes."""
    await write(db, outbox, "o1", "a", "b")
    lease = await lease_for(store, "o1")
    first, second = await store.claim(lease, 10)
    return lease, first, second


async def test_open_without_migrate_says_how_to_fix(mongo_settings: MongoSettings) -> None:
    store = MongoStore(mongo_settings)
    with pytest.raises(SchemaMissingError, match="outboxkit migrate --store mongodb"):
        await store.open()
    await store.close()


async def test_missing_claim_index_is_reported(mongo_settings: MongoSettings) -> None:
    await MongoStore(mongo_settings).migrate()
    wider = MongoSettings(
        url=mongo_settings.url, database=mongo_settings.database, collections=["invoices"]
    )
    store = MongoStore(wider)
    with pytest.raises(SchemaMissingError, match="'invoices' has no claim index"):
        await store.open()
    await store.close()


async def test_bad_settings_fail_fast_without_leaking_the_password() -> None:
    with pytest.raises(ConfigurationError, match="must start with mongodb://") as info:
        await MongoStore(MongoSettings(url="postgres://u:hunter2@h/db", collections=["a"])).open()
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        await MongoStore(
            MongoSettings(url="mongodb://u:hunter2@h:notaport/", collections=["a"])
        ).open()
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreUnavailableError, match="cannot reach") as unreachable:
        await MongoStore(
            MongoSettings(
                url="mongodb://u:hunter2@127.0.0.1:9/",
                collections=["a"],
                server_selection_timeout=0.3,
            )
        ).open()
    assert "hunter2" not in str(unreachable.value)
    with pytest.raises(ConfigurationError, match="collection"):
        MongoStore(MongoSettings(collections=["bad$name"]))
    with pytest.raises(ConfigurationError, match="outbox field"):
        MongoStore(MongoSettings(outbox_field="out.box", collections=["a"]))


async def test_migrate_is_rerunnable_and_fixes_the_shard_count(
    store: MongoStore, mongo_settings: MongoSettings
) -> None:
    assert isinstance(store, Store)
    assert store.shard_count == 4
    again = MongoStore(mongo_settings)
    await again.migrate(shard_count=16)
    await again.open()
    assert again.shard_count == 4
    assert [i.shard for i in await again.leases()] == [0, 1, 2, 3]
    await again.close()


async def test_claim_in_array_order_and_ack_removes_exactly_the_published(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    await write(mongo_db, outbox, "o1", "a", "b")
    await write(mongo_db, outbox, "o1", "c")
    lease = await lease_for(store, "o1")

    claimed = await store.claim(lease, 10)
    assert [e.message.event_type for e in claimed] == ["a", "b", "c"]
    positions = [e.position for e in claimed]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert all(e.shard == lease.shard and e.attempts == 0 for e in claimed)
    assert [e.message.event_type for e in await store.claim(lease, 2)] == ["a", "b"]

    await write(mongo_db, outbox, "o1", "d")  # appended after the claim: must survive the ack
    await store.ack(lease, claimed)
    doc = await mongo_db["orders"].find_one({"_id": "o1"})
    assert doc is not None
    assert [e["event_type"] for e in doc["outbox"]] == ["d"]
    assert doc["outbox_pending"] is True
    assert [e.message.event_type for e in await store.claim(lease, 10)] == ["d"]

    await store.ack(lease, await store.claim(lease, 10))
    doc = await mongo_db["orders"].find_one({"_id": "o1"})
    assert doc is not None and doc["outbox"] == [] and "outbox_pending" not in doc
    assert "outbox_shard" not in doc and doc["n"] == 3  # markers gone, business data kept
    assert await store.claim(lease, 10) == []
    await store.ack(lease, claimed)  # acking again is harmless


async def test_claim_only_returns_the_leased_shard_and_all_collections(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    ids = [f"agg-{i}" for i in range(40)]
    for i, agg in enumerate(ids):
        coll = mongo_db["orders" if i % 2 else "customers"]
        await outbox.update_one(
            coll, {"_id": agg}, {"$set": {"i": i}}, [msg(agg, "e")], upsert=True
        )
    seen = []
    for shard in range(store.shard_count):
        lease = await store.acquire("r1", shard, 30)
        assert lease is not None
        claimed = await store.claim(lease, 100)
        assert {shard_of(e.message.aggregate_id, 4) for e in claimed} <= {shard}
        seen += [e.message.aggregate_id for e in claimed]
        limited = await store.claim(lease, 3)
        assert len(limited) == min(3, len(claimed))
    assert sorted(seen) == sorted(ids)


async def test_claim_takes_whole_documents_oldest_pending_first(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    """A batch spans as few documents as it can (its ack costs a read and a write per
    document): each document's entries together, in array order, documents by age; only the
    last document of a batch is cut short, and its rest leads the next batch."""
    shard = shard_of("d0", store.shard_count)
    docs = [n for n in (f"d{i}" for i in range(200)) if shard_of(n, store.shard_count) == shard]
    first, second, third = docs[:3]
    await write(mongo_db, outbox, second, "s1", "s2", "s3")
    await write(mongo_db, outbox, first, "f1")  # younger than second's entries
    await write(mongo_db, outbox, second, "s4")
    await write(mongo_db, outbox, third, "t1", "t2")
    lease = await lease_for(store, second)
    claimed = await store.claim(lease, 6)
    assert [e.message.event_type for e in claimed] == ["s1", "s2", "s3", "s4", "f1", "t1"]
    await store.ack(lease, claimed)
    assert [e.message.event_type for e in await store.claim(lease, 6)] == ["t2"]


async def test_retry_counts_attempts_and_blocks_the_aggregate(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    lease, first, _second = await claim_a_and_b(store, mongo_db, outbox)
    await store.retry(lease, [first], "broker down", delay=0.6)
    assert await store.claim(lease, 10) == []  # the whole aggregate waits, b cannot overtake
    await anyio.sleep(0.8)
    again = await store.claim(lease, 10)
    assert [(e.message.event_type, e.attempts) for e in again] == [("a", 1), ("b", 0)]
    await store.retry(lease, again[:1], "still down", delay=0)
    assert [e.attempts for e in await store.claim(lease, 10)] == [2, 0]


async def test_dead_letter_list_and_replay(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    lease, first, second = await claim_a_and_b(store, mongo_db, outbox)
    await store.retry(lease, [first], "flaky", delay=0)
    first = (await store.claim(lease, 10))[0]
    await store.dead_letter(lease, [first], "poison: schema mismatch")
    assert await store.claim(lease, 10) == []  # on_dead_letter=block: b waits
    skipped = await store.claim(lease, 10, on_dead_letter="skip")
    assert [e.message.event_type for e in skipped] == ["b"]

    [dead] = await store.dead_letters()
    assert dead.message == first.message and dead.error == "poison: schema mismatch"
    assert dead.attempts == 2 and dead.shard == lease.shard
    status = await store.status()
    assert (status.dead_letters, status.blocked_aggregates, status.parked) == (1, 1, 1)
    (doc,) = await mongo_db["orders"].find({}, {"outbox_dead": 1}).to_list()
    assert doc["outbox_dead"] == [str(first.message.id)]

    with pytest.raises(DeadLetterNotFoundError):
        await store.replay([second.message.id])  # not a dead letter
    assert await store.replay() == 1
    assert await store.dead_letters() == []
    (doc,) = await mongo_db["orders"].find({}, {"outbox_dead": 1}).to_list()
    assert "outbox_dead" not in doc
    replayed = await store.claim(lease, 10)
    assert [(e.message.event_type, e.attempts) for e in replayed] == [("a", 0), ("b", 0)]
    assert replayed[0].message.id == first.message.id  # same id: consumers can dedupe


async def test_leases_tokens_expiry_and_fencing(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    await write(mongo_db, outbox, "o1", "a")
    shard = shard_of("o1", 4)
    mine = await store.acquire("r1", shard, 0.5)
    assert mine is not None
    assert await store.acquire("r2", shard, 10) is None  # held by a live owner
    extended = await store.acquire("r1", shard, 0.5)
    assert extended == mine  # extension keeps the token
    claimed = await store.claim(mine, 10)
    info = {i.shard: i for i in await store.leases()}[shard]
    assert info.owner == "r1" and info.token == mine.token
    assert info.expires_in is not None and 0 < info.expires_in <= 0.5

    await anyio.sleep(0.7)  # expires by the server clock
    assert await store.renew([mine], 10) == []
    with pytest.raises(LeaseLostError):
        await store.ack(mine, claimed)  # expired, not yet taken over: still refused
    theirs = await store.acquire("r2", shard, 10)
    assert theirs is not None and theirs.token > mine.token
    for fenced in (
        store.ack(mine, claimed),
        store.retry(mine, claimed, "x", 1),
        store.dead_letter(mine, claimed, "x"),
    ):
        with pytest.raises(LeaseLostError):
            await fenced
    assert [e.message.id for e in await store.claim(theirs, 10)] == [claimed[0].message.id]
    assert await store.dead_letters() == []

    assert await store.renew([theirs], 10) == [theirs]
    await store.release([mine])  # stale release changes nothing
    assert {i.shard: i for i in await store.leases()}[shard].owner == "r2"
    await store.release([theirs])
    info = {i.shard: i for i in await store.leases()}[shard]
    assert info.owner is None and info.expires_in is None
    again = await store.acquire("r1", shard, 10)
    assert again is not None and again.token > theirs.token


async def test_heartbeat_leave_and_status(
    store: MongoStore, mongo_db: AsyncDatabase[Any], outbox: MongoOutbox
) -> None:
    assert await store.heartbeat("b", 10) == ["b"]
    assert await store.heartbeat("a", 0.3) == ["a", "b"]
    await anyio.sleep(0.5)
    assert await store.heartbeat("b", 10) == ["b"]
    await store.heartbeat("c", 10)
    await store.leave("c")
    await write(mongo_db, outbox, "o1", "a", "b")
    await write(mongo_db, outbox, "o2", "c")
    await anyio.sleep(0.05)
    status = await store.status()
    assert status.pending == 3 and status.shard_count == 4 and status.instances == ["b"]
    assert status.oldest_pending_age is not None and 0 < status.oldest_pending_age < 60
    assert len(status.leases) == 4


async def test_wait_reports_the_wakeup_path(
    store: MongoStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert store.server is not None
    with capsys.disabled():
        print(
            f"\n[mongodb] server: {store.server.description}; wake-up: {store.wakeup.mode} "
            f"({store.wakeup.reason}); fencing: {store.fencing}"
        )
    if "FerretDB" in store.server.name:
        assert store.wakeup.mode == "polling"
        assert store.fencing == "check-then-write"
    start = anyio.current_time()
    await store.wait(0.2)
    assert anyio.current_time() - start < 1.0
