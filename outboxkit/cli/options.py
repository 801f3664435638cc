"""Deriving CLI flags, environment variables and TOML keys from a typed settings struct.

A settings struct is a ``msgspec.Struct`` whose fields are
``Annotated[T, msgspec.Meta(description=...)]`` (secrets: ``extra={"secret": True}``) with T one
of str, int, float, bool, a Literal, list[str] or ``X | None``; a float of seconds marked
``extra={"duration": True}`` also takes a unit (``500ms``, ``30s``, ``5m``, ``1h``). For a
plugin named ``pg`` the field ``dsn`` becomes the flag ``--pg-dsn``, the variable
``OUTBOXKIT_PG_DSN`` and the key ``dsn`` of the TOML table ``[pg]``; relay settings have no
prefix (``--batch-size``, ``OUTBOXKIT_BATCH_SIZE``, ``[relay]``). Flags win over the
environment, which wins over the file, which wins over the struct's defaults.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from outboxkit.cli.config import ENV_PREFIX, ConfigFile
from outboxkit.errors import ConfigurationError
from outboxkit.masking import mask_text

__all__ = ["SettingField", "SettingsSpec", "masked_settings", "secret_values"]

S = TypeVar("S", bound=msgspec.Struct)
Kind = Literal["bool", "list", "scalar"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_AT_FIELD = re.compile(r" - at `\$\.(\w+)")
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class SettingField:
    """One field of a settings struct and the names it has on each configuration source."""

    name: str
    kind: Kind
    optional: bool
    description: str
    default: Any
    secret: bool
    choices: tuple[str, ...]
    duration: bool
    flag: str
    env: str
    dest: str

    @property
    def required(self) -> bool:
        return self.default is msgspec.NODEFAULT

    def show(self, value: Any) -> str:
        """``value`` as text for help, logs and errors: secrets hidden, DSNs masked."""
        if value is None:
            return "none"
        if self.secret:
            return "***"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return ",".join(mask_text(str(v)) for v in value) or "empty"
        return mask_text(str(value))

    def parse(self, raw: Any) -> Any:
        """Prepare a raw value for ``msgspec.convert``: split lists, read yes/no, '' is None."""
        if not isinstance(raw, str):
            return raw
        if self.optional and not raw.strip():
            return None
        if self.kind == "list":
            return [item.strip() for item in raw.split(",") if item.strip()]
        if self.kind == "bool" and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        duration = _DURATION.fullmatch(raw) if self.duration else None
        if duration is not None:
            return float(duration[1]) * _SECONDS[(duration[2] or "s").lower()]
        return raw

    def help(self) -> str:
        """The ``--help`` text: description, default and environment variable."""
        if self.required:
            default = "required"
        elif self.secret and self.default is not None:
            default = "default: hidden"
        else:
            default = f"default: {self.show(self.default)}"
        if "(default" in self.description:  # the description explains its own default
            default = ""
        suffix = f"({default}; env {self.env})" if default else f"(env {self.env})"
        return f"{self.description} {suffix}".strip().replace("%", "%%")


def _unwrap(t: mi.Type) -> tuple[mi.Type, str, dict[str, Any]]:
    if isinstance(t, mi.Metadata):
        return t.type, (t.extra_json_schema or {}).get("description", ""), dict(t.extra or {})
    return t, "", {}


def _field(section: str, prefix: str, f: mi.Field) -> SettingField:
    t, description, extra = _unwrap(f.type)
    optional = False
    if isinstance(t, mi.UnionType):
        members = [_unwrap(m)[0] for m in t.types if not isinstance(m, mi.NoneType)]
        optional = len(members) < len(t.types)
        if len(members) == 1:
            t = members[0]
    kind: Kind = "scalar"
    if isinstance(t, mi.BoolType):
        kind = "bool"
    elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        kind = "list"
    choices = tuple(str(v) for v in t.values) if isinstance(t, mi.LiteralType) else ()
    if f.default is not msgspec.NODEFAULT:
        default = f.default
    elif f.default_factory is not msgspec.NODEFAULT:
        default = f.default_factory()
    else:
        default = msgspec.NODEFAULT
    words = [w for w in (prefix, f.name) if w]
    return SettingField(
        name=f.name,
        kind=kind,
        optional=optional,
        description=description,
        default=default,
        secret=bool(extra.get("secret", False)),
        choices=choices,
        duration=bool(extra.get("duration", False)),
        flag="--" + "-".join(words).replace("_", "-").lower(),
        env=ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", "_".join(words)).upper(),
        dest=f"settings:{section}:{f.name}",
    )


@dataclass(frozen=True)
class SettingsSpec(Generic[S]):
    """A settings struct seen as CLI options, env vars and a TOML table."""

    section: str
    settings_type: type[S]
    fields: tuple[SettingField, ...]

    @classmethod
    def derive(
        cls, settings_type: type[S], section: str, prefix: str | None = None
    ) -> SettingsSpec[S]:
        """Derive the spec; flags and env vars get ``prefix`` (default: the section name)."""
        info = mi.type_info(settings_type)
        if not isinstance(info, mi.StructType):
            raise TypeError(f"{settings_type!r} is not a msgspec.Struct")
        prefix = section if prefix is None else prefix
        return cls(section, settings_type, tuple(_field(section, prefix, f) for f in info.fields))

    def add_arguments(self, parser: argparse.ArgumentParser, title: str) -> None:
        """Add one option per field to ``parser``, in a help group called ``title``."""
        group = parser.add_argument_group(title)
        for f in self.fields:
            if f.kind == "bool":
                group.add_argument(
                    f.flag, dest=f.dest, action=argparse.BooleanOptionalAction, help=f.help()
                )
                continue
            metavar = "{" + ",".join(f.choices) + "}" if f.choices else f.name.upper()
            if f.duration:
                metavar = "DURATION"
            if f.kind == "list":
                metavar += ",..."
            group.add_argument(f.flag, dest=f.dest, metavar=metavar, help=f.help())

    def resolve(
        self, namespace: argparse.Namespace, environ: Mapping[str, str], config: ConfigFile
    ) -> S:
        """Build the settings from flags, then env vars, then the TOML table, then defaults."""
        table = config.table(self.section)
        by_name = {f.name: f for f in self.fields}
        for key in table:
            if key not in by_name:
                raise ConfigurationError(
                    f"{config.where(self.section, key)} is not a {self.section} setting; "
                    f"known: {', '.join(by_name)}"
                )
        values: dict[str, Any] = {}
        sources: dict[str, tuple[str, Any]] = {}
        for f in self.fields:
            flag_value = getattr(namespace, f.dest, None)
            if flag_value is not None:
                sources[f.name] = (f.flag, flag_value)
            elif f.env in environ:
                sources[f.name] = (f.env, environ[f.env])
            elif f.name in table:
                sources[f.name] = (config.where(self.section, f.name), table[f.name])
            else:
                continue
            values[f.name] = f.parse(sources[f.name][1])
        try:
            return msgspec.convert(values, self.settings_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(self._explain(str(exc), sources)) from None

    def _explain(self, error: str, sources: Mapping[str, tuple[str, Any]]) -> str:
        missing = re.search(r"missing required field `(\w+)`", error)
        field = next((f for f in self.fields if missing and f.name == missing[1]), None)
        if field is not None:
            return (
                f"missing required setting {field.flag} "
                f"(or env {field.env}, or {field.name} in [{self.section}] of the config file)"
            )
        at = _AT_FIELD.search(error)
        if at is not None and at[1] in sources:
            source, raw = sources[at[1]]
            field = next(f for f in self.fields if f.name == at[1])
            shown = "***" if field.secret else repr(raw)
            hint = " (a number of seconds, or e.g. 500ms, 30s, 5m, 1h)" if field.duration else ""
            if field.choices:
                hint = f"; choose one of {', '.join(field.choices)}"
            return f"invalid value {mask_text(shown)} for {source}: {error[: at.start()]}{hint}"
        return f"invalid {self.section} settings: {mask_text(error.removesuffix(' - at `$`'))}"

    def masked(self, settings: S) -> dict[str, str]:
        """The settings as text, secrets shown as ``***`` and DSN passwords masked."""
        return {f.name: f.show(getattr(settings, f.name)) for f in self.fields}

    def secrets(self, settings: S) -> list[str]:
        """The values of the secret fields that are set (to scrub them from error output)."""
        found: list[str] = []
        for f in self.fields:
            value = getattr(settings, f.name)
            if f.secret and value is not None:
                found.extend(str(v) for v in (value if isinstance(value, list) else [value]))
        return [v for v in found if v]


def masked_settings(settings: msgspec.Struct, section: str = "settings") -> dict[str, str]:
    """Any settings struct as text with secrets masked (see :meth:`SettingsSpec.masked`)."""
    return SettingsSpec.derive(type(settings), section).masked(settings)


def secret_values(settings: msgspec.Struct) -> list[str]:
    """The set secret values of any settings struct."""
    return SettingsSpec.derive(type(settings), "settings").secrets(settings)
