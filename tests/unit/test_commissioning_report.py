"""Commissioning reports: what the image sends, validated strictly (a table of malformed reports), and
the record it becomes on Cobbler; the checks that tie a report to its system."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ensemble_orchestra.commissioning import (
    HARDWARE_KEY,
    MAX_REPORT_BYTES,
    ForgedReport,
    MalformedReport,
    check_belongs,
    hardware_meta,
    hardware_of,
    parse_report,
)

TOKEN = "t0k3n-0123456789abcdef"
MAC = "52:54:00:00:00:01"


def good(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": 1,
        "token": TOKEN,
        "arch": "x86_64",
        "cpus": 2,
        "cpu_model": "QEMU Virtual CPU version 2.5+",
        "memory_mb": 512,
        "disks": [{"name": "vda", "size_bytes": 33554432}],
        "interfaces": [{"name": "eth0", "mac": MAC}],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not DROP}


DROP = object()


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_a_good_report_parses() -> None:
    """Every field comes through, typed."""
    report = parse_report(encode(good()))
    assert (report.arch, report.cpus, report.memory_mb, report.token) == ("x86_64", 2, 512, TOKEN)
    assert report.cpu_model == "QEMU Virtual CPU version 2.5+"
    assert [(d.name, d.size_bytes) for d in report.disks] == [("vda", 33554432)]
    assert report.macs == {MAC}


def test_no_disks_is_fine_but_an_interface_is_needed() -> None:
    """A diskless server is a server; one without a NIC could not have PXE-booted."""
    assert parse_report(encode(good(disks=[]))).disks == ()
    with pytest.raises(MalformedReport, match="interfaces must have 1 to 64 entries"):
        parse_report(encode(good(interfaces=[])))


MALFORMED: list[tuple[str, bytes, str]] = [
    ("too-big", encode(good(cpu_model="x" * 100)) + b" " * MAX_REPORT_BYTES, "more than the 16384 allowed"),
    ("not-utf8", b'{"format": 1, "arch": "\xff"}', "not UTF-8"),
    ("not-json", b"cpus=2 memory=512", "not JSON"),
    ("truncated", encode(good())[:-5], "not JSON"),
    ("nan", encode(good()).replace(b'"cpus": 2', b'"cpus": NaN'), "cpus must be an integer"),
    ("a-list", encode([good()]), "must be a JSON object, not list"),
    ("no-format", encode(good(format=DROP)), "unknown report format None"),
    ("format-2", encode(good(format=2)), "unknown report format 2"),
    ("format-true", encode(good(format=True)), "unknown report format True"),
    ("format-string", encode(good(format="1")), "unknown report format '1'"),
    ("missing-memory", encode(good(memory_mb=DROP)), "lacks memory_mb"),
    ("extra-key", encode(good(owner="prod")), "unknown keys owner"),
    ("duplicate-key", encode(good()).replace(b'"cpus": 2', b'"cpus": 2, "cpus": 64'), "'cpus' appears twice"),
    ("cpus-string", encode(good(cpus="2")), "cpus must be an integer, not str"),
    ("cpus-float", encode(good(cpus=2.5)), "cpus must be an integer, not float"),
    ("cpus-bool", encode(good(cpus=True)), "cpus must be an integer, not bool"),
    ("cpus-zero", encode(good(cpus=0)), "cpus 0 is out of range"),
    ("memory-negative", encode(good(memory_mb=-1)), "memory_mb -1 is out of range"),
    ("memory-huge", encode(good(memory_mb=1 << 40)), "memory_mb 1099511627776 is out of range"),
    ("arch-upper", encode(good(arch="X86_64")), "arch 'X86_64' is not valid"),
    ("arch-shell", encode(good(arch="x86;reboot")), "arch 'x86;reboot' is not valid"),
    ("model-control", encode(good(cpu_model="Xeon\nowned")), "cpu_model 'Xeon"),
    ("model-long", encode(good(cpu_model="x" * 201)), "cpu_model"),
    ("token-short", encode(good(token="abc")), "token 'abc' is not valid"),
    ("token-slash", encode(good(token="../../claims/node001")), "token"),
    ("disks-dict", encode(good(disks={"vda": 1})), "disks must be a list, not dict"),
    ("disk-not-object", encode(good(disks=["vda"])), r"disks\[0\] must be an object"),
    ("disk-extra", encode(good(disks=[{"name": "vda", "size_bytes": 1, "model": "x"}])), "exactly the keys"),
    ("disk-name", encode(good(disks=[{"name": "../sda", "size_bytes": 1}])), r"disks\[0\].name"),
    ("disk-size", encode(good(disks=[{"name": "vda", "size_bytes": -512}])), r"disks\[0\].size_bytes -512"),
    ("disk-twice", encode(good(disks=[{"name": "vda", "size_bytes": 1}] * 2)), "a disk name appears twice"),
    ("many-disks", encode(good(disks=[{"name": f"sd{i}", "size_bytes": 1} for i in range(65)])), "0 to 64"),
    ("mac-upper", encode(good(interfaces=[{"name": "eth0", "mac": "52:54:00:AA:00:01"}])), r"interfaces\[0\].mac"),
    ("mac-short", encode(good(interfaces=[{"name": "eth0", "mac": "52:54:00"}])), r"interfaces\[0\].mac"),
    ("iface-name", encode(good(interfaces=[{"name": "eth 0", "mac": MAC}])), r"interfaces\[0\].name"),
    (
        "mac-twice",
        encode(good(interfaces=[{"name": "eth0", "mac": MAC}, {"name": "eth1", "mac": MAC}])),
        "a MAC appears on two interfaces",
    ),
]


@pytest.mark.parametrize(("case", "data", "error"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_malformed_report_is_refused_naming_the_problem(case: str, data: bytes, error: str) -> None:
    """Each malformed report is refused with one line naming its first problem (and never much of its text)."""
    with pytest.raises(MalformedReport, match=error) as caught:
        parse_report(data)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200


def test_the_cobbler_record_round_trips_without_the_token() -> None:
    """hardware_meta writes one compact JSON key with the commissioning time; hardware_of reads it back."""
    report = parse_report(encode(good()))
    meta = hardware_meta(report, datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC))
    assert list(meta) == [HARDWARE_KEY]
    assert TOKEN not in meta[HARDWARE_KEY] and " " not in meta[HARDWARE_KEY].replace(report.cpu_model, "")
    hardware = hardware_of({"ensemble_environment": "x", **meta})
    assert hardware is not None
    assert hardware.commissioned == "2025-03-01T10:00:00Z"
    assert (hardware.arch, hardware.cpus, hardware.memory_mb, hardware.interfaces) == (
        "x86_64",
        2,
        512,
        report.interfaces,
    )
    assert hardware.summary() == "x86_64 2 CPU 512 MiB 1 disk 32 MiB"
    assert hardware_of({}) is None and hardware_of({HARDWARE_KEY: ""}) is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("{not json", "is not JSON"),
        ("[]", "not a JSON object"),
        ('{"format":1,"arch":"x86_64"}', "no valid 'commissioned' time"),
        ('{"format":1,"commissioned":"yesterday"}', "no valid 'commissioned' time"),
        ('{"format":1,"commissioned":"2025-03-01T10:00:00Z","cpus":2}', "lacks"),
    ],
)
def test_a_broken_cobbler_record_is_malformed(value: str, error: str) -> None:
    """A record an admin mangled is not trusted: MalformedReport (matching treats it as not commissioned)."""
    with pytest.raises(MalformedReport, match=error):
        hardware_of({HARDWARE_KEY: value})


ELSEWHERE = {"52:54:00:00:00:02": "node002", MAC: "node001"}


def test_a_report_belongs_to_its_system() -> None:
    """The run's token, one of the system's MACs, no other system's MAC: accepted."""
    report = parse_report(encode(good(interfaces=[{"name": "eth0", "mac": "52:54:00:aa:00:01"}])))
    check_belongs(report, "node001", TOKEN, ["52:54:00:AA:00:01"], {"52:54:00:aa:00:01": "node001"})


@pytest.mark.parametrize(
    ("changes", "macs", "error"),
    [
        ({"token": "another-run-0123456789"}, [MAC], "does not carry the token of this run"),
        ({"interfaces": [{"name": "eth0", "mac": "52:54:00:00:00:09"}]}, [MAC], "lists none of its MACs"),
        (
            {"interfaces": [{"name": "eth0", "mac": MAC}, {"name": "eth1", "mac": "52:54:00:00:00:02"}]},
            [MAC],
            "lists 52:54:00:00:00:02, which Cobbler records for node002",
        ),
        ({}, [], "Cobbler records no MAC for node001"),
    ],
    ids=["stale-token", "foreign-macs", "another-systems-mac", "no-mac-in-cobbler"],
)
def test_a_forged_report_is_refused(changes: dict[str, Any], macs: list[str], error: str) -> None:
    """A well-formed report that is not this system's answer to this run is refused (ForgedReport)."""
    with pytest.raises(ForgedReport, match=error):
        check_belongs(parse_report(encode(good(**changes))), "node001", TOKEN, macs, ELSEWHERE)
