"""Classifying NATS and JetStream errors into retriable and non-retriable failures.

Retriable: anything whose outcome is unknown or transient (PubAck timeout, disconnect,
reconnecting, JetStream 5xx). Re-publishing after an unknown outcome is safe because the
server drops a second copy with the same ``Nats-Msg-Id`` inside the stream's duplicate window.

Non-retriable (dead letter): the message can never be accepted as it is (no stream captures
its subject, it is over the server's or the stream's size limit, the subject or a header is
malformed, the user may not publish to the subject, the stream refused it with a 4xx).
"""

from __future__ import annotations

import nats.errors
import nats.js.errors

from outboxkit.errors import ConfigurationError, PublisherUnavailableError
from outboxkit.protocols import Failed

__all__ = ["StreamNotFoundError", "classify", "no_stream", "permission_denied"]

# JetStream API status codes that mean "try again later".
_TRANSIENT_STATUS = frozenset({408, 429})


class StreamNotFoundError(PublisherUnavailableError, ConfigurationError):
    """The configured JetStream stream does not exist on the server."""


def no_stream(subject: str) -> Failed:
    """The failure of a publish to ``subject`` that no JetStream stream captures."""
    return Failed(
        f"no JetStream stream captures subject {subject!r} (the server answered: no "
        "responders): create a stream for it or change subject_template",
        retriable=False,
    )


def permission_denied(subject: str, reason: str) -> Failed:
    """The failure of a publish the server refused for lack of permission."""
    return Failed(
        f"not allowed to publish to {subject!r}: {reason}; grant the relay's NATS user "
        "publish permission on it",
        retriable=False,
    )


def classify(exc: BaseException, subject: str, timeout: float) -> Failed:
    """The outcome of a publish of a message to ``subject`` that raised ``exc``."""
    if isinstance(exc, nats.js.errors.APIError):
        return _api_error(exc, subject)
    if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        return no_stream(subject)
    if isinstance(exc, nats.errors.MaxPayloadError):
        return Failed(
            f"message to {subject!r} is over the server's max_payload: store large data "
            "elsewhere and reference it, or raise max_payload on the server",
            retriable=False,
        )
    if isinstance(exc, nats.errors.BadSubjectError | nats.errors.BadHeaderError):
        return Failed(f"malformed subject {subject!r} or header: {exc}", retriable=False)
    if isinstance(exc, TimeoutError):
        return Failed(
            f"no JetStream PubAck from {subject!r} within {timeout:g}s; the outcome is "
            "unknown and the retry is deduplicated by Nats-Msg-Id",
            retriable=True,
        )
    if isinstance(exc, nats.errors.Error | OSError):
        name = type(exc).__name__
        return Failed(f"publish to {subject!r} failed ({name}): {exc}", retriable=True)
    return Failed(
        f"publish to {subject!r} failed unexpectedly ({type(exc).__name__}): {exc}",
        retriable=True,
    )


def _api_error(exc: nats.js.errors.APIError, subject: str) -> Failed:
    status = exc.code or 0
    reason = f"JetStream refused the message to {subject!r}: {exc.description or exc}"
    if exc.err_code is not None:
        reason += f" (err_code {exc.err_code})"
    retriable = status >= 500 or status in _TRANSIENT_STATUS
    return Failed(reason, retriable=retriable)
