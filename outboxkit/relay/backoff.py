"""Exponential backoff with full jitter for retriable publish failures."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_MAX_EXPONENT = 62  # 2**62 * any positive initial dwarfs any sane maximum; avoids overflow
_default_rng = random.Random()


def backoff_delay(
    attempts: int,
    initial: float,
    maximum: float,
    rng: random.Random | None = None,
    *,
    jitter: float = 1.0,
) -> float:
    """The delay before retrying a message that has failed ``attempts`` times before this one.

    A uniform draw from ``[(1 - jitter) * ceiling, ceiling]`` with ``ceiling = min(maximum,
    initial * 2**attempts)``. The default is full jitter (from 0), so that many messages
    failing together (a broker outage) do not retry in lockstep.
    """
    ceiling = min(maximum, initial * 2.0 ** min(max(attempts, 0), _MAX_EXPONENT))
    return (rng or _default_rng).uniform(ceiling * (1.0 - jitter), ceiling)
