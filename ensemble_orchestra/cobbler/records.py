"""What the client returns: immutable records parsed from Cobbler's dicts.

A record keeps only what tools need. The BMC password (``power_pass``) and the raw
``power_options`` (fence options may carry credentials) are deliberately not kept, so no repr, log
line or exception built from a record can leak them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .fields import FieldMap

__all__ = [
    "INHERIT",
    "CobblerVersion",
    "DistroRecord",
    "InterfaceRecord",
    "PowerTask",
    "ProfileRecord",
    "SystemRecord",
    "distro_from_record",
    "profile_from_record",
    "system_from_record",
]

INHERIT = "<<inherit>>"  # Cobbler's value for "take it from the parent profile"


@dataclass(frozen=True)
class CobblerVersion:
    """The server's version: from extended_version()'s version_tuple, or version()'s float (3.31 = 3.3.1x)."""

    major: int
    minor: int
    patch: int | None = None

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}" + ("" if self.patch is None else f".{self.patch}")

    @classmethod
    def from_extended(cls, info: Mapping[str, Any]) -> CobblerVersion:
        parts = [int(p) for p in info["version_tuple"]]
        return cls(parts[0], parts[1] if len(parts) > 1 else 0, parts[2] if len(parts) > 2 else None)

    @classmethod
    def from_float(cls, value: float) -> CobblerVersion:
        # Cobbler builds this float as "MAJOR.MINOR" + "PATCH" digits, so the patch is ambiguous.
        text = f"{value:.6f}".rstrip("0")
        major, _, rest = text.partition(".")
        return cls(int(major), int(rest[:1] or 0))


@dataclass(frozen=True)
class InterfaceRecord:
    name: str
    mac_address: str = ""
    ip_address: str = ""
    dns_name: str = ""
    netmask: str = ""
    static: bool = False


@dataclass(frozen=True)
class SystemRecord:
    """One Cobbler system, canonical (3.x) field names; no power password.

    `inherited` names the fields whose value is Cobbler's ``<<inherit>>`` (taken from the profile);
    those fields hold an empty value here. `arch` is None unless resolved (see
    ``CobblerClient.get_system(resolve_arch=True)``): Cobbler keeps the arch on the distro.
    `has_power_pass` says whether a BMC password is set, without keeping it.
    """

    name: str
    uid: str = ""
    hostname: str = ""
    profile: str = ""
    image: str = ""
    arch: str | None = None
    interfaces: tuple[InterfaceRecord, ...] = ()
    mgmt_classes: tuple[str, ...] = ()
    netboot_enabled: bool = False
    autoinstall: str = ""
    autoinstall_meta: Mapping[str, str] = field(default_factory=dict)
    kernel_options: Mapping[str, str] = field(default_factory=dict)
    power_type: str = ""
    power_address: str = ""
    power_user: str = ""
    power_id: str = ""
    has_power_pass: bool = False
    owners: tuple[str, ...] = ()
    comment: str = ""
    status: str = ""
    mtime: float = 0.0
    inherited: frozenset[str] = frozenset()

    @property
    def mac_address(self) -> str:
        """The first interface's MAC (eth0 when present): what PXE boots by."""
        first = self.interface("eth0") or (self.interfaces[0] if self.interfaces else None)
        return first.mac_address if first else ""

    def interface(self, name: str) -> InterfaceRecord | None:
        return next((i for i in self.interfaces if i.name == name), None)


@dataclass(frozen=True)
class ProfileRecord:
    name: str
    distro: str = ""
    parent: str = ""
    autoinstall: str = ""
    autoinstall_meta: Mapping[str, str] = field(default_factory=dict)
    kernel_options: Mapping[str, str] = field(default_factory=dict)
    enable_menu: bool = True


@dataclass(frozen=True)
class DistroRecord:
    name: str
    arch: str = ""
    breed: str = ""
    os_version: str = ""
    kernel: str = ""
    initrd: str = ""


@dataclass(frozen=True)
class PowerTask:
    """A finished background power task; `log` is Cobbler's event log, redacted."""

    task_id: str
    state: str
    systems: tuple[str, ...]
    operation: str
    log: str


def _text(value: Any) -> str:
    return "" if value is None or value == "~" else str(value)


def _words(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(str(value).split()) if value else ()


def _meta(value: Any) -> dict[str, str]:
    """Metadata as a dict: 3.x returns a dict; strings ("k=v k2") appear in older records."""
    if isinstance(value, Mapping):
        return {str(k): _text(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in str(value or "").split():
        key, _, val = item.partition("=")
        out[key] = val
    return out


def _inherited(record: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(k for k, v in record.items() if v == INHERIT)


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    """Inherited values become None, so the parsers below turn them into empty values."""
    return {k: (None if v == INHERIT else v) for k, v in record.items()}


def system_from_record(raw: Mapping[str, Any], fields: FieldMap, arch: str | None = None) -> SystemRecord:
    record = fields.to_canonical(raw)
    inherited = _inherited(record)
    r = _clean(record)
    interfaces = tuple(
        InterfaceRecord(
            name=str(name),
            mac_address=_text(values.get("mac_address")),
            ip_address=_text(values.get("ip_address")),
            dns_name=_text(values.get("dns_name")),
            netmask=_text(values.get("netmask")),
            static=bool(values.get("static")),
        )
        for name, values in sorted((r.get("interfaces") or {}).items())
    )
    return SystemRecord(
        name=_text(r.get("name")),
        uid=_text(r.get("uid")),
        hostname=_text(r.get("hostname")),
        profile=_text(r.get("profile")),
        image=_text(r.get("image")),
        arch=arch if arch is not None else (_text(r.get("arch")) or None),
        interfaces=interfaces,
        mgmt_classes=_words(r.get("mgmt_classes")),
        netboot_enabled=bool(r.get("netboot_enabled")),
        autoinstall=_text(r.get("autoinstall")),
        autoinstall_meta=_meta(r.get("autoinstall_meta")),
        kernel_options=_meta(r.get("kernel_options")),
        power_type=_text(r.get("power_type")),
        power_address=_text(r.get("power_address")),
        power_user=_text(r.get("power_user")),
        power_id=_text(r.get("power_id")),
        has_power_pass=bool(_text(r.get("power_pass"))),
        owners=_words(r.get("owners")),
        comment=_text(r.get("comment")),
        status=_text(r.get("status")),
        mtime=float(r.get("mtime") or 0.0),
        inherited=inherited,
    )


def profile_from_record(raw: Mapping[str, Any], fields: FieldMap) -> ProfileRecord:
    r = _clean(fields.to_canonical(raw))
    return ProfileRecord(
        name=_text(r.get("name")),
        distro=_text(r.get("distro")),
        parent=_text(r.get("parent")),
        autoinstall=_text(r.get("autoinstall")),
        autoinstall_meta=_meta(r.get("autoinstall_meta")),
        kernel_options=_meta(r.get("kernel_options")),
        enable_menu=r.get("enable_menu") not in (False, 0, "0", "false", "False"),
    )


def distro_from_record(raw: Mapping[str, Any]) -> DistroRecord:
    r = _clean(raw)
    return DistroRecord(
        name=_text(r.get("name")),
        arch=_text(r.get("arch")),
        breed=_text(r.get("breed")),
        os_version=_text(r.get("os_version")),
        kernel=_text(r.get("kernel")),
        initrd=_text(r.get("initrd")),
    )
