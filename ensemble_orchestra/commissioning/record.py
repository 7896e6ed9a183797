"""Commissioned hardware as Cobbler records it: one documented key in the system's ``autoinstall_meta``.

Why there: Cobbler 3 has no inventory fields; ``autoinstall_meta`` is the system's free-form dict, kept by
every edit that does not name it (the provider's claim and release keep keys they do not own), readable by
every Cobbler user (``cobbler system report``, ``get_system``) and searchable with ``find_system``.
``comment`` is not an option: the provider rewrites it on every claim and release. Cobbler 2's name for
the field is ``ks_meta``; the client translates (``cobbler/fields.py``).

The key ``ensemble_hardware`` holds compact JSON: the validated report without its token, plus
``commissioned`` (UTC, ISO 8601)::

    ensemble_hardware={"format":1,"commissioned":"2025-03-01T10:00:00Z","arch":"x86_64","cpus":2,
                       "cpu_model":"QEMU Virtual CPU","memory_mb":512,"disks":[…],"interfaces":[…]}

Nothing secret is in it. A value that does not parse counts as not commissioned (and is said so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .report import FORMAT_VERSION, Disk, HardwareReport, Interface, MalformedReport, parse_report

__all__ = ["HARDWARE_KEY", "Hardware", "hardware_fields", "hardware_meta", "hardware_of"]

HARDWARE_KEY = "ensemble_hardware"
_WHEN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# The token is the run's, not the hardware's: a record carries a fixed placeholder through the one parser.
_RECORD_TOKEN = "recorded-on-cobbler"


@dataclass(frozen=True)
class Hardware:
    """A system's commissioned hardware, as recorded on Cobbler."""

    commissioned: str  # UTC, ISO 8601 with Z
    arch: str
    cpus: int
    cpu_model: str
    memory_mb: int
    disks: tuple[Disk, ...]
    interfaces: tuple[Interface, ...]

    @property
    def disk_bytes(self) -> int:
        return sum(d.size_bytes for d in self.disks)

    def summary(self) -> str:
        """One line for listings: ``x86_64 2 CPU 512 MiB 1 disk 32 MiB``."""
        disks = f"{len(self.disks)} disk{'s' if len(self.disks) != 1 else ''}"
        if self.disks:
            disks += f" {_size(self.disk_bytes)}"
        return f"{self.arch} {self.cpus} CPU {self.memory_mb} MiB {disks}"


def _size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}" if n % scale == 0 or n >= 10 * scale else f"{n / scale:.1f} {unit}"
    return f"{n} B"


def hardware_fields(hardware: HardwareReport | Hardware) -> dict[str, Any]:
    """The hardware as a JSON-ready mapping (the record's fields, as ``systems --format json`` shows them)."""
    return {
        "arch": hardware.arch,
        "cpus": hardware.cpus,
        "cpu_model": hardware.cpu_model,
        "memory_mb": hardware.memory_mb,
        "disks": [{"name": d.name, "size_bytes": d.size_bytes} for d in hardware.disks],
        "interfaces": [{"name": i.name, "mac": i.mac} for i in hardware.interfaces],
    }


def hardware_meta(report: HardwareReport, when: datetime) -> dict[str, str]:
    """The ``autoinstall_meta`` keys that record *report*, commissioned at *when*."""
    document = {
        "format": FORMAT_VERSION,
        "commissioned": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **hardware_fields(report),
    }
    return {HARDWARE_KEY: json.dumps(document, separators=(",", ":"))}


def hardware_of(meta: Mapping[str, str]) -> Hardware | None:
    """The hardware recorded in a system's ``autoinstall_meta``; None if not commissioned.

    MalformedReport if the key is there but its value is not a record this version wrote.
    """
    raw = meta.get(HARDWARE_KEY)
    if not raw:
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        raise MalformedReport(f"{HARDWARE_KEY} is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedReport(f"{HARDWARE_KEY} is not a JSON object")
    when = document.pop("commissioned", None)
    if not isinstance(when, str) or not _WHEN.fullmatch(when):
        raise MalformedReport(f"{HARDWARE_KEY} has no valid 'commissioned' time")
    document["token"] = _RECORD_TOKEN
    report = parse_report(json.dumps(document).encode())
    return Hardware(
        commissioned=when,
        arch=report.arch,
        cpus=report.cpus,
        cpu_model=report.cpu_model,
        memory_mb=report.memory_mb,
        disks=report.disks,
        interfaces=report.interfaces,
    )
