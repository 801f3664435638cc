"""The table store woken by the log (``wake_from_log``): no NOTIFY on the write path.

Writers add rows with ``notify=False``. One relay instance at a time (the slot's fenced
lease) reads a slot on a publication of the outbox table's inserts, takes each new row's shard
from the Insert records, and sends the relay instances one coalesced ``NOTIFY`` per read
turn naming the shards that got commits (``3,7,12``), on the channel they already LISTEN on.
The NOTIFY is the relay's, after the writers' commits: it never holds a writer's commit. The
slot is confirmed once the wake-up is sent (the rows are in the table by then; a wake-up lost
to a crash costs at most one poll interval).
"""

from __future__ import annotations

import anyio

from outboxkit_postgres.pgoutput import Commit, Insert, Relation, decode
from outboxkit_postgres.slot import SlotStream
from outboxkit_postgres.wal_relay import SlotHolder, SlotSession

__all__ = ["LogWake", "wake_payloads"]

MAX_PAYLOAD = 7000
"""Characters per NOTIFY payload (the server's limit is 8000 bytes)."""


def wake_payloads(shards: set[int]) -> list[str]:
    """``shards`` as comma-separated payloads no longer than :data:`MAX_PAYLOAD`."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for shard in sorted(shards):
        text = str(shard)
        if current and size + len(text) + 1 > MAX_PAYLOAD:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


class LogWake(SlotHolder):
    """Holds the slot of the table's inserts and wakes the shards that got rows."""

    def session(self, token: int) -> SlotSession:
        return _WakeSession(self, token)


class _WakeSession(SlotSession):
    async def run(self) -> None:
        stream = await self.open_stream()
        try:
            # A new holder cannot know which wake-ups its predecessor read and confirmed but
            # never got to the relays (it was paused, or died between the two): wake every
            # shard once, so none waits for its poll.
            await self.store.wake(wake_payloads(set(range(self.store.shard_count))))
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.keep_lease)
                await self._read(stream)
        finally:
            stream.close()

    async def _read(self, stream: SlotStream) -> None:
        names = self.store.names
        shard_column: dict[int, int] = {}  # relation oid -> index of "shard"
        while True:
            records = await self.next_records(stream)
            shards: set[int] = set()
            end = 0
            for _start, payload in records:
                record = decode(payload)
                if isinstance(record, Insert):
                    index = shard_column.get(record.oid)
                    value = None if index is None else record.values[index]
                    if value is not None:
                        shards.add(int(value))
                elif isinstance(record, Commit):
                    end = record.end_lsn
                elif isinstance(record, Relation) and (record.namespace, record.name) == (
                    names.schema,
                    names.table,
                ):
                    shard_column[record.oid] = record.columns.index("shard")
            if shards:
                await self.store.wake(wake_payloads(shards))
            if end:
                stream.confirm(end)
