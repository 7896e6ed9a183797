"""Seed and reset the lab's Cobbler the way an administrator prepares an Orchestra server.

Seeding does what ``cobbler import`` does (distros with os_version, arch and breed, and a profile of the
same name with Cobbler's stock preseed), adds the system pool, and then runs the real
``ensemble-orchestra setup-server`` with the kit, as a separate process: the lab's preseed, snippets,
management classes and profiles come from the very command a server is set up with.

The lab is a tool, not the product: it talks to cobblerd with the standard
library's synchronous XML-RPC client (the provider's asynchronous client is
separate and is what the tests prove).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from ..commissioning import MalformedReport, hardware_of
from ..commissioning.setup import COMMISSIONING_NAME, REPORT_AREA
from ..server_kit import DEFAULT_ACQUIRED_CLASS, DEFAULT_AVAILABLE_CLASS
from .bmc import cobbler_power_fields
from .errors import LabError
from .layout import LAB_HOST, LabLayout, LabSpec, SystemSpec
from .programs.qemu_system import GUEST_HOST
from .webdav import WEBDAV_PATH

__all__ = [
    "AVAILABLE_CLASS",
    "ACQUIRED_CLASS",
    "LAB_PROFILES",
    "LabCobbler",
    "SystemRow",
]

AVAILABLE_CLASS = DEFAULT_AVAILABLE_CLASS
ACQUIRED_CLASS = DEFAULT_ACQUIRED_CLASS
# (series, Cobbler arch): imported as distros "<series>-<arch>"; setup-server names profiles the same way.
LAB_PROFILES = (("bookworm", "x86_64"), ("bookworm", "i386"), ("trixie", "x86_64"))
IMPORT_AUTOINSTALL = "sample.seed"  # what `cobbler import` gives a Debian profile (distro_signatures.json)
SETUP_SERVER_TIMEOUT = 120.0
_SEED_WORKERS = 4
QEMU_KERNEL_OPTIONS = "console=ttyS0 quiet"
# In the lab distro directory (Cobbler wants a kernel named vmlinuz or the like).
COMMISSIONING_KERNEL = "commissioning/vmlinuz"
COMMISSIONING_INITRD = "commissioning/initrd.gz"


@dataclass(frozen=True)
class SystemRow:
    """What `lab status` shows of a system's Cobbler record."""

    name: str
    profile: str
    mgmt_classes: tuple[str, ...]
    netboot_enabled: bool
    mac: str
    hardware: str = ""  # commissioned hardware, one line ("" if not commissioned)


class LabCobbler:
    """An administrator's session on the lab's cobblerd."""

    def __init__(self, spec: LabSpec, timeout: float = 30.0) -> None:
        self.spec = spec
        self.url = f"http://{LAB_HOST}:{spec.xmlrpc_port}/RPC2"
        self._timeout = timeout
        self._token: str | None = None

    def proxy(self) -> xmlrpc.client.ServerProxy:
        """A new proxy (xmlrpc.client proxies are not thread-safe: one per thread)."""
        transport = _TimeoutTransport(self._timeout)
        return xmlrpc.client.ServerProxy(self.url, allow_none=True, transport=transport)

    def ping(self) -> bool:
        try:
            return bool(self.proxy().ping())
        except (OSError, xmlrpc.client.Error):
            return False

    @property
    def token(self) -> str:
        if self._token is None:
            token = self.proxy().login(self.spec.cobbler_user, self.spec.cobbler_password)
            if not isinstance(token, str):
                raise LabError(f"cobblerd at {self.url} answered login with a {type(token).__name__}, not a token")
            self._token = token
        return self._token

    def item_names(self, kind: str, server: xmlrpc.client.ServerProxy | None = None) -> list[str]:
        """The names of every Cobbler item of *kind* ("distro", "profile", "system" ...)."""
        names = (server or self.proxy()).get_item_names(kind)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise LabError(f"cobblerd at {self.url} answered get_item_names({kind!r}) with something not a name list")
        return names

    # -- seeding -------------------------------------------------------------------------------

    def seed(self, layout: LabLayout) -> None:
        """A new Orchestra server: imported distros, the system pool, then setup-server with the kit (which
        registers the commissioning image too)."""
        self.import_distros(layout)
        self.add_systems(self.spec.all_systems())
        self.run_setup_server(layout)
        if self.spec.system_kind == "qemu":  # what an admin adds for a serial console; setup-server keeps it
            options = {"kernel_options": QEMU_KERNEL_OPTIONS}
            self.proxy().xapi_object_edit("distro", COMMISSIONING_NAME, "edit", options, self.token)

    def import_distros(self, layout: LabLayout) -> None:
        """What `cobbler import` leaves: a distro per LAB_PROFILES entry and a profile of the same name."""
        server = self.proxy()
        token = self.token
        kernel, initrd = ensure_distro_files(layout)
        existing_distros = set(self.item_names("distro", server))
        existing_profiles = set(self.item_names("profile", server))
        for series, arch in LAB_PROFILES:
            name = f"{series}-{arch}"
            distro = {
                "name": name,
                "kernel": str(kernel),
                "initrd": str(initrd),
                "arch": arch,
                "breed": "debian",
                "os_version": series,
            }
            if self.spec.system_kind == "qemu":  # the lab kernel talks on the VM's serial console
                distro["kernel_options"] = QEMU_KERNEL_OPTIONS
            server.xapi_object_edit("distro", name, "edit" if name in existing_distros else "add", distro, token)
            if name not in existing_profiles:
                profile = {"name": name, "distro": name, "autoinstall": IMPORT_AUTOINSTALL}
                server.xapi_object_edit("profile", name, "add", profile, token)

    def run_setup_server(self, layout: LabLayout) -> None:
        """``ensemble-orchestra setup-server`` against this Cobbler, as a separate process; output in its log."""
        argv = [sys.executable, "-m", "ensemble_orchestra.cli.orchestra", "setup-server"]
        argv += ["--cobbler", self.url, "--user", self.spec.cobbler_user]
        kernel, initrd = ensure_commissioning_files(layout)
        argv += ["--commissioning-kernel", str(kernel), "--commissioning-initrd", str(initrd)]
        argv += ["--commissioning-url", commissioning_url(self.spec, layout), "--commissioning-user"]
        argv += [self.spec.commissioning_user]
        env = {
            **os.environ,
            "ENSEMBLE_ORCHESTRA_PASSWORD": self.spec.cobbler_password,
            "ENSEMBLE_COMMISSIONING_PASSWORD": self.spec.commissioning_password,
        }
        log = layout.log_file("setup-server")
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log, "w") as out:
                done = subprocess.run(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=SETUP_SERVER_TIMEOUT,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise LabError(f"setup-server did not finish in {SETUP_SERVER_TIMEOUT:.0f} s: see {log}") from None
        if done.returncode != 0:
            lines = log.read_text().strip().splitlines()
            raise LabError(f"setup-server failed ({lines[-1] if lines else f'exit {done.returncode}'}): see {log}")

    def add_systems(self, systems: Iterable[SystemSpec]) -> None:
        token = self.token

        def add(system: SystemSpec) -> None:
            self.proxy().xapi_object_edit("system", system.name, "add", system_fields(system), token)

        with ThreadPoolExecutor(_SEED_WORKERS) as pool:
            list(pool.map(add, systems))

    def reset(self) -> None:
        """Back to the seeded pool: every system removed and re-added with its seeded fields.

        Profiles other than the seeded ones go; the seeded profiles (setup-server's ``<series>-<arch>``),
        the management classes, the preseed and the snippets stay as setup-server left them.
        """
        server = self.proxy()
        token = self.token
        names = self.item_names("system", server)

        def remove(name: str) -> None:
            self.proxy().remove_system(name, token)

        with ThreadPoolExecutor(_SEED_WORKERS) as pool:
            list(pool.map(remove, names))
        seeded = {f"{s}-{a}" for s, a in LAB_PROFILES} | {COMMISSIONING_NAME}
        for profile in self.item_names("profile", server):
            if profile not in seeded:
                server.remove_profile(profile, token)
        self.add_systems(self.spec.all_systems())

    # -- reading -------------------------------------------------------------------------------

    def system_records(self) -> list[dict[str, Any]]:
        """Every system record as Cobbler's ``get_systems`` gives it."""
        records = self.proxy().get_systems()
        if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
            raise LabError(f"cobblerd at {self.url} answered get_systems with something not a list of records")
        return records

    def systems(self) -> list[SystemRow]:
        rows = []
        for record in self.system_records():
            macs = [i.get("mac_address", "") for i in record.get("interfaces", {}).values()]
            rows.append(
                SystemRow(
                    name=record["name"],
                    profile=record.get("profile", ""),
                    mgmt_classes=tuple(record.get("mgmt_classes", [])),
                    netboot_enabled=bool(record.get("netboot_enabled")),
                    mac=macs[0] if macs else "",
                    hardware=_hardware(record.get("autoinstall_meta")),
                )
            )
        return sorted(rows, key=lambda r: r.name)


def _hardware(meta: Any) -> str:
    """One line of a system's commissioned hardware from its raw autoinstall_meta; "" if none."""
    try:
        hardware = hardware_of(meta) if isinstance(meta, dict) else None
    except MalformedReport:
        return "(unreadable)"
    return f"{hardware.summary()} at {hardware.commissioned}" if hardware else ""


def system_fields(system: SystemSpec) -> dict[str, object]:
    """The Cobbler 3 fields of a seeded lab system, for one `xapi_object_edit` add."""
    fields: dict[str, object] = {
        "name": system.name,
        "profile": f"{LAB_PROFILES[0][0]}-{system.arch}",
        "hostname": system.hostname,
        "mgmt_classes": [AVAILABLE_CLASS],
        "netboot_enabled": False,
        "interface": "eth0",
        "mac_address": system.mac,
        "ip_address": system.ip,
        "dns_name": system.hostname,
    }
    fields.update(cobbler_power_fields(system))
    return fields


def ensure_distro_files(layout: LabLayout) -> tuple[Path, Path]:
    """The lab distro's kernel and initrd.

    A QEMU lab puts the real kernel and initramfs here before seeding (``vm_image``); otherwise these are
    small files that only need to exist: Cobbler copies them into tftpboot, nothing boots them.
    """
    layout.distro_dir.mkdir(parents=True, exist_ok=True)
    kernel = layout.distro_dir / "vmlinuz"
    initrd = layout.distro_dir / "initrd.gz"
    for path, label in ((kernel, b"ensemble lab kernel placeholder\n"), (initrd, b"ensemble lab initrd placeholder\n")):
        if not path.exists():
            path.write_bytes(label)
    return kernel, initrd


def ensure_commissioning_files(layout: LabLayout) -> tuple[Path, Path]:
    """The commissioning image's kernel and initrd in the lab distro directory.

    A QEMU lab copies the real image there first (``Lab._prepare_qemu``); otherwise these are placeholders:
    process and container systems report their configured hardware without booting it.
    """
    (layout.distro_dir / COMMISSIONING_KERNEL).parent.mkdir(parents=True, exist_ok=True)
    kernel = layout.distro_dir / COMMISSIONING_KERNEL
    initrd = layout.distro_dir / COMMISSIONING_INITRD
    for path in (kernel, initrd):
        if not path.exists():
            path.write_bytes(b"ensemble lab commissioning image placeholder\n")
    return kernel, initrd


def commissioning_url(spec: LabSpec, layout: LabLayout) -> str:
    """The storage's report area as the lab's systems reach it (QEMU: the host's loopback is 10.0.2.2)."""
    host = GUEST_HOST if spec.system_kind == "qemu" else spec.server_address(layout.root)
    return f"http://{host}:{spec.webdav_port}{WEBDAV_PATH}/{REPORT_AREA}"


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: str | tuple[str, dict[str, str]]) -> HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn
