"""Start-up and shutdown of the relay in process: retrying servers that cannot be reached,
giving up shutdown steps that do not end, stopping at once."""

from __future__ import annotations

import contextlib
import logging
import math

import anyio
import anyio.lowlevel
import pytest

from outboxkit.closing import close_within
from outboxkit.errors import PublisherUnavailableError, StoreUnavailableError
from outboxkit.relay import ShardedRelay
from outboxkit.relay import sharded as relay_module
from tests.unit.core.fakes import FakePublisher, FakeStore, messages, settings, wait_for

pytestmark = pytest.mark.anyio


async def _ignores_cancellation() -> None:
    """A close that swallows every cancellation (for 2 s), as some client libraries' do."""
    deadline = anyio.current_time() + 2
    while anyio.current_time() < deadline:
        with contextlib.suppress(BaseException):
            await anyio.sleep(deadline - anyio.current_time())


async def _shielded_forever() -> None:
    with anyio.CancelScope(shield=True):
        await anyio.sleep(2)


@pytest.mark.parametrize("step", [_ignores_cancellation, _shielded_forever])
async def test_close_within_gives_up_a_step_that_does_not_end(step: object) -> None:
    started = anyio.current_time()
    assert await close_within(step, 0.2) is False  # type: ignore[arg-type]
    assert anyio.current_time() - started < 1


async def test_close_within_returns_a_step_s_end_and_raises_its_error() -> None:
    assert await close_within(anyio.lowlevel.checkpoint, 1) is True

    async def fails() -> None:
        raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        await close_within(fails, 1)


class StubbornPublisher(FakePublisher):
    async def close(self) -> None:
        await _shielded_forever()


@pytest.fixture
def fast_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "CLOSE_STEP", 0.3)
    monkeypatch.setattr(relay_module, "STARTUP_BACKOFF_INITIAL", 0.01)
    monkeypatch.setattr(relay_module, "STARTUP_BACKOFF_MAX", 0.05)


async def test_a_close_that_never_ends_is_given_up(fast_steps: None) -> None:
    store = FakeStore(shard_count=2)
    relay = ShardedRelay(store, StubbornPublisher(), settings())
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await wait_for(lambda: len(relay.shards) == 2)
        with anyio.fail_after(2):
            relay.stop()
            await wait_for(lambda: store.closed)
    assert set(store.owners().values()) == {None}


async def test_abort_returns_at_once_without_releasing_leases() -> None:
    store = FakeStore(shard_count=2)
    relay = ShardedRelay(store, StubbornPublisher(), settings())
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await wait_for(lambda: len(relay.shards) == 2)
            relay.abort()
    assert set(store.owners().values()) == {relay.owner}  # they expire after lease_ttl


class FlakyStore(FakeStore):
    """Cannot be reached the first ``failures`` times it is opened."""

    def __init__(self, failures: float, retriable: bool = True) -> None:
        super().__init__(shard_count=2)
        self.failures, self.retriable, self.attempts = failures, retriable, 0

    async def open(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailableError("db:5432 refused", retriable=self.retriable)
        await super().open()


async def test_start_up_retries_a_store_that_cannot_be_reached(
    fast_steps: None, caplog: pytest.LogCaptureFixture
) -> None:
    store, publisher = FlakyStore(failures=3), FakePublisher()
    store.add(*messages(aggregates=2, per_aggregate=2))
    relay = ShardedRelay(store, publisher, settings(exit_when_idle=True))
    with caplog.at_level(logging.WARNING, "outboxkit.relay"), anyio.fail_after(5):
        await relay.run()

    assert store.attempts == 4 and len(publisher.delivered) == 4
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert [w.split(";")[0] for w in warnings] == [
        f"store unreachable (attempt {n}" for n in (1, 2, 3)
    ]
    assert all(w.endswith("db:5432 refused") for w in warnings)


async def test_start_up_gives_up_after_startup_timeout(fast_steps: None) -> None:
    store = FlakyStore(failures=math.inf)
    relay = ShardedRelay(store, FakePublisher(), settings(startup_timeout=0.3))
    with anyio.fail_after(2), pytest.raises(StoreUnavailableError) as caught:
        await relay.run()
    assert str(caught.value) == "db:5432 refused (still failing after startup_timeout=0.3s)"
    assert store.attempts > 1


async def test_a_refusal_at_start_up_is_not_retried(fast_steps: None) -> None:
    store = FlakyStore(failures=math.inf, retriable=False)
    relay = ShardedRelay(store, FakePublisher(), settings())
    with anyio.fail_after(2), pytest.raises(StoreUnavailableError):
        await relay.run()
    assert store.attempts == 1


async def test_stop_while_a_publisher_cannot_be_reached_returns(fast_steps: None) -> None:
    class Unreachable(FakePublisher):
        async def open(self) -> None:
            raise PublisherUnavailableError("broker:9092 refused")

    store = FakeStore(shard_count=2)
    relay = ShardedRelay(store, Unreachable(), settings())
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await wait_for(lambda: store.opened)
            await anyio.sleep(0.1)
            relay.stop()
    assert store.closed
