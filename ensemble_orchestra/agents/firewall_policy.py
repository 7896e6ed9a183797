"""What one machine's firewall lets in, from the environment's state (pure: the machine agent gathers the inputs).

- SSH from anywhere (``firewall_rules`` always adds it);
- the ports a unit on this machine opened (``open-port``): from anywhere when its service is exposed, otherwise
  only from the machines of the units related to it (the other side of each of its service's relations, and
  its peers);
- on machine 0, ZooKeeper from every machine of the environment. A machine must reach ZooKeeper before its
  agent can say where it is, so its address comes from the provider (recorded at launch); when the provider
  knows no address for some machine, ZooKeeper is open to all (its ACLs refuse anonymous clients) and the
  machine agent says so in its log.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..state.topology import Topology
from .firewall_rules import FirewallPolicy

__all__ = ["PolicyInputs", "firewall_policy", "needed_machines"]


@dataclass(frozen=True)
class PolicyInputs:
    """The state the policy depends on besides the topology: each of this machine's units' open ports
    (``"80/tcp"``), and each machine's known addresses (from its provider record and its agent's presence)."""

    open_ports: Mapping[str, Collection[str]]
    addresses: Mapping[int, Collection[str]]
    zookeeper_port: int | None = None  # on machine 0: the port ZooKeeper listens on


def _related_machines(machine_id: int, topology: Topology, service: str) -> set[int]:
    related: set[int] = set()
    for relation in topology.relations_of(service):
        remote = topology.services.get(relation.remote_service(service))
        if remote is not None:
            related.update(u.machine for u in remote.units.values() if u.machine is not None)
    related.discard(machine_id)  # its own traffic arrives on the loopback interface, always accepted
    return related


def needed_machines(machine_id: int, topology: Topology) -> set[int]:
    """The machines whose addresses the policy of *machine_id* may need (machine 0: all of them)."""
    if machine_id == 0:
        return set(topology.machines) - {0}
    needed: set[int] = set()
    for unit in topology.units_on(machine_id):
        needed |= _related_machines(machine_id, topology, unit.service)
    return needed


def firewall_policy(machine_id: int, topology: Topology, inputs: PolicyInputs) -> tuple[FirewallPolicy, list[int]]:
    """The policy for machine *machine_id*, and the machines it needed but knows no address of (sorted)."""
    world: set[str] = set()
    peers: dict[str, set[str]] = {}
    unknown: set[int] = set()

    def allow(port: str, machines: Collection[int]) -> None:
        for machine in machines:
            found = inputs.addresses.get(machine) or ()
            if not found:
                unknown.add(machine)
            peers.setdefault(port, set()).update(found)

    for unit in topology.units_on(machine_id):
        ports = inputs.open_ports.get(unit.name) or ()
        if not ports:
            continue
        if topology.services[unit.service].exposed:
            world.update(ports)
            continue
        related = _related_machines(machine_id, topology, unit.service)
        for port in ports:
            allow(port, sorted(related))
    if machine_id == 0 and inputs.zookeeper_port is not None:
        zookeeper = f"{inputs.zookeeper_port}/tcp"
        others = sorted(m for m in topology.machines if m != 0)
        allow(zookeeper, others)
        if any(not inputs.addresses.get(m) for m in others):
            world.add(zookeeper)
    policy = FirewallPolicy(
        frozenset(world),
        {port: frozenset(addresses) for port, addresses in sorted(peers.items()) if addresses and port not in world},
    )
    return policy, sorted(unknown)
