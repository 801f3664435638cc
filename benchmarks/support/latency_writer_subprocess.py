"""The open-loop writer of the latency scenario, run as a child process:
``python -m benchmarks.support.latency_writer_subprocess``.

Runs in its own process so that neither the relay nor the consumer share its event loop or
its CPU time slice. Prints ``ready`` once its connections are open and starts when a line
arrives on stdin. It then starts one single-message transaction every ``1/rate``
seconds whatever the previous ones are doing (open loop), at most one at a time per
aggregate so that sequence order is commit order. The commit time of each message
is the wall clock (``time.time``) read right after its ``COMMIT`` returned, before the
connection goes back to the pool. The first ``--warmup`` seconds warm the path up (new
connections, prepared statements, the broker's first batches); their messages are marked
and left out of the percentiles, and it prints ``measuring`` when the measured part starts.
At the end it writes ``{"achieved": tx/s, "committed": [[id, aggregate_id, seq, time,
measured], ...], "cpu_s": CPU seconds}`` to ``--out`` (rate and CPU time of the measured
part). ``--mode`` picks the writer users have in that mode of the relay
(``benchmarks.support.cli_relay.Mode``): ``PostgresOutbox.add`` (``notify``),
``PostgresOutbox(notify=False).add`` (``polling``, and ``log``: the table woken by the log)
or ``PostgresWalOutbox.add`` (``wal``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import anyio
import asyncpg
import msgspec
from outboxkit_postgres import PostgresOutbox, PostgresWalOutbox

from benchmarks.support.cli_relay import MODE_FLAGS
from benchmarks.support.workload import make_message
from outboxkit.cli.event_loop import backend_options

__all__ = ["main"]


async def write(args: argparse.Namespace) -> None:
    outbox: PostgresOutbox | PostgresWalOutbox
    if args.mode == "wal":
        outbox = PostgresWalOutbox(schema=args.schema)
    else:
        outbox = PostgresOutbox(schema=args.schema, notify=args.mode == "notify")
    pool = await asyncpg.create_pool(args.dsn, min_size=args.connections, max_size=args.connections)
    payload = b"x" * args.payload_bytes
    locks: defaultdict[int, anyio.Lock] = defaultdict(anyio.Lock)
    seqs: defaultdict[int, int] = defaultdict(int)
    committed: list[tuple[str, str, int, float, bool]] = []
    warm = int(args.rate * args.warmup)
    total = warm + int(args.rate * args.seconds)

    async def one(index: int) -> None:
        aggregate = index % args.aggregates
        async with locks[aggregate]:
            seq = seqs[aggregate]
            seqs[aggregate] += 1
            message = make_message(args.topic, aggregate, seq, payload)
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await outbox.add(conn, message)
                now = time.time()
            committed.append((str(message.id), message.aggregate_id, seq, now, index >= warm))

    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    begun = time.perf_counter()
    started, cpu = begun, time.process_time()
    async with anyio.create_task_group() as tg:
        for index in range(total):
            delay = begun + index / args.rate - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            if index == warm:
                started, cpu = time.perf_counter(), time.process_time()
                print("measuring", flush=True)
            tg.start_soon(one, index)
    achieved = (total - warm) / (time.perf_counter() - started)
    used = time.process_time() - cpu
    print("written", flush=True)  # before closing: the scenario reads the backends' CPU time
    await pool.close()
    result = msgspec.json.encode({"achieved": achieved, "cpu_s": used, "committed": committed})
    await anyio.Path(args.out).write_bytes(result)
    print("done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--schema", "--topic", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--aggregates", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--mode", choices=list(MODE_FLAGS), default="notify")
    anyio.run(write, parser.parse_args(), backend_options=backend_options("auto"))


if __name__ == "__main__":
    main()
