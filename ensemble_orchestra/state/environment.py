"""The environment's own nodes: ``/settings`` and ``/environment``, the tree ``initialize`` creates, and the wait
for ``/initialized`` that every client does first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .acl import Identities
from .client import StateClient
from .errors import StateCorruptError, StateNodeExistsError, StateNotFoundError
from .layout import (
    AGENTS,
    CONTAINERS,
    ENVIRONMENT,
    INITIALIZED,
    MACHINES,
    SETTINGS,
    TOPOLOGY,
    dump_document,
    load_document,
    machine_path,
)
from .machines import MachineRecord
from .topology import Topology
from .transaction import Create, Operation

__all__ = [
    "EnvironmentSettings",
    "initialize_tree",
    "read_environment",
    "read_settings",
    "store_environment",
    "wait_initialized",
]


@dataclass(frozen=True)
class EnvironmentSettings:
    """``/settings``: what every agent needs to know of the environment (no secret in it)."""

    provider_type: str
    version: str  # the ensemble-orchestra that initialized it
    identities: Identities
    zookeeper_servers: str  # host:port,... as the machines reach them
    tools_url: str = ""  # where machines fetch ensemble-orchestra (ensemble-origin: upload)
    tools_sha256: str = ""

    def to_document(self) -> dict[str, Any]:
        return {
            "provider-type": self.provider_type,
            "ensemble-version": self.version,
            "identities": self.identities.to_dict(),
            "zookeeper-servers": self.zookeeper_servers,
            "tools": {"url": self.tools_url, "sha256": self.tools_sha256},
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> EnvironmentSettings:
        try:
            tools = document.get("tools") or {}
            return cls(
                str(document["provider-type"]),
                str(document["ensemble-version"]),
                Identities.from_dict(document["identities"]),
                str(document["zookeeper-servers"]),
                str(tools.get("url", "")),
                str(tools.get("sha256", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StateCorruptError(f"{SETTINGS} lacks {exc}: re-initialize the environment") from None


def _initial_tree(settings: EnvironmentSettings, machine0: MachineRecord) -> list[Operation]:
    ids = settings.identities
    topology = Topology().add_machine()
    machine0_identities = [machine0.agent_identity] if machine0.agent_identity else []
    operations: list[Operation] = [
        Create(SETTINGS, dump_document(settings.to_document()), tuple(ids.shared())),
        Create(TOPOLOGY, topology.to_yaml().encode(), tuple(ids.shared())),
        Create(MACHINES, b"", tuple(ids.provisioning_owned())),
        Create(machine_path(0), dump_document(machine0.to_document()), tuple(ids.machine(machine0_identities))),
        Create(AGENTS, b"", tuple(ids.provisioning_owned())),
        *(Create(path, b"", tuple(ids.shared())) for path in CONTAINERS),
        Create(INITIALIZED, settings.version.encode(), tuple(ids.shared())),  # last: clients wait for it
    ]
    return operations


async def initialize_tree(client: StateClient, settings: EnvironmentSettings, machine0: MachineRecord) -> bool:
    """Create the environment's tree in one transaction, ``/initialized`` last; False if it was there already.

    The root's ACL is narrowed first (admin: all; the initializing provisioning agent: read and create), so an
    anonymous client gets nothing from the moment the tree exists.
    """
    if await client.exists(INITIALIZED) is not None:
        return False
    await client.set_acls("/", settings.identities.root())
    # ZooKeeper's own /zookeeper is world-readable too (/zookeeper/config stays: ZooKeeper refuses any change).
    for path in ("/zookeeper/quota", "/zookeeper"):
        await client.set_acls(path, settings.identities.admin_only())
    try:
        await client.commit(_initial_tree(settings, machine0), "the environment's tree")
    except StateNodeExistsError:
        if await client.exists(INITIALIZED) is not None:  # another initialize won the race
            return False
        raise
    return True


async def read_settings(client: StateClient) -> EnvironmentSettings:
    data, _ = await client.get(SETTINGS)
    return EnvironmentSettings.from_document(load_document(data, SETTINGS))


async def store_environment(client: StateClient, identities: Identities, config: Mapping[str, Any]) -> bool:
    """Write the environment's config into ``/environment`` (admin and provisioning agent only); True if it
    changed. The CLI does this on connecting, so the provisioning agent works from what the user has now."""
    data = dump_document(config)
    try:
        current, stat = await client.get(ENVIRONMENT)
    except StateNotFoundError:
        try:
            await client.create(ENVIRONMENT, data, acl=identities.secret_config())
            return True
        except StateNodeExistsError:
            current, stat = await client.get(ENVIRONMENT)
    if current == data:
        return False
    await client.set(ENVIRONMENT, data, stat.version)
    return True


async def read_environment(client: StateClient) -> dict[str, Any]:
    data, _ = await client.get(ENVIRONMENT)
    return load_document(data, ENVIRONMENT)


async def wait_initialized(client: StateClient, timeout: float) -> str:
    """Wait (bounded, on the session's reactor) for ``/initialized``; the version that initialized the environment.

    StateConnectionError after *timeout* says what to look at.
    """
    why = (
        f"ZooKeeper at {client.hosts} answers but the environment was not initialized within {timeout:g} s:"
        " look at machine 0's cloud-init log (/var/log/cloud-init-output.log)"
    )
    data = await client.wait_for(INITIALIZED, present=True, timeout=timeout, why=why)
    return (data or b"").decode(errors="replace")
