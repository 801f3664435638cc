"""Settling a batch's outcomes and the backoff delay (pure functions)."""

from __future__ import annotations

import random

import pytest

from outboxkit.message import Message
from outboxkit.protocols import Delivered, Envelope, Failed, Outcome
from outboxkit.relay.backoff import backoff_delay
from outboxkit.relay.settlement import Settlement, settle


def env(aggregate: str, position: int, attempts: int = 0) -> Envelope:
    message = Message(aggregate_type="t", aggregate_id=aggregate, event_type="e")
    return Envelope(message=message, shard=0, position=position, attempts=attempts)


def plan_for(
    envelopes: list[Envelope], outcomes: list[Outcome], max_attempts: int = 5
) -> Settlement:
    return settle(envelopes, outcomes, max_attempts=max_attempts, delay_for=lambda a: 2.0**a)


OK, DUP = Delivered(), Delivered(duplicate=True)
BAD = Failed("timeout", retriable=True)
FATAL = Failed("too large", retriable=False)


def test_all_delivered_is_one_ack() -> None:
    envs = [env("a", 1), env("b", 2), env("a", 3)]
    plan = plan_for(envs, [OK, DUP, OK])
    assert plan.delivered == envs
    assert plan.duplicates == 1
    assert not plan.retry and not plan.dead and not plan.held_back


def test_failure_holds_back_the_rest_of_its_aggregate_only() -> None:
    envs = [env("a", 1), env("b", 2), env("a", 3, attempts=4), env("b", 4), env("a", 5)]
    plan = plan_for(envs, [OK, BAD, OK, OK, OK])
    assert plan.delivered == [envs[0], envs[2], envs[4]]
    assert plan.retry == {("timeout", 1.0): [envs[1]]}
    # even Delivered: a later message must not be acknowledged before the failed one
    assert plan.held_back == [envs[3]]


def test_non_retriable_and_exhausted_go_to_dead_letters() -> None:
    envs = [env("a", 1), env("b", 2, attempts=4), env("c", 3, attempts=3), env("a", 4)]
    plan = plan_for(envs, [FATAL, BAD, BAD, OK])
    assert plan.dead == {"too large": [envs[0]], "timeout": [envs[1]]}
    assert plan.retry == {("timeout", 8.0): [envs[2]]}
    assert plan.held_back == [envs[3]]


def test_batch_wide_failure_groups_into_one_retry_per_attempt_count() -> None:
    envs = [env(f"agg-{n}", n, attempts=n % 2) for n in range(10)]
    calls: list[int] = []

    def delay(attempts: int) -> float:
        calls.append(attempts)
        return random.random()

    plan = settle(envs, [BAD] * 10, max_attempts=5, delay_for=delay)
    assert sorted(calls) == [0, 1]
    assert sorted(len(group) for group in plan.retry.values()) == [5, 5]


def test_outcome_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="outcomes"):
        plan_for([env("a", 1)], [])


def test_backoff_grows_exponentially_with_full_jitter_and_is_capped() -> None:
    rng = random.Random(3)
    for attempts in range(12):
        ceiling = min(60.0, 0.5 * 2**attempts)
        draws = [backoff_delay(attempts, 0.5, 60.0, rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling  # the full range is used
        assert min(draws) < 0.2 * ceiling
    assert backoff_delay(10_000, 0.5, 60.0, rng) <= 60.0
    assert backoff_delay(-1, 0.5, 60.0, rng) <= 0.5


def test_backoff_with_half_jitter_stays_in_the_upper_half() -> None:
    rng = random.Random(5)
    draws = [backoff_delay(3, 0.5, 10.0, rng, jitter=0.5) for _ in range(300)]
    assert all(2.0 <= d <= 4.0 for d in draws) and min(draws) < 2.2


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    a = [backoff_delay(n, 0.1, 5.0, random.Random(9)) for n in range(5)]
    b = [backoff_delay(n, 0.1, 5.0, random.Random(9)) for n in range(5)]
    assert a == b
