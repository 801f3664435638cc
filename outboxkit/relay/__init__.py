"""The sharded relay: leases, shard workers, wake-ups and the settlement of outcomes.

* :mod:`~outboxkit.relay.sharded`: :class:`ShardedRelay`, which runs the parts below;
* :mod:`~outboxkit.relay.leases`: the lease keeper (heartbeats, renewals, rebalancing);
* :mod:`~outboxkit.relay.pool` and :mod:`~outboxkit.relay.worker`: one worker per held shard;
* :mod:`~outboxkit.relay.wakeup`: waking the workers when messages are written;
* :mod:`~outboxkit.relay.settlement`: what to tell the store about each outcome;
* :mod:`~outboxkit.relay.settings`, :mod:`~outboxkit.relay.backoff`, :mod:`~outboxkit.relay.log`.
"""

from __future__ import annotations

from outboxkit.relay.settings import RelaySettings
from outboxkit.relay.sharded import ShardedRelay

__all__ = ["RelaySettings", "ShardedRelay"]
