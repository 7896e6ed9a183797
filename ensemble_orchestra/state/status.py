"""What ``ensemble status`` shows: the topology and each machine's agent from ZooKeeper, joined with ONE call
to the provider for the instances. Reads are issued concurrently: a status of a thousand machines costs a few
round trips' latency, not a thousand (benchmarks/state.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .client import StateClient
from .machines import MachinesState
from .topology_node import TopologyNode

__all__ = ["agent_state", "environment_status"]


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
        document_machines[machine_id] = entry
    services: dict[str, Any] = {}
    for name, service in sorted(topology.services.items()):
        services[name] = {
            "charm": service.charm,
            "units": {
                unit.name: {"machine": unit.machine} for unit in sorted(service.units.values(), key=lambda u: u.name)
            },
        }
    return {"machines": document_machines, "services": services}
