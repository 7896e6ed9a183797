"""Where a unit lives on its machine: one directory per unit, made by the machine agent, used by the unit agent.

/var/lib/ensemble/units/<service>-<n>/
    unit.yaml    the machine agent's record: unit name, charm id, bundle sha256
    charm/       the unpacked bundle (CHARM_DIR: the hooks' working directory)
    state.yaml   the unit agent's lifecycle state (survives restarts)
    agent.sock   the hook tools' socket (0600, the directory 0700)
    tools/       the hook tools (config-get, open-port, juju-log ...), first on the hooks' PATH
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..state.layout import unit_key

__all__ = ["UNITS_DIR", "UnitPaths", "unit_name_of_dir"]

UNITS_DIR = Path("/var/lib/ensemble/units")


def unit_name_of_dir(name: str) -> str | None:
    service, _, number = name.rpartition("-")
    return f"{service}/{number}" if service and number.isdigit() else None


@dataclass(frozen=True)
class UnitPaths:
    root: Path

    @classmethod
    def of(cls, unit_name: str, units_dir: Path = UNITS_DIR) -> UnitPaths:
        return cls(units_dir / unit_key(unit_name))

    @property
    def record(self) -> Path:
        return self.root / "unit.yaml"

    @property
    def charm(self) -> Path:
        return self.root / "charm"

    @property
    def state(self) -> Path:
        return self.root / "state.yaml"

    @property
    def socket(self) -> Path:
        return self.root / "agent.sock"

    @property
    def tools(self) -> Path:
        return self.root / "tools"
