"""NATS for the tests: throwaway JetStream streams, reading a stream back, private servers.

:class:`LocalNatsServer` is a private ``nats-server -js`` for tests that restart the server or
configure authorization: on a free loopback port with its own store directory, so the shared
server of ``scripts/services`` stays up (the ``local_nats`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from outboxkit_nats import NatsPublisher

__all__ = [
    "LocalNatsServer",
    "PublisherFactory",
    "Stream",
    "fetch",
    "free_port",
    "make_stream",
    "read_stream",
    "scratch_stream",
]

PublisherFactory = Callable[..., Awaitable[NatsPublisher]]
"""The ``open_publisher`` fixture: ``await open_publisher(**settings)``."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalNatsServer:
    """One nats-server process with JetStream; ``start``/``stop``/``kill`` keep port and store.

    ``authorization`` is the body of a NATS config ``authorization { ... }`` block, if any.
    Without ``jetstream`` it is a plain NATS server.
    """

    def __init__(
        self, directory: Path, authorization: str | None = None, jetstream: bool = True
    ) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.binary = binary
        self.port = free_port()
        self.directory = directory
        self.store = directory / "jetstream"
        self.config = directory / "nats.conf"
        self.log = directory / "nats.log"
        directory.mkdir(parents=True, exist_ok=True)
        auth = f"authorization {{\n{authorization}\n}}\n" if authorization else ""
        js = f'jetstream {{ store_dir: "{self.store}" }}\n' if jetstream else ""
        self.config.write_text(f'listen: "127.0.0.1:{self.port}"\n{js}{auth}')
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it accepts clients and JetStream is ready."""
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if "Server is ready" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server not ready within {timeout}s: {self.log.read_text()}")

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The next start must not match the previous run's "ready" line.
        self.log.write_text("")

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM): JetStream flushes its store."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        self._end(signal.SIGKILL)


@dataclass(frozen=True)
class Stream:
    """A stream made for one test: it captures ``<prefix>.>``."""

    name: str
    prefix: str

    def subject(self, suffix: str = "events") -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def wildcard(self) -> str:
        return f"{self.prefix}.>"


async def read_stream(
    js: JetStreamContext, stream: str, subjects: str, timeout: float = 10.0
) -> list[Msg]:
    """Every message of ``stream`` (filtered by ``subjects``) in stream order."""
    info = await js.stream_info(stream)
    return await fetch(js, stream, subjects, info.state.messages, timeout)


async def fetch(
    js: JetStreamContext, stream: str, subjects: str, count: int, timeout: float
) -> list[Msg]:
    """Up to ``count`` messages of ``stream`` on ``subjects`` from the start, in stream order;
    returns early once ``count`` arrived, else after about ``timeout`` seconds."""
    if count <= 0:
        return []
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, max_waiting=1
    )
    sub = await js.pull_subscribe(subjects, stream=stream, config=config)
    found: list[Msg] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            try:
                found += await sub.fetch(min(1000, count - len(found)), timeout=min(left, 1.0))
            except TimeoutError:
                continue
    finally:
        await sub.unsubscribe()
    return found


async def make_stream(js: JetStreamContext, **config: Any) -> Stream:
    """A fresh stream ``OBKT_<12 hex digits>`` capturing ``obkt.<same digits>.>``, with
    stream ``config`` (``duplicate_window=120.0``, ...)."""
    token = uuid.uuid4().hex[:12]
    stream = Stream(name=f"OBKT_{token}", prefix=f"obkt.{token}")
    await js.add_stream(name=stream.name, subjects=[f"{stream.prefix}.>"], **config)
    return stream


@asynccontextmanager
async def scratch_stream(js: JetStreamContext, **config: Any) -> AsyncIterator[Stream]:
    """A fresh stream (see :func:`make_stream`), deleted afterwards."""
    made = await make_stream(js, **config)
    try:
        yield made
    finally:
        await js.delete_stream(made.name)
