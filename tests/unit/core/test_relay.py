"""The sharded relay against in-memory fakes: delivery, order, failures, shutdown."""

from __future__ import annotations

import random

import anyio
import pytest
from anyio.abc import TaskGroup

from outboxkit.message import Message
from outboxkit.protocols import Failed, Outcome, Relay
from outboxkit.relay import ShardedRelay
from outboxkit.relay import wakeup as relay_wakeup
from outboxkit.sharding import shard_of
from tests.unit.core.fakes import (
    FailRule,
    FakePublisher,
    FakeStore,
    gated,
    messages,
    per_aggregate_order,
    random_delay,
    running,
    settings,
    wait_for,
)

pytestmark = pytest.mark.anyio


def woken_relay(store: FakeStore, publisher: FakePublisher, *, wakes: bool = True) -> ShardedRelay:
    """A relay over ``store`` (waking every commit unless ``wakes`` is False) whose poll and
    lease never come due within a test: only wake-ups make it claim."""
    store.wakes_every_commit = wakes
    return ShardedRelay(store, publisher, settings(poll_interval=30.0, lease_ttl=30.0))


async def every_shard_claimed(relay: ShardedRelay, store: FakeStore) -> None:
    """Wait until ``relay`` owns every shard of ``store`` and each has claimed once."""
    count = store.shard_count
    await wait_for(lambda: len(relay.shards) == count and store.calls["claim"] >= count)


def fail_first(aggregate: str, times: int, retriable: bool = True) -> FailRule:
    """Fail the first message of ``aggregate`` on its first ``times`` attempts."""

    def rule(message: Message, attempt: int) -> Outcome | None:
        seq = message.payload == b'{"seq":0}'
        if message.aggregate_id == aggregate and seq and attempt <= times:
            return Failed("broker said no", retriable=retriable)
        return None

    return rule


async def test_relay_satisfies_protocol_and_names_itself() -> None:
    relay = ShardedRelay(FakeStore(), FakePublisher())
    assert isinstance(relay, Relay)
    assert relay.owner.count("-") >= 2
    named = ShardedRelay(FakeStore(), FakePublisher(), settings(instance_id="relay-a"))
    assert named.owner == "relay-a"


async def test_all_messages_delivered_exactly_once_across_shards() -> None:
    store, publisher = FakeStore(shard_count=8), FakePublisher()
    batch = messages(aggregates=40, per_aggregate=10)
    store.add(*batch)
    relay = ShardedRelay(store, publisher, settings(batch_size=7))

    async def body() -> None:
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert sorted(m.id for m in publisher.delivered) == sorted(m.id for m in batch)
    assert relay.metrics.published == len(batch)
    assert relay.metrics.duplicates == 0
    assert relay.metrics.batches >= 8
    assert relay.metrics.last_publish_lag is not None and relay.metrics.last_publish_lag >= 0
    assert store.opened and store.closed and publisher.opened and publisher.closed


async def test_messages_added_while_running_are_woken_up() -> None:
    store, publisher = FakeStore(shard_count=4), FakePublisher()
    relay = ShardedRelay(store, publisher, settings(poll_interval=30.0))

    async def body() -> None:
        await wait_for(lambda: len(relay.shards) == 4)
        store.add(*messages(aggregates=5, per_aggregate=2))
        await wait_for(lambda: len(publisher.delivered) == 10, timeout=2.0)

    await running([relay], body)


@pytest.mark.parametrize(("wakes", "claims_per_add"), [(True, 1), (False, 2)])
async def test_no_claim_again_after_a_short_batch_when_every_commit_wakes(
    wakes: bool, claims_per_add: int
) -> None:
    """Each add wakes the shard that got the message (1 claim). After its short batch, the
    worker claims again at once only if a commit might have gone unnoticed."""
    store, publisher = FakeStore(shard_count=2), FakePublisher()
    relay = woken_relay(store, publisher, wakes=wakes)

    async def body() -> None:
        await every_shard_claimed(relay, store)
        await anyio.sleep(0.05)
        before = store.calls["claim"]
        for i in range(5):
            store.add(*messages(aggregates=1, per_aggregate=1, prefix=f"x{i}"))
            await wait_for(lambda: not store.rows, timeout=2.0)
            await anyio.sleep(0.02)
        assert store.calls["claim"] - before == 5 * claims_per_add
        assert len(publisher.delivered) == 5

    await running([relay], body)


async def test_without_notices_from_writers_a_short_batch_is_followed_by_a_claim() -> None:
    """The store could wake each shard after each commit, but these writers never notify:
    the batch was found by a poll (here: the first claim), so the worker claims again at
    once instead of waiting for a notice that will not come."""
    store, publisher = FakeStore(shard_count=1), FakePublisher()
    store.add(*messages(aggregates=1, per_aggregate=1))
    relay = woken_relay(store, publisher)

    async def body() -> None:
        await wait_for(lambda: not store.rows)
        await wait_for(lambda: store.calls["claim"] >= 2, timeout=2.0)  # not the 30 s poll

    await running([relay], body)


async def test_a_commit_during_a_batch_is_claimed_at_once_when_every_commit_wakes() -> None:
    store, gate = FakeStore(shard_count=1), anyio.Event()
    publisher = FakePublisher(gate=gate)
    store.add(*messages(aggregates=1, per_aggregate=1, prefix="first"))
    relay = woken_relay(store, publisher)

    async def body() -> None:
        await wait_for(lambda: publisher.in_flight > 0)
        store.add(*messages(aggregates=1, per_aggregate=1, prefix="during"))
        gate.set()
        await wait_for(lambda: len(publisher.delivered) == 2, timeout=2.0)  # not the 30 s poll

    await running([relay], body)


def _on_two_shards(shard_count: int) -> tuple[Message, Message]:
    """One message for each of two aggregates that land on different shards."""
    first, *rest = messages(aggregates=shard_count * 4, per_aggregate=1)
    taken = shard_of(first.aggregate_id, shard_count)
    second = next(m for m in rest if shard_of(m.aggregate_id, shard_count) != taken)
    return first, second


@pytest.mark.parametrize(("group_wait", "order"), [(30.0, "first"), (0.05, "second")])
async def test_a_named_wake_up_waits_for_the_group_in_flight_at_most_group_wait(
    monkeypatch: pytest.MonkeyPatch, group_wait: float, order: str
) -> None:
    """A commit named while the previous wake-up's workers are still publishing waits for
    them (its claim then goes with the next group), but never longer than ``GROUP_WAIT``."""
    monkeypatch.setattr(relay_wakeup, "GROUP_WAIT", group_wait)
    slow, quick = _on_two_shards(8)
    publisher = FakePublisher(delay=lambda m: 1.0 if m.id == slow.id else 0.0)
    store = FakeStore(shard_count=8)
    relay = woken_relay(store, publisher)

    async def body() -> None:
        await every_shard_claimed(relay, store)
        await anyio.sleep(0.3)  # every worker found nothing and waits for a wake-up
        store.add(slow)
        await wait_for(lambda: publisher.in_flight == 1, timeout=2.0)
        store.add(quick)
        await wait_for(lambda: len(publisher.delivered) == 2, timeout=3.0)

    await running([relay], body)
    expected = [slow.id, quick.id] if order == "first" else [quick.id, slow.id]
    assert [m.id for m in publisher.delivered] == expected


async def test_per_aggregate_order_with_random_delays_and_failures() -> None:
    rng = random.Random(7)

    def flaky(message: Message, attempt: int) -> Outcome | None:
        return Failed("flaky", retriable=True) if rng.random() < 0.1 else None

    store = FakeStore(shard_count=8)
    publisher = FakePublisher(fail=flaky, delay=random_delay(rng))
    batch = messages(aggregates=30, per_aggregate=15)
    store.add(*batch)
    relay = ShardedRelay(store, publisher, settings(batch_size=20, max_attempts=100))

    await running([relay], lambda: wait_for(lambda: not store.rows, timeout=15.0))
    order = per_aggregate_order(publisher.delivered)
    assert len(order) == 30
    for sequence in order.values():
        assert sequence == list(range(15))
    assert relay.metrics.retried > 0
    assert not store.dead


async def test_retriable_failure_backs_off_and_blocks_only_its_aggregate() -> None:
    store = FakeStore(shard_count=1)
    publisher = FakePublisher(fail=fail_first("agg-0", times=3))
    store.add(*messages(aggregates=3, per_aggregate=4))
    relay = ShardedRelay(store, publisher, settings(backoff_initial=0.05, backoff_max=0.2))

    async def body() -> None:
        # Other aggregates flow at once, while agg-0 waits for its retries.
        await wait_for(lambda: len(publisher.delivered) == 8, timeout=2.0)
        assert {m.aggregate_id for m in publisher.delivered} == {"agg-1", "agg-2"}
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert per_aggregate_order(publisher.delivered)["agg-0"] == [0, 1, 2, 3]
    assert relay.metrics.retried == 3
    assert relay.metrics.published == 12
    # held-back messages of agg-0 were never counted as attempts
    assert store.calls["retry"] == 3


async def test_non_retriable_failure_is_dead_lettered_at_once() -> None:
    store = FakeStore(shard_count=2)
    publisher = FakePublisher(fail=fail_first("agg-1", times=99, retriable=False))
    store.add(*messages(aggregates=2, per_aggregate=3))
    relay = ShardedRelay(store, publisher, settings(on_dead_letter="skip"))

    await running([relay], lambda: wait_for(lambda: not store.rows))
    assert [(d.message.aggregate_id, d.error, d.attempts) for d in store.dead] == [
        ("agg-1", "broker said no", 1)
    ]
    assert per_aggregate_order(publisher.delivered) == {"agg-0": [0, 1, 2], "agg-1": [1, 2]}
    assert relay.metrics.dead_lettered == 1
    assert relay.metrics.retried == 0


async def test_max_attempts_dead_letters() -> None:
    store = FakeStore(shard_count=2)
    publisher = FakePublisher(fail=fail_first("agg-0", times=99))
    store.add(*messages(aggregates=1, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings(max_attempts=3, on_dead_letter="skip"))

    await running([relay], lambda: wait_for(lambda: not store.rows))
    assert [d.attempts for d in store.dead] == [3]
    assert relay.metrics.retried == 2
    assert relay.metrics.dead_lettered == 1
    assert per_aggregate_order(publisher.delivered) == {"agg-0": [1]}


async def test_dead_letter_blocks_its_aggregate_until_replayed() -> None:
    """on_dead_letter=block (the default): the aggregate's later messages wait for the dead
    letter, other aggregates flow; after the replay the aggregate goes out in its order."""
    store = FakeStore(shard_count=2)
    publisher = FakePublisher(fail=fail_first("agg-1", times=1, retriable=False))
    store.add(*messages(aggregates=2, per_aggregate=3))
    relay = ShardedRelay(store, publisher, settings())

    async def body() -> None:
        await wait_for(lambda: len(store.dead) == 1 and len(publisher.delivered) == 3)
        await anyio.sleep(0.2)  # many claims later, agg-1 still waits
        assert per_aggregate_order(publisher.delivered) == {"agg-0": [0, 1, 2]}
        status = await store.status()
        assert (status.blocked_aggregates, status.blocked_sample, status.parked) == (
            1,
            ["agg-1"],
            2,
        )
        assert await store.replay() == 1
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert per_aggregate_order(publisher.delivered) == {"agg-0": [0, 1, 2], "agg-1": [0, 1, 2]}
    assert relay.metrics.dead_lettered == 1


async def test_discarded_dead_letter_unblocks_its_aggregate() -> None:
    store = FakeStore(shard_count=1)
    publisher = FakePublisher(fail=fail_first("agg-0", times=99, retriable=False))
    store.add(*messages(aggregates=1, per_aggregate=3))
    relay = ShardedRelay(store, publisher, settings())

    async def body() -> None:
        await wait_for(lambda: len(store.dead) == 1)
        await anyio.sleep(0.1)
        assert publisher.delivered == []
        assert await store.discard([store.dead[0].message.id]) == 1
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert per_aggregate_order(publisher.delivered) == {"agg-0": [1, 2]}


async def test_exit_when_idle_does_not_wait_for_parked_messages() -> None:
    store = FakeStore(shard_count=2)
    publisher = FakePublisher(fail=fail_first("agg-1", times=99, retriable=False))
    store.add(*messages(aggregates=2, per_aggregate=3))
    relay = ShardedRelay(store, publisher, settings(exit_when_idle=True))

    with anyio.fail_after(10):
        await relay.run()
    assert per_aggregate_order(publisher.delivered) == {"agg-0": [0, 1, 2]}
    assert len(store.rows) == 2 and len(store.dead) == 1


async def test_publisher_exception_retries_the_whole_batch() -> None:
    store, publisher = FakeStore(shard_count=1), FakePublisher(error=ConnectionError("down"))
    store.add(*messages(aggregates=3, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings())

    async def body() -> None:
        await wait_for(lambda: publisher.calls >= 2)
        assert not publisher.delivered
        publisher.error = None
        await wait_for(lambda: not store.rows)

    await running([relay], body)
    assert relay.metrics.retried >= 3
    assert per_aggregate_order(publisher.delivered) == {f"agg-{a}": [0, 1] for a in range(3)}


async def test_stop_drains_in_flight_batch_and_releases_leases() -> None:
    store, publisher, gate, relay = gated(4, aggregates=4, instance_id="r1")

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await wait_for(lambda: publisher.in_flight > 0)
        relay.stop()
        await anyio.sleep(0.1)
        assert store.rows  # still in flight, not abandoned
        gate.set()
    assert not store.rows
    assert relay.metrics.published == 4
    assert set(store.owners().values()) == {None}
    assert "r1" not in store.instances
    assert relay.metrics.lease_lost == 0


async def test_drain_timeout_abandons_a_hanging_batch() -> None:
    store, publisher, _, relay = gated(2, aggregates=2, drain_timeout=0.2)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await wait_for(lambda: publisher.in_flight > 0)
            relay.stop()
    assert len(store.rows) == 2  # left for the next owner
    assert set(store.owners().values()) == {None}


@pytest.mark.parametrize("call", ["claim", "ack"])
async def test_a_hanging_store_call_is_abandoned_and_the_shard_goes_on(call: str) -> None:
    """A store call that never returns (while the lease keeper keeps renewing the lease)
    would hold its shard forever; after ``store_timeout`` it is abandoned and retried."""
    store, publisher = FakeStore(shard_count=1), FakePublisher()
    store.add(*messages(aggregates=3, per_aggregate=4))
    store.hangs[call] = 1
    relay = ShardedRelay(store, publisher, settings(store_timeout=0.3, lease_ttl=0.6))
    await running([relay], lambda: wait_for(lambda: not store.rows), timeout=10.0)
    assert store.calls[call] >= 2
    assert relay.metrics.lease_lost == 0  # the lease was kept throughout
    order = per_aggregate_order(publisher.delivered)
    assert order == {agg: list(range(4)) for agg in order} and len(order) == 3


async def test_stop_before_run_returns_promptly() -> None:
    store = FakeStore()
    relay = ShardedRelay(store, FakePublisher(), settings())
    relay.stop()
    with anyio.fail_after(3):
        await relay.run()
    assert store.closed
    with pytest.raises(RuntimeError):
        await relay.run()


async def test_exit_when_idle_returns_after_everything_is_published() -> None:
    store, publisher = FakeStore(shard_count=4), FakePublisher()
    store.add(*messages(aggregates=10, per_aggregate=3))
    relay = ShardedRelay(store, publisher, settings(exit_when_idle=True))
    with anyio.fail_after(5):
        await relay.run()
    assert len(publisher.delivered) == 30
    assert set(store.owners().values()) == {None}


async def test_exit_when_idle_waits_for_pending_retries() -> None:
    store = FakeStore(shard_count=2)
    publisher = FakePublisher(fail=fail_first("agg-0", times=2))
    store.add(*messages(aggregates=2, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings(exit_when_idle=True, backoff_initial=0.1))
    with anyio.fail_after(5):
        await relay.run()
    assert not store.rows
    assert per_aggregate_order(publisher.delivered)["agg-0"] == [0, 1]


class EarlyWakingStore(FakeStore):
    """Wakes a shard a moment before its row is visible to a claim, as a log reader can."""

    wakes_early = True
    later: TaskGroup
    """Where the rows become visible (the test's task group)."""

    def add_woken_early(self, message: Message, visible_after: float) -> None:
        """Name the shard of ``message`` now; the row is visible ``visible_after`` s later,
        without a wake-up of its own."""
        shard = shard_of(message.aggregate_id, self.shard_count)
        self._woke.add(shard)
        if self._signal is not None:
            self._signal.set()

        async def commit_visible() -> None:
            await anyio.sleep(visible_after)
            self._insert(shard, message)
            self._woke.discard(shard)

        self.later.start_soon(commit_visible)


@pytest.mark.parametrize("visible_after", [0.005, 0.03])
async def test_a_wake_up_ahead_of_its_row_is_claimed_again_soon(visible_after: float) -> None:
    """A claim that an early wake-up started finds nothing; the row is claimed again within
    the early retries, not at the next poll (30 s here)."""
    store, publisher = EarlyWakingStore(shard_count=4), FakePublisher()
    relay = woken_relay(store, publisher)

    async def body() -> None:
        await every_shard_claimed(relay, store)
        await anyio.sleep(0.2)  # every worker found nothing and waits for a wake-up
        async with anyio.create_task_group() as store.later:
            store.add_woken_early(messages(aggregates=1, per_aggregate=1)[0], visible_after)
            await wait_for(lambda: len(publisher.delivered) == 1, timeout=2.0)

    await running([relay], body)


async def test_a_store_that_does_not_wake_early_waits_for_a_wake_up_or_the_poll() -> None:
    """Without ``wakes_early`` an empty claim is not repeated: the relay waits."""
    store, publisher = FakeStore(shard_count=1), FakePublisher()
    relay = woken_relay(store, publisher)

    async def body() -> None:
        await every_shard_claimed(relay, store)
        await anyio.sleep(0.3)
        assert store.calls["claim"] == 1

    await running([relay], body)
