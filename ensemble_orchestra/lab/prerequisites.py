"""What ``lab up`` checks before it starts anything: the Debian packages it needs and its free ports.

Each check fails with one LabError line that names what to install or which port is taken.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from .errors import LabError
from .layout import LAB_HOST, LabSpec
from .ports import port_free
from .programs import qemu_system

__all__ = ["check_prerequisites", "find_program"]

# Debian package that provides each program the lab needs, for the error that says what to install.
REQUIRED_PROGRAMS = {
    "ipmi_sim": "openipmi",
    "ipmitool": "ipmitool",
    "fence_ipmilan": "fence-agents",
    "apache2": "apache2",
    "rsync": "rsync",
}
# ... and what QEMU lab systems need (programs and files).
QEMU_PROGRAMS = {
    qemu_system.QEMU: "qemu-system-x86",
    "mkfs.vfat": "dosfstools",
    "syslinux": "syslinux",
    "mcopy": "mtools",
    "busybox": "busybox-static",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}
QEMU_FILES = {
    "/usr/lib/ipxe/qemu/efi-virtio.rom": "ipxe-qemu",
    "/usr/lib/PXELINUX/pxelinux.0": "pxelinux",
    "/usr/lib/syslinux/modules/bios/ldlinux.c32": "syslinux-common",
}


# A container lab: systemd-nspawn boots the systems, debootstrap builds their image, ip makes the bridge.
CONTAINER_PROGRAMS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2"}


def find_program(name: str) -> str | None:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def check_prerequisites(spec: LabSpec) -> None:
    """Raise LabError naming the missing Debian packages, or the first lab port already in use."""
    packages = {pkg for prog, pkg in REQUIRED_PROGRAMS.items() if find_program(prog) is None}
    if spec.system_kind == "container":
        packages |= {pkg for prog, pkg in CONTAINER_PROGRAMS.items() if find_program(prog) is None}
    if spec.system_kind == "qemu":
        packages |= {pkg for prog, pkg in QEMU_PROGRAMS.items() if find_program(prog) is None}
        packages |= {pkg for path, pkg in QEMU_FILES.items() if not Path(path).exists()}
    missing = sorted(packages)
    if missing:
        raise LabError(
            f"missing Debian package(s) {', '.join(missing)}: run scripts/install"
            f" (or apt-get install {' '.join(missing)})"
        )
    labels = {spec.xmlrpc_port: "Cobbler XML-RPC", spec.http_port: "Cobbler HTTP", spec.webdav_port: "WebDAV"}
    if spec.system_kind == "qemu":
        labels[spec.phone_home_port] = "phone home"
    for port, label in labels.items():
        if not port_free(port):
            raise LabError(
                f"port {port} ({label}) on {LAB_HOST} is in use: stop what holds it or choose another --base-port"
            )
    for system in spec.all_systems():
        if not port_free(system.bmc_port, socket.SOCK_DGRAM):
            raise LabError(
                f"UDP port {system.bmc_port} (BMC of {system.name}) on {LAB_HOST} is in use: choose another --base-port"
            )
