"""The conformance suite every :class:`~outboxkit.protocols.Store` plugin must pass."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import anyio
import pytest

from outboxkit.errors import DeadLetterNotFoundError, LeaseLostError
from outboxkit.message import Message
from outboxkit.protocols import DeadLetterPolicy, Envelope, Lease, Store
from outboxkit.sharding import shard_of
from outboxkit.testing.helpers import (
    aggregates_in_shard,
    ids_by_aggregate,
    make_message,
    order_by_aggregate,
    unique_name,
)

__all__ = ["StoreConformance", "WriteMessages"]

WriteMessages = Callable[[Sequence[Message]], Awaitable[None]]
"""``await write(messages)``: commit ``messages`` in one business transaction/update."""

SHORT_TTL = 0.3
"""Lease/heartbeat ttl (s) the suite lets expire; it then sleeps :data:`EXPIRY_WAIT`."""
EXPIRY_WAIT = SHORT_TTL + 0.4
LONG_TTL = 60.0
ALL = 10_000


def by_aggregate(envelopes: Sequence[Envelope]) -> dict[str, list[str]]:
    """Claimed message ids per aggregate, in claim order."""
    return order_by_aggregate((e.message.aggregate_id, str(e.message.id)) for e in envelopes)


def _ids(envelopes: Sequence[Envelope]) -> list[str]:
    return [str(e.message.id) for e in envelopes]


def _message_ids(messages: Sequence[Message]) -> list[str]:
    return [str(m.id) for m in messages]


async def _lease(store: Store, shard: int = 0, owner: str | None = None) -> Lease:
    lease = await store.acquire(owner or unique_name("owner"), shard, LONG_TTL)
    assert lease is not None, f"a free shard {shard} could not be acquired"
    return lease


async def _claim_ids(
    store: Store, lease: Lease, limit: int = ALL, on_dead_letter: DeadLetterPolicy = "block"
) -> list[str]:
    return _ids(await store.claim(lease, limit, on_dead_letter=on_dead_letter))


async def _expired_lease(store: Store, shard: int = 0) -> Lease:
    """A lease acquired with a short ttl and left to expire (not yet taken over)."""
    lease = await store.acquire(unique_name("owner"), shard, SHORT_TTL)
    assert lease is not None
    await anyio.sleep(EXPIRY_WAIT)
    return lease


RACERS = 8
"""Owners :func:`_race_for` lets acquire one shard at the same moment."""


async def _race_for(store: Store, shard: int) -> list[Lease]:
    """The leases :data:`RACERS` owners acquiring ``shard`` concurrently were granted."""
    won: list[Lease] = []

    async def acquire(owner: str) -> None:
        lease = await store.acquire(owner, shard, LONG_TTL)
        if lease is not None:
            won.append(lease)

    async with anyio.create_task_group() as tg:
        for i in range(RACERS):
            tg.start_soon(acquire, unique_name(f"racer{i}"))
    return won


async def _claim_when_due(store: Store, lease: Lease, deadline: float = 10.0) -> list[Envelope]:
    """Poll ``claim`` until it returns something (a retry delay passed), within ``deadline``."""
    with anyio.fail_after(deadline):
        while True:
            envelopes = await store.claim(lease, ALL)
            if envelopes:
                return envelopes
            await anyio.sleep(0.05)


class StoreConformance:
    """Base class of a store plugin's conformance tests: subclass it as ``TestXxxStore``.

    The subclass provides two fixtures (async fixtures are fine, run by anyio's plugin with the
    ``anyio_backend`` fixture):

    ``store``
        An opened, migrated :class:`~outboxkit.protocols.Store` on a *fresh, isolated*
        namespace (new table / database / collection per test) with a small
        ``shard_count`` of at least 4 (4 or 8 recommended). Close it after the test.
    ``write``
        An async callable ``write(messages: Sequence[Message]) -> None`` that commits the
        messages through the plugin's own writer API, in one business transaction (or one
        document update) per call, in list order.

    What it checks: claims are per shard, in position order, bounded and non-destructive;
    envelopes carry the message intact (``created_at`` must be timezone-aware, precision of
    1 ms is enough); ack/retry/dead-letter are fenced by lease token and database-clock expiry;
    retry backoff blocks only the affected aggregate; dead letters list, replay (in their
    original place), discard and purge, and block their aggregate's later messages under
    ``on_dead_letter="block"`` (not under ``"skip"``); leases,
    heartbeats and status behave as :class:`~outboxkit.protocols.Store` documents. Tests sleep
    about 0.7 s where a lease or heartbeat must expire; nothing asserts timings.
    """

    # -- claim -----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_claim_returns_written_messages_of_its_shard_in_order(
        self, store: Store, write: WriteMessages
    ) -> None:
        assert store.shard_count >= 4, "the suite needs a store with shard_count >= 4"
        mine = aggregates_in_shard(0, store.shard_count, 2)
        other = aggregates_in_shard(1, store.shard_count, 1)
        messages = [make_message(mine[i % 2], i) for i in range(6)]
        await write(messages[:3])
        await write([make_message(other[0], 99)])
        await write(messages[3:])

        lease = await _lease(store, 0)
        envelopes = await store.claim(lease, ALL)

        assert sorted(_ids(envelopes)) == sorted(_message_ids(messages)), "claim lost or leaked"
        assert all(e.shard == 0 for e in envelopes)
        positions = [e.position for e in envelopes]
        assert positions == sorted(positions) and len(set(positions)) == len(positions), (
            f"positions must strictly increase: {positions}"
        )
        in_order = by_aggregate(envelopes) == ids_by_aggregate(messages)
        assert in_order, "per-aggregate write order not kept"
        assert all(e.attempts == 0 for e in envelopes)

    @pytest.mark.anyio
    async def test_claim_respects_limit(self, store: Store, write: WriteMessages) -> None:
        aggregates = aggregates_in_shard(0, store.shard_count, 2)
        await write([make_message(aggregates[i % 2], i) for i in range(6)])
        lease = await _lease(store, 0)

        everything = await _claim_ids(store, lease)
        first = await _claim_ids(store, lease, limit=3)

        assert len(everything) == 6
        assert first == everything[:3]

    @pytest.mark.anyio
    async def test_claim_is_not_destructive(self, store: Store, write: WriteMessages) -> None:
        aggregate = aggregates_in_shard(0, store.shard_count, 1)[0]
        await write([make_message(aggregate, i) for i in range(3)])
        lease = await _lease(store, 0)

        assert await _claim_ids(store, lease) == await _claim_ids(store, lease)
        assert len(await _claim_ids(store, lease)) == 3

    @pytest.mark.anyio
    async def test_claim_of_empty_shard_is_empty(self, store: Store) -> None:
        assert await store.claim(await _lease(store, 0), 10) == []

    @pytest.mark.anyio
    async def test_envelope_carries_message_intact(
        self, store: Store, write: WriteMessages
    ) -> None:
        aggregate = aggregates_in_shard(2, store.shard_count, 1)[0]
        sent = Message(
            aggregate_type="invoice",
            aggregate_id=aggregate,
            event_type="invoice.issued",
            payload=bytes(range(256)) + "é€".encode(),
            topic="billing.events",
            key="custom-key",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            content_type="application/octet-stream",
        )
        await write([sent])

        (envelope,) = await store.claim(await _lease(store, 2), ALL)
        got = envelope.message

        assert got.id == sent.id
        assert (got.aggregate_type, got.aggregate_id, got.event_type) == (
            sent.aggregate_type,
            sent.aggregate_id,
            sent.event_type,
        )
        assert got.payload == sent.payload
        assert (got.topic, got.key, got.content_type) == (sent.topic, sent.key, sent.content_type)
        assert got.headers == sent.headers
        assert got.created_at.tzinfo is not None, "created_at must be timezone-aware"
        assert abs(got.created_at - sent.created_at) <= timedelta(milliseconds=1)
        assert envelope.shard == shard_of(aggregate, store.shard_count) == 2

    @pytest.mark.anyio
    async def test_shard_is_shard_of_aggregate_id(self, store: Store, write: WriteMessages) -> None:
        messages = [make_message(unique_name("agg"), i) for i in range(24)]
        await write(messages)

        seen: dict[str, int] = {}
        for shard in range(store.shard_count):
            for envelope in await store.claim(await _lease(store, shard), ALL):
                assert envelope.shard == shard
                seen[str(envelope.message.id)] = shard

        expected = {str(m.id): shard_of(m.aggregate_id, store.shard_count) for m in messages}
        assert seen == expected

    @pytest.mark.anyio
    async def test_many_messages_of_one_aggregate_keep_write_order(
        self, store: Store, write: WriteMessages
    ) -> None:
        aggregate = aggregates_in_shard(1, store.shard_count, 1)[0]
        messages = [make_message(aggregate, i) for i in range(50)]
        for message in messages[:10]:
            await write([message])
        await write(messages[10:])

        assert await _claim_ids(store, await _lease(store, 1)) == _message_ids(messages)

    # -- ack / retry / dead letters -------------------------------------------------------

    @pytest.mark.anyio
    async def test_ack_removes_exactly_the_acked(self, store: Store, write: WriteMessages) -> None:
        aggregates = aggregates_in_shard(0, store.shard_count, 2)
        messages = [make_message(aggregates[i % 2], i) for i in range(5)]
        await write(messages)
        lease = await _lease(store, 0)
        envelopes = await store.claim(lease, ALL)
        late = make_message(aggregates[0], 100)
        await write([late])

        await store.ack(lease, envelopes[:2])

        # Only the order within an aggregate is promised; across aggregates a store may
        # order by commit (pg) or by document (mongodb).
        remaining = await store.claim(lease, ALL)
        expected = [e.message for e in envelopes[2:]] + [late]
        assert by_aggregate(remaining) == ids_by_aggregate(expected), "ack removed too much"
        await store.ack(lease, [])
        assert _ids(await store.claim(lease, ALL)) == _ids(remaining)

    @pytest.mark.anyio
    async def test_retry_hides_message_and_blocks_only_its_aggregate(
        self, store: Store, write: WriteMessages
    ) -> None:
        blocked, free = aggregates_in_shard(0, store.shard_count, 2)
        first, second, other = (
            make_message(blocked, 1),
            make_message(blocked, 2),
            make_message(free, 3),
        )
        await write([first, second, other])
        lease = await _lease(store, 0)
        envelopes = {str(e.message.id): e for e in await store.claim(lease, ALL)}

        await store.retry(lease, [envelopes[str(first.id)]], "broker down", LONG_TTL)
        after = make_message(blocked, 4)
        await write([after])

        assert await _claim_ids(store, lease) == [str(other.id)], (
            "a retried message must hide itself and every later message of its aggregate"
        )

    @pytest.mark.anyio
    async def test_retry_counts_attempts_and_is_due_after_delay(
        self, store: Store, write: WriteMessages
    ) -> None:
        aggregate = aggregates_in_shard(3, store.shard_count, 1)[0]
        messages = [make_message(aggregate, i) for i in range(2)]
        await write(messages)
        lease = await _lease(store, 3)
        envelopes = await store.claim(lease, ALL)

        await store.retry(lease, envelopes[:1], "timeout", 0.2)
        again = await _claim_when_due(store, lease)

        assert _ids(again) == _message_ids(messages)
        assert [e.attempts for e in again] == [1, 0]
        await store.retry(lease, again[:1], "timeout", 0)
        assert [e.attempts for e in await store.claim(lease, ALL)] == [2, 0]

    @pytest.mark.anyio
    async def test_dead_letter_lists_and_replays(self, store: Store, write: WriteMessages) -> None:
        poisoned, healthy = aggregates_in_shard(1, store.shard_count, 2)
        bad, good = make_message(poisoned, 1), make_message(healthy, 2)
        await write([bad, good])
        lease = await _lease(store, 1)
        envelopes = await store.claim(lease, ALL)
        await store.retry(lease, envelopes[:1], "flaky", 0)
        (retried, _) = await store.claim(lease, ALL)

        await store.dead_letter(lease, [retried], "rejected: schema mismatch")

        assert await _claim_ids(store, lease) == [str(good.id)]
        (letter,) = await store.dead_letters()
        assert letter.message.id == bad.id and letter.message.payload == bad.payload
        assert "rejected: schema mismatch" in letter.error
        assert letter.attempts == 2, "dead letter attempts = failed attempts including the last"
        assert letter.shard == 1
        assert letter.failed_at.tzinfo is not None

        assert await store.replay([bad.id]) == 1
        assert await store.dead_letters() == []
        assert sorted(await _claim_ids(store, lease)) == sorted([str(bad.id), str(good.id)])

    @pytest.mark.anyio
    async def test_replay_all(self, store: Store, write: WriteMessages) -> None:
        aggregates = aggregates_in_shard(2, store.shard_count, 3)
        messages = [make_message(a) for a in aggregates]
        await write(messages)
        lease = await _lease(store, 2)
        await store.dead_letter(lease, await store.claim(lease, ALL), "no route")
        assert await store.claim(lease, ALL) == []
        letters = await store.dead_letters()
        assert sorted(str(d.message.id) for d in letters) == sorted(_message_ids(messages))
        assert [d.message.id for d in await store.dead_letters(limit=2)] == [
            d.message.id for d in letters[:2]
        ]

        assert await store.replay([]) == 0
        assert await store.replay() == 3

        assert await store.dead_letters() == []
        assert sorted(await _claim_ids(store, lease)) == sorted(_message_ids(messages))
        assert await store.replay() == 0

    async def _dead_in_the_middle(
        self, store: Store, write: WriteMessages, shard: int = 1
    ) -> tuple[Lease, list[Message], Message]:
        """Aggregate A: m1 published, m2 dead-lettered, m3 pending; another aggregate's
        message pending too. Returns the lease, [m1, m2, m3] and the other message."""
        blocked, free = aggregates_in_shard(shard, store.shard_count, 2)
        m1, m2, m3 = (make_message(blocked, n) for n in (1, 2, 3))
        other = make_message(free, 9)
        for message in (m1, m2, m3):
            await write([message])
        await write([other])
        lease = await _lease(store, shard)
        claimed = {str(e.message.id): e for e in await store.claim(lease, ALL)}
        await store.ack(lease, [claimed[str(m1.id)]])
        await store.dead_letter(lease, [claimed[str(m2.id)]], "refused for good")
        return lease, [m1, m2, m3], other

    @pytest.mark.anyio
    async def test_dead_letter_blocks_the_later_messages_of_its_aggregate(
        self, store: Store, write: WriteMessages
    ) -> None:
        lease, (_, m2, m3), other = await self._dead_in_the_middle(store, write)
        m4 = make_message(m3.aggregate_id, 4)
        await write([m4])

        assert await _claim_ids(store, lease) == [str(other.id)], (
            "with on_dead_letter=block, no message after a dead letter of its aggregate may "
            "be claimed (written before or after it was dead-lettered)"
        )
        skipped = by_aggregate(await store.claim(lease, ALL, on_dead_letter="skip"))
        assert skipped == {
            m3.aggregate_id: [str(m3.id), str(m4.id)],
            other.aggregate_id: [str(other.id)],
        }, "with on_dead_letter=skip, the later messages go on"

        status = await store.status()
        assert (status.pending, status.dead_letters) == (3, 1)
        assert (status.blocked_aggregates, status.blocked_sample) == (1, [m2.aggregate_id])
        assert status.parked == 2, "m3 and m4 wait behind the dead letter"

    @pytest.mark.anyio
    async def test_replay_puts_a_dead_letter_back_in_its_original_place(
        self, store: Store, write: WriteMessages
    ) -> None:
        lease, (_, m2, m3), other = await self._dead_in_the_middle(store, write)

        assert await store.replay([m2.id]) == 1

        assert await store.dead_letters() == []
        for policy in ("block", "skip"):
            claimed = by_aggregate(await store.claim(lease, ALL, on_dead_letter=policy))
            assert claimed == {
                m2.aggregate_id: [str(m2.id), str(m3.id)],
                other.aggregate_id: [str(other.id)],
            }, f"after replay the aggregate goes on in its original order ({policy})"
        status = await store.status()
        assert (status.pending, status.blocked_aggregates, status.parked) == (3, 0, 0)
        assert status.blocked_sample == []

    @pytest.mark.anyio
    async def test_discard_ends_a_dead_letter_and_unblocks_its_aggregate(
        self, store: Store, write: WriteMessages
    ) -> None:
        lease, (_, m2, m3), other = await self._dead_in_the_middle(store, write)

        assert await store.discard([m2.id]) == 1

        assert await store.dead_letters() == []
        claimed = by_aggregate(await store.claim(lease, ALL))
        assert claimed == {m3.aggregate_id: [str(m3.id)], other.aggregate_id: [str(other.id)]}
        assert (await store.status()).blocked_aggregates == 0
        assert await store.discard() == 0

    @pytest.mark.anyio
    async def test_discard_all(self, store: Store, write: WriteMessages) -> None:
        aggregates = aggregates_in_shard(2, store.shard_count, 3)
        await write([make_message(a) for a in aggregates])
        lease = await _lease(store, 2)
        await store.dead_letter(lease, await store.claim(lease, ALL), "no route")

        assert await store.discard([]) == 0
        assert await store.discard() == 3
        assert await store.dead_letters() == []
        assert (await store.status()).dead_letters == 0

    @pytest.mark.anyio
    async def test_replay_or_discard_of_an_unknown_id_changes_nothing(
        self, store: Store, write: WriteMessages
    ) -> None:
        lease, (_, m2, _), other = await self._dead_in_the_middle(store, write)
        unknown = make_message("nobody").id

        for operation in (store.replay, store.discard):
            with pytest.raises(DeadLetterNotFoundError) as caught:
                await operation([m2.id, unknown, other.id])
            assert caught.value.missing == [unknown, other.id], (
                "the error names every id that is not a dead letter, in the order given"
            )

        assert [d.message.id for d in await store.dead_letters()] == [m2.id]
        assert await _claim_ids(store, lease) == [str(other.id)]

    @pytest.mark.anyio
    async def test_purge_deletes_only_dead_letters_older_than_the_cutoff(
        self, store: Store, write: WriteMessages
    ) -> None:
        lease, (_, m2, m3), _ = await self._dead_in_the_middle(store, write)

        assert await store.purge(3600.0) == 0
        assert [d.message.id for d in await store.dead_letters()] == [m2.id]
        await anyio.sleep(0.1)
        assert await store.purge(0.05) == 1

        assert await store.dead_letters() == []
        assert str(m3.id) in await _claim_ids(store, lease), "purging unblocks the aggregate"

    # -- leases ----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_acquire_free_shard_and_extend_own(self, store: Store) -> None:
        owner = unique_name("owner")
        lease = await store.acquire(owner, 0, LONG_TTL)
        assert lease is not None and (lease.owner, lease.shard) == (owner, 0)

        again = await store.acquire(owner, 0, LONG_TTL)
        assert again == lease, "re-acquiring an own lease extends it with the same token"

    @pytest.mark.anyio
    async def test_held_lease_cannot_be_taken(self, store: Store) -> None:
        await _lease(store, 1)
        assert await store.acquire(unique_name("intruder"), 1, LONG_TTL) is None

    @pytest.mark.anyio
    async def test_owners_racing_for_a_shard_get_it_once(self, store: Store) -> None:
        """Relays starting together, or all seeing a lease expire, race for it: one wins."""
        stale = await _expired_lease(store, 0)
        for shard in range(store.shard_count):
            won = await _race_for(store, shard)
            assert len(won) == 1, f"{len(won)} owners acquired shard {shard} at once: {won}"
            (lease,) = won
            assert [i.owner for i in await store.leases() if i.shard == shard] == [lease.owner]
            if shard == 0:
                assert lease.token > stale.token

    @pytest.mark.anyio
    async def test_expired_lease_is_taken_over_with_higher_token(self, store: Store) -> None:
        stale = await _expired_lease(store, 0)

        fresh = await store.acquire(unique_name("successor"), 0, LONG_TTL)

        assert fresh is not None, "an expired lease must be acquirable by another owner"
        assert fresh.token > stale.token

    @pytest.mark.anyio
    async def test_renew_returns_only_still_held_leases(self, store: Store) -> None:
        owner = unique_name("owner")
        held = await store.acquire(owner, 0, LONG_TTL)
        taken = await store.acquire(owner, 1, SHORT_TTL)
        lapsed = await store.acquire(owner, 2, SHORT_TTL)
        assert held is not None and taken is not None and lapsed is not None
        await anyio.sleep(EXPIRY_WAIT)
        assert await store.acquire(unique_name("successor"), 1, LONG_TTL) is not None

        assert await store.renew([held, taken, lapsed], LONG_TTL) == [held]
        assert await store.renew([], LONG_TTL) == []

    @pytest.mark.anyio
    async def test_release_frees_only_a_still_held_lease(self, store: Store) -> None:
        first = await _lease(store, 3)
        await store.release([first])
        second = await store.acquire(unique_name("next"), 3, LONG_TTL)
        assert second is not None and second.token > first.token

        await store.release([first])  # stale: must not free the new owner's lease
        assert await store.acquire(unique_name("third"), 3, LONG_TTL) is None

    @pytest.mark.anyio
    async def test_leases_lists_every_shard(self, store: Store) -> None:
        lease = await _lease(store, 1)
        released = await _lease(store, 2)
        await store.release([released])

        infos = await store.leases()

        assert [i.shard for i in infos] == list(range(store.shard_count))
        assert infos[1].owner == lease.owner and infos[1].token == lease.token
        assert infos[1].expires_in is not None and 0 < infos[1].expires_in <= LONG_TTL + 1
        assert infos[0].owner is None and infos[2].owner is None

    # -- fencing ---------------------------------------------------------------------------

    async def _taken_over(self, store: Store, write: WriteMessages) -> tuple[Lease, Lease]:
        aggregate = aggregates_in_shard(0, store.shard_count, 1)[0]
        await write([make_message(aggregate, i) for i in range(3)])
        stale = await _expired_lease(store, 0)
        fresh = await store.acquire(unique_name("successor"), 0, LONG_TTL)
        assert fresh is not None
        return stale, fresh

    @pytest.mark.anyio
    async def test_stale_lease_cannot_ack_retry_or_dead_letter(
        self, store: Store, write: WriteMessages
    ) -> None:
        stale, fresh = await self._taken_over(store, write)
        envelopes = await store.claim(fresh, ALL)

        with pytest.raises(LeaseLostError):
            await store.ack(stale, envelopes[:1])
        with pytest.raises(LeaseLostError):
            await store.retry(stale, envelopes[:1], "late", LONG_TTL)
        with pytest.raises(LeaseLostError):
            await store.dead_letter(stale, envelopes[:1], "late")

        after = await store.claim(fresh, ALL)
        assert _ids(after) == _ids(envelopes), "a refused fenced call must change nothing"
        assert [e.attempts for e in after] == [0, 0, 0]
        assert await store.dead_letters() == []

    @pytest.mark.anyio
    async def test_expired_lease_cannot_ack(self, store: Store, write: WriteMessages) -> None:
        aggregate = aggregates_in_shard(3, store.shard_count, 1)[0]
        await write([make_message(aggregate)])
        lease = await store.acquire(unique_name("owner"), 3, SHORT_TTL)
        assert lease is not None
        envelopes = await store.claim(lease, ALL)
        await anyio.sleep(EXPIRY_WAIT)

        with pytest.raises(LeaseLostError):
            await store.ack(lease, envelopes)

        assert _ids(await store.claim(await _lease(store, 3), ALL)) == _ids(envelopes)

    # -- instances, status, wait ---------------------------------------------------------

    @pytest.mark.anyio
    async def test_heartbeat_lists_live_instances(self, store: Store) -> None:
        a, b, c = sorted(unique_name(p) for p in ("a", "b", "c"))
        assert await store.heartbeat(b, LONG_TTL) == [b]
        assert await store.heartbeat(c, SHORT_TTL) == [b, c]
        assert await store.heartbeat(a, LONG_TTL) == [a, b, c]

        await anyio.sleep(EXPIRY_WAIT)
        assert await store.heartbeat(b, LONG_TTL) == [a, b], "an expired instance must vanish"

        await store.leave(a)
        assert await store.heartbeat(b, LONG_TTL) == [b]

    @pytest.mark.anyio
    async def test_status_counts(self, store: Store, write: WriteMessages) -> None:
        empty = await store.status()
        assert (empty.pending, empty.oldest_pending_age, empty.dead_letters) == (0, None, 0)
        assert empty.shard_count == store.shard_count
        assert len(empty.leases) == store.shard_count

        aggregates = aggregates_in_shard(0, store.shard_count, 3)
        await write([make_message(a) for a in aggregates])
        owner = unique_name("owner")
        await store.heartbeat(owner, LONG_TTL)
        lease = await _lease(store, 0, owner)
        await store.dead_letter(lease, (await store.claim(lease, ALL))[:1], "bad")

        status = await store.status()
        assert (status.pending, status.dead_letters) == (2, 1)
        assert status.oldest_pending_age is not None and status.oldest_pending_age >= 0
        assert status.instances == [owner]
        assert status.leases[0].owner == owner

    @pytest.mark.anyio
    async def test_wait_returns_after_timeout(self, store: Store) -> None:
        with anyio.fail_after(10):
            await store.wait(0.1)

    @pytest.mark.anyio
    async def test_declares_whether_it_wakes_every_commit(self, store: Store) -> None:
        assert isinstance(store, Store), "the store lacks a member of the Store protocol"
        assert isinstance(store.wakes_every_commit, bool), "wakes_every_commit must be a bool"
