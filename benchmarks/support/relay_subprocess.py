"""One outboxkit relay run as a child process of the scaling scenario:
``python -m benchmarks.support.relay_subprocess`` (``relay_in_process`` runs one in-process).

Prints ``ready`` once imported and set up, starts relaying when a line arrives on stdin,
stops on SIGTERM (draining, releasing leases) and prints its metrics as one JSON line.

Used by the scaling scenario and, with ``--acks FILE``, by the latency scenario: then the
publisher is wrapped in an :class:`~benchmarks.support.ack_clock.AckClock` on the wall clock
(``time.time``, comparable with the writer process's commit times on the same host), the
process prints ``owned`` once it holds ``--shard-count`` shards, and on exit it writes the ack
time of every message id to ``FILE`` as JSON.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import anyio
import msgspec
from outboxkit_kafka import KafkaPublisher, KafkaSettings
from outboxkit_postgres import PostgresSettings, PostgresStore

from benchmarks.support.ack_clock import AckClock
from benchmarks.support.profiling import profiled
from outboxkit.cli.event_loop import backend_options
from outboxkit.protocols import Publisher
from outboxkit.relay import ShardedRelay
from outboxkit.relay.settings import RelaySettings

__all__ = ["main"]


async def serve(args: argparse.Namespace) -> None:
    store = PostgresStore(
        PostgresSettings(
            dsn=args.dsn, schema=args.schema, shard_count=args.shard_count, notify=args.notify
        )
    )
    publisher: Publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=args.bootstrap))
    clock = AckClock(publisher, clock=time.time) if args.acks else None
    if clock is not None:
        publisher = clock
    relay = ShardedRelay(
        store,
        publisher,
        RelaySettings(instance_id=args.name, batch_size=args.batch_size, drain_timeout=10.0),
    )
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    cpu = [time.process_time()]
    async with anyio.create_task_group() as tg:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    relay.stop()
                    return

        async def announce_owned() -> None:
            while len(relay.shards) < args.shard_count:  # noqa: ASYNC110 (no event for it)
                await anyio.sleep(0.05)
            cpu[0] = time.process_time()  # from here on: relaying, not setting up
            print("owned", flush=True)

        tg.start_soon(on_sigterm)
        if clock is not None:
            tg.start_soon(announce_owned)
        shares: dict[str, float] = {}
        target = Path(args.profile) if args.profile else None
        async with profiled(target.parent, target.name, shares) if target else nullcontext():
            await relay.run()
        tg.cancel_scope.cancel()
    if target is not None:  # the layer shares, for the scenario's report
        target.with_suffix(".json").write_bytes(msgspec.json.encode(shares))
    if clock is not None:
        used = time.process_time() - cpu[0]
        acks = {"acked": clock.acked, "cpu_s": used}
        await anyio.Path(args.acks).write_bytes(msgspec.json.encode(acks))
    print(msgspec.json.encode(relay.metrics).decode(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--schema", "--bootstrap", "--name"):
        parser.add_argument(name, required=True)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--shard-count", type=int, default=64)
    parser.add_argument("--notify", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", help="profile the relaying into FILE.html|txt|json")
    parser.add_argument("--acks", help="write wall-clock ack times by message id here")
    anyio.run(serve, parser.parse_args(), backend_options=backend_options("auto"))


if __name__ == "__main__":
    main()
