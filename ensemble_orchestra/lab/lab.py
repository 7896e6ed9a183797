"""One lab: bring its real servers up, report on them, reset them, take them down.

`up` either ends with every server running and ready, or stops what it started
and raises LabError with one line naming the failing part and its log.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..commissioning.image import build_commissioning_image
from ..home import environments_file
from . import bmc, cobbler_server, container_lab, processes, seed, vm_image, webdav
from .envfile import lab_environment, merge_environment
from .errors import LabError
from .layout import LAB_HOST, LabLayout, LabSpec, SystemSpec
from .ports import tcp_listening
from .prerequisites import check_prerequisites
from .programs import phone_home, qemu_system, system_files
from .seed import LabCobbler
from .sshkey import ensure_lab_key
from .status import LabStatus, lab_status

__all__ = ["Lab", "LabError", "LabStatus"]

START_TIMEOUT = 30.0

# The PXELINUX files a PXE client fetches first from the TFTP root (Cobbler 3.3's sync does not put them there).
_PXE_LOADERS = ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32")


@dataclass(frozen=True)
class _ServerPlan:
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None


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
            subnet = spec.subnet or saved.subnet  # a subnet asked for now, else the one chosen before
            if (saved.base_port, saved.systems, saved.system_kind, saved.subnet) != (
                spec.base_port,
                spec.systems,
                spec.system_kind,
                subnet,
            ):
                # A different port plan, pool, kind of systems or subnet: keep the credentials, start afresh.
                self._wipe_state()
            spec = dataclasses.replace(
                saved, base_port=spec.base_port, systems=spec.systems, system_kind=spec.system_kind, subnet=subnet
            )
        check_prerequisites(spec)
        if spec.system_kind == "container":
            spec = container_lab.plan(self.layout, spec)
        boot_files = self._qemu_boot_files() if spec.system_kind == "qemu" else None
        venv = self._cobbler_venv()
        spec.save(self.layout.spec_file)
        ensure_lab_key(self.layout.ssh_dir)
        try:
            image = None
            if spec.system_kind == "container":
                image = container_lab.base_image()
                container_lab.start_network(self.layout, spec)
                container_lab.package_proxy(self.layout, spec).check_can_listen()
            self._start_all(spec, venv, boot_files, image)
            admin = LabCobbler(spec)
            seeded_marker = self.layout.root / "seeded"
            if not seeded_marker.exists():
                admin.seed(self.layout)
                seeded_marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        except BaseException:
            self.down()
            raise
        if env_name:
            merge_environment(environments_file(), env_name, lab_environment(spec, self.layout))
        return spec

    def _wipe_state(self) -> None:
        for sub in ("cobbler", "cobbler-code", "systems", "webdav", "webdav-data", "distro", "package-proxy", "seeded"):
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

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        processes.start_process(argv, self.layout.pid_file(name), self.layout.log_file(name), env=env)

    def _await(self, name: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
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
                cobbler_server.svc_argv(layout, spec, venv), lambda: tcp_listening(spec.http_port), env
            ),
            "webdav": lambda: _ServerPlan(webdav.write_webdav_config(layout, spec), lambda: webdav.webdav_ready(spec)),
        }
        if spec.system_kind == "qemu":
            argv = [sys.executable, "-m", phone_home.__name__, "--host", LAB_HOST, "--port", str(spec.phone_home_port)]
            argv += ["--systems", str(layout.systems_dir)]
            plans["phone-home"] = lambda: _ServerPlan(argv, lambda: tcp_listening(spec.phone_home_port))
        if spec.system_kind == "container":
            proxy = container_lab.package_proxy(layout, spec)
            plans["package-proxy"] = lambda: _ServerPlan(proxy.write_config(), proxy.ready)
        for system in spec.all_systems():
            plans[f"bmc-{system.name}"] = _bmc_plan(layout, system)
        return plans

    def _qemu_boot_files(self) -> vm_image.BootFiles:
        try:
            return vm_image.build_boot_files()
        except vm_image.ImageError as exc:
            raise LabError(f"cannot build the QEMU systems' kernel and initramfs: {exc}") from None

    def _commissioning_image(self) -> tuple[Path, Path]:
        try:
            return build_commissioning_image()
        except vm_image.ImageError as exc:
            raise LabError(f"cannot build the commissioning image: {exc}") from None

    def _prepare_qemu(self, spec: LabSpec, boot: vm_image.BootFiles) -> None:
        """The lab distro's kernel and initramfs, PXELINUX in tftpboot, a disk per system that has none."""
        layout = self.layout
        layout.distro_dir.mkdir(parents=True, exist_ok=True)
        for source, name in ((boot.kernel, "vmlinuz"), (boot.initrd, "initrd.gz")):
            shutil.copyfile(source, layout.distro_dir / name)
        # The commissioning image, under the names setup-server registered (copied over in place: Cobbler's
        # TFTP copies are hard links, so a rebuilt image is what the systems boot next).
        kernel, initrd = self._commissioning_image()
        (layout.distro_dir / seed.COMMISSIONING_KERNEL).parent.mkdir(exist_ok=True)
        shutil.copyfile(kernel, layout.distro_dir / seed.COMMISSIONING_KERNEL)
        shutil.copyfile(initrd, layout.distro_dir / seed.COMMISSIONING_INITRD)
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

    def _start_all(
        self, spec: LabSpec, venv: Path, boot: vm_image.BootFiles | None = None, image: Path | None = None
    ) -> None:
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        cobbler_server.prepare_cobbler(self.layout, spec, venv)
        plans = {name: make() for name, make in self._plans(spec, venv).items()}
        for system in spec.all_systems():  # how each system boots: its MAC's PXE config under Cobbler's tftpboot
            own = {} if image is None else container_lab.system_settings(self.layout, spec, system, image)
            system_files.write_settings(
                self.layout.system_dir(system.name),
                name=system.name,
                mac=system.mac,
                tftpboot=self.layout.tftpboot,
                system_kind=spec.system_kind,
                memory_mb=system.memory_mb,
                cpus=system.cpus,
                **own,
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
        if self.layout.spec_file.exists():  # a container lab's bridge goes last, once no system uses it
            container_lab.stop_network(self.layout, self.spec())
        return stopped

    def reset(self) -> None:
        """Back to the seeded state: systems powered off, Cobbler's pool re-seeded, storage emptied."""
        spec = self.spec()
        if not self.is_running():
            raise LabError(f"the lab in {self.layout.root} is not running: 'lab up' starts it")
        boot = self._qemu_boot_files() if spec.system_kind == "qemu" else None
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
        return lab_status(self.layout, self.spec())


def _bmc_plan(layout: LabLayout, system: SystemSpec) -> Callable[[], _ServerPlan]:
    """The plan of one system's BMC: its ipmi_sim, ready once it answers a presence ping."""

    def plan() -> _ServerPlan:
        argv = bmc.write_bmc_config(layout.system_dir(system.name), system, sys.executable)
        return _ServerPlan(argv, lambda: bmc.bmc_ready(system, timeout=0.5))

    return plan
