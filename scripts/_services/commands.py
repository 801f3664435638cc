#!/usr/bin/env python3
"""Local test servers for outboxkit, without Docker (standard library only).

    scripts/services up [SERVER...]     install what is missing, start, wait until each answers
    scripts/services down [SERVER...]   stop the servers this checkout started (pid files only)
    scripts/services status             each server up/down with its URL
    scripts/services env                `export OUTBOXKIT_TEST_*=...` lines for the tests
    scripts/services logs SERVER [-n N] tail of a server's log
    scripts/services clean              down, then delete the servers' data (keeps the caches)

SERVER is one of: postgres kafka nats mongodb prometheus.

Everything lives under .services/ in the repository (git-ignored): data, logs, pid files and
the caches (Kafka's jars from Maven Central, FerretDB built from the Go module proxy).
Servers listen on 127.0.0.1 only, on ports of the project's own: PostgreSQL 55432,
Kafka 59092 (KRaft controller 59093), NATS 54222 (monitoring 58222), FerretDB 57017,
Prometheus 59090 (it scrapes the targets tests write in .services/prometheus/targets/).
If a port already answers with the right kind of server (say, `docker compose up`), `up`
uses it; if OUTBOXKIT_TEST_MONGODB_URL names another server, FerretDB is not started.
FerretDB keeps its data in the database `ferretdb` of that PostgreSQL (`up mongodb` starts
PostgreSQL too).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator

from .common import (
    CACHE,
    HOST,
    LOGS,
    RUN,
    STATE,
    ServiceError,
    apt_install,
    pid_alive,
    port_open,
    say,
    tail,
)
from .ferretdb import FerretDB
from .kafka import Kafka
from .nats import Nats
from .postgres import Postgres
from .prometheus import Prometheus
from .server import Server

SERVERS: dict[str, type[Server]] = {
    "postgres": Postgres,
    "kafka": Kafka,
    "nats": Nats,
    "mongodb": FerretDB,
    "prometheus": Prometheus,
}


# --------------------------------------------------------------------------- commands


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / ".lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say("waiting for another scripts/services run to finish ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def selected(names: list[str]) -> list[Server]:
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(
            f"unknown server(s): {' '.join(unknown)} (choose from {' '.join(SERVERS)})"
        )
    return [SERVERS[n]() for n in (names or list(SERVERS))]


def await_answer(required: Server, by: Server) -> None:
    """Wait until ``required`` answers (``by`` needs it to start)."""
    deadline = time.monotonic() + required.start_timeout
    while not (answer := required.probe(timeout=2.0))[0]:
        if time.monotonic() > deadline:
            raise ServiceError(f"{by.name} needs {required.name}: {answer[1]}", by.log)
        time.sleep(0.2)


def with_requirements(names: list[str]) -> list[str]:
    """``names`` and the servers they require, in the order of SERVERS (all when empty)."""
    if not names:
        return []
    wanted = set(names) | {r for n in names if n in SERVERS for r in SERVERS[n].requires}
    return [n for n in SERVERS if n in wanted] + [n for n in names if n not in SERVERS]


def cmd_up(names: list[str]) -> int:
    t0 = time.monotonic()
    servers = selected(with_requirements(names))
    results: dict[str, str] = {}
    failures: dict[str, ServiceError] = {}
    with state_lock():
        for d in (CACHE, LOGS, RUN):
            d.mkdir(parents=True, exist_ok=True)
        to_start: list[Server] = []
        running: dict[str, int] = {}
        for s in servers:
            if s.external_url():
                ok, detail = s.probe()
                if ok:
                    results[s.name] = f"external ({detail})"
                else:
                    failures[s.name] = ServiceError(
                        f"{s.env_var}={s.external_url()} does not answer: {detail}"
                    )
                continue
            pid = s.running_pid()
            if pid is not None:
                running[s.name] = pid
            elif port_open(s.port):
                ok, detail = s.probe()
                if ok:
                    results[s.name] = f"already running, not started by this checkout ({detail})"
                else:
                    failures[s.name] = ServiceError(
                        f"port {HOST}:{s.port} is taken by something that is not"
                        f" a {s.name} server: {detail}"
                    )
            else:
                to_start.append(s)

        packages = sorted({p for s in to_start for p in s.apt_packages()})
        try:
            apt_install(packages)
        except ServiceError as exc:
            for s in to_start:
                failures[s.name] = exc
            to_start = []

        def bring_up(s: Server) -> str:
            pid = running.get(s.name)
            if pid is None:
                started = time.monotonic()
                s.install()
                for name in s.requires:  # started by a sibling thread, or already running
                    await_answer(SERVERS[name](), s)
                say(f"{s.name}: starting")
                s.start()
                detail = s.wait_ready(None, s.start_timeout)
                return f"started in {time.monotonic() - started:.1f}s ({detail})"
            detail = s.wait_ready(pid, s.start_timeout)
            return f"already running, pid {pid} ({detail})"

        work = [s for s in servers if s in to_start or s.name in running]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(work))) as pool:
            futures = {s.name: pool.submit(bring_up, s) for s in work}
            for name, fut in futures.items():
                try:
                    results[name] = fut.result()
                except ServiceError as exc:
                    failures[name] = exc
                except Exception as exc:
                    failures[name] = ServiceError(
                        f"{type(exc).__name__}: {exc}", SERVERS[name]().log
                    )

    for s in servers:
        if s.name in results:
            print(f"{s.name:<9} up    {s.url():<48} {results[s.name]}")
            notice = getattr(s, "notice", None)
            if notice and not s.external_url():
                say(notice)
    for s in servers:
        if s.name in failures:
            print(f"{s.name:<9} FAILED {s.url():<47} {failures[s.name]}")
    for name, failure in failures.items():
        if failure.log is not None:
            print(
                f"\n---- {name}: last lines of {failure.log} ----\n{tail(failure.log)}\n----",
                file=sys.stderr,
            )
    if failures:
        print(f"error: {', '.join(failures)} failed to start", file=sys.stderr)
        return 1
    say(f'all up in {time.monotonic() - t0:.1f}s; use: eval "$(scripts/services env)"')
    return 0


def cmd_down(names: list[str]) -> int:
    servers = selected(names)
    with state_lock():
        stopping: list[tuple[Server, int]] = []
        for s in reversed(servers):
            pid = s.running_pid()
            if pid is None:
                print(f"{s.name:<9} not running (nothing of ours to stop)")
                s.cleanup_after_stop()
                continue
            os.kill(pid, s.stop_signal())
            stopping.append((s, pid))
        deadline = time.monotonic() + 60
        for s, pid in stopping:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                say(f"{s.name}: pid {pid} still running after 60s, sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                end = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < end:
                    time.sleep(0.1)
            s.cleanup_after_stop()
            print(f"{s.name:<9} stopped (pid {pid})")
    return 0


def cmd_status(names: list[str]) -> int:
    servers = selected(names)
    all_up = True
    for s in servers:
        pid = None if s.external_url() else s.running_pid()
        ok, detail = s.probe(timeout=2.0)
        if ok:
            who = (
                "external"
                if s.external_url()
                else (f"pid {pid}" if pid else "not started by this checkout")
            )
            print(f"{s.name:<9} up    {s.url():<48} {who}; {detail}")
        else:
            all_up = False
            state = f"not answering (pid {pid}): {detail}" if pid else "down"
            print(f"{s.name:<9} down  {s.url():<48} {state}")
    return 0 if all_up else 1


def cmd_env(names: list[str]) -> int:
    for s in selected(names):
        print(f"export {s.env_var}={shlex.quote(s.url())}")
    return 0


def cmd_logs(names: list[str], lines: int) -> int:
    for s in selected(names):
        print(f"==> {s.log} <==\n{tail(s.log, lines)}")
    return 0


def cmd_clean(names: list[str]) -> int:
    cmd_down(names)
    with state_lock():
        for s in selected(names):
            for p in s.data_paths():
                if p.is_symlink():
                    p.unlink()
                elif p.exists():
                    shutil.rmtree(p)
            s.pidfile.unlink(missing_ok=True)
            print(f"{s.name:<9} data removed")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status", "env", "clean"):
        p = sub.add_parser(name)
        p.add_argument("servers", nargs="*", metavar="SERVER")
    p = sub.add_parser("logs")
    p.add_argument("servers", nargs="*", metavar="SERVER")
    p.add_argument("-n", "--lines", type=int, default=60)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[list[str]], int]] = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "clean": cmd_clean,
    }
    if args.command == "logs":
        return cmd_logs(args.servers, args.lines)
    return commands[args.command](args.servers)
