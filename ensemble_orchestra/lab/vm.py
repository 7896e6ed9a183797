"""A QEMU lab system: the VM the BMC's power on starts and power off stops.

The VM PXE-boots like a rack server: iPXE (Debian's ``ipxe-qemu`` ROM of virtio-net, with the system's MAC)
asks QEMU's user-mode network for DHCP and TFTP, whose TFTP root is Cobbler's tftpboot and whose boot file is
PXELINUX; PXELINUX reads Cobbler's ``pxelinux.cfg/01-<mac>``. Netboot on: it boots the lab kernel with the
installer's ``url=``. Netboot off: ``localboot -1`` hands back to the BIOS, which boots the system's disk
(``disk.img``, virtio-blk, second in the boot order). See ``vm_image`` for what runs inside.

The guest reaches the host's loopback as 10.0.2.2 (hence Cobbler's ``server`` is 10.0.2.2 in a QEMU lab).
Files in the system directory: ``disk.img``, ``console.log`` (the serial console), ``qemu.log`` (QEMU's
own output), ``phonehome.log`` (written by the lab's phone-home server). Stdlib only: the power hook
imports it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "GUEST_HOST",
    "MACHINES",
    "QEMU",
    "console_log",
    "disk_image",
    "mark_power_on",
    "phone_home_log",
    "phone_homes",
    "qemu_argv",
    "qemu_log",
    "vm_state",
]

MACHINES = ("process", "qemu")  # lab up --machines: the booted-process systems, or QEMU VMs
QEMU = "qemu-system-x86_64"
GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU's user-mode network shows it to the guest
MEMORY_MB = 256
PXE_BOOT_FILE = "pxelinux.0"


def disk_image(system_dir: Path) -> Path:
    return system_dir / "disk.img"


def console_log(system_dir: Path) -> Path:
    """The VM's serial console (a QEMU file chardev in append mode: every boot's output, in order)."""
    return system_dir / "console.log"


def qemu_log(system_dir: Path) -> Path:
    return system_dir / "qemu.log"


def phone_home_log(system_dir: Path) -> Path:
    """One line per phone home of the installed system: ``phoned-home <iso time> k=v ...``."""
    return system_dir / "phonehome.log"


def phone_homes(system_dir: Path) -> list[dict[str, str]]:
    """The phone homes recorded for a system, oldest first, each as its fields (plus ``time``)."""
    try:
        lines = phone_home_log(system_dir).read_text().splitlines()
    except FileNotFoundError:
        return []
    calls = []
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[0] != "phoned-home":
            continue
        fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
        calls.append({"time": words[1], **fields})
    return calls


def qemu_argv(system_dir: Path, settings: dict[str, Any], qemu: str | None = None) -> list[str]:
    """The QEMU command line of a lab system (settings from its ``machine.json``)."""
    mac = str(settings["mac"]).lower()
    if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
        raise ValueError(f"bad MAC {mac!r} in machine.json")
    tftpboot = str(settings["tftpboot"])
    if "," in tftpboot:
        raise ValueError(f"QEMU's -netdev cannot take a TFTP root with a comma: {tftpboot}")
    return [
        qemu or shutil.which(QEMU) or QEMU,
        "-name",
        str(settings["name"]),
        "-accel",
        "tcg",
        "-m",
        str(MEMORY_MB),
        "-nodefaults",
        "-nographic",  # also tells SeaBIOS to write to the serial port: the firmware's output is in the log
        "-monitor",
        "none",
        "-chardev",
        f"file,id=console0,path={console_log(system_dir)},append=on",
        "-serial",
        "chardev:console0",
        "-netdev",
        f"user,id=net0,tftp={tftpboot},bootfile={PXE_BOOT_FILE}",
        "-device",
        f"virtio-net-pci,netdev=net0,mac={mac},bootindex=1",
        "-drive",
        f"file={disk_image(system_dir)},if=none,id=disk0,format=raw",
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=2",
    ]


POWER_ON_MARK = "=== ensemble-lab power on"  # written to console.log before each VM start
_PHASES = (  # last console line of the current power-on -> what the VM is doing
    ("ensemble-lab: phoned home", "phoned home"),
    ("ensemble-lab: phone home failed", "phone home failed"),
    ("ensemble-lab: booted: from=disk", "booted from disk"),
    ("ensemble-lab: booted", "booted"),
    ("ensemble-lab: rebooting", "rebooting"),
    ("ensemble-lab: install", "installing"),
)


def mark_power_on(system_dir: Path, stamp: str) -> None:
    with open(console_log(system_dir), "a") as out:
        out.write(f"\n{POWER_ON_MARK} {stamp}\n")


def vm_state(system_dir: Path, power_on: bool) -> str:
    """What a QEMU system is doing, from its serial console: off, booting, installing, rebooting, booted ...."""
    if not power_on:
        return "off"
    try:
        text = console_log(system_dir).read_text(errors="replace")
    except FileNotFoundError:
        return "booting"
    current = text[text.rfind(POWER_ON_MARK) :] if POWER_ON_MARK in text else text
    lines = [line.strip() for line in current.splitlines() if line.strip().startswith("ensemble-lab:")]
    if not lines:
        return "booting"
    for prefix, phase in _PHASES:
        if lines[-1].startswith(prefix):
            return phase
    return "booting"
