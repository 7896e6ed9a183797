"""``/services`` and the topology changes that deploy, grow, shrink and destroy services.

Every change that spans the topology and other nodes is ONE multi-transaction (``TopologyNode.change`` with
``also``): a service, its units, their nodes and their new machines appear together or not at all, and go
together. Placement is Ensemble's default: each new unit gets a new machine of its own, with the service's
constraints; the provisioning agent launches it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .acl import Identities
from .client import StateClient
from .errors import StateConflictError, StateNotFoundError, TopologyError
from .layout import (
    dump_document,
    load_document,
    machine_agent_path,
    machine_path,
    service_config_path,
    service_path,
    unit_path,
)
from .machines import MachineRecord
from .topology import Endpoint, Topology
from .topology_node import TopologyNode
from .transaction import Create, Delete, Operation
from .units import UnitRecord, UnitsState

__all__ = ["DEFAULT_HOOK_TIMEOUT", "ServiceRecord", "ServicesState", "settings_digest"]

DEFAULT_HOOK_TIMEOUT = 1800.0  # a hook that runs longer is killed and its unit goes to the hook's error state
ATTEMPTS = 20  # removals retried when an agent adds a child node meanwhile


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short digest of a service's settings: the unit agent runs config-changed when it changes."""
    return hashlib.sha256(dump_document(settings)).hexdigest()[:16]


@dataclass(frozen=True)
class ServiceRecord:
    """What ``/services/<name>`` holds (the user's settings are its ``config`` child)."""

    name: str
    charm: str
    constraints: Mapping[str, str] = field(default_factory=dict)
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT

    def to_document(self) -> dict[str, Any]:
        return {"charm": self.charm, "constraints": dict(self.constraints), "hook-timeout": self.hook_timeout}

    @classmethod
    def from_document(cls, name: str, document: dict[str, Any]) -> ServiceRecord:
        return cls(
            name,
            str(document["charm"]),
            {str(k): str(v) for k, v in (document.get("constraints") or {}).items()},
            float(document.get("hook-timeout", DEFAULT_HOOK_TIMEOUT)),
        )


class ServicesState:
    """The admin's changes to services and units, and typed reads for everyone."""

    def __init__(self, client: StateClient, identities: Identities) -> None:
        self.client = client
        self.identities = identities
        self.topology = TopologyNode(client)
        self.units = UnitsState(client, identities)

    # -- reads ---------------------------------------------------------------------------------------------

    async def read(self, name: str) -> ServiceRecord:
        path = service_path(name)
        try:
            data, _ = await self.client.get(path)
        except StateNotFoundError:
            raise TopologyError(f"service {name} does not exist in the environment: see `ensemble status`") from None
        return ServiceRecord.from_document(name, load_document(data, path))

    async def read_settings(self, name: str) -> tuple[dict[str, Any], int]:
        """The user's settings of service *name* (without the charm's defaults) and the node's version."""
        path = service_config_path(name)
        data, stat = await self.client.get(path)
        return load_document(data, path), stat.version

    # -- changes -------------------------------------------------------------------------------------------

    async def deploy(
        self,
        service: ServiceRecord,
        settings: Mapping[str, Any],
        count: int,
        peers: Sequence[tuple[str, Endpoint]] = (),
    ) -> list[str]:
        """Service *service* with *count* units, each on a new machine, and its *peers* relations
        ((interface, endpoint) pairs, from its charm); the units' names."""
        if count < 1:
            raise TopologyError(f"deploy {service.name}: the number of units must be at least 1")

        def change(topology: Topology) -> Topology:
            topology = topology.add_service(service.name, service.charm)
            for interface, endpoint in peers:
                topology = topology.add_relation(interface, (endpoint,))
            return _add_units(topology, service.name, count)

        def nodes(old: Topology, new: Topology) -> Sequence[Operation]:
            shared = tuple(self.identities.shared())
            return [
                Create(service_path(service.name), dump_document(service.to_document()), shared),
                Create(service_config_path(service.name), dump_document(dict(settings)), shared),
                *self._new_units(old, new, service),
            ]

        new = await self.topology.change(change, also=nodes)
        return sorted(new.services[service.name].units, key=_unit_number)

    async def add_units(self, name: str, count: int) -> list[str]:
        """*count* more units of service *name*, each on a new machine; their names."""
        service = await self.read(name)
        if count < 1:
            raise TopologyError(f"add-unit {name}: the number of units must be at least 1")

        added: list[str] = []

        def nodes(old: Topology, new: Topology) -> Sequence[Operation]:
            # The round that commits is the last one asked: its units are ours (not those another add-unit
            # added between an earlier read and our change).
            added[:] = sorted(set(new.service(name).units) - set(old.service(name).units), key=_unit_number)
            return self._new_units(old, new, service)

        await self.topology.change(lambda t: _add_units(t, name, count), also=nodes)
        return list(added)

    def _new_units(self, old: Topology, new: Topology, service: ServiceRecord) -> list[Operation]:
        operations: list[Operation] = []
        for machine_id in sorted(set(new.machines) - set(old.machines)):
            record = MachineRecord(machine_id, constraints=dict(service.constraints))
            operations.append(
                Create(machine_path(machine_id), dump_document(record.to_document()), tuple(self.identities.machine()))
            )
        old_units = set(old.services[service.name].units) if service.name in old.services else set()
        for unit in sorted(set(new.service(service.name).units) - old_units):
            pending = UnitRecord(unit, charm=service.charm)
            operations.append(
                Create(unit_path(unit), dump_document(pending.to_document()), tuple(self.units.unit_acl()))
            )
        return operations

    async def mark_dying(self, unit_names: Sequence[str], service: str | None = None) -> None:
        """Mark units dying (their agents leave their relations, then run the stop hook); with *service*
        (destroy-service), its relations with other services go in the same change."""

        def change(topology: Topology) -> Topology:
            if service is not None:
                for relation in topology.relations_of(service):
                    if relation.services != (service,):
                        topology = topology.remove_relation(relation.id)
            for name in unit_names:
                topology = topology.mark_dying(name)
            return topology

        await self.topology.change(change)

    async def remove_units(self, unit_names: Sequence[str], service: str | None = None) -> list[int]:
        """Remove units (and, with *service*, that service) with their nodes and the machines left without
        units, in one transaction; the ids of the removed machines (the provisioning agent releases them)."""
        for _ in range(ATTEMPTS):
            try:
                return await self._remove_once(unit_names, service)
            except (StateConflictError, StateNotFoundError) as conflict:
                # An agent added or dropped a child (presence, ports, resolved) meanwhile: list them again.
                if conflict.path == self.topology.path:
                    raise
        raise StateConflictError(f"removing {', '.join(unit_names)}: their nodes kept changing; try again")

    async def _remove_once(self, unit_names: Sequence[str], service: str | None) -> list[int]:
        doomed: list[int] = []

        def change(current: Topology) -> Topology:
            doomed.clear()
            for name in unit_names:
                machine = current.unit(name).machine
                current = current.remove_unit(name)
                if machine not in (None, 0) and machine in current.machines and not current.units_on(machine):
                    current = current.remove_machine(machine)
                    doomed.append(machine)
            if service is not None:
                current = current.remove_service(service)
            return current

        change(await self.topology.read())  # what it would remove now: children are listed before the transaction
        children = await self._children([unit_path(u) for u in unit_names])
        agents = {m: await self.client.exists(machine_agent_path(m)) is not None for m in doomed}

        def nodes(old: Topology, new: Topology) -> Sequence[Operation]:
            operations: list[Operation] = []
            for name in unit_names:
                path = unit_path(name)
                operations += [Delete(child) for child in children[path]]  # deepest first
                operations.append(Delete(path))
            for machine in doomed:
                if agents.get(machine):
                    operations.append(Delete(machine_agent_path(machine)))
                operations.append(Delete(machine_path(machine)))
            if service is not None:
                operations += [Delete(service_config_path(service)), Delete(service_path(service))]
            return operations

        await self.topology.change(change, also=nodes)
        return list(doomed)

    async def _children(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """Every node under each of *paths* (its agent, resolved request, relation settings), deepest first."""
        found: dict[str, list[str]] = {}
        for path in paths:
            found[path] = await self._descendants(path)
        return found

    async def _descendants(self, path: str) -> list[str]:
        try:
            children = await self.client.get_children(path)
        except StateNotFoundError:
            return []
        nodes: list[str] = []
        for child in sorted(children):
            nodes += await self._descendants(f"{path}/{child}")
            nodes.append(f"{path}/{child}")
        return nodes

    async def set_settings(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge *changes* into service *name*'s settings (a None value resets the key to the charm's default),
        version-checked; the settings written."""
        path = service_config_path(name)
        for _ in range(ATTEMPTS):
            current, version = await self.read_settings(name)
            merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
            if merged == current:
                return current
            try:
                await self.client.set(path, dump_document(merged), version)
            except StateConflictError:
                continue
            return merged
        raise StateConflictError(f"{path} kept changing under us: try again")


def _add_units(topology: Topology, service: str, count: int) -> Topology:
    for _ in range(count):
        topology = topology.add_machine()
        topology = topology.add_unit(service, topology.new_machine_id)
    return topology


def _unit_number(name: str) -> int:
    return int(name.rpartition("/")[2])
