"""Finding and reading outboxkit.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from outboxkit.cli import main
from outboxkit.cli.config import find_config, load_config
from outboxkit.errors import ConfigurationError


def test_flag_then_env_then_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None
    (tmp_path / "outboxkit.toml").write_text("store = 'sqlite'\n")
    assert find_config(None, {}) == Path("outboxkit.toml")
    assert find_config(None, {"OUTBOXKIT_CONFIG": "env.toml"}) == Path("env.toml")
    assert find_config("flag.toml", {"OUTBOXKIT_CONFIG": "env.toml"}) == Path("flag.toml")


def test_tables_and_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('store = "pg"\n[relay]\nbatch_size = 5\n[pg]\ndsn = "postgresql://x"\n')
    config = load_config(str(path), {})
    assert config.top("store") == "pg" and config.top("publisher") is None
    assert config.table("relay") == {"batch_size": 5}
    assert config.table("kafka") == {}
    assert config.where("pg", "dsn") == f"{path} [pg] dsn"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[relay\n", "is not valid TOML"),
        ("relay = 3\n", "unknown top-level key 'relay'"),
        ("store = 3\n", "store must be a string"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_config(str(path), {}).top("store")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"), {})
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(None, {"OUTBOXKIT_CONFIG": str(tmp_path / "nope.toml")})


def test_unknown_table_is_named_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "typo.toml"
    path.write_text('publisher = "kafka"\n[kafak]\nbootstrap_servers = "k:9092"\n')
    assert main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[kafak] is not a table outboxkit reads" in err
    assert "did you mean [kafka]?" in err and "[relay]" in err and "[sqlite]" in err
    assert not (tmp_path / "outbox.db").exists()


def test_tables_of_installed_plugins_not_chosen_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "several.toml"
    path.write_text('[relay]\nbatch_size = 5\n[pg]\ndsn = "postgresql://x"\n[nats]\n[kafka]\n')
    load_config(str(path), {}).check_tables(["relay", "pg", "nats", "kafka", "sqlite"])
    assert main(["plugins", "--config", str(path)]) == 0
