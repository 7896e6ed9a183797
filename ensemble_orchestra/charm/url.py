"""Charm URLs: ``local:<series>/<name>[-<revision>]``, the id a deployed charm is known by.

A bare ``mysql`` or ``local:mysql`` means the environment's default series. A name never ends in a
part made only of digits, so in ``mysql-3`` the ``-3`` is always the revision. Only the ``local:``
schema exists here: there is no charm store to ask.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .errors import CharmURLError

__all__ = ["LOCAL", "NAME_PATTERN", "SERIES_PATTERN", "CharmURL", "is_valid_name"]

LOCAL = "local"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*$")
SERIES_PATTERN = re.compile(r"^[a-z]+([a-z-]+[a-z])?$")
_REVISION = re.compile(r"^[0-9]+$")  # not str.isdigit: that also takes other scripts' digits
_FORM = "local:<series>/<name>[-<revision>], local:<name> or <name>"


def is_valid_name(name: object) -> bool:
    """Whether *name* is a valid charm name (lowercase words joined by '-', none of them only digits)."""
    return isinstance(name, str) and NAME_PATTERN.match(name) is not None


@dataclass(frozen=True)
class CharmURL:
    """A charm's id; ``str()`` is the canonical form the state and the storage use."""

    schema: str
    series: str
    name: str
    revision: int | None = None

    def __post_init__(self) -> None:
        if self.schema != LOCAL:
            raise CharmURLError(f"charm URL schema {self.schema!r}: only 'local' is supported")
        if not isinstance(self.series, str) or not SERIES_PATTERN.match(self.series):
            raise CharmURLError(f"charm URL series {self.series!r}: use a lowercase series name like 'bookworm'")
        if not is_valid_name(self.name):
            raise CharmURLError(f"charm name {self.name!r}: use lowercase letters, digits and '-' (like 'mysql')")
        revision = self.revision
        if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool) or revision < 0):
            raise CharmURLError(f"charm {self.series}/{self.name}: revision {revision!r} is not a whole number >= 0")

    def __str__(self) -> str:
        base = f"{self.schema}:{self.series}/{self.name}"
        return base if self.revision is None else f"{base}-{self.revision}"

    def with_revision(self, revision: int | None) -> CharmURL:
        """The same charm at *revision* (None: no revision, i.e. the latest)."""
        return dataclasses.replace(self, revision=revision)

    @classmethod
    def parse(cls, text: str, default_series: str) -> CharmURL:
        """The URL a user typed (``deploy CHARM``): a full URL, ``local:<name>`` or a bare name."""

        def fail(problem: str) -> CharmURLError:
            return CharmURLError(f"charm URL {text!r}: {problem}")

        if not isinstance(text, str) or not text:
            raise fail(f"empty; expected {_FORM}")
        schema, colon, rest = text.partition(":")
        if not colon:
            schema, rest = LOCAL, text
        elif schema == "cs":
            raise fail("the charm store (cs:) is not supported: deploy a local charm, local:<series>/<name>")
        elif schema != LOCAL:
            raise fail(f"unknown schema {schema + ':'!r}; expected {_FORM}")
        if rest.startswith("~"):
            raise fail("user namespaces (~user) belong to the charm store; a local URL has none")
        parts = rest.split("/")
        if len(parts) == 1:
            series, name = default_series, parts[0]
            if not isinstance(series, str) or not SERIES_PATTERN.match(series):
                raise fail(f"no series given and the default series {series!r} is not one: set default-series")
        elif len(parts) == 2:
            series, name = parts
            if not SERIES_PATTERN.match(series):
                raise fail(f"series {series!r} is not a lowercase series name like 'bookworm'")
        else:
            raise fail(f"too many '/'; expected {_FORM}")
        revision: int | None = None
        head, dash, tail = name.rpartition("-")
        if dash and _REVISION.match(tail):
            name, revision = head, int(tail)
        if not is_valid_name(name):
            raise fail(
                f"{name!r} is not a charm name: lowercase letters, digits and '-', first a letter (like 'mysql')"
            )
        return cls(LOCAL, series, name, revision)
