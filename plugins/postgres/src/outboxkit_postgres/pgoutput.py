"""Decoding the records of PostgreSQL's ``pgoutput`` plugin, protocol version 1.

Only what the relay reads: Begin, Commit, logical decoding Message, Relation and Insert
(PostgreSQL docs, "Logical Replication Message Formats"). Other records decode to None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Begin", "Commit", "Insert", "LogicalMessage", "Relation", "decode"]

_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">bQQq")
_MESSAGE = struct.Struct(">bQ")
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")


@dataclass(frozen=True, slots=True)
class Begin:
    """``B``: a transaction starts; ``final_lsn`` is its commit record's LSN."""

    final_lsn: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """``C``: a transaction ends; the slot may be confirmed up to ``end_lsn`` once every
    message of it and of the transactions before it is done."""

    commit_lsn: int
    end_lsn: int
    timestamp: int
    """Commit time, microseconds since 2000-01-01 UTC."""


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """``M``: a logical decoding message (``pg_logical_emit_message``)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Relation:
    """``R``: a table's schema, sent before the first change of it in a session."""

    oid: int
    namespace: str
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Insert:
    """``I``: a new row; ``values`` in text format (None: NULL or unchanged TOAST)."""

    oid: int
    values: tuple[str | None, ...]


def _string(buf: bytes, at: int) -> tuple[str, int]:
    end = buf.index(b"\0", at)
    return buf[at:end].decode(), end + 1


def _relation(buf: bytes) -> Relation:
    (oid,) = _I32.unpack_from(buf, 1)
    namespace, at = _string(buf, 5)
    name, at = _string(buf, at)
    (count,) = _I16.unpack_from(buf, at + 1)
    at += 3
    columns = []
    for _ in range(count):
        column, at = _string(buf, at + 1)
        columns.append(column)
        at += 8
    return Relation(oid & 0xFFFFFFFF, namespace, name, tuple(columns))


def _insert(buf: bytes) -> Insert:
    (oid,) = _I32.unpack_from(buf, 1)
    (count,) = _I16.unpack_from(buf, 6)
    at = 8
    values: list[str | None] = []
    for _ in range(count):
        kind = buf[at : at + 1]
        at += 1
        if kind == b"t":
            (size,) = _I32.unpack_from(buf, at)
            values.append(buf[at + 4 : at + 4 + size].decode())
            at += 4 + size
        else:
            values.append(None)
    return Insert(oid & 0xFFFFFFFF, tuple(values))


def decode(buf: bytes) -> Begin | Commit | LogicalMessage | Relation | Insert | None:
    """One pgoutput record, or None for kinds the relay does not read."""
    kind = buf[:1]
    if kind == b"M":
        flags, lsn = _MESSAGE.unpack_from(buf, 1)
        prefix, at = _string(buf, 10)
        (size,) = _I32.unpack_from(buf, at)
        return LogicalMessage(bool(flags & 1), lsn, prefix, bytes(buf[at + 4 : at + 4 + size]))
    if kind == b"B":
        final_lsn, _ts, xid = _BEGIN.unpack_from(buf, 1)
        return Begin(final_lsn, xid)
    if kind == b"C":
        _flags, commit_lsn, end_lsn, timestamp = _COMMIT.unpack_from(buf, 1)
        return Commit(commit_lsn, end_lsn, timestamp)
    if kind == b"I":
        return _insert(buf)
    if kind == b"R":
        return _relation(buf)
    return None
