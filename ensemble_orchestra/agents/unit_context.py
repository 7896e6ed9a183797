"""What one hook run's tools see of its unit (``IHookContext``), for the unit agent.

Writes are kept until the hook ends and stored only if it exits 0: opened and closed ports, and relation
settings (``relation-set``), so a failed hook leaves no half-made change behind and a remote unit never sees
settings from a hook that failed. Reads of remote units' settings come from the agent's watches
(``relation_members``): what ZooKeeper held when the watch last fired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from zope.interface import implementer

from ..state.units import format_port
from .hooks.context import IHookContext
from .hooks.protocol import HookToolError
from .relation_lifecycle import RelationLocal

if TYPE_CHECKING:
    from .unit import UnitAgent

__all__ = ["HookRelation", "UnitHookContext"]

log = Logger()
_LEVELS = {"DEBUG": log.debug, "INFO": log.info, "WARNING": log.warn, "ERROR": log.error, "CRITICAL": log.critical}


class HookRelation:
    """The relation a relation hook runs for: the relation, the hook's kind and its remote unit (None in
    ``-broken``)."""

    def __init__(self, relation: RelationLocal, kind: str, remote: str | None) -> None:
        self.relation = relation
        self.kind = kind
        self.remote = remote


@implementer(IHookContext)
class UnitHookContext:
    def __init__(self, agent: UnitAgent, hook: str, relation: HookRelation | None = None) -> None:
        self.agent = agent
        self.hook = hook
        self.relation = relation
        self.ports = set(agent.ports)
        self.relation_writes: dict[int, dict[str, str | None]] = {}

    # -- the unit ---------------------------------------------------------------------------------------------

    def config_get(self, key: str | None) -> Any:
        settings = self.agent.effective_settings()
        return dict(settings) if key is None else settings.get(key)

    def unit_get(self, name: str) -> str:
        address = self.agent.address
        if address is None:
            raise HookToolError(f"{name}: this machine has no global IPv4 address yet")
        return address

    def open_port(self, port: int, protocol: str) -> None:
        self.ports.add(format_port(port, protocol))

    def close_port(self, port: int, protocol: str) -> None:
        self.ports.discard(format_port(port, protocol))

    def log(self, level: str, message: str) -> None:
        _LEVELS.get(level, log.info)(
            "{unit} {hook}: {message}", unit=self.agent.unit_name, hook=self.hook, message=message
        )

    # -- relations --------------------------------------------------------------------------------------------

    def _relation(self, relation_id: str | None) -> RelationLocal:
        if relation_id is None:
            if self.relation is None:
                raise HookToolError(f"{self.hook} is not a relation hook: name the relation with -r ID (relation-ids)")
            return self.relation.relation
        name, _, number = relation_id.partition(":")
        relation = self.agent.relations.get(int(number)) if number.isdigit() else None
        if relation is None or relation.name != name:
            raise HookToolError(f"unknown relation {relation_id!r}: see relation-ids")
        if self.relation is not None and relation.id == self.relation.relation.id:
            return self.relation.relation  # as this hook sees it
        return relation

    def _members(self, relation: RelationLocal) -> set[str]:
        members = set(relation.joined)
        if self.relation is not None and relation.id == self.relation.relation.id and self.relation.remote:
            if self.relation.kind == "joined":
                members.add(self.relation.remote)
            elif self.relation.kind == "departed":
                members.discard(self.relation.remote)
        return members

    async def relation_get(self, relation_id: str | None, key: str | None, unit: str | None) -> Any:
        relation = self._relation(relation_id)
        if unit is None:
            unit = self.relation.remote if self.relation is not None and relation_id is None else None
            if unit is None:
                raise HookToolError("this hook has no remote unit: name the unit, e.g. relation-get KEY wordpress/0")
        if unit == self.agent.unit_name:
            values = await self.agent.own_relation_settings(relation.id)
            for name, value in self.relation_writes.get(relation.id, {}).items():
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = value
        else:
            departing = self.relation is not None and self.relation.remote == unit
            if unit not in self._members(relation) and not departing:
                raise HookToolError(f"unit {unit} is not in relation {relation.key}: see relation-list")
            values = self.agent.members.settings(relation.id, unit) or {}
        return dict(values) if key is None else values.get(key)

    def relation_set(self, relation_id: str | None, settings: Mapping[str, str | None]) -> None:
        relation = self._relation(relation_id)
        if relation.left:
            raise HookToolError(f"relation {relation.key} is being removed: its settings can no longer change")
        self.relation_writes.setdefault(relation.id, {}).update(settings)

    def relation_list(self, relation_id: str | None) -> list[str]:
        return sorted(self._members(self._relation(relation_id)))

    def relation_ids(self, name: str | None) -> list[str]:
        if name is None:
            if self.relation is None:
                raise HookToolError(f"{self.hook} is not a relation hook: name the relation, e.g. relation-ids db")
            name = self.relation.relation.name
        return [r.key for _, r in sorted(self.agent.relations.items()) if r.name == name and not r.left]
