"""TCP proxies for outage tests: a server that stops answering, or that is not up yet, without
touching the shared test servers.

A :class:`TcpProxy` listens on a free local port and forwards every connection to a target
server, in one of three states that a test switches at any time:

* ``forwarding``: bytes go through both ways;
* ``silent``: connections are accepted (and open ones kept) but nothing goes through either
  way, as with a server paused by SIGSTOP;
* ``refusing``: nothing listens on the port (connections are refused) and open ones are
  closed, as with a server that is down.

:class:`KafkaProxy` also rewrites the brokers in Kafka's Metadata responses to itself, so a
Kafka client keeps going through the proxy after bootstrapping (the test broker is a single
node). The proxy runs its own event loop in a daemon thread, so tests may block (e.g. wait
for a subprocess) while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

from aiokafka.protocol import metadata

__all__ = ["KafkaProxy", "TcpProxy", "closed_port", "proxy"]

State = Literal["forwarding", "silent", "refusing"]
Pump = Callable[[asyncio.StreamReader], Awaitable[bytes]]


def closed_port() -> int:
    """A local TCP port that nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` (``host:port``), in the state a test sets."""

    def __init__(self, target: str, state: State = "forwarding") -> None:
        host, _, port = target.rpartition(":")
        self.target = (host.strip("[]") or "127.0.0.1", int(port))
        self.port = closed_port()
        self._state: State = state
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: asyncio.Event
        self._links: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: give this to the client instead of the target."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start)
        return self

    def set(self, state: State) -> None:
        """Switch to ``state`` (see the module docs)."""
        self._call(self._set, state)

    def close(self) -> None:
        self._call(self._set, "refusing")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, step: Callable[..., Awaitable[None]], *args: object) -> None:
        asyncio.run_coroutine_threadsafe(step(*args), self._loop).result(10)

    async def _start(self) -> None:
        self._open = asyncio.Event()
        await self._set(self._state)

    async def _set(self, state: State) -> None:
        self._state = state
        if state == "forwarding":
            self._open.set()
        else:
            self._open.clear()
        if state == "refusing":
            if self._server is not None:
                self._server.close()
                self._server = None
            links = list(self._links)
            for link in links:
                link.cancel()
            await asyncio.gather(*links, return_exceptions=True)
        elif self._server is None:
            self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
            pumps = [
                asyncio.ensure_future(self._pump(client_r, upstream_w, self._request)),
                asyncio.ensure_future(self._pump(upstream_r, client_w, self._response)),
            ]
            try:  # one side closed: close both
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a connection ends as it ends; refusing cancels the open ones
        finally:
            self._links.discard(task)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read: Pump):
        while True:
            data = await read(reader)
            if not data:
                return
            await self._open.wait()  # silent: hold what was read until forwarding again
            writer.write(data)
            await writer.drain()

    async def _request(self, reader: asyncio.StreamReader) -> bytes:
        return await reader.read(65536)

    async def _response(self, reader: asyncio.StreamReader) -> bytes:
        return await reader.read(65536)


class KafkaProxy(TcpProxy):
    """A :class:`TcpProxy` that names itself as the broker in Metadata responses."""

    _METADATA = 3

    def __init__(self, target: str, state: State = "forwarding") -> None:
        super().__init__(target, state)
        self._versions: dict[int, int] = {}  # correlation id -> Metadata request version

    async def _request(self, reader: asyncio.StreamReader) -> bytes:
        frame = await _frame(reader)
        if len(frame) >= 12:
            api_key, version, correlation = struct.unpack(">hhi", frame[4:12])
            if api_key == self._METADATA:
                self._versions[correlation] = version
        return frame

    async def _response(self, reader: asyncio.StreamReader) -> bytes:
        frame = await _frame(reader)
        if len(frame) < 8:
            return frame
        (correlation,) = struct.unpack(">i", frame[4:8])
        version = self._versions.pop(correlation, None)
        response = getattr(metadata, f"MetadataResponse_v{version}", None)
        if response is None:
            return frame
        decoded = response.decode(frame[8:])
        decoded.brokers = [(b[0], "127.0.0.1", self.port, *b[3:]) for b in decoded.brokers]
        body = frame[4:8] + decoded.encode()
        return struct.pack(">i", len(body)) + body


async def _frame(reader: asyncio.StreamReader) -> bytes:
    """One size-prefixed Kafka frame, with its size; b"" at the end of the stream."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return b""
    (size,) = struct.unpack(">i", head)
    return head + await reader.readexactly(size)


@contextlib.contextmanager
def proxy(kind: type[TcpProxy], target: str, state: State = "forwarding") -> Iterator[TcpProxy]:
    """A started proxy of ``kind`` to ``target``, closed on exit."""
    started = kind(target, state).start()
    try:
        yield started
    finally:
        started.close()
