"""The 2.x ↔ 3.x field map and record parsing (2.x is not in the lab: these tests are its proof)."""

from __future__ import annotations

import pytest

from ensemble_orchestra.cobbler import COBBLER2, COBBLER3, CobblerInvalidRequest, CobblerVersion, field_map_for
from ensemble_orchestra.cobbler.records import system_from_record

# A system as Cobbler 2.2 returns it from get_system (field names from 2.x item_system.FIELDS). Its profile
# stays Ubuntu's oneiric on purpose: Cobbler 2.x is what Ubuntu Orchestra (11.10, 12.04) shipped, so this is
# the record such a server really holds (the lab and every other test install Debian series).
RECORD_V2 = {
    "name": "node001",
    "uid": "abc",
    "hostname": "node001.example",
    "profile": "oneiric-x86_64",
    "ks_meta": {"ensemble-machine-id": "7", "user-data": "abc"},
    "kickstart": "/var/lib/cobbler/kickstarts/ensemble.preseed",
    "netboot_enabled": True,
    "mgmt_classes": ["orchestra-ensemble-acquired"],
    "owners": ["admin"],
    "power_type": "ipmitool",
    "power_address": "10.1.1.1",
    "power_user": "root",
    "power_pass": "bmc-password-2x",
    "interfaces": {"eth0": {"mac_address": "52:54:00:00:00:01", "ip_address": "10.0.0.1", "subnet": "255.0.0.0"}},
}


@pytest.mark.parametrize(
    ("name", "v3", "v2"),
    [
        ("autoinstall_meta", "autoinstall_meta", "ks_meta"),
        ("ks_meta", "autoinstall_meta", "ks_meta"),
        ("autoinstall", "autoinstall", "kickstart"),
        ("kickstart", "autoinstall", "kickstart"),
        ("netmask", "netmask", "subnet"),
        ("subnet", "netmask", "subnet"),
        ("interface_type", "interface_type", "bonding"),
        ("interface_master", "interface_master", "bonding_master"),
        ("netboot_enabled", "netboot_enabled", "netboot_enabled"),
        ("mgmt_classes", "mgmt_classes", "mgmt_classes"),
        ("mac_address", "mac_address", "mac_address"),
    ],
)
def test_either_spelling_becomes_the_servers_name(name: str, v3: str, v2: str) -> None:
    """A caller writing ks_meta to Cobbler 3 gets autoinstall_meta (3.3 would silently drop ks_meta)."""
    assert COBBLER3.server_name(name) == v3
    assert COBBLER2.server_name(name) == v2


def test_split_edit_separates_interface_fields_with_server_names() -> None:
    plain, per_interface = COBBLER2.split_edit(
        {"autoinstall_meta": {"a": "1"}, "netboot_enabled": True, "mac_address": "52:54:00:00:00:09", "netmask": "x"}
    )
    assert plain == {"ks_meta": {"a": "1"}, "netboot_enabled": True}
    assert per_interface == {"mac_address": "52:54:00:00:00:09", "subnet": "x"}


def test_2x_modify_interface_keys_drop_underscores() -> None:
    """Cobbler 2's modify_interface splits 'field-iface' and strips underscores: macaddress-eth0."""
    assert COBBLER2.modify_interface_key("mac_address", "eth0") == "macaddress-eth0"
    assert COBBLER2.modify_interface_key("netmask", "eth1") == "subnet-eth1"
    assert COBBLER2.modify_interface_key("dns_name", "eth0") == "dnsname-eth0"


def test_criteria_are_strings_with_server_names() -> None:
    """Cobbler 3.3 crashes on a bool criterion; the map sends 'true'/'false'."""
    assert COBBLER3.criteria({"netboot_enabled": True, "ks_meta": "a=1", "name": "node*"}) == {
        "netboot_enabled": "true",
        "autoinstall_meta": "a=1",
        "name": "node*",
    }
    assert COBBLER2.criteria({"autoinstall_meta": "a=1", "netboot_enabled": False}) == {
        "ks_meta": "a=1",
        "netboot_enabled": "false",
    }
    with pytest.raises(CobblerInvalidRequest):
        COBBLER3.criteria({"mgmt_classes": ["a", "b"]})


def test_2x_record_reads_with_canonical_names_and_no_password() -> None:
    record = system_from_record(RECORD_V2, COBBLER2)
    assert record.autoinstall_meta == {"ensemble-machine-id": "7", "user-data": "abc"}
    assert record.autoinstall == "/var/lib/cobbler/kickstarts/ensemble.preseed"
    assert record.interfaces[0].netmask == "255.0.0.0"
    assert record.mac_address == "52:54:00:00:00:01"
    assert record.owners == ("admin",)
    assert "bmc-password-2x" not in repr(record)
    assert "bmc-password-2x" not in str(record)


def test_inherited_values_are_empty_and_named() -> None:
    record = system_from_record(
        {"name": "n", "autoinstall_meta": "<<inherit>>", "owners": "<<inherit>>", "mgmt_classes": []}, COBBLER3
    )
    assert record.autoinstall_meta == {}
    assert record.owners == ()
    assert record.inherited == {"autoinstall_meta", "owners"}


def test_metadata_strings_parse_like_cobbler() -> None:
    assert system_from_record({"name": "n", "autoinstall_meta": "a=1 b flag=x"}, COBBLER3).autoinstall_meta == {
        "a": "1",
        "b": "",
        "flag": "x",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.31, CobblerVersion(3, 3)),
        (2.22, CobblerVersion(2, 2)),
        (2.85, CobblerVersion(2, 8)),
        (3.0, CobblerVersion(3, 0)),
    ],
)
def test_version_float(value: float, expected: CobblerVersion) -> None:
    """Cobbler's version() float is MAJOR.MINOR followed by the patch digits (3.3.10 -> 3.31)."""
    assert CobblerVersion.from_float(value) == expected


def test_extended_version() -> None:
    assert CobblerVersion.from_extended({"version": "3.3.10", "version_tuple": [3, 3, 10]}) == CobblerVersion(3, 3, 10)
    assert str(CobblerVersion(3, 3, 10)) == "3.3.10"


def test_field_map_for_versions() -> None:
    assert field_map_for(3) is COBBLER3
    assert field_map_for(4) is COBBLER3
    assert field_map_for(2) is COBBLER2
    with pytest.raises(ValueError):
        field_map_for(1)
