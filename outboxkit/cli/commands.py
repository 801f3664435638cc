"""What each ``outboxkit`` command does once its options are parsed."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio
import msgspec

from outboxkit.cli.config import ConfigFile
from outboxkit.cli.errors import Scrubber, outbox_error
from outboxkit.cli.options import SettingsSpec
from outboxkit.cli.output import dead_letters_json, format_dead_letters, format_status
from outboxkit.cli.plugins import KINDS, installed, load
from outboxkit.cli.watchdog import Watchdog, watchdog
from outboxkit.errors import ConfigurationError, DeadLetterNotFoundError, OutboxError
from outboxkit.observability.observer import ObservabilitySettings, RelayObserver
from outboxkit.protocols import Publisher, Store
from outboxkit.relay.settings import RelaySettings
from outboxkit.relay.sharded import CLOSE_STEP, ShardedRelay

__all__ = [
    "COMMANDS",
    "GROUPS",
    "OBSERVABILITY_SPEC",
    "RELAY_SPEC",
    "CommandSpec",
    "Invocation",
    "Selected",
    "positive_int",
    "seconds_in",
]

log = logging.getLogger("outboxkit.cli")

RELAY_SPEC = SettingsSpec.derive(RelaySettings, "relay", prefix="")
OBSERVABILITY_SPEC = SettingsSpec.derive(ObservabilitySettings, "observability", prefix="")


@dataclass(frozen=True)
class Selected:
    """A chosen plugin with its resolved settings."""

    name: str
    plugin: Any
    spec: SettingsSpec[Any]
    settings: Any

    def describe(self) -> str:
        """``name (field=value, ...)`` with secrets masked, for logs."""
        fields = ", ".join(f"{k}={v}" for k, v in self.spec.masked(self.settings).items())
        return f"{self.name} ({fields})"


@dataclass(frozen=True)
class Invocation:
    """A parsed command line: the command, its arguments and the chosen plugins."""

    spec: CommandSpec
    args: argparse.Namespace
    config: ConfigFile
    selected: dict[str, Selected]
    relay: RelaySettings | None
    observability: ObservabilitySettings | None = None

    def store(self) -> Store:
        """A new (unopened) store of the chosen plugin."""
        store: Store = self.selected["store"].plugin.create(self.selected["store"].settings)
        return store

    def publisher(self) -> Publisher:
        """A new (unopened) publisher of the chosen plugin."""
        chosen = self.selected["publisher"]
        publisher: Publisher = chosen.plugin.create(chosen.settings)
        return publisher


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """Commands without options of their own."""


@dataclass(frozen=True)
class CommandSpec:
    """One ``outboxkit`` (sub)command."""

    path: tuple[str, ...]
    help: str
    run: Callable[[Invocation], Awaitable[int]]
    uses: tuple[str, ...] = ("store",)
    relay: bool = False
    add_arguments: Callable[[argparse.ArgumentParser], None] = field(default=_no_arguments)


# -- relay -----------------------------------------------------------------------------------


SHUTDOWN_GRACE = 2 * CLOSE_STEP + 2
"""Seconds a stopping relay may take past ``drain_timeout``: leaving, closing, exiting."""
EXIT_GRACE = 2.0
"""Seconds the process may take to exit once the relay returned, or after a second signal."""


class _SignalStop:
    """First SIGTERM/SIGINT: graceful stop (drain, release leases). Second: stop at once."""

    def __init__(self, relay: ShardedRelay, watchdog: Watchdog) -> None:
        self.relay, self.watchdog = relay, watchdog
        self.signalled = False
        self.exit_code = 0

    async def watch(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.signalled:
                    self.signalled = True
                    log.info("%s: draining in-flight work and releasing leases", name)
                    self.relay.stop(name)
                    limit = self.relay.settings.drain_timeout + SHUTDOWN_GRACE
                    self.watchdog.arm(
                        limit,
                        0,
                        f"outboxkit: the relay did not stop within {limit:g}s of {name} "
                        "(a server does not answer): exiting anyway",
                    )
                    continue
                log.warning("second %s: stopping without draining", name)
                self.exit_code = 128 + signum
                self.relay.abort()
                self.watchdog.arm(
                    EXIT_GRACE, self.exit_code, f"outboxkit: stopped at once ({name})"
                )
                return


async def _relay(inv: Invocation) -> int:
    assert inv.relay is not None
    observer = RelayObserver(
        inv.observability, inv.selected["store"].name, inv.selected["publisher"].name
    )
    store, publisher = observer.wrap(inv.store(), inv.publisher())
    relay = ShardedRelay(store, publisher, inv.relay)
    log.info(
        "instance %s: store=%s publisher=%s relay=(%s)",
        relay.owner,
        inv.selected["store"].describe(),
        inv.selected["publisher"].describe(),
        ", ".join(f"{k}={v}" for k, v in RELAY_SPEC.masked(inv.relay).items()),
    )
    signals = _SignalStop(relay, watchdog)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(signals.watch)
            await observer.run(relay)
            tg.cancel_scope.cancel()
    except Exception as exc:
        known = outbox_error(exc)
        scrub = Scrubber()
        for selected in inv.selected.values():
            scrub.add(selected.spec.secrets(selected.settings))
        note = f"outboxkit: error: {scrub(str(known or exc))}"
        watchdog.arm(EXIT_GRACE, 2 if known else 1, note)
        raise
    note = f"outboxkit: the relay stopped but the process did not end within {EXIT_GRACE:g}s"
    watchdog.arm(EXIT_GRACE, signals.exit_code, note)
    return signals.exit_code


# -- store operations ------------------------------------------------------------------------


async def _with_store(inv: Invocation, op: Callable[[Store], Awaitable[int]]) -> int:
    store = inv.store()
    await store.open()
    try:
        return await op(store)
    finally:
        await store.close()


def positive_int(text: str) -> int:
    """An argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shards",
        type=positive_int,
        metavar="N",
        help="shard count, fixed when the schema is first created "
        "(default: the store's own setting)",
    )


async def _migrate(inv: Invocation) -> int:
    store = inv.store()
    try:
        await store.migrate(inv.args.shards)
    finally:
        await store.close()

    async def report(store: Store) -> int:
        count = store.shard_count
        print(f"outboxkit: {inv.selected['store'].name} schema is ready ({count} shards)")
        if inv.args.shards is not None and inv.args.shards != count:
            log.warning(
                "--shards %d ignored: the shard count was fixed at %d when the schema was created",
                inv.args.shards,
                count,
            )
        return 0

    return await _with_store(inv, report)


async def _drop_slot(inv: Invocation) -> int:
    store = inv.store()
    drop = getattr(store, "drop_slot", None)
    if drop is None:
        raise ConfigurationError(
            f"store {inv.selected['store'].name!r} in this mode reads no replication slot: "
            "nothing to drop (for pg: give the --pg-mode / --pg-wake-from-log the relay uses)"
        )
    try:
        dropped = await drop()
    finally:
        await store.close()
    name = getattr(store, "slot_name", "")
    print(f"outboxkit: slot {name} {'dropped' if dropped else 'did not exist'}")
    return 0


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


async def _status(inv: Invocation) -> int:
    async def op(store: Store) -> int:
        status = await store.status()
        text = msgspec.json.encode(status).decode() if inv.args.json else format_status(status)
        print(text)
        return 0

    return await _with_store(inv, op)


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=positive_int, default=100, metavar="N", help="at most N (default: 100)"
    )
    parser.add_argument(
        "--show-payload",
        action="store_true",
        help="show the payloads too (they may hold personal data; hidden by default)",
    )
    _json_argument(parser)


async def _dead_letters_list(inv: Invocation) -> int:
    async def op(store: Store) -> int:
        letters = await store.dead_letters(inv.args.limit)
        payloads = inv.args.show_payload
        text = (
            dead_letters_json(letters, payloads)
            if inv.args.json
            else format_dead_letters(letters, payloads)
        )
        print(text)
        return 0

    return await _with_store(inv, op)


NOT_DEAD_LETTERS = 3
"""Exit status of ``replay``/``discard`` given an id that is not a dead letter (nothing
changed)."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds_in(text: str) -> float | None:
    """Seconds in a duration such as ``7d``, ``12h``, ``90m``, ``1d12h`` or ``30s`` (units s,
    m, h, d, w); None if ``text`` is not one."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _duration(text: str) -> float:
    seconds = seconds_in(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 7d, 12h, 90m or 1d12h (units s, m, h, d, w), got {text!r}"
        )
    return seconds


def _which_arguments(verb: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--id",
            dest="ids",
            type=UUID,
            action="append",
            metavar="UUID",
            help=f"the id of a dead letter to {verb} (repeat for more); if one is not a dead "
            f"letter, none is {verb}ed (exit status {NOT_DEAD_LETTERS})",
        )
        which.add_argument("--all", action="store_true", help=f"{verb} every dead letter")

    return add


def _counted(verb: str, count: int, extra: str = "") -> None:
    print(f"outboxkit: {verb} {count} dead letter{'s' if count != 1 else ''}{extra}")


async def _change_dead_letters(
    inv: Invocation, verb: str, change: Callable[[Store], Awaitable[int]]
) -> int:
    async def op(store: Store) -> int:
        try:
            count = await change(store)
        except DeadLetterNotFoundError as exc:
            print(f"outboxkit: error: {exc}", file=sys.stderr)
            return NOT_DEAD_LETTERS
        _counted(verb, count)
        return 0

    return await _with_store(inv, op)


async def _dead_letters_replay(inv: Invocation) -> int:
    ids = None if inv.args.all else inv.args.ids
    return await _change_dead_letters(inv, "replayed", lambda store: store.replay(ids))


async def _dead_letters_discard(inv: Invocation) -> int:
    ids = None if inv.args.all else inv.args.ids
    return await _change_dead_letters(inv, "discarded", lambda store: store.discard(ids))


def _purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="discard the dead letters that failed longer ago than this, e.g. 7d, 12h, 90m",
    )


async def _dead_letters_purge(inv: Invocation) -> int:
    async def op(store: Store) -> int:
        _counted("purged", await store.purge(inv.args.older_than))
        return 0

    return await _with_store(inv, op)


# -- plugins ---------------------------------------------------------------------------------


async def _plugins(inv: Invocation) -> int:
    for kind in KINDS.values():
        print(f"{kind.plural}:")
        names = installed(kind)
        width = max((len(n) for n in names), default=0)
        for name in names:
            try:
                summary = load(kind, name).summary or "-"
            except OutboxError as exc:
                summary = f"(broken: {exc})"
            print(f"  {name:<{width}}  {summary}")
    sys.stdout.flush()
    return 0


GROUPS = {"dead-letters": "list, replay and discard messages that could not be published"}

COMMANDS = (
    CommandSpec(
        ("relay",),
        "relay messages from the store to the publisher until SIGTERM",
        _relay,
        uses=("store", "publisher"),
        relay=True,
    ),
    CommandSpec(
        ("migrate",),
        "create or upgrade the store's schema",
        _migrate,
        add_arguments=_migrate_arguments,
    ),
    CommandSpec(
        ("drop-slot",),
        "drop the replication slot and publication of a log-tailing store",
        _drop_slot,
    ),
    CommandSpec(
        ("status",),
        "pending messages, oldest pending age, dead letters, blocked aggregates, shard owners",
        _status,
        add_arguments=_json_argument,
    ),
    CommandSpec(
        ("dead-letters", "list"),
        "list dead letters, oldest first",
        _dead_letters_list,
        add_arguments=_list_arguments,
    ),
    CommandSpec(
        ("dead-letters", "replay"),
        "move dead letters back to the outbox, each to its place in its aggregate's order",
        _dead_letters_replay,
        add_arguments=_which_arguments("replay"),
    ),
    CommandSpec(
        ("dead-letters", "discard"),
        "delete dead letters for good (their aggregates' later messages go on)",
        _dead_letters_discard,
        add_arguments=_which_arguments("discard"),
    ),
    CommandSpec(
        ("dead-letters", "purge"),
        "delete the dead letters older than a duration",
        _dead_letters_purge,
        add_arguments=_purge_arguments,
    ),
    CommandSpec(("plugins",), "list installed plugins", _plugins, uses=()),
)
