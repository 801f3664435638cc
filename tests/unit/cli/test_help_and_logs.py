"""``--help`` derived from the chosen plugins, ``outboxkit plugins``, and the startup log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest

from outboxkit.cli import main
from outboxkit.cli.plugins import load as real_load
from outboxkit.embedded.sqlite.settings import SqliteSettings
from outboxkit.embedded.sqlite.store import SqliteStore
from outboxkit.plugins import StorePlugin


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


def test_relay_help_shows_default_plugins_options_and_installed_plugins(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(capsys, "relay")
    for option in ("--sqlite-path", "--stdout-path", "--batch-size", "--exit-when-idle"):
        assert option in text
    assert "store 'sqlite' options" in text and "publisher 'stdout' options" in text
    assert "env OUTBOXKIT_SQLITE_PATH" in text and "(default: outbox.db" in text
    assert "installed stores: " in text and "sqlite" in text
    assert "installed publishers: " in text and "stdout" in text


def test_store_commands_show_only_store_options(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "dead-letters", "replay")
    assert "--sqlite-path" in text and "--all" in text and "--id UUID" in text
    assert "--stdout-path" not in text and "--batch-size" not in text


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys)
    for command in ("relay", "migrate", "status", "dead-letters", "plugins"):
        assert command in text
    assert "bench" not in text


def test_help_of_a_chosen_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    # the workspace installs every plugin (``uv sync --all-packages``): no skip if one is absent
    text = help_of(capsys, "relay", "--store", "pg")
    assert "--pg-dsn" in text and "OUTBOXKIT_PG_DSN" in text
    assert "--sqlite-path" not in text


def test_plugins_lists_embedded_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    stores, publishers = out.split("publishers:")
    assert "sqlite" in stores and "stdout" in publishers


class SecretiveSettings(msgspec.Struct, kw_only=True, frozen=True):
    path: Annotated[str, msgspec.Meta(description="SQLite file")] = "outbox.db"
    token: Annotated[str, msgspec.Meta(description="a token", extra={"secret": True})] = "t"
    url: Annotated[str, msgspec.Meta(description="a DSN that is not marked secret")] = "x://h"


SECRETIVE = StorePlugin(
    name="secretive",
    settings_type=SecretiveSettings,
    create=lambda s: SqliteStore(SqliteSettings(path=s.path)),
    summary="sqlite with secrets, for tests",
)


def test_startup_log_masks_secrets(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def load(kind: Any, name: str) -> Any:
        return SECRETIVE if name == "secretive" else real_load(kind, name)

    monkeypatch.setattr("outboxkit.cli.app.load", load)
    caplog.set_level(logging.INFO)
    assert main(["migrate", "--store", "secretive"]) == 0
    argv = ["relay", "--store", "secretive", "--exit-when-idle", "--stdout-path", "out.jsonl"]
    argv += ["--secretive-token", "tok-hunter2", "--secretive-url", "pg://app:hunter3@db/x"]
    assert main(argv) == 0
    startup = next(r.getMessage() for r in caplog.records if "store=secretive" in r.getMessage())
    assert "token=***" in startup and "url=pg://app:***@db/x" in startup
    assert "hunter2" not in caplog.text and "hunter3" not in caplog.text
