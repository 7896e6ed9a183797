"""The commissioning report: what a booted commissioning image says about its hardware, checked strictly.

The image (a busybox shell script, ``commissioning/image_init.py``) writes it as a small JSON document and
PUTs it to the storage; anyone on the provisioning network could PUT one too, so nothing in it is trusted
until :func:`parse_report` accepted it: bounded size, UTF-8, one JSON object with exactly the keys of its
format version, each value of its type and range. Whether it belongs to the system being commissioned
(its token and MACs) is checked by the command, which knows the system (``commissioning/checks.py``).

Format 1::

    {"format": 1, "token": "…", "arch": "x86_64", "cpus": 2, "cpu_model": "QEMU Virtual CPU",
     "memory_mb": 512, "disks": [{"name": "vda", "size_bytes": 33554432}],
     "interfaces": [{"name": "eth0", "mac": "52:54:00:12:34:56"}]}

``memory_mb`` is the installed memory in MiB (the sum of the kernel's memory blocks, not MemTotal, which
is what is left after the kernel took its share); ``cpus`` the logical CPUs the kernel sees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import EnsembleError

__all__ = [
    "FORMAT_VERSION",
    "MAX_REPORT_BYTES",
    "Disk",
    "HardwareReport",
    "Interface",
    "MalformedReport",
    "parse_report",
]

FORMAT_VERSION = 1
MAX_REPORT_BYTES = 16 * 1024  # a real server with 64 disks and 64 ports fits in ~6 KiB
MAX_ITEMS = 64
MAX_MEMORY_MB = 1 << 24  # 16 TiB
MAX_CPUS = 4096
MAX_DISK_BYTES = 1 << 60

_ARCH = re.compile(r"[a-z0-9_]{1,32}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_DISK_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
_IFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
_PRINTABLE = re.compile(r"[\x20-\x7e]{0,200}")
_KEYS = frozenset({"format", "token", "arch", "cpus", "cpu_model", "memory_mb", "disks", "interfaces"})


class MalformedReport(EnsembleError):
    """A report that is not a valid format-1 document; the message names the first problem found."""


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str


@dataclass(frozen=True)
class HardwareReport:
    """A validated report (the token is the run's, see ``checks.py``)."""

    token: str
    arch: str
    cpus: int
    cpu_model: str
    memory_mb: int
    disks: tuple[Disk, ...]
    interfaces: tuple[Interface, ...]

    @property
    def macs(self) -> frozenset[str]:
        return frozenset(i.mac for i in self.interfaces)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise MalformedReport(f"key {key!r} appears twice")
    return dict(pairs)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedReport(f"{what} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise MalformedReport(f"{what} {value} is out of range ({low}..{high})")
    return value


def _text(value: Any, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        raise MalformedReport(f"{what} must be a string, not {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise MalformedReport(f"{what} {value[:40]!r} is not valid")
    return value


def _items(value: Any, what: str, keys: frozenset[str], minimum: int) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise MalformedReport(f"{what} must be a list, not {type(value).__name__}")
    if not minimum <= len(value) <= MAX_ITEMS:
        raise MalformedReport(f"{what} must have {minimum} to {MAX_ITEMS} entries, not {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise MalformedReport(f"{what}[{i}] must be an object")
        if set(item) != keys:
            raise MalformedReport(f"{what}[{i}] must have exactly the keys {', '.join(sorted(keys))}")
    return value


def parse_report(data: bytes) -> HardwareReport:
    """*data* as a HardwareReport; MalformedReport naming the first problem (never echoing much of it)."""
    if len(data) > MAX_REPORT_BYTES:
        raise MalformedReport(f"the report is {len(data)} bytes, more than the {MAX_REPORT_BYTES} allowed")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise MalformedReport("the report is not UTF-8") from None
    except ValueError as error:  # JSONDecodeError (a ValueError) or a constant json refuses
        raise MalformedReport(f"the report is not JSON ({str(error).split(':')[0]})") from None
    if not isinstance(document, dict):
        raise MalformedReport(f"the report must be a JSON object, not {type(document).__name__}")
    version = document.get("format")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise MalformedReport(f"unknown report format {version!r} (this version reads format {FORMAT_VERSION})")
    if set(document) != _KEYS:
        missing, extra = sorted(_KEYS - set(document)), sorted(set(document) - _KEYS)
        raise MalformedReport(
            "the report " + (f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(extra)}")
        )
    disks = _items(document["disks"], "disks", frozenset({"name", "size_bytes"}), 0)
    interfaces = _items(document["interfaces"], "interfaces", frozenset({"name", "mac"}), 1)
    report = HardwareReport(
        token=_text(document["token"], "token", _TOKEN),
        arch=_text(document["arch"], "arch", _ARCH),
        cpus=_int(document["cpus"], "cpus", 1, MAX_CPUS),
        cpu_model=_text(document["cpu_model"], "cpu_model", _PRINTABLE),
        memory_mb=_int(document["memory_mb"], "memory_mb", 1, MAX_MEMORY_MB),
        disks=tuple(
            Disk(
                _text(d["name"], f"disks[{i}].name", _DISK_NAME),
                _int(d["size_bytes"], f"disks[{i}].size_bytes", 0, MAX_DISK_BYTES),
            )
            for i, d in enumerate(disks)
        ),
        interfaces=tuple(
            Interface(
                _text(n["name"], f"interfaces[{i}].name", _IFACE_NAME),
                _text(n["mac"], f"interfaces[{i}].mac", _MAC),
            )
            for i, n in enumerate(interfaces)
        ),
    )
    for what, names in (("disk", [d.name for d in report.disks]), ("interface", [n.name for n in report.interfaces])):
        if len(set(names)) != len(names):
            raise MalformedReport(f"a {what} name appears twice")
    if len(report.macs) != len(report.interfaces):
        raise MalformedReport("a MAC appears on two interfaces")
    return report
