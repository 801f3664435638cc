"""Liveness and readiness of a running relay (``/healthz`` and ``/readyz``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from outboxkit.sharding import fair_share

if TYPE_CHECKING:
    from outboxkit.relay.sharded import ShardedRelay

__all__ = ["CheckResult", "Verdict", "liveness", "readiness"]


@dataclass
class CheckResult:
    """The last outcome of a periodic check (store query, publisher ping)."""

    ok_at: float | None = None
    """Event-loop time of the last success."""
    error: str | None = None
    """Why the last attempt failed (None after a success)."""

    def problem(self, name: str, now: float, stale_after: float) -> str | None:
        if self.error is not None:
            return f"{name}: {self.error}"
        if self.ok_at is None:
            return f"{name}: not checked yet"
        if now - self.ok_at > stale_after:
            return f"{name}: no answer for {now - self.ok_at:.0f}s"
        return None


@dataclass
class Verdict:
    """An endpoint's answer: ``ok`` and the details shown as JSON."""

    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


def liveness(relay: ShardedRelay) -> Verdict:
    """Live while the lease keeper ticks within its period (or the relay is still starting);
    answering at all shows the event loop runs."""
    keeper = relay.keeper
    if keeper is None or keeper.ticked_at is None:
        return Verdict(True, {"status": "starting"})
    age = anyio.current_time() - keeper.ticked_at
    limit = 2 * keeper.interval + relay.settings.lease_ttl / 2
    details = {"lease_keeper_tick_age": round(age, 3), "limit": round(limit, 3)}
    if age > limit:
        return Verdict(False, {"status": "lease keeper stalled", **details})
    return Verdict(True, {"status": "ok", **details})


def readiness(
    relay: ShardedRelay,
    shard_count: int,
    store: CheckResult,
    publisher: CheckResult,
    stale_after: float,
) -> Verdict:
    """Ready when store and publisher answered lately and the relay holds leases or knows why
    it holds none (more live instances than shards)."""
    now = anyio.current_time()
    problems = [
        p
        for p in (
            store.problem("store", now, stale_after),
            publisher.problem("publisher", now, stale_after),
        )
        if p is not None
    ]
    keeper = relay.keeper
    owned = len(relay.shards)
    details: dict[str, Any] = {"owned_shards": owned}
    if keeper is None or keeper.rounds == 0:
        problems.append("starting: no lease round completed yet")
    else:
        target = fair_share(shard_count, keeper.live, relay.owner) if keeper.live else 0
        details.update(fair_share=target, live_instances=len(keeper.live))
        if owned == 0 and target > 0:
            problems.append(f"holds no lease yet (fair share {target} of {shard_count} shards)")
        elif owned == 0:
            details["note"] = f"standby: {len(keeper.live)} live instances for {shard_count} shards"
    if problems:
        return Verdict(False, {"status": "not ready", "problems": problems, **details})
    return Verdict(True, {"status": "ok", **details})
