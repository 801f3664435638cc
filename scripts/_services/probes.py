"""Protocol-level "does this server really answer?" checks, standard library only.

Used by ``scripts/services`` (readiness after start, ``status``) and by the test fixture
layer (``tests/support/servers.py``), so both agree on what "up" means:

* PostgreSQL: startup + simple query ``select 1`` (trust, cleartext or md5 auth);
* Kafka: a Metadata request (v4) that lists at least one live broker;
* NATS: ``$JS.API.INFO`` answered without error, i.e. JetStream is enabled;
* MongoDB wire: ``OP_MSG`` ``{ping: 1}`` answered with ``ok: 1``.

Every function returns ``(ok, detail)`` and never raises for network errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import urllib.parse
import urllib.request

__all__ = [
    "PgError",
    "kafka_probe",
    "mongo_probe",
    "nats_probe",
    "pg_probe",
    "pg_query",
    "probe_url",
    "prometheus_probe",
]


class PgError(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.sqlstate = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')}: {fields.get('M', '?')} ({self.sqlstate})")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return bytes(buf)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_msg(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    kind, length = header[:1], struct.unpack("!i", header[1:])[0]
    return kind, _recv_exact(sock, length - 4)


def _pg_error(body: bytes) -> PgError:
    fields: dict[str, str] = {}
    for part in body.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return PgError(fields)


def pg_query(
    host: str,
    port: int,
    sql: str,
    *,
    user: str = "postgres",
    database: str = "postgres",
    password: str | None = None,
    timeout: float = 5.0,
) -> list[list[str | None]]:
    """Run one simple-protocol query and return its rows as text. Raises PgError / OSError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        params = b"".join(
            k.encode() + b"\x00" + v.encode() + b"\x00"
            for k, v in (("user", user), ("database", database), ("application_name", "probe"))
        )
        body = struct.pack("!i", 196608) + params + b"\x00"
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:  # authentication and startup
            kind, body = _pg_msg(sock)
            if kind == b"E":
                raise _pg_error(body)
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code == 0:
                    continue
                if code in (3, 5) and password is not None:
                    if code == 3:
                        secret = password.encode() + b"\x00"
                    else:
                        inner = hashlib.md5(password.encode() + user.encode()).hexdigest()  # noqa: S324
                        outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()  # noqa: S324
                        secret = b"md5" + outer.encode() + b"\x00"
                    sock.sendall(b"p" + struct.pack("!i", len(secret) + 4) + secret)
                    continue
                raise PgError(
                    {
                        "S": "AUTH",
                        "M": f"authentication method {code} not supported by probe",
                        "C": "28000",
                    }
                )
            if kind == b"Z":
                break
        q = sql.encode() + b"\x00"
        sock.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
        rows: list[list[str | None]] = []
        error: PgError | None = None
        while True:
            kind, body = _pg_msg(sock)
            if kind == b"D":
                ncols = struct.unpack("!h", body[:2])[0]
                pos, row = 2, list[str | None]()
                for _ in range(ncols):
                    n = struct.unpack("!i", body[pos : pos + 4])[0]
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(body[pos : pos + n].decode("utf-8", "replace"))
                        pos += n
                rows.append(row)
            elif kind == b"E":
                error = _pg_error(body)
            elif kind == b"Z":
                break
        with contextlib.suppress(OSError):
            sock.sendall(b"X" + struct.pack("!i", 4))
        if error is not None:
            raise error
        return rows


def pg_probe(
    host: str,
    port: int,
    *,
    user: str = "postgres",
    database: str = "postgres",
    password: str | None = None,
    timeout: float = 3.0,
) -> tuple[bool, str]:
    try:
        rows = pg_query(
            host,
            port,
            "select version()",
            user=user,
            database=database,
            password=password,
            timeout=timeout,
        )
        return True, (rows[0][0] or "").split(" on ")[0]
    except PgError as exc:
        if exc.sqlstate.startswith("28"):  # auth the probe cannot do: the server does answer
            return True, f"answers (auth not checked: {exc})"
        return False, str(exc)
    except (OSError, ConnectionError, struct.error) as exc:
        return False, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- Kafka


def _kstr(s: str | None) -> bytes:
    if s is None:
        return struct.pack("!h", -1)
    b = s.encode()
    return struct.pack("!h", len(b)) + b


def kafka_probe(host: str, port: int, *, timeout: float = 3.0) -> tuple[bool, str]:
    """Metadata v4 (valid on Kafka 1.0 .. 4.x): ready when at least one broker is listed."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            corr = 0x0B0C
            req = struct.pack("!hhi", 3, 4, corr) + _kstr("outboxkit-probe")
            req += struct.pack("!i", -1) + b"\x00"  # all topics, no auto-creation
            sock.sendall(struct.pack("!i", len(req)) + req)
            size = struct.unpack("!i", _recv_exact(sock, 4))[0]
            resp = _recv_exact(sock, size)
        got_corr, _throttle, nbrokers = struct.unpack("!iii", resp[:12])
        if got_corr != corr:
            return False, "bad correlation id in metadata response"
        if nbrokers < 1:
            return False, "metadata lists no broker yet"
        pos = 12
        node_id = struct.unpack("!i", resp[pos : pos + 4])[0]
        hlen = struct.unpack("!h", resp[pos + 4 : pos + 6])[0]
        bhost = resp[pos + 6 : pos + 6 + hlen].decode()
        bport = struct.unpack("!i", resp[pos + 6 + hlen : pos + 10 + hlen])[0]
        return True, f"{nbrokers} broker(s), node {node_id} at {bhost}:{bport}"
    except (OSError, ConnectionError, struct.error, UnicodeDecodeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- NATS


def nats_probe(
    host: str,
    port: int,
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout: float = 3.0,
) -> tuple[bool, str]:
    """Plain NATS protocol: CONNECT, then a JetStream account-info request ($JS.API.INFO)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            f = sock.makefile("rb")
            line = f.readline()
            if not line.startswith(b"INFO "):
                return False, f"unexpected greeting {line[:60]!r}"
            info = json.loads(line[5:])
            opts: dict[str, object] = {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": True,
                "protocol": 1,
                "name": "outboxkit-probe",
                "lang": "python",
                "version": "0",
            }
            if user is not None:
                opts["user"], opts["pass"] = user, password or ""
            if token is not None:
                opts["auth_token"] = token
            inbox = "_INBOX.outboxkit_probe." + os.urandom(6).hex()
            sock.sendall(
                b"CONNECT "
                + json.dumps(opts).encode()
                + b"\r\n"
                + f"SUB {inbox} 1\r\nPUB $JS.API.INFO {inbox} 0\r\n\r\n".encode()
            )
            while True:
                line = f.readline()
                if not line:
                    return False, "connection closed by server"
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    return False, line.decode(errors="replace").strip()
                elif line.startswith((b"MSG ", b"HMSG ")):
                    parts = line.split()
                    payload = f.read(int(parts[-1]) + 2)[:-2]
                    if line.startswith(b"HMSG "):
                        hdr_len = int(parts[-2])
                        headers, payload = payload[:hdr_len], payload[hdr_len:]
                        if b" 503" in headers.split(b"\r\n", 1)[0]:
                            return False, "JetStream is not enabled (no responders)"
                    data = json.loads(payload or b"{}")
                    if "error" in data:
                        return False, f"JetStream error: {data['error']}"
                    return True, f"nats-server {info.get('version', '?')}, JetStream enabled"
    except (OSError, ConnectionError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- MongoDB wire


def _bson_cstring(b: str) -> bytes:
    return b.encode() + b"\x00"


def _bson_encode(doc: dict[str, object]) -> bytes:
    out = bytearray()
    for key, value in doc.items():
        if isinstance(value, bool):
            out += b"\x08" + _bson_cstring(key) + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            out += b"\x10" + _bson_cstring(key) + struct.pack("<i", value)
        elif isinstance(value, str):
            raw = value.encode() + b"\x00"
            out += b"\x02" + _bson_cstring(key) + struct.pack("<i", len(raw)) + raw
        else:
            raise TypeError(type(value))
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\x00"


def _bson_top_level(data: bytes) -> dict[str, object]:
    """Decode the scalar top-level fields of a BSON document (nested values are skipped)."""
    result: dict[str, object] = {}
    end = struct.unpack("<i", data[:4])[0] - 1
    pos = 4
    fixed = {0x01: 8, 0x07: 12, 0x09: 8, 0x11: 8, 0x12: 8, 0x10: 4, 0x08: 1, 0x0A: 0, 0x13: 16}
    while pos < end:
        etype = data[pos]
        nul = data.index(b"\x00", pos + 1)
        key = data[pos + 1 : nul].decode()
        pos = nul + 1
        if etype == 0x01:
            result[key] = struct.unpack("<d", data[pos : pos + 8])[0]
        elif etype == 0x10:
            result[key] = struct.unpack("<i", data[pos : pos + 4])[0]
        elif etype == 0x12:
            result[key] = struct.unpack("<q", data[pos : pos + 8])[0]
        elif etype == 0x08:
            result[key] = data[pos] == 1
        elif etype == 0x02:
            n = struct.unpack("<i", data[pos : pos + 4])[0]
            result[key] = data[pos + 4 : pos + 3 + n].decode("utf-8", "replace")
            pos += 4 + n
            continue
        if etype in fixed:
            pos += fixed[etype]
        elif etype in (0x03, 0x04):  # document, array
            pos += struct.unpack("<i", data[pos : pos + 4])[0]
        elif etype == 0x05:  # binary
            pos += 5 + struct.unpack("<i", data[pos : pos + 4])[0]
        else:  # something a probe does not need
            break
    return result


def mongo_command(
    host: str, port: int, command: dict[str, object], *, timeout: float = 3.0
) -> dict[str, object]:
    body = struct.pack("<I", 0) + b"\x00" + _bson_encode(command)
    request_id = int.from_bytes(os.urandom(3), "little")
    header = struct.pack("<iiii", 16 + len(body), request_id, 0, 2013)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(header + body)
        length, _rid, response_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        payload = _recv_exact(sock, length - 16)
    if response_to != request_id or opcode != 2013:
        raise ConnectionError(f"unexpected reply (opcode {opcode})")
    if payload[4] != 0:
        raise ConnectionError("unexpected OP_MSG section kind")
    return _bson_top_level(payload[5:])


def mongo_probe(host: str, port: int, *, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        reply = mongo_command(host, port, {"ping": 1, "$db": "admin"}, timeout=timeout)
        if reply.get("ok") not in (1, 1.0, True):
            return False, f"ping failed: {reply.get('errmsg', reply)}"
        info = mongo_command(host, port, {"buildInfo": 1, "$db": "admin"}, timeout=timeout)
        version = info.get("version", "?")
        flavor = "FerretDB" if "ferretdbVersion" in info else "MongoDB"
        hello = mongo_command(host, port, {"hello": 1, "$db": "admin"}, timeout=timeout)
        extra = f", replica set {hello['setName']}" if "setName" in hello else ""
        if "setName" in hello and not hello.get("isWritablePrimary"):
            return False, f"{flavor} {version}: replica set {hello['setName']} has no primary yet"
        return True, f"{flavor} {version}{extra}"
    except (OSError, ConnectionError, struct.error, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def prometheus_probe(host: str, port: int, *, timeout: float = 3.0) -> tuple[bool, str]:
    """GET /api/v1/status/buildinfo: Prometheus answers with its version once ready."""
    url = f"http://{host}:{port}/api/v1/status/buildinfo"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
        ready = f"http://{host}:{port}/-/ready"
        with urllib.request.urlopen(ready, timeout=timeout) as response:
            response.read()
    except (OSError, ValueError) as exc:
        return False, f"no answer ({exc})"
    return True, f"Prometheus {body.get('data', {}).get('version', '?')}"


# --------------------------------------------------------------------------- URLs


def probe_url(kind: str, url: str, *, timeout: float = 3.0) -> tuple[bool, str]:
    """Probe a server given the URL form used by the OUTBOXKIT_TEST_* variables."""
    if kind == "kafka":
        first = url.split(",")[0].strip()
        if "://" in first:
            first = first.split("://", 1)[1]
        host, _, port = first.rpartition(":")
        return kafka_probe(host.strip("[]") or "127.0.0.1", int(port or 9092), timeout=timeout)
    parsed = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parsed.username) if parsed.username else None
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    if kind == "postgres":
        query = urllib.parse.parse_qs(parsed.query)
        host = parsed.hostname or query.get("host", ["127.0.0.1"])[0]
        if host.startswith("/"):
            return False, "unix-socket postgres URLs are not probed"
        database = parsed.path.lstrip("/") or user or "postgres"
        return pg_probe(
            host,
            parsed.port or 5432,
            user=user or "postgres",
            database=database,
            password=password,
            timeout=timeout,
        )
    if kind == "nats":
        token = user if user and password is None else None
        return nats_probe(
            parsed.hostname or "127.0.0.1",
            parsed.port or 4222,
            user=None if token else user,
            password=password,
            token=token,
            timeout=timeout,
        )
    if kind == "prometheus":
        return prometheus_probe(
            parsed.hostname or "127.0.0.1", parsed.port or 9090, timeout=timeout
        )
    if kind == "mongodb":
        if parsed.scheme == "mongodb+srv":
            return True, "mongodb+srv URL: not probed"
        hostpart = parsed.netloc.rsplit("@", 1)[-1].split(",")[0]
        host, _, port = hostpart.rpartition(":") if hostpart.count(":") == 1 else (hostpart, "", "")
        return mongo_probe(host or "127.0.0.1", int(port or 27017), timeout=timeout)
    raise ValueError(f"unknown server kind {kind!r}")
