"""Where a lab keeps its files and which loopback ports it uses.

One lab lives in one directory; everything it runs binds to 127.0.0.1 on ports
derived from a single base port, so two labs side by side only need two
directories and two bases.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from ..home import ensemble_home
from .network import LabNetwork, bridge_name, system_address

__all__ = ["LAB_HOST", "LabLayout", "LabSpec", "SystemSpec", "default_lab_dir"]

LAB_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 25150
DEFAULT_SYSTEMS = 8


def default_lab_dir() -> Path:
    """The lab directory: $ENSEMBLE_LAB_DIR, else ``lab`` in the Ensemble home.

    As root the default is /var/lib/ensemble/lab instead: Apache's workers then run as
    www-data and must be able to reach the WebDAV data, which a 0700 /root forbids.
    """
    env = os.environ.get("ENSEMBLE_LAB_DIR")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/ensemble/lab")
    return ensemble_home() / "lab"


@dataclass(frozen=True)
class SystemSpec:
    """One seeded lab system and its BMC."""

    name: str
    index: int
    mac: str
    ip: str
    hostname: str
    bmc_port: int
    bmc_user: str
    bmc_password: str
    arch: str = "x86_64"
    # The hardware a QEMU system is given and a process or container system reports when commissioned.
    memory_mb: int = 256
    cpus: int = 1


@dataclass
class LabSpec:
    """What a lab was created with; saved as lab.json (mode 0600: it holds the lab's passwords)."""

    base_port: int = DEFAULT_BASE_PORT
    systems: int = DEFAULT_SYSTEMS
    cobbler_user: str = "ensemble"
    cobbler_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    storage_user: str = "ensemble"
    storage_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    # The one credential commissioning images carry: PUT into commissioning/incoming/ only (docs/commissioning.md).
    commissioning_user: str = "ensemble-commissioning"
    commissioning_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    admin_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    bmc_password_seed: str = field(default_factory=lambda: secrets.token_hex(8))
    token_lifetime: int = 3600
    # What a BMC power on starts (programs/system_files.SYSTEM_KINDS): a "process" system or a "qemu" VM.
    # Not "machines": a machine is what Ensemble runs on a system. lab.json of older labs says machines=...
    system_kind: str = "process"
    # Container labs: the subnet of the lab's bridge (chosen at the first lab up, then kept); None otherwise.
    subnet: str | None = None

    # Port plan: base+1 XML-RPC, base+2 Cobbler's svc/HTTP, base+3 WebDAV, base+4 phone home (QEMU labs),
    # base+10+i the BMC of system i.
    @property
    def xmlrpc_port(self) -> int:
        return self.base_port + 1

    @property
    def http_port(self) -> int:
        return self.base_port + 2

    @property
    def webdav_port(self) -> int:
        return self.base_port + 3

    @property
    def phone_home_port(self) -> int:
        return self.base_port + 4

    @property
    def package_proxy_port(self) -> int:
        """Container labs' apt-cacher-ng: base+5, folded below 32768 (apt-cacher-ng 3.7 never listens above)."""
        port = self.base_port + 5
        return port if port <= 32767 else 20000 + port % 12000

    def bmc_port(self, index: int) -> int:
        return self.base_port + 10 + index

    def tcp_ports(self) -> list[int]:
        return [self.xmlrpc_port, self.http_port, self.webdav_port, self.phone_home_port, self.package_proxy_port]

    def udp_ports(self) -> list[int]:
        return [self.bmc_port(i) for i in range(self.systems)]

    def system(self, index: int) -> SystemSpec:
        n = index + 1
        return SystemSpec(
            name=f"node{n:03d}",
            index=index,
            mac=f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}",
            ip=self._ip(index),
            hostname=f"node{n:03d}.lab.ensemble",
            bmc_port=self.bmc_port(index),
            bmc_user="root",
            # Every BMC has its own password, derived so a reset can recreate it.
            bmc_password=_derive(self.bmc_password_seed, n),
            # Sizes differ from system to system, so constraints have something to choose between:
            # node001 256 MiB/1 CPU, node002 384/2, node003 512/1, node004 256/2, node005 384/1, node006 512/2 ...
            memory_mb=256 + 128 * (index % 3),
            cpus=1 + index % 2,
        )

    def _ip(self, index: int) -> str:
        """A container system's address on the bridge; a nominal one elsewhere (Cobbler records it, nobody uses it)."""
        if self.subnet:
            return str(system_address(IPv4Network(self.subnet), index))
        n = index + 1
        return f"10.0.{(n >> 8) & 0xFF}.{n & 0xFF}"

    def network(self, root: Path) -> LabNetwork | None:
        """The bridge and subnet of a container lab rooted at *root*; None for other kinds."""
        if self.system_kind != "container" or not self.subnet:
            return None
        return LabNetwork(bridge_name(root), IPv4Network(self.subnet))

    def server_address(self, root: Path) -> str:
        """Where the lab's systems find the Orchestra server: the bridge address in a container lab."""
        network = self.network(root)
        return str(network.bridge_address) if network else LAB_HOST

    def all_systems(self) -> list[SystemSpec]:
        return [self.system(i) for i in range(self.systems)]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self), out, indent=2)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabSpec:
        saved = json.loads(path.read_text())
        if "machines" in saved:  # saved before the setting was renamed system_kind
            saved.setdefault("system_kind", saved.pop("machines"))
        return cls(**saved)


def _derive(seed: str, n: int) -> str:
    return hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LabLayout:
    """The paths inside one lab directory."""

    root: Path

    @property
    def spec_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def run_dir(self) -> Path:
        """Pid files of every process the lab started."""
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def cobbler_root(self) -> Path:
        """Cobbler's file-system root: etc/cobbler, var/lib/cobbler, srv/tftpboot ... live below it."""
        return self.root / "cobbler"

    @property
    def cobbler_code(self) -> Path:
        """The lab's copy of Cobbler's Python package, its absolute paths pointed into cobbler_root."""
        return self.root / "cobbler-code"

    @property
    def tftpboot(self) -> Path:
        return self.cobbler_root / "srv" / "tftpboot"

    @property
    def distro_dir(self) -> Path:
        """Kernel and initrd of the lab distro."""
        return self.root / "distro"

    @property
    def webdav_dir(self) -> Path:
        """Apache's ServerRoot and config for the lab's WebDAV storage."""
        return self.root / "webdav"

    @property
    def ssh_dir(self) -> Path:
        """The lab's SSH key pair (see sshkey.py)."""
        return self.root / "ssh"

    @property
    def webdav_data(self) -> Path:
        """The directory the WebDAV storage serves."""
        return self.root / "webdav-data"

    @property
    def systems_dir(self) -> Path:
        """Per-system directories: BMC config, power state, the booted system's records and disk."""
        return self.root / "systems"

    def system_dir(self, name: str) -> Path:
        return self.systems_dir / name

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"
