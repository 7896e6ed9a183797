"""Which Cobbler systems a machine's constraints allow: the one place constraints get their meaning.

``ensemble_orchestra.constraints`` checks the *syntax* of ``--constraints`` against the provider's
vocabulary; this module says what each name means for a Cobbler system. Names whose meaning needs
facts Cobbler does not record are refused, never ignored: a user asking for ``mem=64G`` must not be
handed any machine. (``mem`` and ``cpu`` need a hardware inventory, which commissioning will add.)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..cobbler import SystemRecord
from ..errors import UsageError

__all__ = ["ARCH_ALIASES", "CONSTRAINTS", "Constraints", "UnsupportedConstraint", "profile_arch"]

ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "i386": "i386", "i686": "i386", "arm": "arm"}
# Ensemble's vocabulary plus Orchestra's own names; every one is either matched below or refused.
CONSTRAINTS = ("arch", "mem", "cpu", "orchestra-classes", "orchestra-name", "series")
# Names in the vocabulary that need a hardware inventory Cobbler does not keep.
NEEDS_INVENTORY = ("mem", "cpu")


class UnsupportedConstraint(UsageError):
    """A constraint in the vocabulary that cannot be checked against the systems: refused, never ignored."""


def profile_arch(profile: str) -> str | None:
    """The arch of a profile named by the kit's convention ``<series>-<arch>``."""
    _, _, arch = profile.rpartition("-")
    return arch if arch in ARCH_ALIASES.values() else None


@dataclass(frozen=True)
class Constraints:
    """One machine's constraints, with their meaning for Cobbler systems."""

    arch: str | None = None  # Cobbler's spelling (x86_64), whatever alias was asked for
    classes: tuple[str, ...] = ()
    name_pattern: str | None = None
    series: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Constraints:
        """*raw* (``name: value``) as Constraints; UnsupportedConstraint for a name that cannot be checked."""
        raw = dict(raw or {})
        for name in NEEDS_INVENTORY:
            if raw.get(name) not in (None, ""):
                raise UnsupportedConstraint(
                    f"constraint {name}={raw[name]} cannot be checked: Cobbler keeps no hardware inventory"
                    " (memory, CPUs) of its systems, so no system can be matched on it; drop it, or choose"
                    " systems with orchestra-classes or orchestra-name"
                )
        unknown = sorted(set(raw) - set(CONSTRAINTS))
        if unknown:
            raise UnsupportedConstraint(f"unknown constraint {unknown[0]!r} (known: {', '.join(CONSTRAINTS)})")
        arch = str(raw["arch"]) if raw.get("arch") else None
        classes = tuple(c.strip() for c in str(raw.get("orchestra-classes") or "").split(",") if c.strip())
        return cls(
            arch=ARCH_ALIASES.get(arch, arch) if arch else None,
            classes=classes,
            name_pattern=str(raw["orchestra-name"]) if raw.get("orchestra-name") else None,
            series=str(raw["series"]) if raw.get("series") else None,
        )

    def matches(self, record: SystemRecord) -> bool:
        """Whether *record* can serve this machine (power management is always required)."""
        if not (record.power_type and record.power_address):
            return False  # without power management a claimed system could never be booted
        if self.arch and profile_arch(record.profile) not in (None, self.arch):
            return False
        if not all(c in record.mgmt_classes for c in self.classes):
            return False
        return not (self.name_pattern and not fnmatch.fnmatchcase(record.name, self.name_pattern))

    def profile_for(self, record: SystemRecord, default_series: str) -> str:
        """The ``<series>-<arch>`` profile *record* installs for this machine."""
        known = self.arch if self.arch in ARCH_ALIASES.values() else None
        arch = known or profile_arch(record.profile) or "x86_64"
        return f"{self.series or default_series}-{arch}"
