"""UUIDv7 identifiers (RFC 9562): time-ordered, unique, stable across retries."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7, monotonic within this process.

    48 bits of Unix milliseconds, then a 12-bit counter (``rand_a``) that orders ids
    made in the same millisecond, then 62 random bits. Python 3.14's ``uuid.uuid7``
    is used where available.
    """
    native = getattr(uuid, "uuid7", None)
    if native is not None:
        value: uuid.UUID = native()
        return value
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
            ms = _last_ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value_int = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value_int)


def uuid7_floor(seconds: float) -> uuid.UUID:
    """The smallest UUIDv7 of the millisecond ``seconds`` (Unix time) falls in: every id made
    at or after that time is at least this one, every id made before it is smaller."""
    ms = max(0, int(seconds * 1000))
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))
