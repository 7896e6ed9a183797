"""Which remote units are in each of a unit's relations, and their settings: one ZooKeeper watch per remote unit.

For every relation of the unit's service in the topology, the agent watches the settings node of every unit of
the other side (of its own service, for a peer relation): the node existing means that unit is in the scope,
its ``mzxid`` is the version of its settings. ``update`` follows the topology (new relations, units added or
removed); the watches call ``on_change`` (the agent's reconciler) on every change. The last settings seen of a
unit are kept after its node went, so its ``-departed`` hook can still read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from ..deferreds import gather
from ..state.client import StateClient
from ..state.layout import unit_relation_path
from ..state.relations import RelationSettings, decode_settings
from ..state.topology import Topology
from ..state.watch import NodeWatch

__all__ = ["RelationMembers"]

log = Logger()

Key = tuple[int, str]  # (relation id, remote unit name)


class RelationMembers:
    def __init__(self, client: StateClient | None, unit_name: str, on_change: Callable[[], object]) -> None:
        self.client = client
        self.unit_name = unit_name
        self.service = unit_name.partition("/")[0]
        self.on_change = on_change
        self._watches: dict[Key, NodeWatch[RelationSettings]] = {}
        self._present: dict[Key, int] = {}  # in the scope: its settings version
        self._last: dict[Key, Mapping[str, str]] = {}  # the last settings seen, kept after the node went
        self._pending: set[Key] = set()  # watches being started

    def wanted(self, topology: Topology) -> set[Key]:
        keys: set[Key] = set()
        for relation in topology.relations_of(self.service):
            remote = topology.services.get(relation.remote_service(self.service))
            if remote is None:
                continue
            keys.update((relation.id, unit) for unit in remote.units if unit != self.unit_name)
        return keys

    async def update(self, topology: Topology) -> None:
        """Watch exactly the remote units *topology* relates this unit to."""
        wanted = self.wanted(topology)
        for key in sorted(set(self._watches) - wanted):
            self._watches.pop(key).stop()
            self._present.pop(key, None)
        new = sorted(wanted - set(self._watches))
        if new:
            watches = await gather([self._watch(key) for key in new])
            self._watches.update(zip(new, watches, strict=True))

    async def _watch(self, key: Key) -> NodeWatch[RelationSettings]:
        assert self.client is not None, "RelationMembers.client is set before update"
        relation_id, unit = key
        path = unit_relation_path(unit, relation_id)

        def changed(settings: RelationSettings | None) -> None:
            if key not in self._watches and key not in self._pending:
                return  # stopped meanwhile
            if settings is None:
                self._present.pop(key, None)
            else:
                self._present[key] = settings.version
                self._last[key] = settings.values
            self.on_change()

        def decode(data: bytes, stat: Any) -> RelationSettings:
            return decode_settings(data, stat, path)

        self._pending.add(key)
        try:
            return await self.client.watch_data(path, changed, decode)
        finally:
            self._pending.discard(key)

    def members(self, relation_id: int) -> dict[str, int]:
        """The remote units in relation *relation_id*'s scope now, with their settings versions."""
        return {unit: version for (rid, unit), version in self._present.items() if rid == relation_id}

    def settings(self, relation_id: int, unit: str) -> dict[str, str] | None:
        """The last settings seen of *unit* in the relation (None: never seen)."""
        values = self._last.get((relation_id, unit))
        return None if values is None else dict(values)

    def forget(self, relation_id: int, keep: set[str]) -> None:
        """Drop the kept settings of units of the relation other than *keep* (those the unit's hooks still know)."""
        for key in [k for k in self._last if k[0] == relation_id and k[1] not in keep]:
            if key not in self._present:
                del self._last[key]

    def stop(self) -> None:
        for watch in self._watches.values():
            watch.stop()
        self._watches.clear()
