"""Leases of the sharded relay: fair share, takeover, fencing, heartbeat independence."""

from __future__ import annotations

import random

import anyio
import pytest

from outboxkit.protocols import LeaseInfo
from outboxkit.relay import ShardedRelay
from outboxkit.relay.leases import claimable_shards
from tests.unit.core.fakes import (
    FakePublisher,
    FakeStore,
    gated,
    messages,
    running,
    settings,
    wait_for,
)

pytestmark = pytest.mark.anyio


def held_by(store: FakeStore, owner: str) -> int:
    return sum(1 for o in store.owners().values() if o == owner)


async def test_two_relays_split_shards_fairly_and_take_over_on_stop() -> None:
    store, publisher = FakeStore(shard_count=8), FakePublisher()
    a = ShardedRelay(store, publisher, settings(instance_id="a", lease_ttl=0.3))
    b = ShardedRelay(store, publisher, settings(instance_id="b", lease_ttl=0.3))

    async def body() -> None:
        await wait_for(lambda: held_by(store, "a") == 8)
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run)
            await wait_for(lambda: held_by(store, "a") == 4 and held_by(store, "b") == 4)
            assert len(a.shards) == 4 and len(b.shards) == 4
            assert a.shards.isdisjoint(b.shards)
            store.add(*messages(aggregates=20, per_aggregate=5))
            await wait_for(lambda: not store.rows)
            b.stop()
        await wait_for(lambda: held_by(store, "a") == 8)

    await running([a], body)
    assert len(publisher.delivered) == 100
    assert len({m.id for m in publisher.delivered}) == 100
    assert a.metrics.published + b.metrics.published == 100
    assert b.metrics.published > 0 and a.metrics.published > 0
    assert a.metrics.lease_lost == b.metrics.lease_lost == 0


async def test_dead_instance_shards_are_taken_after_expiry() -> None:
    store, publisher = FakeStore(shard_count=4), FakePublisher()
    for shard in range(4):
        store.steal(shard, owner="crashed", ttl=0.3)
    store.add(*messages(aggregates=8, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings(lease_ttl=0.3))

    async def body() -> None:
        await anyio.sleep(0.15)
        assert not relay.shards  # not before expiry
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert len(relay.shards) == 0  # released on stop
    assert len(publisher.delivered) == 16


async def test_lease_taken_by_another_owner_is_detected_by_renewal() -> None:
    store, publisher = FakeStore(shard_count=2), FakePublisher()
    relay = ShardedRelay(store, publisher, settings(lease_ttl=0.3))

    async def body() -> None:
        await wait_for(lambda: relay.shards == {0, 1})
        store.steal(0)
        await wait_for(lambda: relay.metrics.lease_lost == 1)
        assert relay.shards == {1}

    await running([relay], body)
    assert store.owners()[0] == "thief"


async def test_late_ack_after_lease_loss_is_refused_and_worker_stops() -> None:
    store, publisher, gate, relay = gated(1, aggregates=4, lease_ttl=30.0)

    async def body() -> None:
        await wait_for(lambda: publisher.in_flight == 1)
        store.steal(0)  # taken over while publishing; the keeper will not notice for 10 s
        gate.set()
        await wait_for(lambda: relay.metrics.lease_lost == 1)
        assert store.refused == 1
        assert not relay.shards

    await running([relay], body)
    assert len(store.rows) == 4  # nothing acknowledged by the fenced-out relay
    assert relay.metrics.published == 0
    assert store.owners()[0] == "thief"


async def test_heartbeat_keeps_leases_while_publish_hangs() -> None:
    # The TTL leaves the lease keeper 0.5 s per tick (ttl / 2): a loaded CI machine stalled a
    # 0.2 s TTL's 0.1 s once, and two leases expired although nothing was wrong.
    store, publisher, gate, relay = gated(2, aggregates=4, lease_ttl=1.0)

    async def body() -> None:
        await wait_for(lambda: publisher.in_flight >= 1)
        renewals = store.calls["renew"]
        await anyio.sleep(2.5)  # two and a half lease lifetimes
        assert store.calls["renew"] >= renewals + 4
        gate.set()
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert relay.metrics.lease_lost == 0
    assert relay.metrics.published == 4
    assert store.refused == 0


async def test_transient_store_errors_in_the_keeper_are_survived() -> None:
    store, publisher = FakeStore(shard_count=2), FakePublisher()
    store.faults["heartbeat"] = 1
    store.faults["acquire"] = 1
    store.faults["claim"] = 2
    store.add(*messages(aggregates=4, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings(lease_ttl=0.3))

    await running([relay], lambda: wait_for(lambda: not store.rows))
    assert relay.metrics.published == 8
    assert relay.metrics.lease_lost == 0


async def test_unrenewable_leases_stop_their_workers() -> None:
    store, publisher = FakeStore(shard_count=2), FakePublisher()
    relay = ShardedRelay(store, publisher, settings(lease_ttl=0.3))

    async def body() -> None:
        await wait_for(lambda: relay.shards == {0, 1})
        store.faults["heartbeat"] = 10**6  # the database is gone for the keeper
        await wait_for(lambda: not relay.shards, timeout=2.0)
        assert relay.metrics.lease_lost == 2
        store.faults["heartbeat"] = 0
        await wait_for(lambda: relay.shards == {0, 1}, timeout=2.0)

    await running([relay], body)


def test_claimable_shards_are_free_expired_or_mine_and_shuffled() -> None:
    infos = [
        LeaseInfo(shard=0, owner=None, token=0, expires_in=None),
        LeaseInfo(shard=1, owner="other", token=3, expires_in=5.0),
        LeaseInfo(shard=2, owner="other", token=3, expires_in=-0.1),
        LeaseInfo(shard=3, owner="me", token=1, expires_in=5.0),
        LeaseInfo(shard=4, owner=None, token=2, expires_in=None),
    ]
    found = claimable_shards(infos, "me", exclude={4}, rng=random.Random(1))
    assert sorted(found) == [0, 2, 3]
    orders = {tuple(claimable_shards(infos, "me", (), random.Random(s))) for s in range(20)}
    assert len(orders) > 1


@pytest.mark.parametrize("count", [3, 5])
async def test_many_relays_converge_to_a_fair_split(count: int) -> None:
    store, publisher = FakeStore(shard_count=16), FakePublisher()
    names = [f"r{i}" for i in range(count)]
    relays = [ShardedRelay(store, publisher, settings(instance_id=n, lease_ttl=0.3)) for n in names]

    def fair() -> bool:
        held = sorted(held_by(store, n) for n in names)
        return sum(held) == 16 and held[-1] - held[0] <= 1

    async def body() -> None:
        await wait_for(fair)
        store.add(*messages(aggregates=30, per_aggregate=3))
        await wait_for(lambda: not store.rows)

    await running(relays, body)
    assert len({m.id for m in publisher.delivered}) == 90
    assert all(r.metrics.lease_lost == 0 for r in relays)


async def test_shed_shard_is_handed_over_after_its_in_flight_batch_is_acked() -> None:
    store, publisher, gate, a = gated(2, aggregates=6, instance_id="a", lease_ttl=0.3)
    b = ShardedRelay(store, publisher, settings(instance_id="b", lease_ttl=0.3))

    async def body() -> None:
        await wait_for(lambda: publisher.in_flight == 2)  # both shards busy in "a"
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run)
            await anyio.sleep(0.4)  # several ticks: "a" sheds one shard, "b" waits for it
            assert len(a.shards) == 2 and not b.shards  # still finishing its batch
            gate.set()
            await wait_for(lambda: len(b.shards) == 1 and len(a.shards) == 1)
            b.stop()

    await running([a], body)
    assert not store.rows
    assert store.refused == 0
    assert a.metrics.lease_lost == b.metrics.lease_lost == 0
    assert a.metrics.published == 6
