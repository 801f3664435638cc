"""``python -m benchmarks``: run the benchmark scenarios and write the results.

    python -m benchmarks --size smoke|small|full [--only throughput,latency] [--profile]

Exit status 0 when every scenario ran and every independent consumer saw no lost, reordered
or foreign message; 1 otherwise. Missed performance bars are reported, not failures.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks.support.context import Context
from benchmarks.support.machine import describe_host, package_versions
from benchmarks.support.progress import say
from benchmarks.support.result_files import markdown, run_directory, write_results
from benchmarks.support.run_results import RunResults
from benchmarks.support.server_urls import find_servers
from benchmarks.support.server_versions import server_versions
from benchmarks.support.sizes import SIZES
from outboxkit.cli.event_loop import backend_options

__all__ = ["SCENARIOS", "main"]

RESULTS = Path(__file__).resolve().parent / "results"

SCENARIOS = {
    "throughput": "benchmarks.scenarios.throughput",
    "write": "benchmarks.scenarios.write_path",
    "latency": "benchmarks.scenarios.latency",
    "backlog": "benchmarks.scenarios.backlog",
    "scaling": "benchmarks.scenarios.scaling",
    "wal": "benchmarks.scenarios.log_tailing",
    "observability": "benchmarks.scenarios.observability",
    "inbox": "benchmarks.scenarios.inbox",
}
"""Scenario name -> module with ``async def run(ctx)``, imported when it runs (so one whose
plugin is missing fails alone)."""


def scenario(name: str) -> Callable[[Context], Awaitable[None]]:
    run: Callable[[Context], Awaitable[None]] = importlib.import_module(SCENARIOS[name]).run
    return run


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark outboxkit against raw clients measured in the same run "
        "(needs the servers of scripts/services).",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--pipelines",
        default="",
        help="throughput scenario: comma-separated pipelines to run, e.g. pg-kafka,pg-nats "
        "(default: all of pg-kafka, pg-nats, mongodb-kafka)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the pg -> kafka relay (pyinstrument)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where <timestamp>/ and latest/ are written (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {sorted(SCENARIOS)}")
    return args


async def run(args: argparse.Namespace) -> RunResults:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = RunResults(started=started, size=args.size, host=describe_host())
    servers = find_servers()
    results.versions = {**package_versions(), **await server_versions(servers)}
    ctx = Context(
        size=SIZES[args.size],
        servers=servers,
        results=results,
        out=run_directory(args.results_dir, started),
        profile=args.profile,
        pipelines=tuple(p.strip() for p in args.pipelines.split(",") if p.strip()),
    )
    clock = time.perf_counter()
    for name in args.only:
        say(f"scenario {name} ({args.size})")
        try:
            await scenario(name)(ctx)
        except Exception as exc:
            traceback.print_exc()
            results.errors.append(f"scenario {name} failed: {type(exc).__name__}: {exc}")
    results.seconds = time.perf_counter() - clock
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = anyio.run(run, args, backend_options=backend_options("auto"))
    target = write_results(results, args.results_dir)
    print(markdown(results))
    say(f"results in {target} and {args.results_dir / 'latest'}")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
