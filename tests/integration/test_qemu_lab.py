"""QEMU lab systems end to end: a BMC power on starts a VM that PXE-boots Cobbler's config over TFTP (iPXE,
PXELINUX), runs the rendered preseed's late command onto its disk, reboots from that disk and phones home with
what its cloud-init would read. One VM is ~10 CPU-s per boot (two boots per install) under TCG.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ensemble_orchestra.lab import bmc, vm_image
from ensemble_orchestra.lab.programs import phone_home, qemu_system, system_files
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.provider.orchestra import ENV_KEY, USER_DATA_KEY

pytestmark = pytest.mark.lab

ENV = "qemu-lab"
PHONE_HOME_TIMEOUT = 180.0  # two TCG boots take ~25 s alone, three VMs on two cores ~60 s


@pytest.fixture(scope="module")
def qemu_lab(ensemble_home: Path, lab_parent: Path) -> Iterator[RunningLab]:
    """A lab of three QEMU systems, with environment ``qemu-lab`` in environments.yaml."""
    running = start_lab(lab_parent / "qemu-lab", systems=3, env_name=ENV, system_kind="qemu")
    try:
        yield running
    finally:
        running.lab.down()


@pytest.fixture
def qlab(qemu_lab: RunningLab) -> RunningLab:
    qemu_lab.lab.reset()
    return qemu_lab


def run_cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_phone_home(system_dir: Path, timeout: float = PHONE_HOME_TIMEOUT) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = phone_home.phone_homes(system_dir)
        if calls:
            return calls[-1]
        time.sleep(0.2)
    console = system_files.console_log(system_dir)
    tail = console.read_text(errors="replace")[-2000:] if console.exists() else "(no console log)"
    raise AssertionError(f"{system_dir.name} did not phone home in {timeout:.0f} s; console:\n{tail}")


def sha256_of_meta(record: dict) -> str:
    return hashlib.sha256(base64.b64decode(record["autoinstall_meta"][USER_DATA_KEY])).hexdigest()


def test_bootstrap_phones_home_with_the_generated_user_data(qlab: RunningLab) -> None:
    """bootstrap --wait on QEMU systems: machine 0 PXE-installs, boots from disk and phones home with exactly
    the user data the provider generated; destroy-environment powers the VM off."""
    boot = run_cli("ensemble_orchestra.cli.ensemble", "bootstrap", "-e", ENV, "--wait")
    assert boot.returncode == 0, boot.stderr
    assert "finished installing: netboot is off" in boot.stdout

    server = qlab.cobbler()
    [owned] = [r for r in server.get_systems() if r["autoinstall_meta"] and ENV_KEY in r["autoinstall_meta"]]
    system_dir = qlab.system_dir(owned["name"])
    call = wait_phone_home(system_dir)
    assert call["from"] == "disk"
    assert call["user-data-sha256"] == sha256_of_meta(owned)
    assert call["instance-id"] == owned["uid"] and call["hostname"] == owned["hostname"]
    # What the installer wrote on the VM's disk, read back from the image.
    seed = vm_image.seed_from_disk(qemu_system.disk_image(system_dir))
    assert seed["user-data"] == base64.b64decode(owned["autoinstall_meta"][USER_DATA_KEY])
    console = system_files.console_log(system_dir).read_text(errors="replace")
    assert "PXELINUX" in console and "ensemble-lab: installed late_command rc=0" in console
    assert "Booting from Hard Disk" in console  # the second boot: PXELINUX's localboot, then the BIOS, the disk

    status = json.loads(
        run_cli(
            "ensemble_orchestra.cli.orchestra", "lab", "status", "--dir", str(qlab.layout.root), "--format", "json"
        ).stdout
    )
    [row] = [s for s in status["systems"] if s["name"] == owned["name"]]
    assert (
        row["power"] == "on"
        and row["vm"] == "phoned home"
        and row["console"] == str(system_files.console_log(system_dir))
    )

    destroy = run_cli("ensemble_orchestra.cli.ensemble", "destroy-environment", "-e", ENV, "-y")
    assert destroy.returncode == 0, destroy.stderr
    assert not bmc.power_is_on(system_dir)
    assert qemu_system.vm_state(system_dir, bmc.power_is_on(system_dir)) == "off"


def test_three_systems_install_in_parallel(qlab: RunningLab) -> None:
    """Three systems set to netboot with their own user data and powered on at once over IPMI (Cobbler's
    power_system, fence_ipmilan): each installs and phones home with its own user data's hash."""
    admin = qlab.cobbler()
    token = qlab.token()
    names = [s.name for s in qlab.spec.all_systems()]
    expected = {}
    for name in names:
        user_data = f"#cloud-config\n# {name} {secrets.token_hex(8)}\n".encode()
        meta = {USER_DATA_KEY: base64.b64encode(user_data).decode(), "ensemble_instance_id": f"i-{name}"}
        admin.xapi_object_edit("system", name, "edit", {"netboot_enabled": True, "autoinstall_meta": meta}, token)
        expected[name] = hashlib.sha256(user_data).hexdigest()

    def power_on(name: str) -> bool:
        server = qlab.cobbler()  # Cobbler 3.3's power_system takes a handle, not a name
        return server.power_system(server.get_system_handle(name, token), "on", token)

    started = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        assert all(pool.map(power_on, names))
    calls = {name: wait_phone_home(qlab.system_dir(name)) for name in names}
    elapsed = time.monotonic() - started
    for name, call in calls.items():
        assert call["user-data-sha256"] == expected[name], name
        assert call["instance-id"] == f"i-{name}"
        assert admin.get_system(name)["netboot_enabled"] is False  # the late command's nopxe
    print(f"3 VMs: all phoned home {elapsed:.1f} s after power on")
