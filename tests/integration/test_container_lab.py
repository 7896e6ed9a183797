"""A lab of container systems (issue 11), end to end: `ensemble bootstrap --wait` puts a real Debian on machine 0.

The lab's systems are containers on the lab's own bridge; `ensemble bootstrap -e ENV --wait` (a process, as
a user types it) claims a system and powers it on through Cobbler and fence_ipmilan; the BMC's power hook
boots it under systemd-nspawn: the installer fetches its preseed from Cobbler's svc on the bridge address and
writes the NoCloud seed into the system's disk; cloud-init acts on exactly the user data the provider
generated (read from Cobbler while bootstrap waits: once machine 0's agent registered, the provisioning agent
drops it from the record) — its packages come through the lab's apt-cacher-ng, its runcmd runs; the host logs
in over SSH with the lab's key at the address Cobbler records, and the system reaches the lab's WebDAV storage
at the bridge address. `destroy-environment` powers it off through Cobbler; `lab down` leaves no bridge, veth,
namespace or mount behind.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble_orchestra.home import environments_file
from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.container_lab import package_proxy
from ensemble_orchestra.lab.envfile import lab_environment, merge_environment
from ensemble_orchestra.lab.programs import container_system
from ensemble_orchestra.lab.programs.system_files import disk_dir
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.provider.ownership import USER_DATA_KEY

pytestmark = pytest.mark.lab

CLOUD_INIT_TIMEOUT = 180.0  # installed → cloud-init finished: its packages (ZooKeeper, Java) take ~30 s warm
ENV = "box"


@pytest.fixture(scope="module")
def container_lab(lab_parent: Path, ensemble_home: Path) -> Iterator[RunningLab]:
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    running = start_lab(lab_parent / "container-lab", systems=2, env_name=None, system_kind="container")
    try:
        raw = dict(lab_environment(running.spec, running.layout))
        raw["power-timeout"] = 30
        merge_environment(environments_file(), ENV, raw)
        yield running
    finally:
        running.lab.down()


def _ensemble(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _links_on(bridge: str) -> list[str]:
    found = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(found) if bridge in (link["ifname"], link.get("master"))]


def _ssh(lab: RunningLab, address: str, command: str) -> subprocess.CompletedProcess[str]:
    key = lab.layout.ssh_dir / "id_ed25519"
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    options += ["-o", "ConnectTimeout=5", "-i", str(key)]
    return subprocess.run(["ssh", *options, f"debian@{address}", command], capture_output=True, text=True, timeout=60)


def test_bootstrap_wait_boots_a_real_debian_that_runs_the_providers_user_data(container_lab: RunningLab) -> None:
    lab = container_lab
    network = lab.spec.network(lab.layout.root)
    assert network is not None and _links_on(network.bridge) == [network.bridge]
    started = time.monotonic()
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", "bootstrap", "-e", ENV, "--wait"]
    # Its output goes to files: a pipe nobody reads while we poll could fill and stall it.
    with open(lab.layout.root / "bootstrap.out", "w+") as out, open(lab.layout.root / "bootstrap.err", "w+") as err:
        booting = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        try:
            # The user data sits in the Cobbler record from the claim until machine 0's agent registers (then the
            # provisioning agent drops it): read it while bootstrap waits.
            generated = b""
            deadline = time.monotonic() + 180
            while booting.poll() is None and not generated:
                assert time.monotonic() < deadline, "bootstrap --wait still running after 180 s"
                for record in lab.cobbler().find_system({"mgmt_classes": ACQUIRED_CLASS}, True):
                    meta = record.get("autoinstall_meta") or {}
                    if isinstance(meta, dict) and USER_DATA_KEY in meta:
                        generated = base64.b64decode(meta[USER_DATA_KEY])
                time.sleep(0.2)
            booting.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if booting.poll() is None:
                booting.kill()
                booting.wait()
        err.seek(0)
        assert booting.returncode == 0, err.read()
    assert generated, "the user data was never seen in the Cobbler record"
    print(f"bootstrap --wait: {time.monotonic() - started:.1f} s")
    status = json.loads(_ensemble("status", "-e", ENV, "--format", "json").stdout)
    [(_, machine)] = status["machines"].items()
    assert machine["instance-state"] == "provisioned"
    [name] = [s for s in lab.cobbler().find_system({"uid": machine["instance-id"]})]
    system_dir = lab.system_dir(name)
    try:
        deadline = time.monotonic() + CLOUD_INIT_TIMEOUT
        while not container_system.describe(system_dir, True).startswith("cloud-init"):
            assert time.monotonic() < deadline, (system_dir / "state").read_text()
            time.sleep(0.5)
        print(f"bootstrap → cloud-init finished: {time.monotonic() - started:.1f} s")

        record = lab.cobbler().get_system(name)
        # Its agent registered: the user data (the agents' secrets) has left the record; the owner keys stay.
        deadline = time.monotonic() + 15
        while USER_DATA_KEY in record["autoinstall_meta"]:
            assert time.monotonic() < deadline, "machine 0's user data is still in its Cobbler record"
            time.sleep(0.5)
            record = lab.cobbler().get_system(name)
        assert record["autoinstall_meta"]["ensemble_environment"] == ENV
        seed = disk_dir(system_dir) / "var/lib/cloud/seed/nocloud-net"
        assert (seed / "user-data").read_bytes() == generated  # exactly the provider's user data
        instance = disk_dir(system_dir) / "var/lib/cloud/instances" / machine["instance-id"]
        runcmd = (instance / "scripts/runcmd").read_text()  # cloud-init wrote and ran the user data's runcmd
        assert "'ensemble-admin' 'initialize' '--instance-id=" in runcmd
        assert (instance / "sem/config_scripts_user").exists()

        # The host reaches it at the address Cobbler records, and logs in with the lab's key.
        address = record["interfaces"]["eth0"]["ip_address"]
        assert address == str(network.system_address(int(name[-3:]) - 1))
        login = _ssh(lab, address, "hostname; dpkg-query -W -f='${Status}' python3-kazoo")
        assert login.returncode == 0, login.stderr
        assert login.stdout.splitlines() == [name, "install ok installed"]

        # The user data's packages came through the lab's proxy, to this system's address.
        delivered = package_proxy(lab.layout, lab.spec).deliveries()
        kazoo = [d for d in delivered if "/python3-kazoo_" in d.path]
        assert kazoo and kazoo[0].client == address, delivered[-5:]

        # The Orchestra server's storage is at the bridge address for the systems (with its credentials).
        host, port = network.bridge_address, lab.spec.webdav_port
        request = f"exec 3<>/dev/tcp/{host}/{port}; printf 'GET /webdav/ HTTP/1.0\\r\\n\\r\\n' >&3; head -1 <&3"
        answer = _ssh(lab, address, f"timeout 5 bash -c {shlex.quote(request)}")
        assert answer.stdout.split()[1:2] == ["401"], answer  # Apache answers there: digest authentication wanted
    finally:
        destroyed = _ensemble("destroy-environment", "-e", ENV, "-y")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not bmc.power_is_on(system_dir)  # powered off through Cobbler

    lab.lab.down()  # lab down: no bridge, veth, namespace or mount of the lab remains
    assert _links_on(network.bridge) == []
    assert network.bridge not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert str(lab.layout.root) not in Path("/proc/mounts").read_text()
