"""A booted lab system of the container kind: a real Debian (systemd, cloud-init, sshd) under systemd-nspawn.

The BMC's power hook starts this program on power on (``python -m
ensemble_orchestra.lab.programs.container_system SYSTEM_DIR``) and SIGTERMs it on power off; it exists exactly
while the system's power is on. It boots the way a PXE-booting server does: it reads the PXE config Cobbler
wrote for its MAC. With netboot on, the "installer" wipes the system's disk — its writable overlay layer — and
carries out the rendered preseed's late command with ``/target`` being that layer (the NoCloud seed lands in it,
``nopxe`` turns netboot off). Then, and with netboot off directly, it writes the system's address on the lab
bridge and the package proxy into the layer and boots the shared base image with the layer on top:
``systemd-nspawn --boot`` in the system's own mount, PID, UTS, IPC and network namespaces (a veth on the lab
bridge), in a cgroup of its own.

Power off is clean and bounded: SIGRTMIN+4 to the system's PID 1 (systemd's poweroff), then SIGKILL to PID 1
— never to nspawn, which would leave the system running with its veth up (LAB-NOTES). If the system stops by
itself (a crash, a ``poweroff`` inside) the server stays "powered on" with nothing running, as real hardware
would, until the BMC powers it off. ``state`` in the system directory says where it is: installing, booting,
running, stopped, crashed. Stdlib only (the power hook and the lab import the package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commissioning_system import commissioning_options, report_configured_hardware
from .process_system import COMMISSIONING_SHUTDOWN, INSTALLER_URL, install, pxe_config
from .system_files import CONTAINER_STOP_TIMEOUT, console_log, disk_dir, install_log, load_settings
from .system_layer import write_apt_proxy, write_host0_network, write_layer_file

__all__ = [
    "CGROUP_ROOTS",
    "cgroup_name",
    "cloud_init_log",
    "describe",
    "machine_name",
    "main",
    "nspawn_argv",
    "state_file",
]

CLEAN_STOP_TIMEOUT = 8.0  # seconds for systemd inside to power off (MariaDB shuts down in ~1 s)
KILL_TIMEOUT = 4.0  # then SIGKILL to its PID 1: nspawn exits right after
TERMINATE_TIMEOUT = 2.0  # the last resort: nspawn's own halt
# The power hook SIGKILLs this program after CONTAINER_STOP_TIMEOUT: every step must be over before.
assert CLEAN_STOP_TIMEOUT + KILL_TIMEOUT + TERMINATE_TIMEOUT < CONTAINER_STOP_TIMEOUT
START_TIMEOUT = 15.0  # seconds for nspawn to start the system's PID 1
# This machine has hybrid cgroups (PID 1 is not systemd); nspawn wants its launcher in a cgroup of its own in
# both hierarchies, else every system's daemons end up mixed in one cgroup (LAB-NOTES).
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))


def state_file(system_dir: Path) -> Path:
    return system_dir / "state"


def cloud_init_log(system_dir: Path) -> Path:
    """cloud-init's output log, on the system's disk (readable from the host: a plain file in the layer)."""
    return disk_dir(system_dir) / "var/log/cloud-init-output.log"


def describe(system_dir: Path, power_on: bool) -> str:
    """One word or two for ``lab status``: off, installing, booting, cloud-init done/failed, crashed, ..."""
    if not power_on:
        return "off"
    try:
        state = str(json.loads(state_file(system_dir).read_text())["state"])
    except (OSError, ValueError, KeyError):
        return "starting"
    if state != "running":
        return state
    # Read the layer's own files: /var/lib/cloud/instance is an absolute symlink (it would resolve on the host).
    instances = disk_dir(system_dir) / "var/lib/cloud/instances"
    if not any(instances.glob("*/boot-finished")):
        return "booting"
    try:
        result = json.loads((disk_dir(system_dir) / "var/lib/cloud/data/result.json").read_text())
    except (OSError, ValueError):
        return "cloud-init done"
    return "cloud-init failed" if result.get("v1", {}).get("errors") else "cloud-init done"


def machine_name(system_dir: Path, settings: dict[str, Any]) -> str:
    """nspawn's machine name: unique on the host (two labs may both have node001), at most 64 characters."""
    return f"eo-{settings.get('lab_id', 'lab')}-{settings['name']}"[:64]


def cgroup_name(machine: str) -> str:
    return f"ensemble-lab/{machine}"


def nspawn_argv(settings: dict[str, Any], upper: Path, machine: str) -> list[str]:
    """The command that boots the image with *upper* as the system's writable layer."""
    image = str(settings["image"])
    argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=read-only", "--quiet"]
    argv += [f"--machine={machine}", f"--hostname={settings['name']}", f"--directory={image}"]
    argv += [f"--overlay={image}:{upper}:/"]
    if settings.get("bridge"):
        argv.append(f"--network-bridge={settings['bridge']}")
    else:
        argv.append("--private-network")
    return argv


def _write_state(system_dir: Path, state: str, **details: Any) -> None:
    path = state_file(system_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, "since": time.time(), **details}) + "\n")
    tmp.replace(path)


def _append(path: Path, line: str) -> None:
    with open(path, "a") as out:
        out.write(line + "\n")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _into_own_cgroup(machine: str) -> list[Path]:
    """Move this process into a cgroup of its own in each hierarchy there is; the cgroups made."""
    made = []
    for root in CGROUP_ROOTS:
        if not root.is_dir():
            continue
        group = root / cgroup_name(machine)
        group.mkdir(parents=True, exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))
        made.append(group)
    return made


def _remove_cgroups(groups: list[Path]) -> None:
    """Remove the cgroups made (and nspawn's payload/supervisor below them) once every process left."""
    for group in groups:
        root = next(r for r in CGROUP_ROOTS if group.is_relative_to(r))
        try:
            (root / "cgroup.procs").write_text(str(os.getpid()))  # leave it ourselves first
        except OSError:
            pass
        for directory in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                directory.rmdir()
            except OSError:
                pass
        try:
            group.rmdir()
        except OSError:
            pass


def _prepare_layer(upper: Path, settings: dict[str, Any]) -> None:
    """What differs per system goes into its layer before boot: its address and the package proxy."""
    image = Path(settings["image"])
    if settings.get("address"):
        write_host0_network(upper, str(settings["address"]), lower=image)
    if settings.get("apt_proxy"):
        host, _, port = str(settings["apt_proxy"]).rpartition(":")
        write_apt_proxy(upper, host, int(port), lower=image)
    if not settings.get("bridge"):
        # No host0 without a bridge: networkd-wait-online would wait 2 minutes for it (an empty unit masks it).
        write_layer_file(upper, "/etc/systemd/system/systemd-networkd-wait-online.service", "", lower=image)


class _Stop:
    """SIGTERM (the BMC's power off) sets it; the main loop then powers the system off cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: Any) -> None:
        self.event.set()


def _power_off(nspawn: subprocess.Popen[bytes]) -> str:
    """Clean poweroff of the system (bounded), then SIGKILL to its PID 1; how it ended."""
    steps = ((signal.SIGRTMIN + 4, CLEAN_STOP_TIMEOUT, "clean"), (signal.SIGKILL, KILL_TIMEOUT, "killed"))
    for sig, timeout, how in steps:
        for pid1 in _children(nspawn.pid):
            try:
                os.kill(pid1, sig)
            except ProcessLookupError:
                pass
        try:
            nspawn.wait(timeout)
            return how
        except subprocess.TimeoutExpired:
            continue
    nspawn.terminate()  # nspawn's own halt: the last resort (SIGKILL to nspawn would leave the system running)
    try:
        nspawn.wait(TERMINATE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return "abandoned"  # still there: lab down's network cleanup removes its veth; the state file says so
    return "terminated"


def boot(system_dir: Path, settings: dict[str, Any], stop: _Stop) -> int:
    upper = disk_dir(system_dir)
    config = pxe_config(settings) or ""
    if stop.event.is_set():  # powered off before it got anywhere
        return 0
    commissioning = commissioning_options(config)
    if commissioning is not None:  # the commissioning profile: report the configured hardware, power off
        _write_state(system_dir, "commissioning")
        _append(install_log(system_dir), report_configured_hardware(settings, commissioning))
        stop.event.wait(COMMISSIONING_SHUTDOWN)
        _write_state(system_dir, "off")
        return 0
    found = INSTALLER_URL.search(config)
    if found and "localboot" not in config:
        _write_state(system_dir, "installing")
        shutil.rmtree(upper, ignore_errors=True)  # a reinstall starts from an empty disk
        upper.mkdir(parents=True)
        _append(install_log(system_dir), install(system_dir, found.group("url")))
    if stop.event.is_set():  # powered off during the install: it never boots
        _write_state(system_dir, "off")
        return 0
    upper.mkdir(parents=True, exist_ok=True)
    _prepare_layer(upper, settings)
    machine = machine_name(system_dir, settings)
    groups = _into_own_cgroup(machine)
    _write_state(system_dir, "booting", machine=machine)
    with open(console_log(system_dir), "ab") as console:
        nspawn = subprocess.Popen(
            nspawn_argv(settings, upper, machine), stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _children(nspawn.pid) and nspawn.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid1 = (_children(nspawn.pid) or [0])[0]
        _write_state(system_dir, "running", machine=machine, pid1=pid1, nspawn=nspawn.pid)
        while nspawn.poll() is None and not stop.event.wait(0.2):
            pass
        if nspawn.poll() is None:
            how = _power_off(nspawn)
            _write_state(system_dir, "off", how=how)
            return 0
        # It stopped by itself: a real server whose OS halted or crashed stays powered, nothing running.
        _write_state(system_dir, "stopped" if nspawn.returncode == 0 else "crashed", code=nspawn.returncode)
        stop.event.wait()
        _write_state(system_dir, "off")
        return 0
    finally:
        _remove_cgroups(groups)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m ensemble_orchestra.lab.programs.container_system SYSTEM_DIR", file=sys.stderr)
        return 2
    system_dir = Path(args[0])
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    try:
        return boot(system_dir, load_settings(system_dir), stop)
    except Exception as error:  # one line in the console log; the lab status shows "failed"
        _write_state(system_dir, "failed", error=f"{type(error).__name__}: {error}")
        print(f"container_system: {type(error).__name__}: {error}", file=sys.stderr)
        stop.event.wait()  # the power stays on until the BMC turns it off, as on a real server
        return 1


if __name__ == "__main__":
    sys.exit(main())
