"""Exceptions raised by outboxkit. Each message says what to fix."""

from __future__ import annotations


class OutboxError(Exception):
    """Base class of every outboxkit error."""


class InvalidMessageError(OutboxError, ValueError):
    """A message was rejected before anything was written."""


class ConfigurationError(OutboxError, ValueError):
    """Settings, DSNs, identifiers or plugin names are wrong."""


class PluginNotFoundError(ConfigurationError):
    """No installed plugin has the requested name."""


class SchemaMissingError(OutboxError):
    """The outbox schema does not exist or is outdated: run `outboxkit migrate`."""


class LeaseLostError(OutboxError):
    """The shard lease is no longer held by this relay (expired or taken over).

    Raised when a fenced operation (ack, retry, dead-letter) is refused.
    """


class ServerUnavailableError(OutboxError):
    """A server (the store's database, the broker) cannot be used now.

    ``retriable`` (the default) means it did not answer, or answered "not now": a relay
    starting up keeps trying. ``retriable=False`` means it answered with a refusal that waiting
    will not fix (credentials refused, unknown database): the relay stops at once.
    """

    def __init__(self, message: str = "", *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class StoreUnavailableError(ServerUnavailableError):
    """The store's database cannot be reached (or refuses this relay: ``retriable=False``)."""


class PublisherUnavailableError(ServerUnavailableError):
    """The broker cannot be reached (or refuses this relay: ``retriable=False``)."""
