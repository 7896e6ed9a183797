"""The files of one lab system's directory, the contract between the lab, the power hook and the booted system.

The lab writes ``system.json`` (how the system boots: its kind, name, MAC, Cobbler's tftpboot) before any BMC
starts; the power hook reads it on power on and records the booted system in ``system.pid``; the booted
system writes its records (``boots.log``, ``install.log``, ``console.log``) and its disk. Stdlib only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "CONTAINER_STOP_TIMEOUT",
    "SYSTEM_KINDS",
    "boots_log",
    "console_log",
    "disk_dir",
    "install_log",
    "load_settings",
    "nocloud_seed",
    "settings_file",
    "system_pid_file",
    "write_settings",
]

# What a BMC power on starts (`lab up --system-kind`): the booted process (process_system), a QEMU VM, or a
# real Debian under systemd-nspawn (container_system).
SYSTEM_KINDS = ("process", "qemu", "container")
# Seconds a container system gets to power off (its clean poweroff, then SIGKILL to its PID 1, bounded inside).
CONTAINER_STOP_TIMEOUT = 15.0


def settings_file(system_dir: Path) -> Path:
    return system_dir / "system.json"


def system_pid_file(system_dir: Path) -> Path:
    """The booted system (process or VM) while its power is on."""
    return system_dir / "system.pid"


def console_log(system_dir: Path) -> Path:
    """The booted system's output: a QEMU VM's serial console, or the process system's stdout and stderr.

    Appended to by every boot, in order.
    """
    return system_dir / "console.log"


def boots_log(system_dir: Path) -> Path:
    """One line per boot of a process system: ``boot <n> <iso time> pid=<pid> from=<install|disk>``."""
    return system_dir / "boots.log"


def install_log(system_dir: Path) -> Path:
    """What each install and each boot from disk found, a line each."""
    return system_dir / "install.log"


def disk_dir(system_dir: Path) -> Path:
    """The process system's "disk": the installer's /target."""
    return system_dir / "disk"


def nocloud_seed(system_dir: Path) -> Path:
    return disk_dir(system_dir) / "var" / "lib" / "cloud" / "seed" / "nocloud-net"


def power_on_ignored_flag(system_dir: Path) -> Path:
    """Fault drills: while this file exists the BMC accepts "power on" but the server never comes up."""
    return system_dir / "bmc-ignores-power-on"


def load_settings(system_dir: Path) -> dict[str, Any]:
    """``system.json`` if present, else no settings (a process system that boots from disk).

    Raises ValueError (json.JSONDecodeError is one) if the file is not a JSON object or names an unknown kind.
    """
    try:
        text = settings_file(system_dir).read_text()
    except FileNotFoundError:
        return {}
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError("system.json must hold a JSON object")
    kind = settings.get("system_kind", "process")
    if kind not in SYSTEM_KINDS:
        raise ValueError(f"system.json: unknown system_kind {kind!r} (one of {', '.join(SYSTEM_KINDS)})")
    return settings


def write_settings(
    system_dir: Path, *, name: str, mac: str, tftpboot: Path, system_kind: str = "process", **kind_settings: Any
) -> None:
    """Write ``system.json``: how the system boots when its BMC powers it on.

    *kind_settings* are the kind's own (a container's image, bridge, address, apt_proxy, lab_id).
    """
    if system_kind not in SYSTEM_KINDS:
        raise ValueError(f"unknown system kind {system_kind!r} (one of {', '.join(SYSTEM_KINDS)})")
    system_dir.mkdir(parents=True, exist_ok=True)
    settings = {"name": name, "mac": mac, "tftpboot": str(tftpboot), "system_kind": system_kind, **kind_settings}
    settings_file(system_dir).write_text(json.dumps(settings, indent=2) + "\n")
