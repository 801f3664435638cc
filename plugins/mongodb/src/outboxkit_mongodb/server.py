"""What the connected server can do, and its clock.

Detected once at :meth:`MongoStore.open`:

* **clock**: ``hello.localTime`` (every MongoDB-wire server reports it). Lease and retry times
  are computed from a fresh read, never from the relay host's clock. ``$$NOW`` in pipeline
  updates would save that round trip, but FerretDB 1.x has no pipeline updates and returns
  ``"$$NOW"`` as a literal string, so one portable path is used.
* **transactions**: a replica set (``hello.setName``) or a mongos (``hello.msg == "isdbgrid"``).
  When present, fenced operations check the lease and change documents in one transaction;
  otherwise the lease is checked just before the single-document updates (see ``store.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from outboxkit_mongodb.bulk import FERRETDB_STATEMENTS, FERRETDB_WRITES
from outboxkit_mongodb.entries import as_utc

__all__ = ["ServerInfo", "detect", "server_now"]


async def server_now(db: AsyncDatabase[Any]) -> datetime:
    """The server's current time (UTC, millisecond precision) from ``hello.localTime``."""
    reply = await db.command("hello")
    local_time = reply.get("localTime")
    if not isinstance(local_time, datetime):
        raise RuntimeError("the server's hello reply has no localTime: cannot read its clock")
    return as_utc(local_time)


class ServerInfo:
    """Capabilities of the connected server."""

    def __init__(self, hello: dict[str, Any], build_info: dict[str, Any]) -> None:
        self.transactions = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
        ferret = build_info.get("ferretdbVersion")
        version = build_info.get("version", "?")
        self.name = f"FerretDB {ferret}" if ferret else f"MongoDB {version}"
        topology = "replica set" if hello.get("setName") else "standalone"
        if hello.get("msg") == "isdbgrid":
            topology = "sharded cluster"
        self.description = f"{self.name} ({topology})"
        self.statements_per_command = FERRETDB_STATEMENTS if ferret else None
        """Most statements one write command may carry (None: any number)."""
        self.concurrent_writes = FERRETDB_WRITES if ferret else None
        """Most fenced writes one store may run at once (None: any number)."""

    @property
    def fencing(self) -> str:
        """``"transaction"`` or ``"check-then-write"``: how fenced operations run."""
        return "transaction" if self.transactions else "check-then-write"


async def detect(db: AsyncDatabase[Any]) -> ServerInfo:
    """Read ``hello`` and ``buildInfo`` of the server behind ``db``."""
    hello = await db.command("hello")
    build_info = await db.command("buildInfo")
    return ServerInfo(dict(hello), dict(build_info))
