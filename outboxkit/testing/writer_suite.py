"""The conformance suite every writer (the service-side ``add``) must pass."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol
from uuid import UUID

import anyio
import pytest

from outboxkit.errors import InvalidMessageError, TransactionRequiredError
from outboxkit.message import DEFAULT_MAX_PAYLOAD_BYTES, Message
from outboxkit.testing.helpers import ids_by_aggregate, make_message, unique_name

__all__ = ["BusinessFailure", "Outcome", "WriterConformance", "WriterHarness"]

Outcome = Literal["commit", "rollback", "raise"]
"""How a business transaction of :meth:`WriterHarness.write` ends."""


class BusinessFailure(Exception):
    """Raised inside a business transaction by :meth:`WriterHarness.write` (``"raise"``)."""


class WriterHarness(Protocol):
    """What a writer's tests provide to :class:`WriterConformance`, on a fresh, migrated
    outbox of the writer's real database."""

    async def write(
        self, messages: Sequence[Message], outcome: Outcome = "commit", pause: float = 0.0
    ) -> None:
        """One business transaction, written the way the writer's users write it:

        1. add ``messages`` with the writer under test;
        2. sleep ``pause`` seconds, then record the ids of ``messages`` in an audit log in the
           same transaction (its order is the commit order: see :meth:`commit_order`);
        3. end as ``outcome`` says: ``"commit"``; ``"rollback"`` (the driver's explicit
           rollback); ``"raise"``: raise :class:`BusinessFailure` inside the driver's
           transaction block and let it propagate.

        If the writer raises in step 1, skip step 2, still end the transaction as ``outcome``
        says (commit it for ``"commit"``), then re-raise the writer's error: so the suite sees
        that a refused add wrote nothing even when the caller commits. Concurrent calls must
        work (a connection each).
        """
        ...

    async def write_outside(self, messages: Sequence[Message]) -> None:
        """Call the writer with ``messages`` on a connection with no transaction open."""
        ...

    async def written(self) -> list[Message]:
        """The messages in the outbox, in the order the relay would publish them."""
        ...

    async def commit_order(self) -> list[UUID]:
        """The ids recorded by step 2 of the committed :meth:`write` calls, in commit order."""
        ...


def _key(m: Message) -> tuple[Any, ...]:
    """What a round trip through any store keeps exactly (created_at: to the millisecond)."""
    millis = int(m.created_at.timestamp() * 1000)
    return (m.id, m.aggregate_type, m.aggregate_id, m.event_type, m.payload, m.headers, millis)


class WriterConformance:
    """Base class of a writer's conformance tests: subclass it as ``TestXxxWriter``.

    The subclass provides the fixture ``writer_harness`` (a :class:`WriterHarness`; async
    fixtures are fine, run by anyio's plugin). A writer to which a test does not apply lists
    it in :attr:`not_applicable` with the reason, and the test is skipped saying so.

    What it checks: a commit makes exactly the messages added visible, in order; a rollback
    or an exception inside the transaction leaves none; an add outside a transaction raises
    :class:`~outboxkit.errors.TransactionRequiredError` and writes nothing; an invalid
    message in a batch raises :class:`~outboxkit.errors.InvalidMessageError` and nothing is
    written, even if the caller commits; concurrent writers of one aggregate, which lock no
    row, get sequence order equal to commit order.
    """

    not_applicable: ClassVar[Mapping[str, str]] = {}
    """Test name -> why it does not apply to this writer."""

    @pytest.fixture(autouse=True)
    def _applicable(self, request: pytest.FixtureRequest) -> None:
        known = {name for name in dir(WriterConformance) if name.startswith("test_")}
        unknown = set(self.not_applicable) - known
        if unknown:
            pytest.fail(f"not_applicable names no test of the suite: {sorted(unknown)}")
        reason = self.not_applicable.get(request.node.originalname)
        if reason:
            pytest.skip(f"does not apply: {reason}")

    @pytest.mark.anyio
    async def test_commit_makes_exactly_the_message_visible(
        self, writer_harness: WriterHarness
    ) -> None:
        message = make_message(unique_name("agg"), 1, headers={"tenant": "t1"})
        await writer_harness.write([message])
        assert [_key(m) for m in await writer_harness.written()] == [_key(message)]

    @pytest.mark.anyio
    async def test_batch_keeps_order(self, writer_harness: WriterHarness) -> None:
        aggregate = unique_name("agg")
        messages = [make_message(aggregate, i) for i in range(5)]
        await writer_harness.write(messages)
        assert [m.id for m in await writer_harness.written()] == [m.id for m in messages]

    @pytest.mark.anyio
    async def test_rollback_leaves_no_message(self, writer_harness: WriterHarness) -> None:
        await writer_harness.write([make_message(unique_name("agg"), 1)], outcome="rollback")
        assert await writer_harness.written() == []

    @pytest.mark.anyio
    async def test_exception_in_the_transaction_leaves_no_message(
        self, writer_harness: WriterHarness
    ) -> None:
        with pytest.raises(BusinessFailure):
            await writer_harness.write([make_message(unique_name("agg"), 1)], outcome="raise")
        assert await writer_harness.written() == []

    @pytest.mark.anyio
    async def test_add_outside_a_transaction_is_refused(
        self, writer_harness: WriterHarness
    ) -> None:
        with pytest.raises(TransactionRequiredError, match="needs the caller's transaction"):
            await writer_harness.write_outside([make_message(unique_name("agg"), 1)])
        assert await writer_harness.written() == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("bad", ["not-a-message", "oversized"])
    async def test_invalid_message_writes_nothing(
        self, writer_harness: WriterHarness, bad: str
    ) -> None:
        aggregate = unique_name("agg")
        invalid: Any = (
            {"aggregate_id": aggregate}
            if bad == "not-a-message"
            else Message(
                aggregate_type="order",
                aggregate_id=aggregate,
                event_type="e",
                payload=b"x" * (DEFAULT_MAX_PAYLOAD_BYTES + 1),
            )
        )
        with pytest.raises(InvalidMessageError):
            await writer_harness.write([make_message(aggregate, 1), invalid])
        assert await writer_harness.written() == []

    @pytest.mark.anyio
    async def test_concurrent_writers_of_one_aggregate_keep_commit_order(
        self, writer_harness: WriterHarness
    ) -> None:
        """6 writers, 8 transactions each, on 2 aggregates; each transaction pauses between
        the add and its audit record, and no writer locks a row: for each aggregate the
        outbox order must equal the commit order."""
        aggregates = [unique_name("agg") for _ in range(2)]
        rng = random.Random(18)
        made: list[Message] = []

        async def writer(w: int) -> None:
            for i in range(8):
                message = make_message(aggregates[rng.randrange(2)], w * 100 + i)
                made.append(message)
                await writer_harness.write([message], pause=rng.random() * 0.004)

        async with anyio.create_task_group() as tg:
            for w in range(6):
                tg.start_soon(writer, w)

        by_id = {m.id: m for m in made}
        in_commit_order = [by_id[i] for i in await writer_harness.commit_order()]
        written = await writer_harness.written()
        assert len(written) == len(made) == 48
        assert ids_by_aggregate(written) == ids_by_aggregate(in_commit_order)
