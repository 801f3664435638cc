"""A small HTTP/1.1 server on the relay's event loop: ``/metrics``, ``/healthz``, ``/readyz``.

It runs on the same event loop as the relay on purpose: if that loop is stuck, the probes get
no answer, which is what a liveness probe must see.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream

from outboxkit.observability.health import Verdict
from outboxkit.relay.log import brief, log

__all__ = ["Routes", "serve_http"]

MAX_REQUEST = 8192
READ_TIMEOUT = 5.0
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Routes:
    """What the endpoints answer with."""

    metrics: Callable[[], bytes]
    metrics_type: str
    live: Callable[[], Verdict]
    ready: Callable[[], Verdict]


def _response(status: int, body: bytes, content_type: str, head: bool) -> bytes:
    header = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return header if head else header + body


def _verdict(verdict: Verdict) -> tuple[int, bytes]:
    body = json.dumps({"ok": verdict.ok, **verdict.details}, sort_keys=True).encode() + b"\n"
    return (200 if verdict.ok else 503), body


def answer(routes: Routes, method: str, target: str) -> bytes:
    """The full response to ``method target``."""
    head = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return _response(405, b"only GET and HEAD\n", "text/plain", head)
    path = target.split("?", 1)[0]
    if path == "/metrics":
        return _response(200, routes.metrics(), routes.metrics_type, head)
    if path in ("/healthz", "/livez"):
        return _response(*_verdict(routes.live()), "application/json", head)
    if path == "/readyz":
        return _response(*_verdict(routes.ready()), "application/json", head)
    return _response(404, b"try /metrics, /healthz or /readyz\n", "text/plain", head)


async def _handle(routes: Routes, stream: SocketStream) -> None:
    async with stream:
        data = b""
        with anyio.move_on_after(READ_TIMEOUT):
            while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
                try:
                    chunk = await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                data += chunk
        request_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            return
        try:
            response = answer(routes, parts[0], parts[1])
        except Exception as exc:  # a bug in a collector must not kill the server
            log.warning("HTTP %s %s failed (%s)", parts[0], parts[1], brief(exc))
            response = _response(500, b"internal error\n", "text/plain", False)
        try:
            await stream.send(response)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


async def serve_http(listener: anyio.abc.Listener[SocketStream], routes: Routes) -> None:
    """Serve ``routes`` on ``listener`` until cancelled."""
    async with listener:
        await listener.serve(lambda stream: _handle(routes, stream))
