"""``ensemble-admin initialize``: machine 0 becomes the environment's state server.

Run once by cloud-init on machine 0 (again: harmless). It configures Debian's ZooKeeper to serve on the
machine's own address, makes the agents' credentials (here, never anywhere else), creates the environment's
tree with ``/initialized`` last, and starts the machine and provisioning agents as systemd services. The
admin's secret never comes here: only its digest identity, from the user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from .. import __version__
from ..state.acl import MACHINE_AGENTS_USER, PROVISIONING_USER, Identities, machine_user, new_credential
from ..state.client import StateClient
from ..state.environment import EnvironmentSettings, initialize_tree
from ..state.errors import StateConnectionError, StateError
from ..state.machines import MachineRecord
from .config import CONFIG_DIR, AgentConfig
from .firewall import install_service as install_firewall_service
from .services import MACHINE_AGENT, PROVISIONING_AGENT, UNIT_DIR, unit_name, unit_text
from .system import global_addresses, run

__all__ = ["InitializeOptions", "initialize", "zoo_cfg"]

ZOOKEEPER_PORT = 2181
ZOO_CFG = Path("/etc/zookeeper/conf/zoo.cfg")
ZOOKEEPER_START_TIMEOUT = 120.0  # the JVM's start; measured ~2 s on the lab's systems

log = Logger()


@dataclass(frozen=True)
class InitializeOptions:
    instance_id: str
    admin_identity: str
    provider_type: str
    instance_name: str = ""
    address: str = ""  # ZooKeeper's address; default: the machine's first global IPv4 address
    tools_url: str = ""
    tools_sha256: str = ""
    config_dir: Path = CONFIG_DIR
    unit_dir: Path = UNIT_DIR
    zoo_cfg: Path = ZOO_CFG


def zoo_cfg(address: str, data_dir: str = "/var/lib/zookeeper") -> str:
    """Debian's ZooKeeper, serving clients on *address* only, without its admin web server."""
    return (
        "# Written by ensemble-admin initialize.\n"
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\n"
        f"dataDir={data_dir}\n"
        f"clientPort={ZOOKEEPER_PORT}\nclientPortAddress={address}\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=ruok,srvr\n"
        "autopurge.snapRetainCount=3\nautopurge.purgeInterval=24\n"
    )


def _load_or_make(path: Path, make: Any) -> AgentConfig:
    if path.exists():
        return AgentConfig.load(path)
    config: AgentConfig = make()
    config.write(path)
    return config


async def initialize(reactor: Any, options: InitializeOptions) -> bool:
    """Make machine 0 the state server; False when it was initialized already (nothing changed)."""
    address = options.address or (await global_addresses(reactor) or [""])[0]
    if not address:
        raise StateError("initialize: this machine has no global IPv4 address for ZooKeeper to serve on")
    servers = f"{address}:{ZOOKEEPER_PORT}"

    options.zoo_cfg.parent.mkdir(parents=True, exist_ok=True)
    options.zoo_cfg.write_text(zoo_cfg(address))
    # Debian ships a placeholder myid ("replace this text..."), which ZooKeeper refuses as "Invalid config".
    (options.zoo_cfg.parent / "myid").write_text("1\n")
    log.info("ZooKeeper configured to serve on {servers}; restarting it", servers=servers)
    await run(reactor, ["systemctl", "enable", "zookeeper.service"])
    await run(reactor, ["systemctl", "restart", "zookeeper.service"])

    shared = None
    provisioning_path = options.config_dir / f"{PROVISIONING_AGENT}.yaml"
    machine_path = options.config_dir / f"{MACHINE_AGENT}.yaml"
    if provisioning_path.exists():
        shared = AgentConfig.load(provisioning_path).machine_agents
    shared = shared or new_credential(MACHINE_AGENTS_USER)
    provisioning = _load_or_make(
        provisioning_path,
        lambda: AgentConfig(servers, (new_credential(PROVISIONING_USER),), machine_agents=shared),
    )
    machine = _load_or_make(
        machine_path, lambda: AgentConfig(servers, (new_credential(machine_user(0)), shared), machine_id=0)
    )

    identities = Identities(options.admin_identity, provisioning.credentials[0].identity, shared.identity)
    settings = EnvironmentSettings(
        options.provider_type, __version__, identities, servers, options.tools_url, options.tools_sha256
    )
    machine0 = MachineRecord(0, options.instance_id, options.instance_name or None, machine.credentials[0].identity)

    try:
        client = await StateClient.connect(
            reactor, servers, credentials=provisioning.credentials, timeout=ZOOKEEPER_START_TIMEOUT
        )
    except StateConnectionError:
        raise StateConnectionError(
            f"ZooKeeper did not start on {servers} within {ZOOKEEPER_START_TIMEOUT:g} s: see /var/log/zookeeper/"
            f" and {options.zoo_cfg}"
        ) from None
    try:
        created = await initialize_tree(client, settings, machine0)
    finally:
        await client.close()
    log.info("environment initialized" if created else "environment was initialized already")

    for agent, config_path in ((MACHINE_AGENT, machine_path), (PROVISIONING_AGENT, provisioning_path)):
        (options.unit_dir / unit_name(agent)).write_text(unit_text(agent, config_path))
    await install_firewall_service(reactor, options.unit_dir)  # loads the agent's last rules at boot
    await run(reactor, ["systemctl", "daemon-reload"])
    await run(reactor, ["systemctl", "enable", "--now", unit_name(MACHINE_AGENT), unit_name(PROVISIONING_AGENT)])
    return created
