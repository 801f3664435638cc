"""``outboxkit dead-letters`` and ``status`` around a dead letter in the middle of an aggregate,
on the embedded defaults (SQLite store, stdout publisher)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import msgspec
import pytest

from outboxkit import Message
from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.sharding import shard_of

RunCli = Callable[..., subprocess.CompletedProcess[str]]
Write = Callable[[Sequence[Message]], None]
Status = Callable[[], dict[str, Any]]

AGGREGATE = "order-7"
SECRET = "4111-1111-1111-1111"
"""Something personal in m2's payload that must not be shown unless asked."""


def _message(n: int, aggregate: str = AGGREGATE) -> Message:
    return Message.create(
        aggregate_type="order",
        aggregate_id=aggregate,
        event_type="OrderChanged",
        payload={"n": n, "card": SECRET} if n == 2 else {"n": n},
    )


async def _dead_letter(db: Path, message: Message) -> None:
    """What a relay does when ``message`` is refused for good: move it to the dead letters."""
    store = SqliteStore(SqliteSettings(path=str(db)))
    await store.open()
    try:
        lease = await store.acquire("test", shard_of(message.aggregate_id, store.shard_count), 30)
        assert lease is not None
        envelopes = await store.claim(lease, 100)
        await store.dead_letter(lease, [e for e in envelopes if e.message.id == message.id], "no")
        await store.release([lease])
    finally:
        await store.close()


@pytest.fixture
def m1_m2_m3(run_cli: RunCli, workdir: Path, write_outbox: Write) -> list[Message]:
    """One aggregate's m1, m2, m3 pending, then m2 dead-lettered (m1 still pending)."""
    assert run_cli("migrate").returncode == 0
    messages = [_message(n) for n in (1, 2, 3)]
    write_outbox(messages)
    anyio.run(_dead_letter, workdir / "outbox.db", messages[1])
    return messages


def _relay(run_cli: RunCli, *args: str) -> None:
    relayed = run_cli("relay", "--exit-when-idle", "--stdout-path", "out.jsonl", *args)
    assert relayed.returncode == 0, relayed.stderr


def _published(workdir: Path) -> list[int]:
    path = workdir / "out.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [msgspec.json.decode(line)["payload"]["n"] for line in lines]


def test_block_keeps_order_until_replay(
    run_cli: RunCli, workdir: Path, m1_m2_m3: list[Message]
) -> None:
    _relay(run_cli)  # m1 (before the dead letter) goes; m3 waits; the relay still exits
    assert _published(workdir) == [1]

    replayed = run_cli("dead-letters", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == "outboxkit: replayed 1 dead letter\n"
    _relay(run_cli)
    assert _published(workdir) == [1, 2, 3]


def test_skip_publishes_past_the_dead_letter(
    run_cli: RunCli, workdir: Path, m1_m2_m3: list[Message]
) -> None:
    _relay(run_cli, "--on-dead-letter", "skip")
    assert _published(workdir) == [1, 3]
    assert run_cli("dead-letters", "replay", "--all").returncode == 0
    _relay(run_cli, "--on-dead-letter", "skip")
    assert _published(workdir) == [1, 3, 2]


def test_status_shows_blocked_aggregates(
    run_cli: RunCli, m1_m2_m3: list[Message], status_json: Status
) -> None:
    text = run_cli("status")
    assert text.returncode == 0, text.stderr
    assert f"blocked aggregates: 1 ({AGGREGATE})\n" in text.stdout
    assert "parked messages:    1 (wait behind dead letters" in text.stdout
    status = status_json()
    assert (status["blocked_aggregates"], status["blocked_sample"], status["parked"]) == (
        1,
        [AGGREGATE],
        1,
    )

    assert run_cli("dead-letters", "discard", "--all").stdout == (
        "outboxkit: discarded 1 dead letter\n"
    )
    assert "blocked aggregates: 0\nparked messages:    0\n" in run_cli("status").stdout


@pytest.mark.parametrize("command", ["replay", "discard"])
def test_an_id_that_is_not_a_dead_letter_changes_nothing(
    run_cli: RunCli, m1_m2_m3: list[Message], status_json: Status, command: str
) -> None:
    m1, m2, _ = m1_m2_m3
    unknown = UUID(int=7)
    result = run_cli("dead-letters", command, "--id", str(m2.id), "--id", str(unknown))

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"outboxkit: error: not dead letters: {unknown} (nothing changed; "
        "see `outboxkit dead-letters list`)\n"
    )
    status = status_json()
    assert (status["dead_letters"], status["pending"], status["parked"]) == (1, 2, 1)
    pending = run_cli("dead-letters", command, "--id", str(m1.id))  # pending, not dead
    assert pending.returncode == 3 and str(m1.id) in pending.stderr


def test_discard_by_id_unblocks_the_aggregate(
    run_cli: RunCli, workdir: Path, m1_m2_m3: list[Message]
) -> None:
    _, m2, _ = m1_m2_m3
    discarded = run_cli("dead-letters", "discard", "--id", str(m2.id))
    assert discarded.returncode == 0, discarded.stderr
    assert discarded.stdout == "outboxkit: discarded 1 dead letter\n"
    _relay(run_cli)
    assert _published(workdir) == [1, 3]
    assert run_cli("dead-letters", "list").stdout.strip() == "no dead letters"


def test_purge_older_than(run_cli: RunCli, m1_m2_m3: list[Message]) -> None:
    kept = run_cli("dead-letters", "purge", "--older-than", "7d")
    assert (kept.returncode, kept.stdout) == (0, "outboxkit: purged 0 dead letters\n")
    purged = run_cli("dead-letters", "purge", "--older-than", "0s")
    assert (purged.returncode, purged.stdout) == (0, "outboxkit: purged 1 dead letter\n")


@pytest.mark.parametrize("duration", ["7", "7x", "d", "-1d", ""])
def test_purge_refuses_a_bad_duration(run_cli: RunCli, duration: str) -> None:
    assert run_cli("migrate").returncode == 0
    result = run_cli("dead-letters", "purge", f"--older-than={duration}")
    assert result.returncode == 2
    assert "expected a duration such as 7d, 12h" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_shows_payloads_only_when_asked(run_cli: RunCli, m1_m2_m3: list[Message]) -> None:
    plain = run_cli("dead-letters", "list")
    as_json = run_cli("dead-letters", "list", "--json")
    assert plain.returncode == as_json.returncode == 0
    assert SECRET not in plain.stdout and SECRET not in as_json.stdout
    (letter,) = msgspec.json.decode(as_json.stdout)
    assert "payload" not in letter["message"] and letter["message"]["id"] == str(m1_m2_m3[1].id)

    shown = run_cli("dead-letters", "list", "--show-payload")
    assert SECRET in shown.stdout and "payload" in shown.stdout.splitlines()[0]
    (letter,) = msgspec.json.decode(
        run_cli("dead-letters", "list", "--json", "--show-payload").stdout
    )
    assert letter["message"]["payload"] == {"n": 2, "card": SECRET}
