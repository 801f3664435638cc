"""The command end to end on the embedded defaults (SQLite store, stdout publisher)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from outboxkit import Message
from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.embedded.sqlite.writer import SqliteOutbox

RunCli = Callable[..., subprocess.CompletedProcess[str]]
Spawn = Callable[..., subprocess.Popen[str]]
Write = Callable[[Sequence[Message]], None]
Status = Callable[[], dict[str, Any]]


def orders(count: int, aggregates: int = 5) -> list[Message]:
    return [
        Message.create(
            aggregate_type="order",
            aggregate_id=f"order-{i % aggregates}",
            event_type="OrderChanged",
            topic="orders",
            payload={"n": i},
        )
        for i in range(count)
    ]


def by_aggregate(ids_and_aggregates: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for message_id, aggregate in ids_and_aggregates:
        grouped.setdefault(aggregate, []).append(message_id)
    return grouped


def test_migrate_write_relay_until_idle(
    run_cli: RunCli, workdir: Path, write_outbox: Write, status_json: Status
) -> None:
    migrated = run_cli("migrate", "--shards", "4")
    assert migrated.returncode == 0, migrated.stderr
    assert "ready (4 shards)" in migrated.stdout
    messages = orders(40)
    write_outbox(messages)
    assert status_json()["pending"] == 40

    relayed = run_cli("relay", "--exit-when-idle", "--stdout-path", "out.jsonl", "--lease-ttl", "5")
    assert relayed.returncode == 0, relayed.stderr

    lines = [msgspec.json.decode(line) for line in (workdir / "out.jsonl").read_text().splitlines()]
    published = [(line["id"], line["aggregate_id"]) for line in lines]
    written = [(str(m.id), m.aggregate_id) for m in messages]
    assert sorted(published) == sorted(written)  # every message, exactly once
    assert by_aggregate(published) == by_aggregate(written)  # in order per aggregate
    status = status_json()
    assert status["pending"] == 0 and status["instances"] == []
    assert all(lease["owner"] is None for lease in status["leases"])


def test_startup_log_names_plugins_and_settings(run_cli: RunCli) -> None:
    assert run_cli("migrate").returncode == 0
    relayed = run_cli("relay", "--exit-when-idle", "--batch-size", "7", "--instance-id", "r-1")
    assert relayed.returncode == 0, relayed.stderr
    first = relayed.stderr.splitlines()[0]
    assert "instance r-1: store=sqlite (path=outbox.db" in first
    assert "publisher=stdout" in first and "batch_size=7" in first


def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_drains_releases_leases_and_exits_0(
    run_cli: RunCli, spawn_cli: Spawn, workdir: Path, write_outbox: Write, status_json: Status
) -> None:
    assert run_cli("migrate", "--shards", "4").returncode == 0
    relay = spawn_cli("relay", "--stdout-path", "out.jsonl", "--instance-id", "term-me")
    _wait_for(lambda: [lease["owner"] for lease in status_json()["leases"]] == ["term-me"] * 4)
    write_outbox(orders(10))
    _wait_for(lambda: status_json()["pending"] == 0)
    relay.send_signal(signal.SIGTERM)
    _, stderr = relay.communicate(timeout=30)
    assert relay.returncode == 0, stderr
    assert "SIGTERM: draining" in stderr
    status = status_json()
    assert status["instances"] == []
    assert all(lease["owner"] is None for lease in status["leases"])
    assert len((workdir / "out.jsonl").read_text().splitlines()) == 10


async def _dead_letter_all(db: Path, error: str) -> None:
    store = SqliteStore(SqliteSettings(path=str(db)))
    await store.open()
    try:
        for shard in range(store.shard_count):
            lease = await store.acquire("test", shard, 30.0)
            assert lease is not None
            envelopes = await store.claim(lease, 100)
            if envelopes:
                await store.dead_letter(lease, envelopes, error)
            await store.release([lease])
    finally:
        await store.close()


def test_status_and_dead_letters_list_and_replay(
    run_cli: RunCli, workdir: Path, write_outbox: Write, status_json: Status
) -> None:
    assert run_cli("migrate").returncode == 0
    messages = orders(3, aggregates=3)
    write_outbox(messages)
    anyio.run(_dead_letter_all, workdir / "outbox.db", "topic orders does not exist")

    text = run_cli("status")
    assert text.returncode == 0, text.stderr
    assert "pending:            0" in text.stdout and "dead letters:       3" in text.stdout
    assert "shard  owner  token  expires" in text.stdout

    listed = run_cli("dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    for message in messages:
        assert str(message.id) in listed.stdout
    assert "topic orders does not exist" in listed.stdout

    as_json = msgspec.json.decode(
        run_cli("dead-letters", "list", "--json", "--limit", "2", "--show-payload").stdout
    )
    assert len(as_json) == 2
    assert as_json[0]["message"]["payload"] in ({"n": 0}, {"n": 1}, {"n": 2})
    assert as_json[0]["error"] == "topic orders does not exist"

    one = run_cli("dead-letters", "replay", "--id", str(messages[0].id))
    assert one.returncode == 0, one.stderr
    assert "replayed 1 dead letter" in one.stdout
    rest = run_cli("dead-letters", "replay", "--all")
    assert "replayed 2 dead letters" in rest.stdout
    status = status_json()
    assert status["pending"] == 3 and status["dead_letters"] == 0
    assert run_cli("dead-letters", "list").stdout.strip() == "no dead letters"


def test_missing_schema_is_one_line_error(run_cli: RunCli) -> None:
    result = run_cli("status")
    assert result.returncode == 2
    assert result.stderr.startswith("outboxkit: error: ")
    assert "outboxkit migrate" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [("dead-letters", "replay"), ("dead-letters", "replay", "--id", "nope")],
)
def test_replay_needs_ids_or_all(run_cli: RunCli, args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.parametrize(
    "command",
    [("status",), ("status", "--json"), ("dead-letters", "list"), ("relay", "--exit-when-idle")],
)
def test_commands_other_than_migrate_create_no_database(
    command: tuple[str, ...], run_cli: RunCli, workdir: Path
) -> None:
    result = run_cli(*command)
    assert result.returncode == 2, result.stderr
    assert "the SQLite outbox database 'outbox.db' does not exist: run `outboxkit migrate" in (
        result.stderr
    )
    assert result.stderr.count("outboxkit: error:") == 1 and "Traceback" not in result.stderr
    assert list(workdir.iterdir()) == []


def test_reserved_word_as_the_sqlite_table(run_cli: RunCli, workdir: Path) -> None:
    table = ("--sqlite-table", "order")
    assert run_cli("migrate", *table).returncode == 0
    messages = orders(6)
    conn = sqlite3.connect(workdir / "outbox.db")
    try:
        with conn:
            SqliteOutbox("order").add_many(conn, messages)
    finally:
        conn.close()
    status = run_cli("status", "--json", *table)
    assert status.returncode == 0 and msgspec.json.decode(status.stdout)["pending"] == 6
    relayed = run_cli("relay", "--exit-when-idle", "--stdout-path", "out.jsonl", *table)
    assert relayed.returncode == 0, relayed.stderr
    assert len((workdir / "out.jsonl").read_text().splitlines()) == 6
    assert run_cli("dead-letters", "list", *table).returncode == 0
