"""outboxkit.testing.MemoryStore keeps the Store contract: the conformance suite runs on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from outboxkit.message import Message
from outboxkit.testing import MemoryStore, StoreConformance, WriteMessages


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore(shard_count=4)
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    def write(self, store: MemoryStore) -> WriteMessages:
        async def write(messages: Sequence[Message]) -> None:
            store.add(*messages)

        return write
