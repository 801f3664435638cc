"""The embedded SQLite writer passes the parts of the writer conformance suite that apply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.testing import WriterConformance
from tests.support.writer_harnesses import SqliteHarness


class TestSqliteWriterConformance(WriterConformance):
    not_applicable: ClassVar[Mapping[str, str]] = {
        "test_concurrent_writers_of_one_aggregate_keep_commit_order": (
            "SQLite lets one transaction write at a time (the database lock), so writers "
            "never overlap and sequence order is commit order by construction"
        ),
    }

    @pytest.fixture
    async def writer_harness(self, tmp_path: Path) -> AsyncIterator[SqliteHarness]:
        settings = SqliteSettings(path=str(tmp_path / "outbox.db"), shard_count=4)
        store = SqliteStore(settings)
        await store.migrate()
        await store.open()
        try:
            yield SqliteHarness(store, tmp_path / "outbox.db")
        finally:
            await store.close()
