"""Turning a batch's publish outcomes into store operations (ack, retry, dead letter)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from outboxkit.protocols import Delivered, Envelope, Failed, Outcome

__all__ = ["Settlement", "settle"]


@dataclass
class Settlement:
    """What to do with each envelope of a published batch.

    ``retry`` maps ``(error, delay)`` to envelopes and ``dead`` maps an error to envelopes, so
    a batch that failed as a whole costs one store call per group, not per message.
    ``held_back`` envelopes are left pending untouched (see :func:`settle`).
    """

    delivered: list[Envelope] = field(default_factory=list)
    duplicates: int = 0
    retry: dict[tuple[str, float], list[Envelope]] = field(default_factory=dict)
    dead: dict[str, list[Envelope]] = field(default_factory=dict)
    held_back: list[Envelope] = field(default_factory=list)


def settle(
    envelopes: Sequence[Envelope],
    outcomes: Sequence[Outcome],
    *,
    max_attempts: int,
    delay_for: Callable[[int], float],
) -> Settlement:
    """Split a batch by outcome, keeping per-aggregate order.

    For each aggregate, the first ``Failed`` message is retried after
    ``delay_for(attempts)`` seconds, or dead-lettered if it is not retriable or this was its
    ``max_attempts``-th attempt. Every later message of that aggregate in the batch is *held
    back*: neither acknowledged nor retried, even if its own outcome was ``Delivered``. It stays
    pending with its attempt count unchanged, and the store's claim skips it while the failed
    message waits for its retry, so first deliveries keep their order; a held-back message the
    broker did receive is published again later (a duplicate, which consumers drop by id).
    """
    if len(envelopes) != len(outcomes):
        raise ValueError(f"{len(outcomes)} outcomes for {len(envelopes)} messages")
    plan = Settlement()
    failed_aggregates: set[str] = set()
    delays: dict[tuple[str, int], float] = {}
    delivered, duplicates = plan.delivered.append, 0
    for envelope, outcome in zip(envelopes, outcomes, strict=True):
        # the aggregate is looked up only once one failed: most batches have no failure
        if failed_aggregates and envelope.message.aggregate_id in failed_aggregates:
            plan.held_back.append(envelope)
        elif isinstance(outcome, Delivered):
            delivered(envelope)
            duplicates += outcome.duplicate
        else:
            failed_aggregates.add(envelope.message.aggregate_id)
            _plan_failure(plan, envelope, outcome, max_attempts, delay_for, delays)
    plan.duplicates = duplicates
    return plan


def _plan_failure(
    plan: Settlement,
    envelope: Envelope,
    failure: Failed,
    max_attempts: int,
    delay_for: Callable[[int], float],
    delays: dict[tuple[str, int], float],
) -> None:
    if not failure.retriable or envelope.attempts + 1 >= max_attempts:
        plan.dead.setdefault(failure.error, []).append(envelope)
        return
    # One jittered delay per (error, attempts): a batch-wide failure groups into few calls.
    key = (failure.error, envelope.attempts)
    if key not in delays:
        delays[key] = delay_for(envelope.attempts)
    plan.retry.setdefault((failure.error, delays[key]), []).append(envelope)
