"""metadata.yaml: what a charm is called and which relations it offers, needs and shares.

The format is Ensemble's: ``name``, ``summary`` and ``description`` are required; ``provides``,
``requires`` and ``peers`` map relation names to an interface, written short (``db: mysql``) or in full
(``db: {interface: mysql, limit: 1, optional: false, scope: global}``); ``subordinate`` marks a charm
that lives in another unit's container. Unlike Ensemble (whose schema let unknown keys through), an
unknown key is an error, so a typo (``provide:``) is not a relation that silently never exists. Two
keys of the era are accepted and ignored (``maintainer``, ``categories``), and an obsolete
``revision:`` is kept for charms that have no revision file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._yaml import describe, load_yaml
from .errors import CharmError
from .url import is_valid_name

__all__ = [
    "DEFAULT_LIMITS",
    "ROLES",
    "SCOPE_CONTAINER",
    "SCOPE_GLOBAL",
    "CharmMetadata",
    "RelationSpec",
]

SCOPE_GLOBAL = "global"
SCOPE_CONTAINER = "container"
ROLES = ("provides", "requires", "peers")
DEFAULT_LIMITS: Mapping[str, int | None] = {"provides": None, "requires": 1, "peers": 1}
_REQUIRED = {
    "name": "add the charm's name (like 'mysql')",
    "summary": "add a one-line summary of the charm",
    "description": "add a description of what the charm deploys",
}
_IGNORED = ("maintainer", "categories")  # informational keys charms of the era carry
_KEYS = (*_REQUIRED, *ROLES, "subordinate", "revision", *_IGNORED)
_SPEC_KEYS = ("interface", "limit", "optional", "scope")
_RELATION_NAME = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")  # it becomes part of hook names
_RESERVED_PREFIXES = ("juju-", "ensemble-")  # implicit relations every charm has


@dataclass(frozen=True)
class RelationSpec:
    """One relation of a charm: its name (the hooks' prefix), interface and how many may join."""

    name: str
    interface: str
    limit: int | None
    optional: bool
    scope: str

    def to_dict(self) -> dict[str, Any]:
        return {"interface": self.interface, "limit": self.limit, "optional": self.optional, "scope": self.scope}


@dataclass(frozen=True)
class CharmMetadata:
    """A parsed, valid metadata.yaml."""

    name: str
    summary: str
    description: str
    provides: Mapping[str, RelationSpec] = field(default_factory=dict)
    requires: Mapping[str, RelationSpec] = field(default_factory=dict)
    peers: Mapping[str, RelationSpec] = field(default_factory=dict)
    subordinate: bool = False
    obsolete_revision: int | None = None  # metadata.yaml's 'revision:', used only when there is no revision file

    def relations(self) -> dict[str, RelationSpec]:
        """Every relation by name (names are unique across provides, requires and peers)."""
        return {**self.provides, **self.requires, **self.peers}

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> CharmMetadata:
        """The metadata in *text*; *where* names the charm's file in errors (the path of its metadata.yaml)."""
        return cls.from_document(load_yaml(text, where), where)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stored charm metadata") -> CharmMetadata:
        """The metadata stored by `to_dict` (checked again: a stored node is still input)."""
        return cls.from_document(data, where)

    def to_dict(self) -> dict[str, Any]:
        """The fully expanded metadata.yaml, for the state."""
        data: dict[str, Any] = {"name": self.name, "summary": self.summary, "description": self.description}
        for role in ROLES:
            specs: Mapping[str, RelationSpec] = getattr(self, role)
            if specs:
                data[role] = {name: spec.to_dict() for name, spec in specs.items()}
        if self.subordinate:
            data["subordinate"] = True
        if self.obsolete_revision is not None:
            data["revision"] = self.obsolete_revision
        return data

    @classmethod
    def from_document(cls, data: Any, where: str) -> CharmMetadata:
        """Check a loaded YAML document; every error is one line naming *where* and the key."""
        if not isinstance(data, Mapping):
            raise CharmError(f"{where}: expected a mapping with name, summary and description, not {describe(data)}")
        for key in data:
            if key not in _KEYS:
                raise CharmError(f"{where}: unknown key {key!r}: the keys are {', '.join(_KEYS[:7])}")
        text: dict[str, str] = {}
        for key, fix in _REQUIRED.items():
            value = data.get(key)
            if value is None:
                raise CharmError(f"{where}: {key!r} is missing: {fix}")
            if not isinstance(value, str):
                raise CharmError(f"{where}: {key!r} must be a string, not {describe(value)}")
            if not value.strip():
                raise CharmError(f"{where}: {key!r} is empty: {fix}")
            text[key] = value
        if not is_valid_name(text["name"]):
            raise CharmError(
                f"{where}: 'name' {text['name']!r} is not a charm name: lowercase letters, digits and '-', "
                "starting with a letter, no part only digits (like 'mysql' or 'mysql-ha')"
            )
        roles = {role: _relations(data.get(role), role, where) for role in ROLES}
        _check_unique(roles, where)
        subordinate = data.get("subordinate", False)
        if not isinstance(subordinate, bool):
            raise CharmError(f"{where}: 'subordinate' must be true or false, not {describe(subordinate)}")
        if subordinate and not any(spec.scope == SCOPE_CONTAINER for spec in roles["requires"].values()):
            raise CharmError(
                f"{where}: 'subordinate' is true but no 'requires' relation has scope: container: add one "
                "(like 'juju-info: {interface: juju-info, scope: container}')"
            )
        revision = data.get("revision")
        if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool) or revision < 0):
            raise CharmError(f"{where}: 'revision' must be a whole number >= 0; better, move it to the revision file")
        return cls(
            name=text["name"],
            summary=text["summary"],
            description=text["description"],
            provides=roles["provides"],
            requires=roles["requires"],
            peers=roles["peers"],
            subordinate=subordinate,
            obsolete_revision=revision,
        )


def _relations(value: Any, role: str, where: str) -> dict[str, RelationSpec]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CharmError(f"{where}: {role!r} must be a mapping of relation name to interface (like 'db: mysql')")
    specs: dict[str, RelationSpec] = {}
    for name, spec in value.items():
        key = f"{role}.{name}"
        if not isinstance(name, str) or not _RELATION_NAME.match(name):
            raise CharmError(
                f"{where}: {key!r}: {name!r} is not a relation name: lowercase letters and digits, "
                "words joined by '-' or '_' (like 'db' or 'shared-fs')"
            )
        if role == "provides" and name.startswith(_RESERVED_PREFIXES):
            raise CharmError(f"{where}: {key!r}: names starting with juju- or ensemble- are reserved: rename it")
        specs[name] = _spec(name, spec, role, key, where)
    return specs


def _spec(name: str, value: Any, role: str, key: str, where: str) -> RelationSpec:
    if isinstance(value, str):
        value = {"interface": value}
    if not isinstance(value, Mapping):
        raise CharmError(
            f"{where}: {key!r} must be an interface name or a mapping with 'interface', not {describe(value)}"
        )
    for spec_key in value:
        if spec_key not in _SPEC_KEYS:
            raise CharmError(f"{where}: unknown key '{key}.{spec_key}': the keys are {', '.join(_SPEC_KEYS)}")
    interface = value.get("interface")
    if interface is None:
        raise CharmError(f"{where}: '{key}.interface' is missing: name the relation's interface (like 'mysql')")
    if not isinstance(interface, str) or not _RELATION_NAME.match(interface):
        raise CharmError(
            f"{where}: '{key}.interface' must be an interface name (lowercase words joined by '-' or '_', like 'mysql')"
        )
    if role == "provides" and interface.startswith(_RESERVED_PREFIXES):
        raise CharmError(f"{where}: '{key}.interface' {interface!r} is reserved (juju-/ensemble-): provide another")
    limit = value.get("limit", DEFAULT_LIMITS[role])
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise CharmError(f"{where}: '{key}.limit' must be a whole number >= 1 or null (no limit)")
    optional = value.get("optional", False)
    if not isinstance(optional, bool):
        raise CharmError(f"{where}: '{key}.optional' must be true or false, not {describe(optional)}")
    scope = value.get("scope", SCOPE_GLOBAL)
    if scope not in (SCOPE_GLOBAL, SCOPE_CONTAINER):
        raise CharmError(f"{where}: '{key}.scope' must be {SCOPE_GLOBAL} or {SCOPE_CONTAINER}")
    return RelationSpec(name, interface, limit, optional, scope)


def _check_unique(roles: Mapping[str, Mapping[str, RelationSpec]], where: str) -> None:
    first: dict[str, str] = {}
    for role in ROLES:
        for name in roles[role]:
            if name in first:
                raise CharmError(
                    f"{where}: '{role}.{name}' repeats the relation name of '{first[name]}.{name}': "
                    "relation names must be unique (they name the hooks)"
                )
            first[name] = role
