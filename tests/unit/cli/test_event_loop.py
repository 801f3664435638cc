"""``--event-loop``: the commands run on uvloop where it is installed, unless told not to."""

from __future__ import annotations

from typing import Any

import pytest

from outboxkit.cli import app, main
from outboxkit.cli.event_loop import backend_options
from outboxkit.errors import ConfigurationError


def loop_options(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """The backend options ``outboxkit plugins`` runs its event loop with."""
    seen: dict[str, Any] = {}
    real_run = app.anyio.run

    def spy(func: Any, *args: Any, backend_options: dict[str, Any]) -> Any:
        seen.update(backend_options)
        return real_run(func, *args, backend_options=backend_options)

    monkeypatch.setattr(app.anyio, "run", spy)
    assert main(["plugins", *argv]) == 0
    return seen


def test_uvloop_by_default_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop is a dependency of outboxkit on Linux and macOS
    monkeypatch.delenv("OUTBOXKIT_EVENT_LOOP", raising=False)
    assert loop_options(monkeypatch) == {"use_uvloop": True}


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_options(monkeypatch, "--event-loop", "asyncio") == {"use_uvloop": False}
    monkeypatch.setenv("OUTBOXKIT_EVENT_LOOP", "asyncio")
    assert loop_options(monkeypatch) == {"use_uvloop": False}


def test_a_bad_choice_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTBOXKIT_EVENT_LOOP", "trio")
    assert main(["plugins"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "outboxkit: error: invalid value 'trio' for OUTBOXKIT_EVENT_LOOP: use one of "
        "auto, uvloop, asyncio"
    ]


def test_uvloop_asked_for_but_missing_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match="uvloop is not installed; pip install uvloop"):
        backend_options("uvloop")
    assert backend_options("auto") == {"use_uvloop": False}
