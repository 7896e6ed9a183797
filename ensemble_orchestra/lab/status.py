"""What ``lab status`` reports: each server's pid, address and log; each system's power and Cobbler record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import bmc, processes, webdav
from .layout import LAB_HOST, LabLayout, LabSpec
from .programs import container_system, qemu_system, system_files
from .seed import LabCobbler, SystemRow

__all__ = ["LabStatus", "ServerStatus", "SystemStatus", "lab_status", "server_addresses"]


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
    vm_state: str | None = None  # QEMU labs: qemu_system.vm_state(); container labs: container_system.describe()
    console: Path | None = None  # QEMU and container labs: the system's console log
    ip: str | None = None  # container labs: its address on the lab bridge
    cloud_init_log: Path | None = None  # container labs: cloud-init's output, on the system's disk


@dataclass(frozen=True)
class LabStatus:
    root: Path
    servers: list[ServerStatus]
    systems: list[SystemStatus]
    cobbler_error: str | None

    @property
    def running(self) -> bool:
        return all(s.pid is not None for s in self.servers)


def server_addresses(spec: LabSpec, root: Path | None = None) -> dict[str, str]:
    """Every server process of the lab, by its pid-file name, with the address it serves (cobblerd first)."""
    servers = {
        "cobblerd": f"http://{LAB_HOST}:{spec.xmlrpc_port}/RPC2",
        "cobbler-svc": f"http://{LAB_HOST}:{spec.http_port}/cblr/svc/",
        "webdav": webdav.webdav_url(spec),
    }
    if spec.system_kind == "qemu":
        servers["phone-home"] = f"http://{LAB_HOST}:{spec.phone_home_port}/phone-home/"
    if spec.system_kind == "container" and root is not None:
        servers["package-proxy"] = f"http://{spec.server_address(root)}:{spec.package_proxy_port}/"
    servers.update({f"bmc-{s.name}": f"udp://{LAB_HOST}:{s.bmc_port}" for s in spec.all_systems()})
    return servers


def lab_status(layout: LabLayout, spec: LabSpec) -> LabStatus:
    """Read from pid files, Cobbler (if cobblerd runs) and each system's directory; never raises for Cobbler."""
    servers = [
        ServerStatus(
            name=name,
            pid=processes.running_pid(layout.pid_file(name)),
            address=address,
            log=layout.log_file(name),
        )
        for name, address in server_addresses(spec, layout.root).items()
    ]
    rows: dict[str, SystemRow] = {}
    cobbler_error = None
    if servers[0].pid is not None:
        try:
            rows = {row.name: row for row in LabCobbler(spec, timeout=10).systems()}
        except Exception as exc:  # status must report, not crash
            cobbler_error = f"{type(exc).__name__}: {exc}"
    qemu, container = spec.system_kind == "qemu", spec.system_kind == "container"
    systems = []
    for s in spec.all_systems():
        system_dir = layout.system_dir(s.name)
        power_on = bmc.power_is_on(system_dir)
        systems.append(
            SystemStatus(
                name=s.name,
                power_on=power_on,
                bmc=f"{LAB_HOST}:{s.bmc_port}",
                cobbler=rows.get(s.name),
                vm_state=(
                    qemu_system.vm_state(system_dir, power_on)
                    if qemu
                    else container_system.describe(system_dir, power_on)
                    if container
                    else None
                ),
                console=system_files.console_log(system_dir) if qemu or container else None,
                ip=s.ip if container else None,
                cloud_init_log=container_system.cloud_init_log(system_dir) if container else None,
            )
        )
    return LabStatus(root=layout.root, servers=servers, systems=systems, cobbler_error=cobbler_error)
