"""config.yaml: the settings a charm takes, their types and defaults, and checking values against them.

``options: {name: {type: string|int|float|boolean, default: ..., description: ...}}``; a missing or
empty file means no options. Values come from two places and are checked differently:

- ``ensemble set svc key=value`` gives text: `ConfigSchema.coerce` reads it as the option's type
  (booleans: true/false/yes/no). An empty value (``key=``) is `UNSET`: the setting goes back to the
  charm's default, as in Ensemble; a string option cannot be set to "" this way.
- ``deploy --config FILE`` and stored settings give YAML values: `ConfigSchema.validate` takes them
  as typed (a string option given ``1234`` must be quoted in the YAML).

Errors never echo a value: a value may be a password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._yaml import describe, load_yaml
from .errors import CharmError

__all__ = ["TYPES", "UNSET", "ConfigOption", "ConfigSchema", "ConfigValue", "Unset"]

TYPES = ("string", "int", "float", "boolean")
_OBSOLETE_TYPES = {"str": "string"}  # Ensemble still read 'str'
_OPTION_KEYS = ("type", "default", "description")
_OPTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # no '=', no spaces: it is typed as key=value
_TRUE = ("true", "yes")
_FALSE = ("false", "no")
_EXPECTED = {
    "string": "a string",
    "int": "an int (a whole number like 3306)",
    "float": "a float (a number like 0.5)",
    "boolean": "a boolean (true, false, yes or no)",
}

ConfigValue = str | int | float | bool


class Unset:
    """The type of `UNSET`: ``set key=`` asks for the charm's default again."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


@dataclass(frozen=True)
class ConfigOption:
    """One option of config.yaml; *default* is None when the charm gives none."""

    name: str
    type: str
    default: ConfigValue | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.default is not None:
            data["default"] = self.default
        return data


@dataclass(frozen=True)
class ConfigSchema:
    """A charm's options by name."""

    options: Mapping[str, ConfigOption] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | bytes | None, where: str) -> ConfigSchema:
        """The schema in *text* (None or empty: no options); *where* names the charm's config.yaml in errors."""
        if text is None or not text.strip():
            return cls()
        return cls.from_document(load_yaml(text, where), where)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stored charm config schema") -> ConfigSchema:
        """The schema stored by `to_dict` (checked again)."""
        return cls.from_document(data, where)

    def to_dict(self) -> dict[str, Any]:
        """The config.yaml document, for the state."""
        return {"options": {name: option.to_dict() for name, option in self.options.items()}}

    @classmethod
    def from_document(cls, data: Any, where: str) -> ConfigSchema:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise CharmError(f"{where}: expected a mapping with an 'options:' key, not {describe(data)}")
        for key in data:
            if key != "options":
                raise CharmError(f"{where}: unknown key {key!r}: config.yaml has only 'options:'")
        raw = data.get("options")
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise CharmError(f"{where}: 'options' must be a mapping of option name to its type, default, description")
        return cls({name: _option(name, spec, where) for name, spec in raw.items()})

    def defaults(self) -> dict[str, ConfigValue]:
        """The options that have a default, with it."""
        return {name: option.default for name, option in self.options.items() if option.default is not None}

    def coerce(self, key: str, text: str, where: str = "ensemble set") -> ConfigValue | Unset:
        """The value of ``key=text`` (``ensemble set``) as the option's type; "" gives `UNSET`.

        *where* starts the error (the command and service, say); the text itself is never echoed.
        """
        option = self._option(key, where)
        if text == "":
            return UNSET
        if option.type == "string":
            return text
        folded = text.strip().lower()
        if option.type == "boolean":
            if folded in _TRUE:
                return True
            if folded in _FALSE:
                return False
        elif option.type == "int":
            if re.fullmatch(r"[+-]?[0-9]+", folded):
                return int(folded)
        else:
            try:
                number = float(folded)
            except ValueError:
                number = None
            if number is not None and number == number and abs(number) != float("inf"):
                return number
        raise CharmError(f"{where}: option {key!r} expects {_EXPECTED[option.type]}: give one as {key}=VALUE")

    def validate(self, values: Mapping[str, Any], where: str) -> dict[str, ConfigValue]:
        """Typed YAML values (``deploy --config``, stored settings) checked; *where* names their file."""
        if not isinstance(values, Mapping):
            raise CharmError(f"{where}: expected a mapping of option name to value, not {describe(values)}")
        checked: dict[str, ConfigValue] = {}
        for key, value in values.items():
            option = self._option(key, where)
            typed = _typed(option.type, value)
            if typed is None:
                hint = ": quote it in the YAML" if option.type == "string" and value is not None else ""
                raise CharmError(
                    f"{where}: option {key!r} expects {_EXPECTED[option.type]}, not {describe(value)}{hint}"
                )
            checked[key] = typed
        return checked

    def _option(self, key: object, where: str) -> ConfigOption:
        option = self.options.get(key) if isinstance(key, str) else None
        if option is None:
            known = ", ".join(sorted(self.options)) or "none: the charm has no config.yaml options"
            raise CharmError(f"{where}: unknown option {key!r}; the charm's options are: {known}")
        return option


def _typed(kind: str, value: Any) -> ConfigValue | None:
    """*value* as an option of *kind*, or None when it is not one (bool is never an int or a float)."""
    if kind == "string":
        return value if isinstance(value, str) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == "int":
        return value if isinstance(value, int) else None
    if value != value or abs(value) == float("inf"):
        return None
    return float(value)


def _option(name: Any, spec: Any, where: str) -> ConfigOption:
    if not isinstance(name, str) or not _OPTION_NAME.match(name):
        raise CharmError(
            f"{where}: option name {name!r} under 'options' must be letters, digits, '-', '_' or '.' "
            "(it is typed as name=value)"
        )
    key = f"options.{name}"
    if not isinstance(spec, Mapping):
        raise CharmError(f"{where}: {key!r} must be a mapping with type, default and description")
    for spec_key in spec:
        if spec_key not in _OPTION_KEYS:
            raise CharmError(f"{where}: unknown key '{key}.{spec_key}': the keys are {', '.join(_OPTION_KEYS)}")
    kind = spec.get("type")
    if kind is None:
        raise CharmError(f"{where}: '{key}.type' is missing: give one of {', '.join(TYPES)}")
    kind = _OBSOLETE_TYPES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in TYPES:
        raise CharmError(f"{where}: '{key}.type' must be one of {', '.join(TYPES)}")
    description = spec.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise CharmError(f"{where}: '{key}.description' must be a string, not {describe(description)}")
    default = spec.get("default")
    if default is not None:
        typed = _typed(kind, default)
        if typed is None:
            raise CharmError(
                f"{where}: '{key}.default' is {describe(default)}, not {_EXPECTED[kind]}: "
                f"make it match 'type: {kind}' ({'quote it' if kind == 'string' else 'unquoted'})"
            )
        default = typed
    return ConfigOption(name, kind, default, description)
