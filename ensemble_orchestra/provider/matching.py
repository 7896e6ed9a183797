"""Which Cobbler systems a machine's constraints allow, and which of them to prefer: the one place
constraints get their meaning.

``ensemble_orchestra.constraints`` checks the *syntax* of ``--constraints`` against the provider's
vocabulary; this module says what each name means for a Cobbler system. ``mem`` and ``cpu`` are matched
against the hardware commissioning recorded on the system (``commissioning/record.py``): at least that much
memory, at least that many CPUs. A system that was never commissioned cannot satisfy them, and the error
that says nothing fits counts such systems, so the user knows to run ``ensemble-orchestra commission``.
Among the systems that fit, the smallest is preferred (least memory, then fewest CPUs, as MAAS does),
so big systems stay free for the machines that need them; systems not commissioned come last.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..cobbler import SystemRecord
from ..commissioning import Hardware, MalformedReport, hardware_of
from ..errors import UsageError

__all__ = [
    "ARCH_ALIASES",
    "COMMISSION_HINT",
    "CONSTRAINTS",
    "Constraints",
    "UnsupportedConstraint",
    "parse_memory_mb",
    "profile_arch",
    "system_hardware",
]

ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "i386": "i386", "i686": "i386", "arm": "arm"}
# Which arches' installs a commissioned CPU runs (an x86_64 system also installs i386).
_RUNS = {"x86_64": ("x86_64", "i386")}
# Ensemble's vocabulary plus Orchestra's own names; every one is matched below.
CONSTRAINTS = ("arch", "mem", "cpu", "orchestra-classes", "orchestra-name", "series")
COMMISSION_HINT = "ensemble-orchestra commission --all"
_MEMORY_UNITS = {"M": 1, "G": 1024, "T": 1024 * 1024}


class UnsupportedConstraint(UsageError):
    """A constraint that cannot be checked against the systems: refused, never ignored."""


def profile_arch(profile: str) -> str | None:
    """The arch of a profile named by the kit's convention ``<series>-<arch>``."""
    _, _, arch = profile.rpartition("-")
    return arch if arch in ARCH_ALIASES.values() else None


def parse_memory_mb(value: str) -> int:
    """``mem``'s value in MiB (rounded up): 512M, 4G, 1.5T; a bare number is MiB, as in Ensemble."""
    text = value.strip().upper()
    scale = _MEMORY_UNITS.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        amount = float(number)
    except ValueError:
        raise UnsupportedConstraint(f"constraint mem={value}: expected a size such as 512M, 4G or 4096") from None
    if not math.isfinite(amount) or amount < 0:
        raise UnsupportedConstraint(f"constraint mem={value}: expected a size such as 512M, 4G or 4096")
    return math.ceil(amount * (scale or 1))


def system_hardware(record: SystemRecord) -> Hardware | None:
    """The hardware commissioned for *record*; None if none (or an unreadable record: it is not trusted)."""
    try:
        return hardware_of(record.autoinstall_meta)
    except MalformedReport:
        return None


def _arch(name: str) -> str:
    return ARCH_ALIASES.get(name, name)


@dataclass(frozen=True)
class Constraints:
    """One machine's constraints, with their meaning for Cobbler systems."""

    arch: str | None = None  # Cobbler's spelling (x86_64), whatever alias was asked for
    classes: tuple[str, ...] = ()
    name_pattern: str | None = None
    series: str | None = None
    min_memory_mb: int | None = None
    min_cpus: float | None = None
    text: str = ""  # the hardware constraints as asked (for messages): "mem=4G cpu=2"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Constraints:
        """*raw* (``name: value``) as Constraints; UnsupportedConstraint for a name or value that cannot be checked."""
        raw = {k: v for k, v in dict(raw or {}).items() if v not in (None, "")}
        unknown = sorted(set(raw) - set(CONSTRAINTS))
        if unknown:
            raise UnsupportedConstraint(f"unknown constraint {unknown[0]!r} (known: {', '.join(CONSTRAINTS)})")
        arch = str(raw["arch"]) if raw.get("arch") else None
        classes = tuple(c.strip() for c in str(raw.get("orchestra-classes") or "").split(",") if c.strip())
        memory = parse_memory_mb(str(raw["mem"])) if "mem" in raw else None
        cpus = None
        if "cpu" in raw:
            try:
                cpus = float(raw["cpu"])
            except ValueError:
                raise UnsupportedConstraint(f"constraint cpu={raw['cpu']}: expected a number") from None
            if not math.isfinite(cpus) or cpus < 0:
                raise UnsupportedConstraint(f"constraint cpu={raw['cpu']}: expected a number of at least 0")
        return cls(
            arch=_arch(arch) if arch else None,
            classes=classes,
            name_pattern=str(raw["orchestra-name"]) if raw.get("orchestra-name") else None,
            series=str(raw["series"]) if raw.get("series") else None,
            min_memory_mb=memory,
            min_cpus=cpus,
            text=" ".join(f"{k}={raw[k]}" for k in ("arch", "mem", "cpu") if k in raw),
        )

    @property
    def needs_hardware(self) -> bool:
        """Whether only a commissioned system can satisfy these constraints."""
        return self.min_memory_mb is not None or self.min_cpus is not None

    def _reason(self, record: SystemRecord) -> str | None:
        """Why *record* cannot serve this machine (a key of _REASONS), or None if it can."""
        if not (record.power_type and record.power_address):
            return "power"  # without power management a claimed system could never be booted
        if not all(c in record.mgmt_classes for c in self.classes):
            return "chosen"
        if self.name_pattern and not fnmatch.fnmatchcase(record.name, self.name_pattern):
            return "chosen"
        hardware = system_hardware(record)
        if self.arch:
            if hardware is not None:
                arch = _arch(hardware.arch)
                if self.arch not in _RUNS.get(arch, (arch,)):
                    return "arch"
            elif profile_arch(record.profile) not in (None, self.arch):
                return "arch"
        if self.needs_hardware:
            if hardware is None:
                return "uncommissioned"
            if self.min_memory_mb is not None and hardware.memory_mb < self.min_memory_mb:
                return "small"
            if self.min_cpus is not None and hardware.cpus < self.min_cpus:
                return "small"
        return None

    def matches(self, record: SystemRecord) -> bool:
        """Whether *record* can serve this machine (power management is always required)."""
        return self._reason(record) is None

    @staticmethod
    def preference(record: SystemRecord) -> tuple[int, int, int]:
        """Sort key, smallest first: commissioned systems by memory then CPUs, then the uncommissioned."""
        hardware = system_hardware(record)
        if hardware is None:
            return (1, 0, 0)
        return (0, hardware.memory_mb, hardware.cpus)

    def why_none(self, available: Iterable[SystemRecord], where: str) -> str:
        """Why none of *available* (the free pool, *where* names it) can serve this machine: counts per reason."""
        counts: dict[str, int] = {}
        largest: Hardware | None = None
        size = (0, 0, 0)
        pool = list(available)
        for record in pool:
            reason = self._reason(record)
            if reason is None:
                continue
            counts[reason] = counts.get(reason, 0) + 1
            if reason == "small":
                hardware = system_hardware(record)
                if hardware and (largest is None or Constraints.preference(record) > size):
                    largest, size = hardware, Constraints.preference(record)
        parts = []
        for reason, template in _REASONS:
            if counts.get(reason):
                n = counts[reason]
                part = template.format(n=n, are="is" if n == 1 else "are", have="has" if n == 1 else "have")
                if reason == "small" and largest is not None:
                    part += f" (the largest has {largest.memory_mb} MiB and {largest.cpus} CPUs)"
                parts.append(part)
        wanted = f" fits {self.text}" if self.text else " matches the constraints"
        detail = "; ".join(parts) if parts else "the pool is empty"
        advice = (
            f"; run '{COMMISSION_HINT}'" if counts.get("uncommissioned") else "; add systems or relax the constraints"
        )
        return f"no available system in {where}{wanted}: of {len(pool)} available, {detail}{advice}"

    def profile_for(self, record: SystemRecord, default_series: str) -> str:
        """The ``<series>-<arch>`` profile *record* installs for this machine."""
        known = self.arch if self.arch in ARCH_ALIASES.values() else None
        arch = known or profile_arch(record.profile) or "x86_64"
        return f"{self.series or default_series}-{arch}"


# Reasons a system does not fit, in the order the error names them.
_REASONS = (
    ("small", "{n} {are} too small"),
    ("uncommissioned", "{n} {are} not commissioned yet (memory and CPUs unknown)"),
    ("arch", "{n} {are} of another architecture"),
    ("chosen", "{n} {are} not in the classes or names asked for"),
    ("power", "{n} {have} no power management"),
)
