"""Relations: the admin adds and removes them in the topology; each unit keeps its settings in each relation.

A relation is an entry of the topology (``topology.Relation``): adding or removing one is one version-checked
write, which every unit agent watches. A unit *in the scope* of a relation has a node
``/units/<unit>/relations/relation-N`` holding its settings (``private-address`` first, then whatever its
hooks ``relation-set``); its agent creates the node when the unit enters the relation, writes it after each
relation hook that exits 0, and deletes it when the unit leaves. Remote units watch these nodes: a node that
appears is a unit joining, a node that changes (a new ``mzxid``) is new settings, a node that goes is a unit
departing. The node lives under the unit's own node, whose ACL the provisioning agent extended to the unit's
machine, so a unit agent writes its own settings and no other unit's; every machine agent reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .acl import Identities
from .client import StateClient
from .errors import StateCorruptError, StateNodeExistsError, StateNotFoundError
from .layout import dump_document, load_document, unit_relation_path, unit_relations_path
from .topology import Endpoint, Relation, Topology
from .topology_node import TopologyNode

__all__ = ["RelationSettings", "RelationsState", "decode_settings"]


@dataclass(frozen=True)
class RelationSettings:
    """One unit's settings in one relation, and the ``mzxid`` that orders their versions."""

    values: Mapping[str, str] = field(default_factory=dict)
    version: int = 0


def decode_settings(data: bytes, stat: Any, where: str = "relation settings") -> RelationSettings:
    document = load_document(data, where)
    if not all(isinstance(v, str) for v in document.values()):
        raise StateCorruptError(f"{where}: relation settings are strings: repair or remove the node")
    return RelationSettings({str(k): v for k, v in document.items()}, int(stat.mzxid))


class RelationsState:
    """The admin's relation changes, and a unit agent's own settings nodes."""

    def __init__(self, client: StateClient, identities: Identities) -> None:
        self.client = client
        self.identities = identities
        self.topology = TopologyNode(client)

    # -- the admin -----------------------------------------------------------------------------------------

    async def add(self, interface: str, endpoints: tuple[Endpoint, ...], scope: str = "global") -> Relation:
        new = await self.topology.change(lambda t: t.add_relation(interface, endpoints, scope))
        return new.relations[new.new_relation_id]

    async def remove(self, relation_id: int) -> Topology:
        return await self.topology.change(lambda t: t.remove_relation(relation_id))

    # -- a unit agent ---------------------------------------------------------------------------------------

    async def enter(self, unit: str, relation_id: int, settings: Mapping[str, str], owner: str) -> None:
        """Put *unit* in the relation's scope with *settings* (kept if the node exists: a restart)."""
        acl = self.identities.presence(owner)
        try:
            await self.client.create(unit_relations_path(unit), b"", acl=acl)
        except StateNodeExistsError:
            pass
        try:
            await self.client.create(unit_relation_path(unit, relation_id), dump_document(settings), acl=acl)
        except StateNodeExistsError:
            pass

    async def read(self, unit: str, relation_id: int) -> RelationSettings | None:
        path = unit_relation_path(unit, relation_id)
        try:
            data, stat = await self.client.get(path)
        except StateNotFoundError:
            return None
        return decode_settings(data, stat, path)

    async def write(self, unit: str, relation_id: int, changes: Mapping[str, str | None]) -> None:
        """Merge *changes* into the unit's settings (None deletes a key); only this unit's agent writes them."""
        current = await self.read(unit, relation_id)
        values = dict(current.values if current else {})
        for key, value in changes.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        if current is not None and values == dict(current.values):
            return
        await self.client.set(unit_relation_path(unit, relation_id), dump_document(values))

    async def leave(self, unit: str, relation_id: int) -> None:
        try:
            await self.client.delete(unit_relation_path(unit, relation_id))
        except StateNotFoundError:
            pass
