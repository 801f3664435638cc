"""The error a refused fenced call raises is built once, by LeaseLostError.not_held."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.errors import LeaseLostError
from outboxkit.protocols import Lease, Store
from outboxkit.testing import MemoryStore, make_message

pytestmark = pytest.mark.anyio


def test_message_names_the_lease_and_what_happened() -> None:
    lease = Lease(shard=3, owner="relay-a", token=7)
    assert str(LeaseLostError.not_held(lease)) == (
        "lease on shard 3 (token 7) is no longer held by 'relay-a': it expired or was taken "
        "over; nothing was changed"
    )
    assert str(LeaseLostError.not_held(lease, "retry")).startswith("retry refused: lease on")


async def _refused_ack(store: Store) -> None:
    stale = await store.acquire("relay-a", 0, 60)
    assert stale is not None
    envelopes = await store.claim(stale, 10)
    await store.release([stale])
    assert await store.acquire("relay-b", 0, 60) is not None
    with pytest.raises(LeaseLostError) as refused:
        await store.ack(stale, envelopes)
    assert str(refused.value) == str(LeaseLostError.not_held(stale))


async def test_memory_store_says_it_with_the_core_message() -> None:
    store = MemoryStore(shard_count=1)
    store.add(make_message("a"))
    await _refused_ack(store)


async def test_sqlite_store_says_it_with_the_core_message(tmp_path: Path) -> None:
    settings = SqliteSettings(path=str(tmp_path / "outbox.db"), shard_count=1)
    store = SqliteStore(settings)
    await store.migrate()
    await store.open()
    try:
        with sqlite3.connect(settings.path) as conn:
            SqliteOutbox(settings.table).add(conn, make_message("a"))
        await _refused_ack(store)
    finally:
        await store.close()
