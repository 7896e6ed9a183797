"""The machine agent's firewall loop: gather what the policy needs from ZooKeeper, compute it, apply it.

It runs again on every topology change (expose, relations, units placed), on every change of the node of a
unit on this machine (its open ports), and every ``RECONCILE_INTERVAL`` seconds with the machine agent's other
work; while a machine it needs has no known address (a machine still booting) it looks again every
``UNKNOWN_RETRY`` seconds. ``Firewall.apply`` runs nft only when the rules changed or our table is missing.
The bound from a change in ZooKeeper to the rules in force is the watch's delivery plus a few reads and one
nft run: measured in benchmarks/deploy.py (``expose_applied_s``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ..deferreds import gather
from ..errors import EnsembleError
from ..state.client import StateClient
from ..state.layout import load_document, unit_path
from ..state.machines import MachinesState
from ..state.topology import Topology
from ..state.units import UnitRecord
from ..state.watch import NodeWatch
from .firewall import Firewall
from .firewall_policy import PolicyInputs, firewall_policy, needed_machines
from .firewall_rules import FirewallPolicy
from .reconciler import Reconciler

__all__ = ["FirewallKeeper"]

log = Logger()

UNKNOWN_RETRY = 5.0  # s between looks while a needed machine's address is unknown, or after a failed apply


class FirewallKeeper:
    def __init__(
        self,
        reactor: Any,
        client: StateClient,
        machines: MachinesState,
        machine_id: int,
        firewall: Firewall,
        zookeeper_port: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.machines = machines
        self.machine_id = machine_id
        self.firewall = firewall
        self.zookeeper_port = zookeeper_port if machine_id == 0 else None
        self.topology: Topology | None = None
        self.policy: FirewallPolicy | None = None  # the last one applied
        self.applied = 0  # how many times nft ran (tests and benchmarks read it)
        self._unit_watches: dict[str, NodeWatch[tuple[str, ...]]] = {}
        self._open_ports: dict[str, tuple[str, ...]] = {}  # each watched unit's, as its watch last delivered
        self._retry: IDelayedCall | None = None
        self._unknown: list[int] = []
        self.reconciler = Reconciler(self._reconcile, "firewall")

    def topology_changed(self, topology: Topology | None) -> None:
        if topology is not None:
            self.topology = topology
            self.reconciler.trigger()

    def trigger(self) -> None:
        self.reconciler.trigger()

    def stop(self) -> None:
        for watch in self._unit_watches.values():
            watch.stop()
        self._unit_watches.clear()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()

    async def _reconcile(self) -> None:
        topology = self.topology
        if topology is None:
            return
        units = [unit.name for unit in topology.units_on(self.machine_id)]
        await self._watch_units(units)
        needed = sorted(needed_machines(self.machine_id, topology))
        addresses = await self._addresses(needed)
        inputs = PolicyInputs(dict(self._open_ports), addresses, self.zookeeper_port)
        policy, unknown = firewall_policy(self.machine_id, topology, inputs)
        try:
            changed = await self.firewall.apply(policy)
        except EnsembleError:
            self._retry_later()  # the reconciler logs the failure; look again soon, not at the 30 s tick
            raise
        self.policy = policy
        if changed:
            self.applied += 1
            log.info(
                "firewall applied: open to all {world}; to related machines {peers}",
                world=", ".join(sorted(policy.world)) or "(SSH only)",
                peers="; ".join(f"{p} from {', '.join(sorted(a))}" for p, a in sorted(policy.peers.items())) or "none",
            )
        if unknown != self._unknown:
            self._unknown = unknown
            if unknown:
                log.info(
                    "firewall: no address known yet for machine {machines}: looking again every {s:g} s",
                    machines=", ".join(map(str, unknown)),
                    s=UNKNOWN_RETRY,
                )
        if unknown:
            self._retry_later()

    def _retry_later(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(UNKNOWN_RETRY, self.reconciler.trigger)

    async def _watch_units(self, units: list[str]) -> None:
        """A data watch on each unit node of this machine, which keeps its open ports (a hook that opened a port
        changes the node): the policy reads them from here, not from ZooKeeper again."""
        for name in sorted(set(self._unit_watches) - set(units)):
            self._unit_watches.pop(name).stop()
            self._open_ports.pop(name, None)
        for name in sorted(set(units) - set(self._unit_watches)):

            def changed(ports: tuple[str, ...] | None, name: str = name) -> None:
                if ports is None:
                    self._open_ports.pop(name, None)
                else:
                    self._open_ports[name] = ports
                self.reconciler.trigger()

            def decode(data: bytes, stat: Any, name: str = name) -> tuple[str, ...]:
                return UnitRecord.from_document(name, load_document(data, unit_path(name))).open_ports

            self._unit_watches[name] = await self.client.watch_data(unit_path(name), changed, decode)

    async def _addresses(self, machine_ids: list[int]) -> dict[int, tuple[str, ...]]:
        """Each machine's addresses: the provider's (known at launch) and its agent's own (once it runs)."""
        if not machine_ids:
            return {}
        records = await gather([self._record_address(m) for m in machine_ids])
        presences = await self.machines.presences(machine_ids)
        found: dict[int, tuple[str, ...]] = {}
        for machine_id, recorded in zip(machine_ids, records, strict=True):
            presence = presences.get(machine_id)
            addresses = tuple(presence.addresses) if presence is not None else ()
            found[machine_id] = tuple(dict.fromkeys(((recorded,) if recorded else ()) + addresses))
        return found

    async def _record_address(self, machine_id: int) -> str | None:
        try:
            return (await self.machines.read(machine_id)).address
        except EnsembleError:  # removed meanwhile
            return None
