"""What ``ensemble status`` shows: the topology and each machine's agent from ZooKeeper, joined with ONE call
to the provider for the instances. Reads are issued concurrently: a status of a thousand machines costs a few
round trips' latency, not a thousand (benchmarks/state.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..deferreds import gather
from .client import StateClient
from .errors import TopologyError
from .machines import MachinesState
from .services import ServicesState
from .topology import Topology
from .topology_node import TopologyNode
from .units import UnitRecord, UnitsState

__all__ = ["agent_state", "environment_status", "unit_agent_state"]

STATUS_OUTPUT_LINES = 5  # a failing hook's last lines in status (the node keeps 20; the unit's log has all)


def agent_state(present: bool, instance: Any | None) -> str:
    """running: its agent is connected; not-started: no instance yet, or still installing; down: installed but
    its agent is not connected (also the ~30 s between the install and the agent's first start)."""
    if present:
        return "running"
    if instance is None or getattr(instance, "state", "") != "provisioned":
        return "not-started"
    return "down"


async def environment_status(client: StateClient, machines: MachinesState, instances: Iterable[Any]) -> dict[str, Any]:
    """Ensemble's status layout from the state and the provider's *instances* (one ``get_machines()``)."""
    topology = await TopologyNode(client).read()
    records = await machines.read_all()
    ids = sorted(topology.machines)
    presences = await machines.presences(ids)
    by_instance = {m.instance_id: m for m in instances}
    document_machines: dict[int, dict[str, Any]] = {}
    for machine_id in ids:
        record = records.get(machine_id)
        instance = by_instance.get(record.provider_machine_id) if record and record.provider_machine_id else None
        entry: dict[str, Any] = {
            "agent-state": agent_state(presences.get(machine_id) is not None, instance),
            "dns-name": instance.dns_name if instance else None,
            "instance-id": record.provider_machine_id if record and record.provider_machine_id else "pending",
            "instance-state": instance.state
            if instance
            else ("missing" if record and record.provider_machine_id else "pending"),
        }
        presence = presences.get(machine_id)
        if presence is not None and presence.addresses:
            entry["private-address"] = presence.addresses[0]
        if record is not None and record.launch_error and not record.provider_machine_id:
            entry["launch-error"] = record.launch_error
        document_machines[machine_id] = entry
    services = await _services_status(client, machines, topology)
    return {"machines": document_machines, "services": services}


def unit_agent_state(record: UnitRecord | None, present: bool) -> str:
    """What its agent reported; "down" when a deployed unit's agent is not connected (errors stay visible)."""
    if record is None:
        return "pending"
    if not present and record.agent_state in ("installed", "started"):
        return "down"
    return record.agent_state


async def _services_status(client: StateClient, machines: MachinesState, topology: Topology) -> dict[str, Any]:
    units = UnitsState(client, machines.identities)
    names = [unit.name for unit in topology.units()]
    records = await units.read_many(names)
    connected = await units.connected(names)
    services: dict[str, Any] = {}
    service_names = sorted(topology.services)
    service_records = ServicesState(client, machines.identities)
    constraints_of = dict(
        zip(service_names, await gather([_constraints(service_records, n) for n in service_names]), strict=True)
    )
    for name, service in sorted(topology.services.items()):
        entries: dict[str, Any] = {}
        for unit in sorted(service.units.values(), key=lambda u: int(u.name.rpartition("/")[2])):
            record = records.get(unit.name)
            entry: dict[str, Any] = {
                "agent-state": unit_agent_state(record, connected[unit.name]),
                "machine": unit.machine,
                "public-address": record.public_address if record else None,
            }
            if record is not None and record.open_ports:
                entry["open-ports"] = list(record.open_ports)
            if record is not None and record.deploy_error and record.agent_state == "pending":
                entry["agent-state-info"] = f"deploy failed (tried again): {record.deploy_error}"
            if record is not None and record.in_error:
                entry["agent-state-info"] = f"hook {record.hook} failed"
                entry["hook-output"] = list(record.hook_output[-STATUS_OUTPUT_LINES:])
            if record is not None and record.relation_errors:
                errors = sorted(record.relation_errors.values(), key=lambda e: e.name)
                entry["relation-errors"] = {e.name: [e.remote_service] for e in errors}  # Ensemble's layout
                entry["relation-errors-info"] = {
                    key: {
                        "hook": e.hook,
                        "remote-unit": e.remote_unit,
                        "hook-output": list(e.hook_output[-STATUS_OUTPUT_LINES:]),
                    }
                    for key, e in sorted(record.relation_errors.items())
                }
            if unit.dying:
                entry["life"] = "dying"
            entries[unit.name] = entry
        constraints = constraints_of[name]
        services[name] = {"charm": service.charm, "exposed": service.exposed, "units": entries}
        relations: dict[str, list[str]] = {}
        for relation in topology.relations_of(name):
            own = relation.endpoint(name).name
            relations.setdefault(own, []).append(relation.remote_service(name))
        if relations:
            services[name]["relations"] = {k: sorted(v) for k, v in sorted(relations.items())}
        if constraints:
            services[name]["constraints"] = constraints
    return services


async def _constraints(services: ServicesState, name: str) -> dict[str, str]:
    try:
        return dict((await services.read(name)).constraints)
    except TopologyError:  # removed meanwhile
        return {}
