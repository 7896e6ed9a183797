"""A lab of container systems (issue 11), end to end: Cobbler, IPMI and the provider boot a real Debian.

`lab up --system-kind container` puts the lab's bridge up; the provider's bootstrap claims a system and
powers it on through Cobbler and fence_ipmilan; the BMC's power hook boots it under systemd-nspawn: the
installer fetches its preseed from Cobbler's svc on the bridge address and writes the NoCloud seed into the
system's disk; cloud-init acts on exactly the user data the provider generated; the host logs in over SSH
with the lab's key at the address Cobbler records. ``lab down`` leaves no bridge, veth or namespace behind.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.container_lab import package_proxy
from ensemble_orchestra.lab.envfile import lab_environment
from ensemble_orchestra.lab.programs import container_system
from ensemble_orchestra.lab.programs.system_files import disk_dir
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.provider import create_orchestra_provider
from ensemble_orchestra.provider.ownership import USER_DATA_KEY
from ensemble_orchestra.schedule import Schedule

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 120.0  # power on through Cobbler → install → boot → cloud-init finished


@pytest.fixture(scope="module")
def container_lab(lab_parent: Path, ensemble_home: Path) -> Iterator[RunningLab]:
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    running = start_lab(lab_parent / "container-lab", systems=2, env_name=None, system_kind="container")
    try:
        yield running
    finally:
        running.lab.down()


def _links_on(bridge: str) -> list[str]:
    found = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(found) if bridge in (link["ifname"], link.get("master"))]


@pytest_twisted.ensureDeferred
async def test_bootstrap_boots_a_real_debian_that_runs_the_providers_user_data(container_lab: RunningLab) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    lab = container_lab
    network = lab.spec.network(lab.layout.root)
    assert network is not None and _links_on(network.bridge) == [network.bridge]
    raw = dict(lab_environment(lab.spec, lab.layout))
    raw["power-timeout"] = 30
    provider = create_orchestra_provider("box", raw, reactor)
    provider.power.schedule = Schedule((0.1, 0.2, 0.5), timeout=30)
    try:
        started = time.monotonic()
        [machine] = await provider.bootstrap({})
        system_dir = lab.system_dir(machine.system_name)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not container_system.describe(system_dir, True).startswith("cloud-init"):
            assert time.monotonic() < deadline, (system_dir / "state").read_text()
            await deferLater(reactor, 0.2, lambda: None)
        print(f"bootstrap → cloud-init finished: {time.monotonic() - started:.1f} s")

        record = lab.cobbler().get_system(machine.system_name)
        assert record["netboot_enabled"] is False  # the installer's nopxe
        generated = base64.b64decode(record["autoinstall_meta"][USER_DATA_KEY])
        seed = disk_dir(system_dir) / "var/lib/cloud/seed/nocloud-net"
        assert (seed / "user-data").read_bytes() == generated  # exactly the provider's user data
        assert f"instance-id: {machine.instance_id}" in (seed / "meta-data").read_text()

        # The host reaches it at the address Cobbler records, and logs in with the lab's key.
        address = record["interfaces"]["eth0"]["ip_address"]
        assert address == str(network.system_address(int(machine.system_name[-3:]) - 1))
        key = lab.layout.ssh_dir / "id_ed25519"
        ssh = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        ssh += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"debian@{address}", "hostname; cloud-init status"]
        login = subprocess.run(ssh, capture_output=True, text=True, timeout=60)
        assert login.returncode in (0, 1), login.stderr  # cloud-init status exits 1 when a module failed
        assert login.stdout.splitlines()[0].startswith(machine.system_name)

        # The user data's packages came through the lab's package proxy, to this system's address.
        installed = ssh[:-1] + ["dpkg-query -W -f='${Status}' python3-kazoo"]
        assert subprocess.run(installed, capture_output=True, text=True, timeout=60).stdout == "install ok installed"
        delivered = package_proxy(lab.layout, lab.spec).deliveries()
        kazoo = [d for d in delivered if "/python3-kazoo_" in d.path]
        assert kazoo and kazoo[0].client == address, delivered[-5:]
        print(f"proxy deliveries: {len(delivered)}, from the cache: {sum(d.source == 'cache' for d in delivered)}")
    finally:
        await provider.destroy_environment()
        await provider.close()
    assert not bmc.power_is_on(system_dir)  # destroy-environment powered it off

    # lab down: no bridge, veth or namespace of the lab remains
    lab.lab.down()
    assert _links_on(network.bridge) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert network.bridge not in namespaces
