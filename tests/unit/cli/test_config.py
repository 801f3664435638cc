"""Finding and reading outboxkit.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

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
