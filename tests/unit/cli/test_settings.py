"""Deriving flags, env vars and TOML keys from settings structs, and their precedence."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest

from outboxkit.cli.config import ConfigFile
from outboxkit.cli.options import SettingsSpec, mask_text, masked_settings, secret_values
from outboxkit.errors import ConfigurationError
from outboxkit.relay.settings import RelaySettings


class DemoSettings(msgspec.Struct, kw_only=True, frozen=True):
    """A small settings struct with one field of each supported kind."""

    dsn: Annotated[str, msgspec.Meta(description="where to connect", extra={"secret": True})] = (
        "demo://user:hunter2@localhost/db"
    )
    bootstrap_servers: Annotated[list[str], msgspec.Meta(description="brokers")] = msgspec.field(
        default_factory=lambda: ["localhost:9092"]
    )
    batch: Annotated[int, msgspec.Meta(ge=1, description="rows per round")] = 10
    timeout: Annotated[float, msgspec.Meta(gt=0, description="seconds, 100% honest")] = 1.5
    notify: Annotated[bool, msgspec.Meta(description="use notifications")] = True
    mode: Annotated[Literal["fast", "safe"], msgspec.Meta(description="how")] = "safe"
    label: Annotated[str | None, msgspec.Meta(description="optional label")] = None
    limit: Annotated[int | None, msgspec.Meta(description="optional limit")] = None

    def __post_init__(self) -> None:
        if self.mode == "fast" and self.notify:
            raise ConfigurationError("demo mode fast needs --demo-no-notify")


SPEC = SettingsSpec.derive(DemoSettings, "demo")
RELAY = SettingsSpec.derive(RelaySettings, "relay", prefix="")


def parser_for(*specs: SettingsSpec[Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    for spec in specs:
        spec.add_arguments(parser, spec.section)
    return parser


def resolve(
    argv: list[str],
    env: dict[str, str] | None = None,
    toml: dict[str, object] | None = None,
    spec: SettingsSpec[Any] = SPEC,
) -> msgspec.Struct:
    args = parser_for(spec).parse_args(argv)
    config = ConfigFile(Path("outboxkit.toml"), toml or {})
    settings: msgspec.Struct = spec.resolve(args, env or {}, config)
    return settings


def test_names_are_derived_from_plugin_and_field() -> None:
    by_name = {f.name: f for f in SPEC.fields}
    assert by_name["bootstrap_servers"].flag == "--demo-bootstrap-servers"
    assert by_name["bootstrap_servers"].env == "OUTBOXKIT_DEMO_BOOTSTRAP_SERVERS"
    assert by_name["dsn"].secret and not by_name["batch"].secret
    assert by_name["mode"].choices == ("fast", "safe")
    relay = {f.name: f for f in RELAY.fields}
    assert relay["batch_size"].flag == "--batch-size"
    assert relay["batch_size"].env == "OUTBOXKIT_BATCH_SIZE"


def test_plugin_names_with_underscores_become_dashes() -> None:
    spec = SettingsSpec.derive(DemoSettings, "my_store")
    assert spec.fields[0].flag == "--my-store-dsn"
    assert spec.fields[0].env == "OUTBOXKIT_MY_STORE_DSN"


def test_defaults_when_nothing_is_set() -> None:
    assert resolve([]) == DemoSettings()
    assert resolve([], spec=RELAY) == RelaySettings()


PRECEDENCE = [  # (spec, flag, env var, TOML table, field, default)
    (SPEC, "--demo-batch", "OUTBOXKIT_DEMO_BATCH", "demo", "batch", 10),
    (RELAY, "--batch-size", "OUTBOXKIT_BATCH_SIZE", "relay", "batch_size", 500),
]


@pytest.mark.parametrize(("spec", "flag", "env", "table", "field", "default"), PRECEDENCE)
def test_precedence_flag_env_toml_default(
    spec: SettingsSpec[Any], flag: str, env: str, table: str, field: str, default: int
) -> None:
    def value(argv: list[str], environ: dict[str, str], toml: dict[str, object]) -> object:
        return getattr(resolve(argv, environ, {table: toml}, spec=spec), field)

    assert value([], {}, {}) == default
    assert value([], {}, {field: 4}) == 4
    assert value([], {env: "3"}, {field: 4}) == 3
    assert value([flag, "2"], {env: "3"}, {field: 4}) == 2


def test_each_field_kind_converts_from_text() -> None:
    settings = resolve(
        ["--demo-bootstrap-servers", "a:1, b:2", "--demo-timeout", "0.25", "--demo-label", "x"],
        {"OUTBOXKIT_DEMO_LIMIT": "5", "OUTBOXKIT_DEMO_MODE": "safe"},
    )
    assert settings == DemoSettings(
        bootstrap_servers=["a:1", "b:2"], timeout=0.25, label="x", limit=5
    )


def test_toml_values_keep_their_types() -> None:
    settings = resolve(
        [], {}, {"demo": {"bootstrap_servers": ["x:1"], "notify": False, "limit": 3}}
    )
    assert settings == DemoSettings(bootstrap_servers=["x:1"], notify=False, limit=3)


def test_bool_flags_and_env_words() -> None:
    assert resolve(["--no-demo-notify"]) == DemoSettings(notify=False)
    assert resolve(["--demo-notify"], {"OUTBOXKIT_DEMO_NOTIFY": "no"}) == DemoSettings()
    for word, value in [("off", False), ("0", False), ("YES", True), ("true", True)]:
        assert resolve([], {"OUTBOXKIT_DEMO_NOTIFY": word}) == DemoSettings(notify=value)
    assert resolve(["--exit-when-idle"], spec=RELAY) == RelaySettings(exit_when_idle=True)


def test_empty_env_value_clears_an_optional_field() -> None:
    assert resolve([], {"OUTBOXKIT_DEMO_LABEL": ""}, {"demo": {"label": "x"}}) == DemoSettings()


@pytest.mark.parametrize(
    ("argv", "env", "toml", "names"),
    [
        (["--demo-batch", "0"], {}, {}, ["--demo-batch", "'0'", ">= 1"]),
        ([], {"OUTBOXKIT_DEMO_TIMEOUT": "soon"}, {}, ["OUTBOXKIT_DEMO_TIMEOUT", "'soon'"]),
        ([], {}, {"batch": "many"}, ["outboxkit.toml [demo] batch", "'many'"]),
        (["--demo-mode", "reckless"], {}, {}, ["--demo-mode", "reckless"]),
        ([], {}, {"bootstrap_servers": [1]}, ["[demo] bootstrap_servers"]),
    ],
)
def test_bad_values_name_their_source(
    argv: list[str], env: dict[str, str], toml: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(argv, env, {"demo": toml})
    for name in names:
        assert name in str(info.value)


def test_bad_relay_value_names_the_env_var() -> None:
    with pytest.raises(ConfigurationError, match="OUTBOXKIT_LEASE_TTL"):
        resolve([], {"OUTBOXKIT_LEASE_TTL": "-1"}, spec=RELAY)


def test_bad_secret_value_is_not_echoed() -> None:
    class Strict(msgspec.Struct):
        token: Annotated[str, msgspec.Meta(min_length=40, extra={"secret": True})] = "x" * 40

    spec = SettingsSpec.derive(Strict, "s")
    with pytest.raises(ConfigurationError) as info:
        resolve(["--s-token", "short-secret"], spec=spec)
    assert "--s-token" in str(info.value)
    assert "short-secret" not in str(info.value)


def test_cross_field_errors_are_reported() -> None:
    with pytest.raises(ConfigurationError, match="invalid demo settings: demo mode fast"):
        resolve(["--demo-mode", "fast"])


def test_unknown_toml_key_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"outboxkit.toml \[demo\] batsh .*known: dsn"):
        resolve([], {}, {"demo": {"batsh": 3}})


def test_missing_required_setting_names_all_sources() -> None:
    class Needs(msgspec.Struct):
        dsn: Annotated[str, msgspec.Meta(description="where")]

    spec = SettingsSpec.derive(Needs, "need")
    with pytest.raises(ConfigurationError) as info:
        resolve([], spec=spec)
    assert "--need-dsn" in str(info.value) and "OUTBOXKIT_NEED_DSN" in str(info.value)
    assert resolve(["--need-dsn", "x"], spec=spec) == Needs(dsn="x")


def test_help_lists_descriptions_defaults_and_env_but_hides_secret_defaults() -> None:
    text = parser_for(SPEC, RELAY).format_help()
    assert "--demo-bootstrap-servers" in text and "brokers" in text
    assert "localhost:9092" in text and "OUTBOXKIT_DEMO_BATCH" in text
    assert "--demo-notify, --no-demo-notify" in text
    assert "100% honest" in text
    assert "hunter2" not in text and "default: hidden" in text
    assert "--batch-size" in text and "default: 500" in text


def test_masked_settings_hide_secrets_and_dsn_passwords() -> None:
    class Conn(msgspec.Struct):
        url: str = "postgresql://app:s3cret@db:5432/orders"
        token: Annotated[str, msgspec.Meta(extra={"secret": True})] = "tok"

    shown = masked_settings(Conn())
    assert shown == {"url": "postgresql://app:***@db:5432/orders", "token": "***"}
    assert masked_settings(DemoSettings())["dsn"] == "***"
    assert secret_values(Conn()) == ["tok"]


def test_mask_text_masks_every_dsn_in_a_sentence() -> None:
    text = "cannot reach postgresql://u:pw1@h/db or nats://a:pw2@n:4222, password=pw3 here"
    masked = mask_text(text)
    assert "pw1" not in masked and "pw2" not in masked and "pw3" not in masked
    assert "postgresql://u:***@h/db" in masked


@pytest.mark.parametrize(
    ("raw", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1.5", 1.5), ("5m", 300.0), ("1h", 3600.0)]
)
def test_durations_take_a_unit(raw: str, seconds: float) -> None:
    def startup_timeout(settings: msgspec.Struct) -> float | None:
        assert isinstance(settings, RelaySettings)
        return settings.startup_timeout

    assert startup_timeout(resolve(["--startup-timeout", raw], spec=RELAY)) == seconds
    assert startup_timeout(resolve([], {"OUTBOXKIT_STARTUP_TIMEOUT": raw}, spec=RELAY)) == seconds
    assert (
        startup_timeout(resolve([], toml={"relay": {"startup_timeout": raw}}, spec=RELAY))
        == seconds
    )


def test_a_bad_duration_says_what_is_expected() -> None:
    with pytest.raises(ConfigurationError, match=r"--startup-timeout: .*e\.g\. 500ms, 30s"):
        resolve(["--startup-timeout", "2 weeks"], spec=RELAY)
