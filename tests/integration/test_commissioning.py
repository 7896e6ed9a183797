"""Commissioning on the lab's real servers: `ensemble-orchestra commission` and `systems`, then the provider
matching mem/cpu against what was recorded.

A lab of process systems (they report their configured hardware through the image's own shell code and the
commissioning credential) for the command's rules — claimed systems refused, forged and malformed reports
refused, every system restored — and a lab of three QEMU systems that boot the real commissioning image over
PXE, whose reports must match what QEMU was given, and on which bootstrap picks the smallest system that fits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth

from ensemble_orchestra.commissioning import HARDWARE_KEY
from ensemble_orchestra.lab.programs import power_hook, qemu_system, system_files
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.lab.webdav import webdav_url

pytestmark = pytest.mark.lab

ENV = "commission"
QEMU_ENV = "commission-qemu"


def cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"ensemble_orchestra.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def orchestra(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return cli("orchestra", *args, timeout=timeout)


def record(lab: RunningLab, name: str) -> dict[str, Any]:
    return lab.cobbler().get_system(name)


def hardware(lab: RunningLab, name: str) -> dict[str, Any] | None:
    meta = record(lab, name)["autoinstall_meta"]
    return json.loads(meta[HARDWARE_KEY]) if isinstance(meta, dict) and HARDWARE_KEY in meta else None


def assert_restored(lab: RunningLab, name: str) -> None:
    """Back as commissioning found it: its profile, netboot off, no token, no leftover key, no marker, off."""
    r = record(lab, name)
    assert r["profile"] == "bookworm-x86_64" and r["netboot_enabled"] is False, r
    assert "ensemble.token" not in (r["kernel_options"] if isinstance(r["kernel_options"], dict) else {})
    meta = r["autoinstall_meta"] if isinstance(r["autoinstall_meta"], dict) else {}
    assert "ensemble_commissioning_from" not in meta
    claims = lab.layout.webdav_data / "exclusive" / "claims"
    assert not claims.exists() or list(claims.iterdir()) == []
    incoming = lab.layout.webdav_data / "commissioning" / "incoming"
    assert not incoming.exists() or sorted(p.name for p in incoming.iterdir()) == ["README"]


def assert_no_secret(lab: RunningLab, *done: subprocess.CompletedProcess[str]) -> None:
    for secret in [*lab.secrets(), lab.spec.commissioning_password]:
        for d in done:
            assert secret not in d.stdout and secret not in d.stderr


@pytest.fixture(scope="module")
def plab(ensemble_home: Path, lab_parent: Path) -> Iterator[RunningLab]:
    """A lab of four process systems (node001 256 MiB/1 CPU, node002 384/2, node003 512/1, node004 256/2)."""
    running = start_lab(lab_parent / "commission-lab", systems=4, env_name=ENV)
    try:
        yield running
    finally:
        running.lab.down()


@pytest.fixture
def fresh(plab: RunningLab) -> RunningLab:
    plab.lab.reset()
    return plab


def break_reporting(lab: RunningLab, name: str) -> None:
    """*name* boots the image but its report is refused (401): a wrong commissioning password in its own
    kernel_options, which Cobbler puts over the profile's (and commissioning keeps)."""
    options = {"kernel_options": {"ensemble.report_pass": "wrong"}}
    lab.cobbler().xapi_object_edit("system", name, "edit", options, lab.token())


def test_commission_all_records_each_systems_hardware(fresh: RunningLab) -> None:
    """--all commissions the free pool at once; each record is what the lab gave the system; each system is
    restored and off; `systems` and `lab status` show the hardware; setup-server left the image registered."""
    done = orchestra("commission", "-e", ENV, "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "commission: 4 commissioned, 0 failed"
    for system in fresh.spec.all_systems():
        hw = hardware(fresh, system.name)
        assert hw is not None and (hw["memory_mb"], hw["cpus"]) == (system.memory_mb, system.cpus)
        assert hw["interfaces"] == [{"name": "eth0", "mac": system.mac}]
        assert hw["commissioned"].endswith("Z")
        assert_restored(fresh, system.name)
    assert not any(s.power_on for s in fresh.lab.status().systems)
    listing = orchestra("systems", "-e", ENV, "--format", "json")
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["node002"]["hardware"]["memory_mb"] == 384 and rows["node002"]["power"] == "off"
    assert rows["node002"]["class"] == "available" and rows["node002"]["owner"] is None
    table = orchestra("systems", "-e", ENV)
    assert table.stdout.splitlines()[-1] == "4 systems, 4 commissioned"
    status = json.loads(orchestra("lab", "status", "--dir", str(fresh.layout.root), "--format", "json").stdout)
    assert status["systems"][2]["hardware"].startswith("x86_64 1 CPU 512 MiB 1 disk 32 MiB at ")
    assert_no_secret(fresh, done, listing, table)


def test_a_claimed_system_is_never_commissioned(fresh: RunningLab) -> None:
    """A system an environment owns is refused before anything touches it (its record and power untouched);
    the others named with it are commissioned."""
    server, token = fresh.cobbler(), fresh.token()
    owned = {"mgmt_classes": ["orchestra-ensemble-acquired"], "autoinstall_meta": {"ensemble_environment": "prod"}}
    server.xapi_object_edit("system", "node001", "edit", owned, token)
    before = record(fresh, "node001")
    boots = fresh.system_dir("node001") / "boots.log"
    booted = boots.read_text() if boots.exists() else ""
    done = orchestra("commission", "-e", ENV, "node001", "node002")
    assert done.returncode == 1
    assert "node001  failed        node001 is claimed by environment 'prod': release it before commissioning it" in (
        done.stdout
    )
    assert record(fresh, "node001") == before and hardware(fresh, "node002") is not None
    assert (boots.read_text() if boots.exists() else "") == booted  # never powered on


@pytest.mark.parametrize(
    ("forgery", "error"),
    [
        ("another-mac", "lists 52:54:00:00:00:03, which Cobbler records for node003"),
        ("only-another-mac", "the report for node001 lists none of its MACs (52:54:00:00:00:01)"),
        ("not-json", "the report is not JSON"),
        ("stale-token", "does not carry the token of this run"),
    ],
)
def test_a_forged_or_malformed_report_is_refused(fresh: RunningLab, forgery: str, error: str) -> None:
    """Someone with the commissioning credential (every image has it) PUTs a report for node001 as soon as
    Cobbler shows the run's token (node001's own report is refused by the storage): the report is refused,
    nothing is recorded, and node001 is restored and off."""
    break_reporting(fresh, "node001")
    command = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ensemble_orchestra.cli.orchestra",
            "commission",
            "-e",
            ENV,
            "node001",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        token = None
        while token is None and time.monotonic() < deadline:  # Cobbler shows the run's token to every reader
            options = record(fresh, "node001")["kernel_options"]
            token = options.get("ensemble.token") if isinstance(options, dict) else None
            time.sleep(0.1)
        assert token, "the command never set node001's token"
        forged: Any = {
            "format": 1,
            "token": token if forgery != "stale-token" else "an-earlier-run-0123456789",
            "arch": "x86_64",
            "cpus": 64,
            "cpu_model": "forged",
            "memory_mb": 1 << 20,
            "disks": [],
            "interfaces": [{"name": "eth0", "mac": "52:54:00:00:00:01"}],
        }
        if forgery == "another-mac":  # node001's NIC and node003's
            forged["interfaces"].append({"name": "eth1", "mac": "52:54:00:00:00:03"})
        if forgery == "only-another-mac":
            forged["interfaces"] = [{"name": "eth0", "mac": "52:54:00:00:00:03"}]
        body = b"{not json" if forgery == "not-json" else json.dumps(forged).encode()
        url = f"{webdav_url(fresh.spec)}commissioning/incoming/{token}.json"
        auth = HTTPDigestAuth(fresh.spec.commissioning_user, fresh.spec.commissioning_password)
        assert requests.put(url, data=body, auth=auth, timeout=10).status_code == 201
        stdout, stderr = command.communicate(timeout=120)
    finally:
        command.kill()
    assert command.returncode == 1, stderr
    assert "node001  failed" in stdout and error in stdout
    assert hardware(fresh, "node001") is None
    assert_restored(fresh, "node001")
    assert record(fresh, "node001")["kernel_options"] == {"ensemble.report_pass": "wrong"}  # its own, kept


def test_a_system_that_powers_off_without_reporting_fails_early(fresh: RunningLab) -> None:
    """A system whose report never arrives and that powered itself off fails when that is seen, well before
    --timeout, and is restored; the other system of the run is commissioned."""
    break_reporting(fresh, "node004")
    started = time.monotonic()
    done = orchestra("commission", "-e", ENV, "node004", "node001", "--timeout", "120")
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert "node004 powered off after" in done.stdout and "without reporting" in done.stdout
    assert "node001  commissioned" in done.stdout
    assert_restored(fresh, "node004")
    assert "report failed (HTTP 401)" in (fresh.system_dir("node004") / "install.log").read_text()


def test_mem_and_cpu_constraints_match_commissioned_systems(fresh: RunningLab) -> None:
    """After commissioning two systems: mem=300M takes node002 (384 MiB) over node003 (512 MiB); a constraint
    nothing fits fails before anything is claimed, counting the systems not commissioned yet."""
    assert orchestra("commission", "-e", ENV, "node002", "node003").returncode == 0
    big = cli("ensemble", "bootstrap", "-e", ENV, "--constraints", "mem=1G")
    assert big.returncode == 1
    assert big.stderr.strip().splitlines()[-1] == (
        "ensemble: error: no available system in Cobbler class 'orchestra-ensemble-available' fits mem=1G: of 4"
        " available, 2 are too small (the largest has 512 MiB and 1 CPUs); 2 are not commissioned yet (memory"
        " and CPUs unknown); run 'ensemble-orchestra commission --all'"
    )
    boot = cli("ensemble", "bootstrap", "-e", ENV, "--constraints", "mem=300M")
    assert boot.returncode == 0, boot.stderr
    assert "machine 0 is node002 " in boot.stdout
    assert cli("ensemble", "destroy-environment", "-e", ENV, "--yes").returncode == 0
    boot = cli("ensemble", "bootstrap", "-e", ENV, "--constraints", "mem=400M cpu=1")
    assert boot.returncode == 0 and "machine 0 is node003 " in boot.stdout, boot.stderr
    assert cli("ensemble", "destroy-environment", "-e", ENV, "--yes").returncode == 0
    assert hardware(fresh, "node002") is not None  # the release kept the record


# -- QEMU: the real image ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qlab(ensemble_home: Path, lab_parent: Path) -> Iterator[RunningLab]:
    """Three QEMU systems: 256 MiB/1 CPU, 384 MiB/2 CPUs, 512 MiB/1 CPU."""
    running = start_lab(lab_parent / "commission-qemu", systems=3, env_name=QEMU_ENV, system_kind="qemu")
    try:
        yield running
    finally:
        running.lab.down()


def test_qemu_systems_commission_for_real(qlab: RunningLab) -> None:
    """Three VMs PXE-boot the commissioning image at once; each report matches what QEMU was given (-m, -smp,
    the NIC's MAC, the 32 MiB disk); bootstrap --constraints then takes the smallest that fits."""
    started = time.monotonic()
    done = orchestra("commission", "-e", QEMU_ENV, "--all", "--timeout", "240", timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    elapsed = time.monotonic() - started
    for system in qlab.spec.all_systems():
        settings = system_files.load_settings(qlab.system_dir(system.name))  # what QEMU was started with
        hw = hardware(qlab, system.name)
        assert hw is not None, system.name
        assert (hw["memory_mb"], hw["cpus"]) == (settings["memory_mb"], settings["cpus"])
        assert (hw["memory_mb"], hw["cpus"]) == (system.memory_mb, system.cpus)
        assert hw["cpu_model"].startswith("QEMU") and hw["arch"] == "x86_64"
        assert hw["interfaces"] == [{"name": "eth0", "mac": system.mac}]
        assert hw["disks"] == [{"name": "vda", "size_bytes": 32 * 1024 * 1024}]
        console = (qlab.system_dir(system.name) / "console.log").read_text(errors="replace")
        assert "ensemble-commissioning: reported (HTTP 201)" in console
        assert_restored(qlab, system.name)
    print(f"commissioned 3 QEMU systems in {elapsed:.1f} s")
    boot = cli("ensemble", "bootstrap", "-e", QEMU_ENV, "--constraints", "mem=300M cpu=1")
    assert boot.returncode == 0 and "machine 0 is node002 " in boot.stdout, boot.stderr
    assert cli("ensemble", "destroy-environment", "-e", QEMU_ENV, "--yes").returncode == 0
    assert_no_secret(qlab, done, boot)


def test_an_unknown_server_enlists_and_waits_for_an_admin(qlab: RunningLab) -> None:
    """With setup-server --enlist, a VM whose MAC Cobbler does not know PXE-boots the menu, times out into the
    commissioning image and reports as enlist-<MAC>; `enlist` makes it a system of the enlisted class only (never
    available), with its hardware; `accept` refuses it until it has power settings, then makes it available."""
    spec = qlab.spec
    argv = ["setup-server", "--cobbler", qlab.cobbler_url, "--user", spec.cobbler_user, "--enlist"]
    argv += ["--commissioning-kernel", str(qlab.layout.distro_dir / "commissioning" / "vmlinuz")]
    argv += ["--commissioning-initrd", str(qlab.layout.distro_dir / "commissioning" / "initrd.gz")]
    argv += ["--commissioning-url", f"http://10.0.2.2:{spec.webdav_port}/webdav/commissioning/incoming/"]
    env = {
        **os.environ,
        "ENSEMBLE_ORCHESTRA_PASSWORD": spec.cobbler_password,
        "ENSEMBLE_COMMISSIONING_PASSWORD": spec.commissioning_password,
    }
    setup = subprocess.run(
        [sys.executable, "-m", "ensemble_orchestra.cli.orchestra", *argv], capture_output=True, text=True, env=env
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "created    system     default" in setup.stdout and spec.commissioning_password not in setup.stdout
    stranger = qlab.layout.systems_dir / "stranger"  # a server on the wire, unknown to Cobbler
    system_files.write_settings(
        stranger,
        name="stranger",
        mac="52:54:00:00:09:99",
        tftpboot=qlab.layout.tftpboot,
        system_kind="qemu",
        memory_mb=384,
        cpus=2,
    )
    with open(qemu_system.disk_image(stranger), "wb") as disk:
        disk.truncate(1 << 20)
    power_hook.power_on(stranger)
    try:
        deadline = time.monotonic() + 180  # the PXE menu's 20 s timeout, then one boot
        while power_hook.is_on(stranger) and time.monotonic() < deadline:
            time.sleep(1)
        assert not power_hook.is_on(stranger), "the stranger did not power itself off"
    finally:
        power_hook.power_off(stranger)
    assert "ensemble-commissioning: reported (HTTP 201)" in (stranger / "console.log").read_text(errors="replace")
    enlisted = orchestra("enlist", "-e", QEMU_ENV)
    assert enlisted.returncode == 0, enlisted.stdout + enlisted.stderr
    assert "incoming/enlist-525400000999.json: enlisted as enlisted-525400000999" in enlisted.stdout
    system = record(qlab, "enlisted-525400000999")
    assert system["mgmt_classes"] == ["orchestra-ensemble-enlisted"] and system["netboot_enabled"] is False
    assert system["interfaces"]["eth0"]["mac_address"] == "52:54:00:00:09:99"
    hw = hardware(qlab, "enlisted-525400000999")
    assert hw is not None and (hw["memory_mb"], hw["cpus"]) == (384, 2)
    refused = orchestra("accept", "-e", QEMU_ENV, "enlisted-525400000999")
    assert refused.returncode == 1 and "has no power management" in refused.stdout
    power = {"power_type": "ipmilan", "power_address": "127.0.0.1", "power_user": "root", "power_pass": "x"}
    qlab.cobbler().xapi_object_edit("system", "enlisted-525400000999", "edit", power, qlab.token())
    accepted = orchestra("accept", "-e", QEMU_ENV, "enlisted-525400000999")
    assert accepted.returncode == 0, accepted.stdout
    assert record(qlab, "enlisted-525400000999")["mgmt_classes"] == ["orchestra-ensemble-available"]


def test_container_systems_report_their_configured_hardware(ensemble_home: Path, lab_parent: Path) -> None:
    """Container systems (a real Debian each, on the lab bridge) report what the lab gave them, through the same
    path as the image (busybox's PUT to the report area, at the bridge address)."""
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    running = start_lab(
        lab_parent / "commission-containers", systems=2, env_name="commission-c", system_kind="container"
    )
    try:
        done = orchestra("commission", "-e", "commission-c", "--all")
        assert done.returncode == 0, done.stdout + done.stderr
        for system in running.spec.all_systems():
            hw = hardware(running, system.name)
            assert hw is not None and (hw["memory_mb"], hw["cpus"]) == (system.memory_mb, system.cpus)
            assert_restored(running, system.name)
        assert not any(s.power_on for s in running.lab.status().systems)
    finally:
        running.lab.down()
