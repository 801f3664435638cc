"""Validation of NATS subjects, stream names and message sizes before anything is sent.

A malformed subject or an oversized message would make the server answer with a protocol
error that closes the whole connection, so these are caught client-side and reported as
non-retriable failures of that one message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from outboxkit.errors import ConfigurationError, InvalidMessageError

__all__ = ["check_stream_name", "check_subject", "wire_size"]

_BAD_SUBJECT_CHARS = re.compile(r"[\s\x00]")
_BAD_STREAM_CHARS = re.compile(r"[\s.*>/\\\x00]")
_HEADER_OVERHEAD = len(b"NATS/1.0\r\n") + len(b"\r\n")
_PER_HEADER_OVERHEAD = len(b": \r\n")


def check_subject(subject: str) -> str:
    """Return ``subject`` if it is a valid publish subject, else raise InvalidMessageError."""
    if (
        not subject
        or _BAD_SUBJECT_CHARS.search(subject)
        or any(token in ("", "*", ">") for token in subject.split("."))
    ):
        raise InvalidMessageError(
            f"NATS subject {subject!r} is invalid: it needs dot-separated non-empty tokens, "
            "no whitespace and no wildcards; check subject_template and the message fields"
        )
    return subject


def check_stream_name(name: str) -> str:
    """Return ``name`` if it is a valid JetStream stream name, else raise ConfigurationError."""
    if not name or _BAD_STREAM_CHARS.search(name):
        raise ConfigurationError(
            f"NATS stream name {name!r} is invalid: no whitespace, '.', '*', '>', '/' or '\\'"
        )
    return name


def wire_size(payload: bytes, headers: Mapping[str, str]) -> int:
    """Bytes the server counts against ``max_payload``: the header block plus the payload."""
    size = len(payload)
    if headers:
        size += _HEADER_OVERHEAD + sum(
            len(k.encode()) + len(v.encode()) + _PER_HEADER_OVERHEAD for k, v in headers.items()
        )
    return size
