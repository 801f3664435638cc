"""The in-memory FakeStore passes the store conformance suite, so the relay's unit tests run
against a store that keeps the contract."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fakes import FakeStore

from outboxkit.message import Message
from outboxkit.testing import StoreConformance, WriteMessages


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(shard_count=4)


@pytest.fixture
def write(store: FakeStore) -> WriteMessages:
    async def write(messages: Sequence[Message]) -> None:
        store.add(*messages)

    return write


class TestFakeStore(StoreConformance):
    """Every store guarantee, against the in-memory fake."""
