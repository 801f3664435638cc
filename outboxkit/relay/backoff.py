"""Exponential backoff with full jitter for retriable publish failures."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_MAX_EXPONENT = 62  # 2**62 * any positive initial dwarfs any sane maximum; avoids overflow
_default_rng = random.Random()


def backoff_delay(
    attempts: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """The delay before retrying a message that has failed ``attempts`` times before this one.

    Full jitter: a uniform draw from ``[0, min(maximum, initial * 2**attempts)]``, so that
    many messages failing together (a broker outage) do not retry in lockstep.
    """
    ceiling = min(maximum, initial * 2.0 ** min(max(attempts, 0), _MAX_EXPONENT))
    return (rng or _default_rng).uniform(0.0, ceiling)
