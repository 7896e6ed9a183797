"""A lab system of the QEMU kind: the VM the BMC's power on starts and power off stops.

The VM PXE-boots like a rack server: iPXE (Debian's ``ipxe-qemu`` ROM of virtio-net, with the system's MAC)
asks QEMU's user-mode network for DHCP and TFTP, whose TFTP root is Cobbler's tftpboot and whose boot file is
PXELINUX; PXELINUX reads Cobbler's ``pxelinux.cfg/01-<mac>``. Netboot on: it boots the lab kernel with the
installer's ``url=``. Netboot off: ``localboot -1`` hands back to the BIOS, which boots the system's disk
(``disk.img``, virtio-blk, second in the boot order). ``vm_init`` is what runs inside; ``lab/vm_image.py``
builds the kernel, initramfs and disk.

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

from .system_files import console_log

__all__ = [
    "GUEST_HOST",
    "POWER_ON_MARK",
    "QEMU",
    "disk_image",
    "mark_power_on",
    "qemu_argv",
    "qemu_log",
    "vm_state",
]

QEMU = "qemu-system-x86_64"
GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU's user-mode network shows it to the guest
MEMORY_MB = 256  # when system.json does not say (the lab gives each system its size: layout.LabSpec.system)
PXE_BOOT_FILE = "pxelinux.0"


def disk_image(system_dir: Path) -> Path:
    return system_dir / "disk.img"


def qemu_log(system_dir: Path) -> Path:
    return system_dir / "qemu.log"


def qemu_argv(system_dir: Path, settings: dict[str, Any], qemu: str | None = None) -> list[str]:
    """The QEMU command line of a lab system (settings from its ``system.json``)."""
    mac = str(settings["mac"]).lower()
    if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
        raise ValueError(f"bad MAC {mac!r} in system.json")
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
        str(int(settings.get("memory_mb") or MEMORY_MB)),
        "-smp",
        str(int(settings.get("cpus") or 1)),
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
