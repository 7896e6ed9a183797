"""One lab: bring its real servers up, report on them, reset them, take them down.

`up` either ends with every server running and ready, or stops what it started
and raises LabError with one line naming the failing part and its log.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnsembleError
from . import bmc, cobbler_server, processes, vm_image, webdav
from .envfile import lab_environment, merge_environment
from .layout import LAB_HOST, LabLayout, LabSpec
from .programs import phone_home, qemu_system, system_files
from .seed import LabCobbler, SystemRow
from .sshkey import ensure_lab_key

__all__ = ["Lab", "LabError", "LabStatus", "ServerStatus", "SystemStatus"]

START_TIMEOUT = 30.0

# Debian package that provides each program the lab needs, for the error that says what to install.
_REQUIRED_PROGRAMS = {
    "ipmi_sim": "openipmi",
    "ipmitool": "ipmitool",
    "fence_ipmilan": "fence-agents",
    "apache2": "apache2",
    "rsync": "rsync",
}
# ... and what QEMU lab systems need (programs and files).
_QEMU_PROGRAMS = {
    qemu_system.QEMU: "qemu-system-x86",
    "mkfs.vfat": "dosfstools",
    "syslinux": "syslinux",
    "mcopy": "mtools",
    "busybox": "busybox-static",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}
_QEMU_FILES = {
    "/usr/lib/ipxe/qemu/efi-virtio.rom": "ipxe-qemu",
    "/usr/lib/PXELINUX/pxelinux.0": "pxelinux",
    "/usr/lib/syslinux/modules/bios/ldlinux.c32": "syslinux-common",
}
# The PXELINUX files a PXE client fetches first from the TFTP root (Cobbler 3.3's sync does not put them there).
_PXE_LOADERS = ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32")


@dataclass(frozen=True)
class _ServerPlan:
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None


class LabError(EnsembleError):
    """A lab operation failed; str() is one line saying what and what to do."""


@dataclass(frozen=True)
class ServerStatus:
    name: str
    pid: int | None
    address: str
    log: Path


@dataclass(frozen=True)
class SystemStatus:
    name: str
    power_on: bool
    bmc: str
    cobbler: SystemRow | None
    vm_state: str | None = None  # QEMU labs: qemu_system.vm_state()
    console: Path | None = None  # QEMU labs: the VM's serial console log


@dataclass(frozen=True)
class LabStatus:
    root: Path
    servers: list[ServerStatus]
    systems: list[SystemStatus]
    cobbler_error: str | None

    @property
    def running(self) -> bool:
        return all(s.pid is not None for s in self.servers)


def _find_program(name: str) -> str | None:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _port_free(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether *port* (TCP or UDP) can be bound on the lab's address right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LAB_HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _tcp_listening(port: int) -> bool:
    try:
        with socket.create_connection((LAB_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Lab:
    """The lab rooted at one directory."""

    def __init__(self, root: Path) -> None:
        self.layout = LabLayout(root.resolve())

    # -- bookkeeping -------------------------------------------------------------------------

    def spec(self) -> LabSpec:
        try:
            return LabSpec.load(self.layout.spec_file)
        except FileNotFoundError:
            raise LabError(f"no lab in {self.layout.root}: run 'ensemble-orchestra lab up' first") from None

    def _servers(self, spec: LabSpec) -> dict[str, str]:
        """Every server process of the lab, by its pid-file name, with the address it serves."""
        servers = {
            "cobblerd": f"http://{LAB_HOST}:{spec.xmlrpc_port}/RPC2",
            "cobbler-svc": f"http://{LAB_HOST}:{spec.http_port}/cblr/svc/",
            "webdav": webdav.webdav_url(spec),
        }
        if spec.machines == "qemu":
            servers["phone-home"] = f"http://{LAB_HOST}:{spec.phone_home_port}/phone-home/"
        servers.update({f"bmc-{s.name}": f"udp://{LAB_HOST}:{s.bmc_port}" for s in spec.all_systems()})
        return servers

    def is_running(self) -> bool:
        if not self.layout.run_dir.is_dir():
            return False
        return any(processes.running_pid(p) for p in self.layout.run_dir.glob("*.pid"))

    # -- up ----------------------------------------------------------------------------------

    def up(self, spec: LabSpec, env_name: str | None = "lab") -> LabSpec:
        """Start every server of the lab (creating and seeding it the first time)."""
        if self.is_running():
            raise LabError(
                f"a lab is already running in {self.layout.root}: 'lab status' shows it, 'lab down' stops it"
            )
        if self.layout.spec_file.exists():
            saved = LabSpec.load(self.layout.spec_file)
            if (saved.base_port, saved.systems, saved.machines) != (spec.base_port, spec.systems, spec.machines):
                # A different port plan, pool size or kind of systems: keep the credentials, start afresh otherwise.
                self._wipe_state()
            spec = dataclasses.replace(saved, base_port=spec.base_port, systems=spec.systems, machines=spec.machines)
        self._check_prerequisites(spec)
        boot_files = self._qemu_boot_files() if spec.machines == "qemu" else None
        venv = self._cobbler_venv()
        spec.save(self.layout.spec_file)
        ensure_lab_key(self.layout.ssh_dir)
        try:
            self._start_all(spec, venv, boot_files)
            admin = LabCobbler(spec)
            seeded_marker = self.layout.root / "seeded"
            if not seeded_marker.exists():
                admin.seed(self.layout)
                seeded_marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        except BaseException:
            self.down()
            raise
        if env_name:
            from ..home import environments_file

            merge_environment(environments_file(), env_name, lab_environment(spec, self.layout))
        return spec

    def _wipe_state(self) -> None:
        for sub in ("cobbler", "cobbler-code", "systems", "webdav", "webdav-data", "distro", "seeded"):
            path = self.layout.root / sub
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _cobbler_venv(self) -> Path:
        try:
            return cobbler_server.cobbler_venv()
        except cobbler_server.CobblerNotInstalled as exc:
            raise LabError(str(exc)) from None

    def _check_prerequisites(self, spec: LabSpec) -> None:
        packages = {pkg for prog, pkg in _REQUIRED_PROGRAMS.items() if _find_program(prog) is None}
        if spec.machines == "qemu":
            packages |= {pkg for prog, pkg in _QEMU_PROGRAMS.items() if _find_program(prog) is None}
            packages |= {pkg for path, pkg in _QEMU_FILES.items() if not Path(path).exists()}
        missing = sorted(packages)
        if missing:
            raise LabError(
                f"missing Debian package(s) {', '.join(missing)}: run scripts/install"
                f" (or apt-get install {' '.join(missing)})"
            )
        labels = {spec.xmlrpc_port: "Cobbler XML-RPC", spec.http_port: "Cobbler HTTP", spec.webdav_port: "WebDAV"}
        if spec.machines == "qemu":
            labels[spec.phone_home_port] = "phone home"
        for port, label in labels.items():
            if not _port_free(port):
                raise LabError(
                    f"port {port} ({label}) on {LAB_HOST} is in use: stop what holds it or choose another --base-port"
                )
        for system in spec.all_systems():
            if not _port_free(system.bmc_port, socket.SOCK_DGRAM):
                raise LabError(
                    f"UDP port {system.bmc_port} (BMC of {system.name}) on {LAB_HOST} is in use:"
                    " choose another --base-port"
                )

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        processes.start_process(argv, self.layout.pid_file(name), self.layout.log_file(name), env=env)

    def _await(self, name: str, ready, timeout: float = START_TIMEOUT) -> None:  # type: ignore[no-untyped-def]
        pid_file = self.layout.pid_file(name)
        ok = processes.wait_until(ready, timeout=timeout, alive=lambda: processes.running_pid(pid_file) is not None)
        if not ok:
            state = "exited" if processes.running_pid(pid_file) is None else f"was not ready after {timeout:.0f} s"
            raise LabError(f"{name} {state}: see {self.layout.log_file(name)}")

    def _plans(self, spec: LabSpec, venv: Path) -> dict[str, Callable[[], _ServerPlan]]:
        """How to start each server of the lab and how to tell it is ready, by pid-file name.

        A plan is made (its configuration files written) only when called, so restarting one server
        does not rewrite every BMC's and Apache's configuration.
        """
        layout = self.layout
        env = cobbler_server.cobbler_env(layout)
        admin = LabCobbler(spec)
        plans: dict[str, Callable[[], _ServerPlan]] = {
            "cobblerd": lambda: _ServerPlan(cobbler_server.cobblerd_argv(layout, venv), admin.ping, env),
            "cobbler-svc": lambda: _ServerPlan(
                cobbler_server.svc_argv(layout, spec, venv), lambda: _tcp_listening(spec.http_port), env
            ),
            "webdav": lambda: _ServerPlan(webdav.write_webdav_config(layout, spec), lambda: webdav.webdav_ready(spec)),
        }
        if spec.machines == "qemu":
            argv = [sys.executable, "-m", phone_home.__name__, "--host", LAB_HOST, "--port", str(spec.phone_home_port)]
            argv += ["--systems", str(layout.systems_dir)]
            plans["phone-home"] = lambda: _ServerPlan(argv, lambda: _tcp_listening(spec.phone_home_port))
        for system in spec.all_systems():
            plans[f"bmc-{system.name}"] = lambda s=system: _ServerPlan(
                bmc.write_bmc_config(layout.system_dir(s.name), s, sys.executable),
                lambda: bmc.bmc_ready(s, timeout=0.5),
            )
        return plans

    def _qemu_boot_files(self) -> vm_image.BootFiles:
        try:
            return vm_image.build_boot_files()
        except vm_image.ImageError as exc:
            raise LabError(f"cannot build the QEMU systems' kernel and initramfs: {exc}") from None

    def _prepare_qemu(self, spec: LabSpec, boot: vm_image.BootFiles) -> None:
        """The lab distro's kernel and initramfs, PXELINUX in tftpboot, a disk per system that has none."""
        layout = self.layout
        layout.distro_dir.mkdir(parents=True, exist_ok=True)
        for source, name in ((boot.kernel, "vmlinuz"), (boot.initrd, "initrd.gz")):
            shutil.copyfile(source, layout.distro_dir / name)
        for loader in _PXE_LOADERS:
            shutil.copyfile(loader, layout.tftpboot / Path(loader).name)
        for system in spec.all_systems():
            disk = qemu_system.disk_image(layout.system_dir(system.name))
            if not disk.exists():
                self._make_disk(spec, system.name, boot)

    def _make_disk(self, spec: LabSpec, name: str, boot: vm_image.BootFiles) -> None:
        url = f"http://{qemu_system.GUEST_HOST}:{spec.phone_home_port}/phone-home/{name}"
        try:
            vm_image.make_disk(qemu_system.disk_image(self.layout.system_dir(name)), boot, url)
        except vm_image.ImageError as exc:
            raise LabError(f"cannot make the disk of {name}: {exc}") from None

    def _start_all(self, spec: LabSpec, venv: Path, boot: vm_image.BootFiles | None = None) -> None:
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        cobbler_server.prepare_cobbler(self.layout, spec, venv)
        plans = {name: make() for name, make in self._plans(spec, venv).items()}
        for system in spec.all_systems():  # how each system boots: its MAC's PXE config under Cobbler's tftpboot
            system_files.write_settings(
                self.layout.system_dir(system.name),
                name=system.name,
                mac=system.mac,
                tftpboot=self.layout.tftpboot,
                system_kind=spec.machines,
            )
        if boot is not None:
            self._prepare_qemu(spec, boot)
        for name, plan in plans.items():  # everything starts in parallel; then wait for each to answer
            self._start(name, plan.argv, plan.env)
        for name, plan in plans.items():
            self._await(name, plan.ready)

    def stop_server(self, name: str) -> bool:
        """Stop one server of a running lab (fault drills); False if it was not running."""
        return processes.stop_process(self.layout.pid_file(name))

    def start_server(self, name: str) -> None:
        """Start one stopped server of the lab again and wait until it answers."""
        spec = self.spec()
        plans = self._plans(spec, self._cobbler_venv())
        if name not in plans:
            raise LabError(f"the lab has no server '{name}' (servers: {', '.join(plans)})")
        plan = plans[name]()
        if processes.running_pid(self.layout.pid_file(name)) is None:
            self._start(name, plan.argv, plan.env)
        self._await(name, plan.ready)

    # -- down / reset ------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every process this lab recorded (booted systems first); safe to run twice."""
        stopped = []
        if self.layout.systems_dir.is_dir():
            for system_dir in sorted(self.layout.systems_dir.iterdir()):
                if bmc.power_off(system_dir):
                    stopped.append(f"system {system_dir.name}")
        if self.layout.run_dir.is_dir():
            for pid_file in sorted(self.layout.run_dir.glob("*.pid")):
                if processes.stop_process(pid_file):
                    stopped.append(pid_file.stem)
        return stopped

    def reset(self) -> None:
        """Back to the seeded state: systems powered off, Cobbler's pool re-seeded, storage emptied."""
        spec = self.spec()
        if not self.is_running():
            raise LabError(f"the lab in {self.layout.root} is not running: 'lab up' starts it")
        boot = self._qemu_boot_files() if spec.machines == "qemu" else None
        for system in spec.all_systems():
            system_dir = self.layout.system_dir(system.name)
            bmc.power_off(system_dir)
            shutil.rmtree(system_files.disk_dir(system_dir), ignore_errors=True)  # a wiped disk: nothing installed
            system_files.install_log(system_dir).unlink(missing_ok=True)
            phone_home.phone_home_log(system_dir).unlink(missing_ok=True)
            if boot is not None:
                self._make_disk(spec, system.name, boot)
        LabCobbler(spec).reset()
        webdav.clear_webdav_data(self.layout)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> LabStatus:
        spec = self.spec()
        servers = [
            ServerStatus(
                name=name,
                pid=processes.running_pid(self.layout.pid_file(name)),
                address=address,
                log=self.layout.log_file(name),
            )
            for name, address in self._servers(spec).items()
        ]
        rows: dict[str, SystemRow] = {}
        cobbler_error = None
        if servers[0].pid is not None:
            try:
                rows = {row.name: row for row in LabCobbler(spec, timeout=10).systems()}
            except Exception as exc:  # status must report, not crash
                cobbler_error = f"{type(exc).__name__}: {exc}"
        systems = []
        for s in spec.all_systems():
            system_dir = self.layout.system_dir(s.name)
            power_on = bmc.power_is_on(system_dir)
            qemu = spec.machines == "qemu"
            systems.append(
                SystemStatus(
                    name=s.name,
                    power_on=power_on,
                    bmc=f"{LAB_HOST}:{s.bmc_port}",
                    cobbler=rows.get(s.name),
                    vm_state=qemu_system.vm_state(system_dir, power_on) if qemu else None,
                    console=system_files.console_log(system_dir) if qemu else None,
                )
            )
        return LabStatus(root=self.layout.root, servers=servers, systems=systems, cobbler_error=cobbler_error)
