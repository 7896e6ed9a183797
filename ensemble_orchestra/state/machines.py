"""``/machines``: each topology machine's provider instance, and its machine agent's presence.

``/machines/machine-N`` is created with the machine in the topology (one multi-transaction), and filled in by
the provisioning agent when it launches the machine: the provider's instance id and name, and the digest
identity of the machine's own agent (added to the node's ACL, so that agent may register under it). The child
``agent`` is the machine agent's ephemeral presence node: it exists while the agent's session lives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..deferreds import gather
from .acl import Identities
from .client import StateClient
from .errors import StateNotFoundError
from .layout import (
    MACHINES,
    dump_document,
    load_document,
    machine_agent_path,
    machine_id_of,
    machine_path,
)
from .topology import Topology
from .topology_node import TopologyNode
from .transaction import Create, Delete, Operation

__all__ = ["AgentPresence", "MachineRecord", "MachinesState"]


@dataclass(frozen=True)
class MachineRecord:
    """What ``/machines/machine-N`` holds."""

    id: int
    provider_machine_id: str | None = None  # the provider's instance id (Cobbler's system uid)
    instance_name: str | None = None  # the provider's name for it (Cobbler's system name)
    agent_identity: str | None = None  # digest identity of machine N's agent
    constraints: Mapping[str, str] = field(default_factory=dict)  # what the provider must match (its service's)
    launch_error: str | None = None  # the provisioning agent's last failure to launch it (None: none)
    # The address the provider recorded for it (Cobbler's interface IP), known at launch, before its agent
    # runs: machine 0's firewall lets it reach ZooKeeper (None: the provider has none).
    address: str | None = None

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "provider-machine-id": self.provider_machine_id,
            "instance-name": self.instance_name,
            "agent-identity": self.agent_identity,
        }
        if self.constraints:
            document["constraints"] = dict(self.constraints)
        if self.launch_error:
            document["launch-error"] = self.launch_error
        if self.address:
            document["address"] = self.address
        return document

    @classmethod
    def from_document(cls, machine_id: int, document: dict[str, Any]) -> MachineRecord:
        def text(key: str) -> str | None:
            value = document.get(key)
            return None if value is None else str(value)

        constraints = {str(k): str(v) for k, v in (document.get("constraints") or {}).items()}
        return cls(
            machine_id,
            text("provider-machine-id"),
            text("instance-name"),
            text("agent-identity"),
            constraints,
            text("launch-error"),
            text("address"),
        )


@dataclass(frozen=True)
class AgentPresence:
    """What a machine agent says of itself in its ephemeral node."""

    addresses: tuple[str, ...]
    hostname: str
    version: str
    pid: int

    def to_document(self) -> dict[str, Any]:
        return {"addresses": list(self.addresses), "hostname": self.hostname, "version": self.version, "pid": self.pid}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AgentPresence:
        return cls(
            tuple(str(a) for a in document.get("addresses") or ()),
            str(document.get("hostname", "")),
            str(document.get("version", "")),
            int(document.get("pid", 0)),
        )


class MachinesState:
    """Typed access to the machines of one ZooKeeper session."""

    def __init__(self, client: StateClient, identities: Identities) -> None:
        self.client = client
        self.identities = identities
        self.topology = TopologyNode(client)

    # -- changes (admin) ---------------------------------------------------------------------------------

    async def add_machine(self) -> int:
        """A new topology machine and its node, in one transaction; its id."""

        def node(old: Topology, new: Topology) -> Sequence[Operation]:
            path = machine_path(new.new_machine_id)
            record = MachineRecord(new.new_machine_id)
            return [Create(path, dump_document(record.to_document()), tuple(self.identities.machine()))]

        topology = await self.topology.change(lambda t: t.add_machine(), also=node)
        return topology.new_machine_id

    async def remove_machine(self, machine_id: int) -> None:
        """Machine *machine_id* leaves the topology and its node goes, in one transaction (refused for machine 0
        and machines with units: ``Topology.remove_machine``). The provisioning agent then shuts its instance down.
        """
        present = await self.client.exists(machine_agent_path(machine_id))

        def node(old: Topology, new: Topology) -> Sequence[Operation]:
            operations: list[Operation] = []
            if present is not None:
                operations.append(Delete(machine_agent_path(machine_id)))
            return [*operations, Delete(machine_path(machine_id))]

        await self.topology.change(lambda t: t.remove_machine(machine_id), also=node)

    # -- the provisioning agent's records ----------------------------------------------------------------

    async def record_instance(self, record: MachineRecord) -> None:
        """Store the instance the provider launched for *record.id*, and let that machine's agent register."""
        path = machine_path(record.id)
        identities = [record.agent_identity] if record.agent_identity else []
        await self.client.set_acls(path, self.identities.machine(identities))
        await self.client.set(path, dump_document(record.to_document()))

    # -- reads -------------------------------------------------------------------------------------------

    async def read(self, machine_id: int) -> MachineRecord:
        data, _ = await self.client.get(machine_path(machine_id))
        return MachineRecord.from_document(machine_id, load_document(data, machine_path(machine_id)))

    async def read_all(self) -> dict[int, MachineRecord]:
        """Every machine node, read concurrently (one round trip's latency for all of them)."""
        names = await self.client.get_children(MACHINES)
        ids = sorted(i for i in map(machine_id_of, names) if i is not None)
        records = await gather([self._read_if_there(i) for i in ids])
        return {record.id: record for record in records if record is not None}

    async def _read_if_there(self, machine_id: int) -> MachineRecord | None:
        try:
            return await self.read(machine_id)
        except StateNotFoundError:  # removed between the listing and the read
            return None

    async def presence(self, machine_id: int) -> AgentPresence | None:
        """Machine *machine_id*'s agent as it registered, or None when it is not connected."""
        path = machine_agent_path(machine_id)
        try:
            data, _ = await self.client.get(path)
        except StateNotFoundError:
            return None
        return AgentPresence.from_document(load_document(data, path))

    async def presences(self, machine_ids: Sequence[int]) -> dict[int, AgentPresence | None]:
        found = await gather([self.presence(i) for i in machine_ids])
        return dict(zip(machine_ids, found, strict=True))

    async def register(self, machine_id: int, presence: AgentPresence, owner: str) -> None:
        """The machine agent's presence: an ephemeral node, gone with its session."""
        path = machine_agent_path(machine_id)
        data = dump_document(presence.to_document())
        await self.client.create(path, data, ephemeral=True, acl=self.identities.presence(owner))
