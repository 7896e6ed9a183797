"""Container systems (issue 11): a BMC power on boots a real Debian — systemd, cloud-init, sshd — on a lab bridge.

Real everything: the cached base image, a lab bridge (lab/network.py), systemd-nspawn started by the BMC's
power hook exactly as ipmi_sim starts it, an installer that fetches its preseed over HTTP and runs the late
command into the system's disk (its overlay layer), and cloud-init acting on the seed. The host reaches the
system at its own address and logs in over SSH with the key the user data set up; power off is clean and leaves
no process, cgroup or veth behind; a reinstall wipes the disk.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ensemble_orchestra.lab import network as lab_network
from ensemble_orchestra.lab.programs import container_system, power_hook
from ensemble_orchestra.lab.programs.system_files import disk_dir, write_settings
from ensemble_orchestra.lab.sshkey import ensure_lab_key
from ensemble_orchestra.lab.system_image import ensure_image

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 90.0  # power on → cloud-init done; ~3 s measured alone, more with two test workers
MAC = "52:54:00:ee:00:01"


def _wait(what: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


class _Preseed(BaseHTTPRequestHandler):
    """Cobbler's svc, reduced to one rendered preseed whose late command writes the NoCloud seed."""

    late_command = ""

    def do_GET(self) -> None:
        body = f"d-i preseed/late_command string {self.late_command}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def rootfs() -> Path:
    if os.geteuid() != 0:
        pytest.skip("container systems boot as root (systemd-nspawn, bridges)")
    return ensure_image()


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[lab_network.LabNetwork]:
    planned = lab_network.plan_network(tmp_path / "lab")
    lab_network.cleanup_leftovers(planned.bridge)
    lab_network.up(planned)
    try:
        yield planned
    finally:
        lab_network.down(planned)


@pytest.fixture
def preseed_server() -> Iterator[tuple[str, type[_Preseed]]]:
    handler = type("Preseed", (_Preseed,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cblr/svc/op/autoinstall/system/node001", handler
    finally:
        server.shutdown()
        server.server_close()


def _user_data(public_key: str) -> str:
    return (
        "#cloud-config\n"
        "users:\n"
        "  - name: ensemble\n"
        "    sudo: 'ALL=(ALL) NOPASSWD:ALL'\n"
        "    shell: /bin/bash\n"
        f"    ssh_authorized_keys: ['{public_key}']\n"
        "runcmd:\n"
        "  - [sh, -c, 'echo ran > /root/runcmd-ran']\n"
    )


def _late_command(user_data: str, instance_id: str) -> str:
    """One preseed line, like the kit's: the user data travels base64-encoded, as Cobbler's metadata carries it."""
    seed = "/target/var/lib/cloud/seed/nocloud-net"
    encoded = base64.b64encode(user_data.encode()).decode()
    return (
        f"mkdir -p {seed}; echo {encoded} | base64 -d > {seed}/user-data;"
        f" printf 'instance-id: %s\\nlocal-hostname: %s\\n' {instance_id} node001 > {seed}/meta-data"
    )


def _state(system_dir: Path) -> str:
    try:
        return str(json.loads((system_dir / "state").read_text())["state"])
    except (FileNotFoundError, ValueError):
        return "none"


def _pxe(tftpboot: Path, text: str) -> None:
    (tftpboot / "pxelinux.cfg").mkdir(parents=True, exist_ok=True)
    (tftpboot / "pxelinux.cfg" / ("01-" + MAC.replace(":", "-"))).write_text(text)


def _ssh(key: Path, address: str, command: str) -> subprocess.CompletedProcess[str]:
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    options += ["-o", "ConnectTimeout=5", "-i", str(key)]
    return subprocess.run(["ssh", *options, f"ensemble@{address}", command], capture_output=True, text=True, timeout=30)


def test_a_container_system_installs_boots_and_powers_off_cleanly(
    rootfs: Path, bridge: lab_network.LabNetwork, preseed_server: tuple[str, type[_Preseed]], tmp_path: Path
) -> None:
    url, handler = preseed_server
    public_key = ensure_lab_key(tmp_path / "ssh")
    key = public_key.with_suffix("")  # the private key beside it
    user_data = _user_data(public_key.read_text().strip())
    handler.late_command = _late_command(user_data, "i-node001-1")
    tftpboot, system_dir = tmp_path / "tftpboot", tmp_path / "systems" / "node001"
    address = bridge.system_address(0)
    write_settings(
        system_dir, name="node001", mac=MAC, tftpboot=tftpboot, system_kind="container",
        image=str(rootfs), bridge=bridge.bridge, address=str(bridge.system_interface(0)), lab_id=f"t{os.getpid()}",
    )  # fmt: skip
    _pxe(tftpboot, f"LABEL install\n  kernel vmlinuz\n  append url={url}\n")
    stale = disk_dir(system_dir) / "etc" / "left-from-an-earlier-install"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")

    started = time.monotonic()
    assert power_hook.power_on(system_dir, python=sys.executable)
    try:
        assert power_hook.is_on(system_dir)
        upper = disk_dir(system_dir)
        finished = upper / "var/lib/cloud/instances/i-node001-1/boot-finished"  # not via the absolute symlink
        _wait("cloud-init done", finished.exists, BOOT_TIMEOUT)
        print(f"power on → cloud-init done: {time.monotonic() - started:.1f} s")
        assert not stale.exists()  # the install wiped the disk
        assert (upper / "var/lib/cloud/seed/nocloud-net/user-data").read_text() == user_data
        assert (upper / "root/runcmd-ran").read_text() == "ran\n"
        assert _state(system_dir) == "running"

        # The host reaches it at its own address on the bridge, and logs in with the key the user data gave.
        _wait("sshd", lambda: socket.create_connection((str(address), 22), timeout=1).close() is None, 30)
        login = _ssh(key, str(address), "hostname; sudo -n true && echo sudo-ok; ip -4 -o addr show host0")
        assert login.returncode == 0, login.stderr
        assert login.stdout.splitlines()[:2] == ["node001", "sudo-ok"] and str(address) in login.stdout
        no_route = _ssh(key, str(address), "ip route show default")
        assert no_route.returncode == 0 and no_route.stdout.strip() == ""  # nothing beyond the bridge
    finally:
        stopped_at = time.monotonic()
        assert power_hook.power_off(system_dir)
    print(f"power off: {time.monotonic() - stopped_at:.1f} s")
    assert not power_hook.is_on(system_dir)
    record = json.loads((system_dir / "state").read_text())
    assert record["state"] == "off" and record["how"] == "clean"
    machine = container_system.machine_name(system_dir, {"name": "node001", "lab_id": f"t{os.getpid()}"})
    for root in container_system.CGROUP_ROOTS:
        assert not (root / container_system.cgroup_name(machine)).exists()
    attached = subprocess.run(["ip", "-j", "link", "show", "master", bridge.bridge], capture_output=True, text=True)
    assert json.loads(attached.stdout or "[]") == []  # nspawn's veth went with the system
    assert not Path("/run/systemd/nspawn/propagate", machine).exists()


def test_with_netboot_off_it_boots_from_its_disk_and_a_crash_keeps_the_power_on(
    rootfs: Path, bridge: lab_network.LabNetwork, tmp_path: Path
) -> None:
    """localboot: no install, the disk (with its seed) boots as it is; a crashed system reads 'power on, not
    running' (state crashed) until the BMC powers it off."""
    tftpboot, system_dir = tmp_path / "tftpboot", tmp_path / "systems" / "node001"
    write_settings(
        system_dir, name="node001", mac=MAC, tftpboot=tftpboot, system_kind="container",
        image=str(rootfs), bridge=bridge.bridge, address=str(bridge.system_interface(0)), lab_id=f"u{os.getpid()}",
    )  # fmt: skip
    _pxe(tftpboot, "LABEL local\n  localboot -1\n")
    seed = disk_dir(system_dir) / "var/lib/cloud/seed/nocloud-net"
    seed.mkdir(parents=True)
    (seed / "meta-data").write_text("instance-id: i-disk\nlocal-hostname: node001\n")
    (seed / "user-data").write_text("#cloud-config\nruncmd:\n  - [sh, -c, 'echo disk > /root/booted']\n")
    assert power_hook.power_on(system_dir, python=sys.executable)
    try:
        _wait("boot from disk", (disk_dir(system_dir) / "root/booted").exists, BOOT_TIMEOUT)
        pid1 = json.loads((system_dir / "state").read_text())["pid1"]
        os.kill(pid1, 9)  # the system crashes
        _wait("crash noticed", lambda: _state(system_dir) == "crashed", 20)
        assert power_hook.is_on(system_dir)  # power on, not running
    finally:
        assert power_hook.power_off(system_dir)
    assert _state(system_dir) == "off" and not power_hook.is_on(system_dir)


def test_two_systems_reach_each_other_but_not_a_host_service_bound_to_loopback(
    rootfs: Path, bridge: lab_network.LabNetwork, tmp_path: Path
) -> None:
    """Systems on the lab bridge talk to each other and to servers on the bridge address; a host server bound to
    127.0.0.1 only is out of their reach (the lab's servers for the host alone stay private)."""
    public_key = ensure_lab_key(tmp_path / "ssh")
    key = public_key.with_suffix("")
    tftpboot = tmp_path / "tftpboot"
    (tftpboot / "pxelinux.cfg").mkdir(parents=True)
    systems = []
    for index, name in enumerate(("node001", "node002")):
        mac = f"52:54:00:ee:01:{index:02x}"
        system_dir = tmp_path / "systems" / name
        write_settings(
            system_dir, name=name, mac=mac, tftpboot=tftpboot, system_kind="container", image=str(rootfs),
            bridge=bridge.bridge, address=str(bridge.system_interface(index)), lab_id=f"v{os.getpid()}",
        )  # fmt: skip
        (tftpboot / "pxelinux.cfg" / ("01-" + mac.replace(":", "-"))).write_text("LABEL local\n  localboot -1\n")
        seed = disk_dir(system_dir) / "var/lib/cloud/seed/nocloud-net"
        seed.mkdir(parents=True)
        (seed / "meta-data").write_text(f"instance-id: i-{name}\nlocal-hostname: {name}\n")
        (seed / "user-data").write_text(_user_data(public_key.read_text().strip()))
        systems.append((system_dir, bridge.system_address(index)))
    private = socket.create_server(("127.0.0.1", 0))  # a host service for the host alone
    on_bridge = socket.create_server((str(bridge.bridge_address), 0))  # a lab server for the systems
    try:
        for system_dir, _ in systems:
            assert power_hook.power_on(system_dir, python=sys.executable)
        for system_dir, address in systems:
            booted = disk_dir(system_dir) / f"var/lib/cloud/instances/i-{system_dir.name}/boot-finished"
            _wait(f"{system_dir.name} cloud-init done", booted.exists, BOOT_TIMEOUT)
            _wait(f"{system_dir.name} sshd", lambda a=address: _port_open(str(a), 22), 30)
        (_, first), (_, second) = systems

        def reach(host: str, port: int) -> bool:
            probe = f"timeout 3 bash -c '</dev/tcp/{host}/{port}' && echo reached || echo refused"
            result = _ssh(key, str(first), probe)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip() == "reached"

        assert reach(str(second), 22)  # system to system, across the bridge
        assert reach(str(bridge.bridge_address), on_bridge.getsockname()[1])  # to a server on the bridge address
        assert not reach(str(bridge.bridge_address), private.getsockname()[1])  # loopback-only: out of reach
        assert not reach("127.0.0.1", private.getsockname()[1])  # its own loopback is its own, not the host's
    finally:
        private.close()
        on_bridge.close()
        for system_dir, _ in systems:
            power_hook.power_off(system_dir)


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True
