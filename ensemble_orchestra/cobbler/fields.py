"""Cobbler 2.x ↔ 3.x field names, so one client API speaks both generations.

Callers always use the Cobbler 3 names ("canonical"); the 2.x spellings are accepted too and
translated, because a stale name is not an error on Cobbler 3 but a silent no-op: 3.x
``modify_item`` only sets attributes the object has (``hasattr``), returns False for the rest, and
``xapi_object_edit`` ignores that False and answers True. Writing ``ks_meta`` to Cobbler 3.3
therefore "succeeds" and changes nothing (measured on the lab), and ``find_system({"ks_meta": ...})``
finds nothing. Translating names here, by the server's detected version, closes that hole.

Only names whose rename is verified against both servers' sources are mapped; all other names pass
through unchanged. Values are not translated: a 2.x ``kickstart`` is a path
(``/var/lib/cobbler/kickstarts/x.preseed``), a 3.x ``autoinstall`` a template name (``x.preseed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import CobblerInvalidRequest

__all__ = [
    "COBBLER2",
    "COBBLER3",
    "INTERFACE_FIELDS",
    "FieldMap",
    "field_map_for",
]

# Canonical (3.x) system field -> 2.x name.
_SYSTEM_V2 = {
    "autoinstall_meta": "ks_meta",
    "autoinstall": "kickstart",
}
# Canonical (3.x) interface field -> 2.x name.
_INTERFACE_V2 = {
    "netmask": "subnet",
    "interface_type": "bonding",
    "interface_master": "bonding_master",
}
# Fields that belong to one network interface (canonical names); both generations nest them under
# ``interfaces[NAME]`` in records and take them with ``"interface": NAME`` in xapi_object_edit.
INTERFACE_FIELDS = frozenset(
    {
        "mac_address",
        "ip_address",
        "dns_name",
        "netmask",
        "if_gateway",
        "static",
        "static_routes",
        "mtu",
        "dhcp_tag",
        "virt_bridge",
        "interface_type",
        "interface_master",
        "bonding_opts",
        "bridge_opts",
        "cnames",
        "management",
        "connected_mode",
        "ipv6_address",
        "ipv6_default_gateway",
        "ipv6_mtu",
        "ipv6_prefix",
        "ipv6_secondaries",
        "ipv6_static_routes",
    }
)
# Any spelling -> canonical.
_ALIASES = {v2: v3 for v3, v2 in (_SYSTEM_V2 | _INTERFACE_V2).items()}


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class FieldMap:
    """The field names one Cobbler generation uses; built once per client from the server's version."""

    generation: int
    system: Mapping[str, str] = field(default_factory=dict)  # canonical -> server, where they differ
    interface: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def canonical(name: str) -> str:
        """The Cobbler 3 name for *name* in either spelling."""
        return _ALIASES.get(name, name)

    @staticmethod
    def is_interface_field(name: str) -> bool:
        return FieldMap.canonical(name) in INTERFACE_FIELDS

    def server_name(self, name: str) -> str:
        """The name this server understands for *name* (either spelling)."""
        canonical = self.canonical(name)
        if canonical in INTERFACE_FIELDS:
            return self.interface.get(canonical, canonical)
        return self.system.get(canonical, canonical)

    def split_edit(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(system-level, interface-level) fields of an edit, keyed by this server's names."""
        plain: dict[str, Any] = {}
        per_interface: dict[str, Any] = {}
        for name, value in fields.items():
            target = per_interface if self.is_interface_field(name) else plain
            target[self.server_name(name)] = value
        return plain, per_interface

    def criteria(self, criteria: Mapping[str, Any]) -> dict[str, str]:
        """find_system criteria with this server's names and string values.

        Cobbler compares criteria as strings: a bool crashes the 3.3 server call
        (``'bool' object has no attribute 'startswith'``), so True/False become "true"/"false".
        """
        out: dict[str, str] = {}
        for name, value in criteria.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif not isinstance(value, str | int | float):
                raise CobblerInvalidRequest(
                    f"find criterion {name!r} must be a string, number or bool, not {type(value).__name__}"
                )
            out[self.server_name(name)] = str(value)
        return out

    def to_canonical(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A server record with canonical names, interfaces included."""
        system_back = {v: k for k, v in self.system.items()}
        interface_back = {v: k for k, v in self.interface.items()}
        out = {system_back.get(k, k): v for k, v in record.items()}
        interfaces = record.get("interfaces")
        if isinstance(interfaces, Mapping):
            out["interfaces"] = {
                name: {interface_back.get(k, k): v for k, v in values.items()}
                for name, values in interfaces.items()
                if isinstance(values, Mapping)
            }
        return out

    def modify_interface_key(self, name: str, interface: str) -> str:
        """The key of one field in a 2.x ``modify_system(handle, "modify_interface", {...})`` dict.

        2.x splits the key on "-" and drops underscores from the field: ``macaddress-eth0``.
        """
        return f"{self.server_name(name).replace('_', '')}-{interface}"


COBBLER3 = FieldMap(generation=3)
COBBLER2 = FieldMap(generation=2, system=_frozen(_SYSTEM_V2), interface=_frozen(_INTERFACE_V2))


def field_map_for(major: int) -> FieldMap:
    """The field map for a server whose major version is *major*; 2.x and 3.x (and later) are known."""
    if major >= 3:
        return COBBLER3
    if major == 2:
        return COBBLER2
    raise ValueError(f"Cobbler {major}.x is not supported (2.x and 3.x are)")
