"""Settings of the sharded relay (CLI flags ``--batch-size`` etc., env ``OUTBOXKIT_BATCH_SIZE``,
TOML table ``[relay]``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from outboxkit.protocols import DeadLetterPolicy

__all__ = ["RelaySettings"]


class RelaySettings(msgspec.Struct, kw_only=True, frozen=True):
    """How the sharded relay claims, publishes, retries and holds leases."""

    instance_id: Annotated[
        str | None,
        msgspec.Meta(description="unique name of this relay instance (default: host-pid-random)"),
    ] = None
    batch_size: Annotated[
        int, msgspec.Meta(ge=1, description="messages claimed per shard per round")
    ] = 500
    lease_ttl: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds a shard lease lives without a heartbeat"),
    ] = 10.0
    poll_interval: Annotated[
        float,
        msgspec.Meta(gt=0, description="seconds between polls when no wake-up arrives"),
    ] = 1.0
    max_attempts: Annotated[
        int,
        msgspec.Meta(ge=1, description="publish attempts before a message is dead-lettered"),
    ] = 10
    on_dead_letter: Annotated[
        DeadLetterPolicy,
        msgspec.Meta(
            description="what a dead letter does to its aggregate's later messages: block "
            "(wait until it is replayed or discarded, so the broker never sees the aggregate "
            "out of order) or skip (publish them; a replay then comes after them)"
        ),
    ] = "block"
    backoff_initial: Annotated[
        float, msgspec.Meta(gt=0, description="first retry delay in seconds")
    ] = 0.5
    backoff_max: Annotated[float, msgspec.Meta(gt=0, description="largest retry delay")] = 60.0
    ack_as_delivered: Annotated[
        bool,
        msgspec.Meta(
            description="with a publisher that reports deliveries as the broker acknowledges "
            "them (Kafka), delete them from the outbox then rather than once the whole batch "
            "is published: a crashed relay re-sends less, for a few more ack statements"
        ),
    ] = True
    store_timeout: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="seconds a claim, ack, retry or dead-letter call may take before it "
            "is abandoned (its batch is claimed again)",
        ),
    ] = 60.0
    drain_timeout: Annotated[
        float,
        msgspec.Meta(ge=0, description="seconds to finish in-flight batches on shutdown"),
    ] = 30.0
    startup_timeout: Annotated[
        Annotated[float, msgspec.Meta(gt=0)] | None,
        msgspec.Meta(
            description="how long to keep trying to reach the store and the broker at start, "
            "e.g. 30s or 5m, before giving up (exit status 2) (default: none, keep trying)",
            extra={"duration": True},
        ),
    ] = None
    exit_when_idle: Annotated[
        bool,
        msgspec.Meta(
            description="stop once no message is left to publish (demos, batch jobs); "
            "messages parked behind a dead letter do not count"
        ),
    ] = False
