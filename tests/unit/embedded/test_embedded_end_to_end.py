"""The embedded defaults end to end: SQLite outbox -> sharded relay -> JSON lines, no server."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.stdout.publisher import StdoutPublisher
from outboxkit.embedded.stdout.records import decode_line
from outboxkit.embedded.stdout.settings import StdoutSettings
from outboxkit.relay import ShardedRelay
from outboxkit.relay.settings import RelaySettings
from outboxkit.testing import ids_by_aggregate, make_message, order_by_aggregate
from tests.support.sqlite import commit_each


@pytest.mark.anyio
async def test_relay_publishes_every_committed_message_once_in_order(tmp_path: Path) -> None:
    db, out = tmp_path / "outbox.db", tmp_path / "out.jsonl"
    await SqliteStore(SqliteSettings(path=str(db), shard_count=4)).migrate()
    messages = [make_message(f"order-{a}", n) for n in range(10) for a in range(3)]
    await anyio.to_thread.run_sync(commit_each, db, messages)

    relay = ShardedRelay(
        SqliteStore(SqliteSettings(path=str(db))),
        StdoutPublisher(StdoutSettings(path=str(out))),
        RelaySettings(exit_when_idle=True, poll_interval=0.05, lease_ttl=5),
    )
    with anyio.fail_after(60):
        await relay.run()

    lines = [decode_line(raw) for raw in out.read_bytes().splitlines()]
    assert sorted(line.id for line in lines) == sorted(str(m.id) for m in messages)
    assert order_by_aggregate((line.aggregate_id, line.id) for line in lines) == ids_by_aggregate(
        messages
    )
    after = SqliteStore(SqliteSettings(path=str(db)))
    await after.open()
    assert (await after.status()).pending == 0
    await after.close()
