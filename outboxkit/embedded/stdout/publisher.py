"""The stdout publisher (``--publisher stdout``): each message as one JSON line on standard
output or appended to a file, flushed once per publish call. Every message counts as
delivered; see :mod:`outboxkit.embedded.stdout.records` for the line format."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO

import anyio.to_thread

from outboxkit.embedded.stdout.records import encode_line
from outboxkit.embedded.stdout.settings import StdoutSettings
from outboxkit.errors import PublisherUnavailableError
from outboxkit.message import Message, check_template
from outboxkit.plugins import PublisherPlugin
from outboxkit.protocols import Delivered, Outcome

__all__ = ["StdoutPublisher", "plugin"]


class StdoutPublisher:
    """Writes JSON lines; useful for demos, debugging and piping into other tools."""

    def __init__(self, settings: StdoutSettings | None = None) -> None:
        self._settings = settings or StdoutSettings()
        self._template = check_template(self._settings.template)
        self._out: BinaryIO | None = None

    async def open(self) -> None:
        """Open the output file (append) or standard output."""
        if self._out is not None:
            return
        path = self._settings.path
        if path is None:
            self._out = sys.stdout.buffer
            return
        try:
            self._out = await anyio.to_thread.run_sync(open, path, "ab")
        except OSError as exc:
            raise PublisherUnavailableError(
                f"cannot open {path!r} for writing: {exc}", retriable=False
            ) from exc

    async def close(self) -> None:
        """Flush and close the file (standard output stays open). Idempotent."""
        out, self._out = self._out, None
        if out is not None and self._settings.path is not None:
            await anyio.to_thread.run_sync(out.close)

    async def publish(self, messages: Sequence[Message]) -> list[Outcome]:
        """Write one line per message and flush; every message is :class:`Delivered`."""
        if not messages:
            return []
        out = self._out
        if out is None:
            raise PublisherUnavailableError("StdoutPublisher.publish() called before open()")
        data = b"".join(encode_line(m, self._template) for m in messages)
        await anyio.to_thread.run_sync(_write, out, data)
        return [Delivered() for _ in messages]


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


plugin = PublisherPlugin(
    name="stdout",
    settings_type=StdoutSettings,
    create=StdoutPublisher,
    summary="JSON lines on standard output or in a file (no broker; always delivered)",
)
