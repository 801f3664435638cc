"""The ``outboxkit`` command: relay, migrate, status, dead-letters, plugins.

Options come from flags, then ``OUTBOXKIT_*`` environment variables, then a TOML file, then
defaults. Each plugin's options are derived from its settings struct
(:mod:`outboxkit.cli.options`), so the command is parsed twice: once to learn the command and the
chosen ``--store``/``--publisher``, then with those plugins' options added.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from outboxkit import __version__
from outboxkit.cli.commands import (
    COMMANDS,
    GROUPS,
    OBSERVABILITY_SPEC,
    RELAY_SPEC,
    CommandSpec,
    Invocation,
    Selected,
)
from outboxkit.cli.config import ENV_PREFIX, ConfigFile, load_config
from outboxkit.cli.errors import Scrubber, outbox_error
from outboxkit.cli.event_loop import EVENT_LOOPS, backend_options
from outboxkit.cli.inbox import INBOX_COMMANDS, INBOX_GROUPS
from outboxkit.cli.options import SettingsSpec
from outboxkit.cli.output import EXIT_CLOSED_PIPE, closed_pipe
from outboxkit.cli.plugins import KINDS, installed, load
from outboxkit.cli.watchdog import watchdog
from outboxkit.errors import ConfigurationError
from outboxkit.observability.logs import LOG_FORMATS, configure_logging

__all__ = ["DEFAULT_PLUGINS", "build_parser", "main", "parse"]

DEFAULT_PLUGINS = {"store": "sqlite", "publisher": "stdout", "inbox": "sqlite"}
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class _Chosen:
    """A plugin picked for this invocation and the spec of its settings."""

    name: str
    plugin: Any
    spec: SettingsSpec[Any]


def _installed_epilog(spec: CommandSpec) -> str:
    lines = [
        f"installed {KINDS[kind].plural}: {', '.join(installed(KINDS[kind])) or 'none'}"
        for kind in spec.uses
    ]
    if lines:
        flags = " / ".join(f"--{kind} NAME" for kind in spec.uses)
        lines.append(f"add {flags} before --help to see their options")
    return "\n".join(lines)


def _add_common(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML settings file (env OUTBOXKIT_CONFIG; default: ./outboxkit.toml if present)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=environ.get(f"{ENV_PREFIX}LOG_LEVEL", "info").lower(),
        help="log verbosity, to stderr (default: info; env OUTBOXKIT_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=environ.get(f"{ENV_PREFIX}LOG_FORMAT", "text").lower(),
        help="log lines as text or JSON objects (default: text; env OUTBOXKIT_LOG_FORMAT)",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=environ.get(f"{ENV_PREFIX}EVENT_LOOP", "auto").lower(),
        help="asyncio event loop: uvloop if installed (auto), uvloop or the standard one "
        "(default: auto; env OUTBOXKIT_EVENT_LOOP)",
    )


def _add_command(
    parser: argparse.ArgumentParser,
    spec: CommandSpec,
    chosen: Mapping[str, _Chosen],
    environ: Mapping[str, str],
) -> None:
    parser.set_defaults(command_spec=spec)
    if parser.add_help:  # the first pass only looks for the command and the plugin choice
        spec.add_arguments(parser)
    _add_common(parser, environ)
    for kind in spec.uses:
        parser.add_argument(
            f"--{kind}",
            metavar="NAME",
            help=f"{kind} plugin (default: {DEFAULT_PLUGINS[kind]}; "
            f"env OUTBOXKIT_{kind.upper()}; TOML top-level key {kind})",
        )
    if spec.relay:
        RELAY_SPEC.add_arguments(parser, "relay options")
        OBSERVABILITY_SPEC.add_arguments(parser, "metrics, health and tracing")
    for kind in spec.uses:
        if kind in chosen:
            c = chosen[kind]
            c.spec.add_arguments(parser, f"{kind} {c.name!r} options")


def build_parser(
    chosen: Mapping[str, _Chosen] | None = None,
    environ: Mapping[str, str] | None = None,
    add_help: bool = True,
) -> argparse.ArgumentParser:
    """The argument parser, with the options of the ``chosen`` plugins."""
    environ = os.environ if environ is None else environ
    chosen = chosen or {}
    root = argparse.ArgumentParser(
        prog="outboxkit",
        description="Transactional outbox relay and operations.",
        add_help=add_help,
        allow_abbrev=False,
    )
    root.add_argument("--version", action="version", version=f"outboxkit {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=add_help)
    groups: dict[str, Any] = {}
    for name, help_text in (GROUPS | INBOX_GROUPS).items():
        group = commands.add_parser(
            name, help=help_text, description=help_text, add_help=add_help, allow_abbrev=False
        )
        groups[name] = group.add_subparsers(dest="subcommand", metavar="ACTION", required=add_help)
    for spec in (*COMMANDS, *INBOX_COMMANDS):
        *group_path, leaf = spec.path
        container = groups[group_path[0]] if group_path else commands
        parser = container.add_parser(
            leaf,
            help=spec.help,
            description=spec.help,
            epilog=_installed_epilog(spec),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=add_help,
            allow_abbrev=False,
        )
        _add_command(parser, spec, chosen, environ)
    return root


def _choose(kind: str, flag: str | None, environ: Mapping[str, str], config: ConfigFile) -> _Chosen:
    name = flag or environ.get(f"{ENV_PREFIX}{kind.upper()}") or config.top(kind)
    name = name or DEFAULT_PLUGINS[kind]
    plugin = load(KINDS[kind], name)
    spec = SettingsSpec.derive(plugin.settings_type, KINDS[kind].section(name))
    return _Chosen(name, plugin, spec)


def _plugin_hint(extras: Sequence[str], chosen: Mapping[str, _Chosen]) -> str:
    """Say which plugin an unrecognized ``--<plugin>-...`` option belongs to."""
    for option in extras:
        for kind in chosen:
            for name in installed(KINDS[kind]):
                if option.startswith(f"--{name.replace('_', '-')}-") and name != chosen[kind].name:
                    return f" ({option} is an option of the {kind} {name!r}: add --{kind} {name})"
    return ""


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Invocation:
    """Parse ``argv`` (flags, env, TOML) into a ready-to-run invocation."""
    environ = os.environ if environ is None else environ
    first, _ = build_parser(environ=environ, add_help=False).parse_known_args(argv)
    spec: CommandSpec | None = getattr(first, "command_spec", None)
    config = load_config(getattr(first, "config", None), environ)
    config.check_tables(["relay", *(name for kind in KINDS.values() for name in installed(kind))])
    chosen: dict[str, _Chosen] = {}
    if spec is not None:
        for kind in spec.uses:
            chosen[kind] = _choose(kind, getattr(first, kind, None), environ, config)
    parser = build_parser(chosen, environ)
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}{_plugin_hint(extras, chosen)}")
    spec = args.command_spec
    if spec is None:  # pragma: no cover - argparse requires a command
        raise ConfigurationError("choose a command; see outboxkit --help")
    selected = {
        kind: Selected(c.name, c.plugin, c.spec, c.spec.resolve(args, environ, config))
        for kind, c in chosen.items()
    }
    relay = RELAY_SPEC.resolve(args, environ, config) if spec.relay else None
    observability = OBSERVABILITY_SPEC.resolve(args, environ, config) if spec.relay else None
    return Invocation(spec, args, config, selected, relay, observability)


def _configure_logging(level: str, fmt: str, secrets: Sequence[str]) -> None:
    # only a bad OUTBOXKIT_LOG_LEVEL / OUTBOXKIT_LOG_FORMAT gets here: flags are checked
    for value, allowed, variable in (
        (level, LOG_LEVELS, "OUTBOXKIT_LOG_LEVEL"),
        (fmt, LOG_FORMATS, "OUTBOXKIT_LOG_FORMAT"),
    ):
        if value not in allowed:
            raise ConfigurationError(
                f"invalid value {value!r} for {variable}: use one of {', '.join(allowed)}"
            )
    configure_logging(level, fmt, secrets)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; exit status 0 on success, 2 on an outboxkit error, 1 on a crash,
    141 when stdout's reader went away (``| head``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    scrubber = Scrubber()
    try:
        invocation = parse(argv)
        secrets: list[str] = []
        for selected in invocation.selected.values():
            secrets += selected.spec.secrets(selected.settings)
        scrubber.add(secrets)
        _configure_logging(invocation.args.log_level, invocation.args.log_format, secrets)
        try:
            options = backend_options(invocation.args.event_loop)
            status = anyio.run(invocation.spec.run, invocation, backend_options=options)
        finally:
            watchdog.disarm()  # the event loop is closed: nothing is left to wait for
        sys.stdout.flush()  # here, so that a closed pipe is seen below
        return status
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # the one place where errors become exit codes
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        if closed_pipe(exc):
            return EXIT_CLOSED_PIPE
        known = outbox_error(exc)
        if known is not None:
            print(f"outboxkit: error: {scrubber(str(known))}", file=sys.stderr)
            return 2
        text = "".join(traceback.format_exception(exc))
        print(scrubber(text), end="", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
