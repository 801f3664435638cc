"""Waking the relay: change streams where the server has them, polling otherwise.

A writer always increments ``<f>_seq``; acks and retries never touch it. The change stream
watches the configured collections for inserts, replacements and updates of ``<f>_seq``, so the
relay's own acks do not wake it. Events that arrive while nobody waits stay buffered in the
stream, so no wake-up is lost.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import anyio
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from outboxkit.errors import ConfigurationError
from outboxkit_mongodb.names import OutboxFields

__all__ = ["Wakeup"]

log = logging.getLogger("outboxkit.mongodb")

WakeupMode = Literal["change_stream", "polling"]


class Wakeup:
    """Waits for new outbox entries; ``mode`` tells which path is in use."""

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.mode: WakeupMode = "polling"
        self.reason = "change streams disabled by settings"
        self._stream: AsyncChangeStream[Any] | None = None

    async def start(
        self,
        db: AsyncDatabase[Any],
        collections: list[str],
        fields: OutboxFields,
        setting: Literal["auto", "on", "off"],
    ) -> None:
        """Open a change stream unless ``setting`` is off; fall back to polling on "auto"."""
        if setting != "off":
            pipeline: list[dict[str, Any]] = [
                {
                    "$match": {
                        "ns.coll": {"$in": collections},
                        "$or": [
                            {"operationType": {"$in": ["insert", "replace"]}},
                            {f"updateDescription.updatedFields.{fields.seq}": {"$exists": True}},
                        ],
                    }
                }
            ]
            await_ms = max(10, int(min(self.poll_interval, 0.5) * 1000))
            try:
                self._stream = await db.watch(pipeline, max_await_time_ms=await_ms)
                self.mode = "change_stream"
                self.reason = "the server supports change streams"
            except (PyMongoError, NotImplementedError) as exc:
                if setting == "on":
                    raise ConfigurationError(
                        f"change_streams=on but the server cannot open one ({exc}); they need "
                        "a replica set: use change_streams=auto or off"
                    ) from exc
                self.reason = f"change streams unavailable: {exc}"
        if self.mode == "change_stream":
            log.info("mongodb store: wake-up by change streams on %s", ", ".join(collections))
        else:
            log.info(
                "mongodb store: wake-up by polling every %ss (%s)", self.poll_interval, self.reason
            )

    async def wait(self, timeout: float) -> None:
        """Return on a change event or after ``timeout`` (polling: after the poll interval)."""
        if timeout <= 0:
            return
        if self._stream is None:
            await anyio.sleep(min(timeout, self.poll_interval))
            return
        deadline = anyio.current_time() + timeout
        try:
            while anyio.current_time() < deadline:
                if await self._stream.try_next() is not None:
                    return
        except PyMongoError as exc:
            log.warning("mongodb store: change stream failed (%s); polling until restart", exc)
            await self.close()
            self.mode, self.reason = "polling", f"change stream failed: {exc}"
            await anyio.sleep(min(max(0.0, deadline - anyio.current_time()), self.poll_interval))

    async def close(self) -> None:
        """Close the change stream, if any. Idempotent."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()
