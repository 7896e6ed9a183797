"""Helpers for tests and benchmarks that need a running lab (public: other tools may use them)."""

from __future__ import annotations

import random
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lab import Lab
from .layout import LAB_HOST, LabLayout, LabSpec
from .ports import port_free
from .programs.system_files import power_on_ignored_flag
from .seed import LabCobbler

__all__ = ["RunningLab", "free_base_port", "start_lab"]


def free_base_port(systems: int, *, low: int = 30000, high: int = 60000, tries: int = 200) -> int:
    """A base port whose whole port plan (TCP and UDP) is free on loopback right now."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(low, high - systems - 20, 20)
        spec = LabSpec(base_port=base, systems=systems)
        if all(port_free(p) for p in spec.tcp_ports()) and all(
            port_free(p, socket.SOCK_DGRAM) for p in spec.udp_ports()
        ):
            return base
    raise RuntimeError("no free port range found for a lab")


@dataclass
class RunningLab:
    """A lab started for tests: its spec, layout and an administrator's Cobbler session."""

    lab: Lab
    spec: LabSpec

    @property
    def layout(self) -> LabLayout:
        return self.lab.layout

    @property
    def cobbler_url(self) -> str:
        return f"http://{LAB_HOST}:{self.spec.xmlrpc_port}/RPC2"

    def cobbler(self) -> xmlrpc.client.ServerProxy:
        return LabCobbler(self.spec).proxy()

    def token(self) -> str:
        return LabCobbler(self.spec).token

    def system_dir(self, name: str) -> Path:
        return self.layout.system_dir(name)

    def secrets(self) -> list[str]:
        """Every password of the lab (Cobbler, storage, admin secret, each BMC): none may ever be printed or logged."""
        spec = self.spec
        bmc_passwords = [s.bmc_password for s in spec.all_systems()]
        return [spec.cobbler_password, spec.storage_password, spec.admin_secret, *bmc_passwords]

    def make_bmc_unreachable(self, name: str) -> None:
        """Point *name*'s power settings at a UDP port of the lab's plan that nothing listens on."""
        dead = f"ipport={self.spec.base_port + 19}\nlanplus=1\ncipher=3"
        self.cobbler().xapi_object_edit("system", name, "edit", {"power_options": dead}, self.token())


    def make_bmc_ignore_power_on(self, name: str, ignore: bool = True) -> None:
        """*name*'s BMC accepts "power on" but the server never comes up (it reports off, truthfully)."""
        flag = power_on_ignored_flag(self.system_dir(name))
        if ignore:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


def start_lab(root: Path, systems: int = 8, env_name: str | None = None, **spec_fields: Any) -> RunningLab:
    """Start a lab in *root* on free ports; the caller stops it with ``running.lab.down()``.

    *spec_fields* set other LabSpec fields (e.g. ``token_lifetime`` for fault drills).
    """
    lab = Lab(root)
    spec = lab.up(LabSpec(base_port=free_base_port(systems), systems=systems, **spec_fields), env_name=env_name)
    return RunningLab(lab=lab, spec=spec)


def process_table() -> dict[int, tuple[str, int]]:
    """Every process now, from /proc: pid → (command name, parent pid). For tests that check what is left."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        name, rest = stat.split(" (", 1)[1].rsplit(") ", 1)
        table[int(entry.name)] = (name, int(rest.split()[1]))
    return table
