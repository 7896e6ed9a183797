"""The real system image: built by debootstrap (cached after the first run), inspected, and booted once.

The boot is a smoke test of the image alone, not of the lab's container runtime: ``systemd-nspawn`` with the
flags this machine needs (``--register=no --keep-unit``, LAB-NOTES), the image as the overlay's lower layer,
a throwaway upper layer holding a NoCloud seed, and ``--private-network`` (no bridge: nothing leaves the
namespace). It waits (bounded) for cloud-init to finish, stops the system cleanly with SIGRTMIN+4 to its PID 1
(SIGKILL to PID 1 only if that does not work, never to nspawn) and checks nothing is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensemble_orchestra.lab.programs.system_layer import write_layer_file
from ensemble_orchestra.lab.system_image import CLOUD_CFG, RECIPE, ensure_image, image_info, mounts_under

pytestmark = pytest.mark.lab

CLOUD_INIT_DONE_TIMEOUT = 90.0  # ~3 s alone on 2 cores; a busy CI machine runs two test workers beside it
STOP_TIMEOUT = 15.0
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))  # this machine: hybrid


@pytest.fixture(scope="module")
def rootfs() -> Path:
    """The cached image (scripts/install builds it; the first call here builds it if it did not: ~60–90 s)."""
    if os.geteuid() != 0:
        pytest.skip("the system image is built and booted as root (debootstrap, systemd-nspawn)")
    return ensure_image()


def _installed_packages(root: Path) -> set[str]:
    status = (root / "var/lib/dpkg/status").read_text()
    return {
        match.group(1)
        for match in re.finditer(r"^Package: (\S+)\n(?:(?!\n\n).)*?^Status: install ok installed$", status, re.M | re.S)
    }


def test_the_image_has_the_recipes_packages(rootfs: Path) -> None:
    installed = _installed_packages(rootfs)
    assert set(RECIPE.packages) <= installed
    info = image_info(rootfs)
    assert info["packages"] == len(installed) > len(RECIPE.packages)
    assert info["key"] == rootfs.parent.name.rsplit("-", 1)[1]


def test_the_image_is_no_particular_system(rootfs: Path) -> None:
    """Every system booting it gets its own machine-id, host keys and name at first boot."""
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert os.readlink(rootfs / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert list((rootfs / "etc/ssh").glob("ssh_host_*")) == []
    assert (rootfs / "etc/ssh/sshd_config").exists()  # the rest of openssh-server stays
    assert not (rootfs / "etc/hostname").exists()
    assert "nameserver" not in (rootfs / "etc/resolv.conf").read_text()
    assert list((rootfs / "var/cache/apt/archives").glob("*.deb")) == []


def test_the_image_is_configured_for_the_lab(rootfs: Path) -> None:
    assert (rootfs / "etc/cloud/cloud.cfg.d/99-lab.cfg").read_text() == CLOUD_CFG
    units = rootfs / "etc/systemd/system"
    networkd = units / "multi-user.target.wants/systemd-networkd.service"
    assert os.readlink(networkd) == "/lib/systemd/system/systemd-networkd.service"
    for masked in ("apt-daily.timer", "apt-daily-upgrade.timer", "getty@.service", "console-getty.service"):
        assert os.readlink(units / masked) == "/dev/null", masked
    # Debian's cloud-init unit runs before sshd: its ssh module makes the host keys the image lacks.
    cloud_init_unit = (rootfs / "lib/systemd/system/cloud-init.service").read_text()
    assert "Before=sshd.service" in cloud_init_unit.splitlines()
    assert os.readlink(units / "sshd.service") == "/lib/systemd/system/ssh.service"


# -- booting it -----------------------------------------------------------------------------------------------


@dataclass
class Booted:
    nspawn: subprocess.Popen[bytes]
    pid1: int
    started: float


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _container_init(nspawn_pid: int) -> int | None:
    """nspawn's child that is the system's PID 1: in a PID namespace of its own. (Its first child can be a
    short-lived helper that forks the init and exits: on a loaded machine a test once took that one.)"""
    ours = os.readlink("/proc/self/ns/pid")
    for child in _children(nspawn_pid):
        try:
            if os.readlink(f"/proc/{child}/ns/pid") != ours:
                return child
        except FileNotFoundError:
            continue
    return None


def _nsenter(pid1: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid1), "-a", *argv], capture_output=True, text=True, timeout=30)


def _cgroup_procs(name: str) -> list[str]:
    found = []
    for root in CGROUP_ROOTS:
        for procs in (root / name).rglob("cgroup.procs"):
            found += procs.read_text().split()
    return found


def _remove_cgroups(name: str) -> None:
    for root in CGROUP_ROOTS:
        top = root / name
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            top.rmdir()


def _changed_since(root: Path, since: float) -> list[str]:
    """Paths below *root* created, written, renamed or chmod'ed after *since* (their ctime)."""
    changed = [root] if root.lstat().st_ctime > since else []
    for top, dirs, files in os.walk(root):
        changed += [Path(top, n) for n in dirs + files if os.lstat(Path(top, n)).st_ctime > since]
    return [str(p) for p in changed]


def _stop(booted: Booted) -> None:
    """Clean poweroff (bounded), then SIGKILL to PID 1 — never to nspawn, which would leave the system running."""
    for sig in (signal.SIGRTMIN + 4, signal.SIGKILL):
        try:
            os.kill(booted.pid1, sig)
        except ProcessLookupError:
            pass
        try:
            booted.nspawn.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue
    booted.nspawn.terminate()  # nspawn's own clean halt, the last resort
    booted.nspawn.wait(STOP_TIMEOUT)


@pytest.fixture
def boot(rootfs: Path, tmp_path: Path) -> Iterator[tuple[Path, Booted]]:
    """The image booted with a throwaway upper layer holding a NoCloud seed; stopped and checked afterwards."""
    if shutil.which("systemd-nspawn") is None:
        pytest.fail("systemd-nspawn is missing: run scripts/install (Debian's systemd-container)")
    name = f"eo-image-test-{os.getpid()}"
    upper = tmp_path / "upper"
    upper.mkdir()
    seed = "/var/lib/cloud/seed/nocloud-net"
    write_layer_file(upper, f"{seed}/meta-data", f"instance-id: {name}\nlocal-hostname: image-test\n", lower=rootfs)
    user_data = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo ran > /root/runcmd-ran']\n"
    write_layer_file(upper, f"{seed}/user-data", user_data, lower=rootfs)
    # --private-network has no host0 (the lab's bridge gives one): networkd-wait-online would wait 2 minutes.
    # An empty unit file is a masked unit.
    write_layer_file(upper, "/etc/systemd/system/systemd-networkd-wait-online.service", "", lower=rootfs)
    before = time.time()
    time.sleep(0.01)

    cgroup = CGROUP_ROOTS[0] / name  # its own cgroup, as each lab system gets (LAB-NOTES)
    cgroup.mkdir()

    def into_cgroup() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--private-network", "--console=read-only"]
    argv += [f"--machine={name}", f"--directory={rootfs}", f"--overlay={rootfs}:{upper}:/"]
    console = open(tmp_path / "console.log", "wb")  # closed in the finally below, after the system stopped
    started = time.monotonic()
    nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                              preexec_fn=into_cgroup)  # fmt: skip
    booted = None
    try:
        deadline = time.monotonic() + 10
        while _container_init(nspawn.pid) is None and nspawn.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid1 = _container_init(nspawn.pid)
        assert pid1 is not None, f"no PID 1 under nspawn: {(tmp_path / 'console.log').read_text()[-2000:]}"
        booted = Booted(nspawn, pid1, started)
        yield upper, booted
    finally:
        if booted is not None:
            _stop(booted)
        elif nspawn.poll() is None:
            nspawn.terminate()
            nspawn.wait(STOP_TIMEOUT)
        console.close()
        left = {"mounts": mounts_under(tmp_path), "processes": _cgroup_procs(name)}
        _remove_cgroups(name)
        assert left == {"mounts": [], "processes": []}
        assert not Path("/run/systemd/nspawn/propagate", name).exists()
        assert list(upper.parent.glob(".#*")) == []  # nspawn's overlay work directory
        assert _changed_since(rootfs, before) == [], "booting wrote into the shared image"


def test_the_image_boots_runs_cloud_init_and_stops_cleanly(boot: tuple[Path, Booted]) -> None:
    upper, booted = boot
    instance = upper / "var/lib/cloud/instances" / f"eo-image-test-{os.getpid()}"  # not via the absolute symlink
    deadline = time.monotonic() + CLOUD_INIT_DONE_TIMEOUT
    while not (instance / "boot-finished").exists():
        assert booted.nspawn.poll() is None, "the system stopped during its boot"
        assert time.monotonic() < deadline, f"cloud-init not done after {CLOUD_INIT_DONE_TIMEOUT} s"
        time.sleep(0.1)
    seconds = time.monotonic() - booted.started
    status = _nsenter(booted.pid1, "cloud-init", "status", "--long")
    assert "status: done" in status.stdout, status.stdout + status.stderr
    assert "DataSourceNoCloud" in status.stdout
    print(f"boot to cloud-init done: {seconds:.1f} s")

    assert (upper / "root/runcmd-ran").read_text() == "ran\n"
    # Its own identity, made at first boot into its own layer.
    assert re.fullmatch(r"[0-9a-f]{32}\n", (upper / "etc/machine-id").read_text())
    assert (upper / "etc/hostname").read_text() == "image-test\n"
    keys = sorted(p.name for p in (upper / "etc/ssh").glob("ssh_host_*_key"))
    assert "ssh_host_ed25519_key" in keys
    assert _nsenter(booted.pid1, "systemctl", "is-active", "ssh.service").stdout.strip() == "active"
    assert _nsenter(booted.pid1, "systemctl", "is-active", "systemd-networkd.service").stdout.strip() == "active"
    for unit in ("apt-daily.timer", "console-getty.service"):
        assert _nsenter(booted.pid1, "systemctl", "is-active", unit).stdout.strip() == "inactive", unit
    failed = _nsenter(booted.pid1, "systemctl", "--failed", "--plain", "--no-legend").stdout
    assert failed.strip() == ""
