"""How the command reports errors: one masked line and exit status 2, or a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from outboxkit.cli import main
from outboxkit.cli.errors import Scrubber, outbox_error
from outboxkit.errors import ConfigurationError, LeaseLostError, StoreUnavailableError


def test_scrubber_masks_known_secrets_and_dsn_passwords() -> None:
    scrub = Scrubber()
    scrub.add(["tok-123456", "postgresql://app:pw@db/x"])
    text = scrub("auth tok-123456 failed for postgresql://app:pw@db/x and mysql://u:p2@h/y")
    assert "tok-123456" not in text and ":pw@" not in text and ":p2@" not in text
    assert "postgresql://app:***@db/x" in text


def test_outbox_error_unwraps_groups_of_outbox_errors_only() -> None:
    inner = StoreUnavailableError("db down")
    assert outbox_error(inner) is inner
    assert outbox_error(ExceptionGroup("g", [inner, LeaseLostError("x")])) is inner
    assert outbox_error(ExceptionGroup("g", [inner, RuntimeError("bug")])) is None
    assert outbox_error(RuntimeError("bug")) is None


def test_unknown_store_lists_installed_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--store", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("outboxkit: error: no store plugin named 'nosuch'; installed: ")
    assert "sqlite" in err and "\n" not in err


def test_unknown_publisher_from_env_lists_installed_plugins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTBOXKIT_PUBLISHER", "carrier-pigeon")
    assert main(["relay"]) == 2
    err = capsys.readouterr().err
    assert "no publisher plugin named 'carrier-pigeon'" in err and "stdout" in err


def test_store_from_toml_top_level_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outboxkit.toml").write_text('store = "from-toml"\n')
    assert main(["migrate"]) == 2
    assert "no store plugin named 'from-toml'" in capsys.readouterr().err


def test_bad_config_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[relay\n")
    assert main(["status", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("outboxkit: error: config file") and err.count("\n") == 1


def test_bench_is_not_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    # the benchmark suite belongs to the repository: ``python -m benchmarks`` from a checkout
    with pytest.raises(SystemExit) as info:
        main(["bench", "--size", "smoke"])
    assert info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (RuntimeError("boom at postgresql://u:hunter2@db/x"), 1, "RuntimeError: boom"),
        (ConfigurationError("bad DSN postgresql://u:hunter2@db:x/y"), 2, "outboxkit: error: bad"),
    ],
)
def test_crashes_and_outbox_errors_are_scrubbed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    status: int,
    expected: str,
) -> None:
    def fail(argv: object, environ: object = None) -> None:
        raise error

    monkeypatch.setattr("outboxkit.cli.app.parse", fail)
    assert main(["status"]) == status
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err
    assert ("Traceback" in err) == (status == 1)


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["migrate", "--shards", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_option_of_an_unchosen_plugin_names_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["relay", "--kafka-linger-ms", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--kafka-linger-ms is an option of the publisher 'kafka': add --publisher kafka" in err
