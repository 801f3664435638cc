"""What the writers read from the relay's configuration, so a service and its relay agree.

A writer reads the ``pg`` settings the way ``outboxkit relay --store pg`` does, less the flags:
``OUTBOXKIT_PG_*`` environment variables, then the ``[pg]`` table of the configuration file
(``OUTBOXKIT_CONFIG``, else ``./outboxkit.toml``), then the defaults. Only the settings that
concern a writer are kept: schema, table, notify, max_payload_bytes and mode (which writer
class the outbox needs).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from outboxkit.cli.config import load_config
from outboxkit.cli.options import SettingsSpec
from outboxkit_postgres.settings import PostgresSettings

__all__ = ["WRITER_SETTINGS", "WriterConfig", "default_values", "writer_config"]

WRITER_SETTINGS = ("schema", "table", "notify", "max_payload_bytes", "mode")
"""The ``pg`` settings a writer shares with the relay."""


@dataclass(frozen=True)
class WriterConfig:
    """The writer's share of the ``pg`` settings and where each configured one came from."""

    values: Mapping[str, Any]
    """Setting name -> value (configured, else the default)."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Setting name -> where it was configured (``OUTBOXKIT_PG_SCHEMA``, ``outboxkit.toml
    [pg] schema``); defaults have none."""


def default_values() -> dict[str, Any]:
    """The writer's settings when no configuration is read: the defaults."""
    defaults = PostgresSettings()
    return {name: getattr(defaults, name) for name in WRITER_SETTINGS}


def writer_config(environ: Mapping[str, str] | None = None) -> WriterConfig:
    """The ``pg`` settings of the environment and the configuration file, as the relay reads
    them (a bad value or file raises :class:`~outboxkit.errors.ConfigurationError`)."""
    env = os.environ if environ is None else environ
    config = load_config(None, env)
    spec = SettingsSpec.derive(PostgresSettings, "pg")
    settings = spec.resolve(argparse.Namespace(), env, config)
    table = config.table("pg")
    sources: dict[str, str] = {}
    for f in spec.fields:
        if f.name not in WRITER_SETTINGS:
            continue
        if f.env in env:
            sources[f.name] = f.env
        elif f.name in table:
            sources[f.name] = config.where("pg", f.name)
    return WriterConfig({name: getattr(settings, name) for name in WRITER_SETTINGS}, sources)
