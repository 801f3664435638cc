"""Exceptions raised by outboxkit. Each message says what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from outboxkit.protocols import Lease


class OutboxError(Exception):
    """Base class of every outboxkit error."""


class InvalidMessageError(OutboxError, ValueError):
    """A message was rejected before anything was written."""


class ConfigurationError(OutboxError, ValueError):
    """Settings, DSNs, identifiers or plugin names are wrong."""


class TransactionRequiredError(ConfigurationError):
    """A writer was called outside the caller's transaction; nothing was written.

    Every writer raises this one type (see :func:`transaction_required`).
    """


def transaction_required(writer: str, how: str) -> TransactionRequiredError:
    """The error of ``writer`` called outside a transaction; ``how`` says how to open one."""
    return TransactionRequiredError(
        f"{writer} needs the caller's transaction: {how}, so that the messages commit or roll "
        "back with the business change; nothing was written"
    )


class PluginNotFoundError(ConfigurationError):
    """No installed plugin has the requested name."""


class SchemaMissingError(OutboxError):
    """The outbox schema does not exist or is outdated: run `outboxkit migrate`."""


class LeaseLostError(OutboxError):
    """The shard lease is no longer held by this relay (expired or taken over).

    Raised when a fenced operation (ack, retry, dead-letter) is refused.
    """

    @classmethod
    def not_held(cls, lease: Lease, operation: str | None = None) -> LeaseLostError:
        """The error of a store whose fenced ``operation`` found ``lease`` no longer held."""
        refused = f"{operation} refused: " if operation else ""
        return cls(
            f"{refused}lease on shard {lease.shard} (token {lease.token}) is no longer held by "
            f"{lease.owner!r}: it expired or was taken over; nothing was changed"
        )


class ServerUnavailableError(OutboxError):
    """A server (the store's database, the broker) cannot be used now.

    ``retriable`` (the default) means it did not answer, or answered "not now": a relay
    starting up keeps trying. ``retriable=False`` means it answered with a refusal that waiting
    will not fix (credentials refused, unknown database): the relay stops at once.
    """

    def __init__(self, message: str = "", *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
        """False if waiting will not fix it (a refusal): a relay starting up stops at once."""


class StoreUnavailableError(ServerUnavailableError):
    """The store's database cannot be reached (or refuses this relay: ``retriable=False``)."""


class PublisherUnavailableError(ServerUnavailableError):
    """The broker cannot be reached (or refuses this relay: ``retriable=False``)."""


class DeadLetterNotFoundError(OutboxError, LookupError):
    """Some ids given to ``replay`` or ``discard`` are not dead letters; nothing changed."""

    def __init__(self, missing: Sequence[UUID]) -> None:
        self.missing = list(missing)
        """The ids that are not dead letters."""
        shown = ", ".join(str(i) for i in self.missing)
        super().__init__(
            f"not dead letters: {shown} (nothing changed; see `outboxkit dead-letters list`)"
        )
