"""One relay process of the scaling scenario: ``python -m benchmarks.relay_process``.

Prints ``ready`` once imported and set up, starts relaying when a line arrives on stdin,
stops on SIGTERM (draining, releasing leases) and prints its metrics as one JSON line.
"""

from __future__ import annotations

import argparse
import signal
import sys

import anyio
import msgspec
from outboxkit_kafka import KafkaPublisher, KafkaSettings
from outboxkit_postgres import PostgresSettings, PostgresStore

from outboxkit.relay import ShardedRelay
from outboxkit.relay_settings import RelaySettings

__all__ = ["main"]


async def serve(args: argparse.Namespace) -> None:
    store = PostgresStore(PostgresSettings(dsn=args.dsn, schema=args.schema))
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=args.bootstrap))
    relay = ShardedRelay(
        store,
        publisher,
        RelaySettings(instance_id=args.name, batch_size=args.batch_size, drain_timeout=10.0),
    )
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    async with anyio.create_task_group() as tg:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    relay.stop()
                    return

        tg.start_soon(on_sigterm)
        await relay.run()
        tg.cancel_scope.cancel()
    print(msgspec.json.encode(relay.metrics).decode(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--schema", "--bootstrap", "--name"):
        parser.add_argument(name, required=True)
    parser.add_argument("--batch-size", type=int, default=500)
    anyio.run(serve, parser.parse_args())


if __name__ == "__main__":
    main()
