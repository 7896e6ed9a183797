"""Ensemble's `--constraints "arch=amd64 mem=4G orchestra-classes=rack1"` string, checked against the names
a provider knows (its `get_constraint_set()`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UsageError

__all__ = ["ConstraintError", "parse_constraints"]

_MEMORY = re.compile(r"^\d+(\.\d+)?[MGT]?$")


class ConstraintError(UsageError, ValueError):
    """A malformed or unknown constraint: a usage error (exit code 2)."""


def parse_constraints(text: str, known: Iterable[str]) -> dict[str, str]:
    """``name=value`` pairs separated by spaces; later pairs override earlier ones."""
    known = tuple(known)
    constraints: dict[str, str] = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConstraintError(f"constraint {item!r} is not NAME=VALUE (known names: {', '.join(known)})")
        if name not in known:
            raise ConstraintError(f"unknown constraint {name!r} (known: {', '.join(known)})")
        if name == "mem" and not _MEMORY.match(value):
            raise ConstraintError(f"constraint mem={value!r}: expected a size such as 512M, 4G or 4096")
        if name == "cpu":
            try:
                float(value)
            except ValueError:
                raise ConstraintError(f"constraint cpu={value!r}: expected a number") from None
        constraints[name] = value
    return constraints
