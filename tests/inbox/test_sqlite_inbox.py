"""The SQLite inbox and its ``outboxkit inbox`` commands; the SQLite store's sequences."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.sqlite.writer import SqliteOutbox
from outboxkit.inbox import InboxMessage, Verdict, decode
from outboxkit.inbox.sqlite import SqliteInbox
from outboxkit.message import HEADER_SEQUENCE, Message, broker_headers
from outboxkit.uuidv7 import uuid7, uuid7_floor


def event(sequence: int | None = None, **fields: Any) -> InboxMessage:
    m = Message.create(aggregate_type="a", aggregate_id="acc", event_type="e", payload=1)
    if fields:
        m = Message(**{**{f: getattr(m, f) for f in m.__struct_fields__}, **fields})
    headers = dict(broker_headers(m)) | ({HEADER_SEQUENCE: str(sequence)} if sequence else {})
    return decode(headers | {"content-type": m.content_type}, m.payload)


def test_duplicates_rollbacks_and_the_guard(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    inbox = SqliteInbox(guard="park")
    inbox.migrate(db)
    e1, e2 = event(1), event(2)
    with pytest.raises(ZeroDivisionError), inbox.process(db, e2) as fresh:
        assert fresh
        _ = 1 / 0
    with inbox.process_batch(db, [e2, e1, e2]) as fresh_ones:
        assert fresh_ones == [e2]
    with inbox.process(db, e2) as again:
        assert again is Verdict.DUPLICATE
    assert db.execute("SELECT id, sequence FROM inbox_parked").fetchall() == [(str(e1.id), 1)]


def test_prune_and_status_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    opts = ["--inbox", "sqlite", "--sqlite-inbox-path", str(path)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "outboxkit.cli", "inbox", *args, *opts]
        return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin"})

    assert cli("migrate").returncode == 0
    db = sqlite3.connect(path, isolation_level=None)
    old = UUID(int=uuid7_floor(time.time() - 3 * 86400).int | (uuid7().int & ((1 << 76) - 1)))
    with SqliteInbox().process_batch(db, [event(id=old), event()]):
        pass
    db.close()
    pruned = cli("prune", "--older-than", "2d", "--batch-size", "1")
    assert pruned.returncode == 0 and "pruned 1 processed id" in pruned.stdout, pruned.stderr
    assert "processed: 1" in cli("status").stdout
    bad = cli("prune", "--older-than", "soon")
    assert bad.returncode == 2 and "expected a positive duration" in bad.stderr


@pytest.mark.anyio
async def test_the_sqlite_store_gives_each_message_its_position_as_sequence(
    tmp_path: Path,
) -> None:
    store = SqliteStore(SqliteSettings(path=str(tmp_path / "o.db"), shard_count=1))
    await store.migrate()
    await store.open()
    try:
        conn = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
        with conn:
            conn.execute("BEGIN")
            for _ in range(3):
                SqliteOutbox().add(
                    conn, Message.create(aggregate_type="a", aggregate_id="x", event_type="e")
                )
        lease = await store.acquire("t", 0, 60)
        assert lease is not None
        claimed = await store.claim(lease, 10)
        assert [e.sequence for e in claimed] == [e.position for e in claimed]
        assert [e.sequence for e in claimed] == sorted({e.sequence for e in claimed})
    finally:
        await store.close()
