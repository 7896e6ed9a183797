"""One relation's hooks on one unit, as a pure function: what the unit agent knows -> the next thing to do.

What the agent persists per relation (``RelationLocal``) is which remote units its hooks have seen join, and
for each the settings version (``mzxid``) its last ``-changed`` hook saw. What ZooKeeper shows now
(``RelationView``) is which remote units are in the relation's scope, with their settings versions. Ensemble's
guarantees follow from the order ``next_step`` picks:

- the unit enters the scope (its settings node, with ``private-address``) before any hook of the relation;
- ``-joined`` for a remote unit is always followed by ``-changed`` for it, before anything else of this relation;
- ``-changed`` runs again whenever a joined unit's settings have a new version (its writing hook succeeded:
  the remote agent writes its settings only then);
- ``-departed`` for each unit that left the scope; and when the relation is removed (or this unit is dying),
  the unit leaves the scope first, then ``-departed`` for every joined unit, then ``-broken`` once.

A failing hook leaves the relation in error (``failed``) with nothing of its writes kept; nothing else of this
relation runs until ``resolved UNIT RELATION`` (the relation moves on as if the hook had worked) or
``resolved --retry`` (the hook runs again). Other relations and the unit's own hooks carry on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = ["CHANGED_PENDING", "FailedHook", "RelationLocal", "RelationStep", "RelationView", "next_step"]

CHANGED_PENDING = 0  # a joined unit whose -changed hook has not run yet (ZooKeeper's mzxids are > 0)
GONE = -1  # the version recorded for a unit whose -changed ran after its node went


@dataclass(frozen=True)
class FailedHook:
    """The relation hook that failed: its kind, remote unit and the settings version it was run for."""

    kind: str  # joined | changed | departed | broken
    remote: str | None
    version: int = 0
    output: tuple[str, ...] = ()  # its last lines and how it ended (status shows them)


@dataclass(frozen=True)
class RelationLocal:
    """What the unit agent persists about one relation it entered."""

    id: int
    name: str  # the relation's name on this unit's side (the hooks' prefix): "db"
    remote_service: str
    joined: Mapping[str, int] = field(default_factory=dict)  # remote unit -> settings version seen
    left: bool = False  # the unit left the scope: departed for each joined unit, then broken
    failed: FailedHook | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "joined", MappingProxyType(dict(self.joined)))

    @property
    def key(self) -> str:
        return f"{self.name}:{self.id}"

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "remote-service": self.remote_service,
            "joined": dict(sorted(self.joined.items())),
            "left": self.left,
        }
        if self.failed is not None:
            document["failed"] = {
                "kind": self.failed.kind,
                "remote": self.failed.remote,
                "version": self.failed.version,
                "output": list(self.failed.output),
            }
        return document

    @classmethod
    def from_document(cls, relation_id: int, document: Mapping[str, Any]) -> RelationLocal:
        failed = document.get("failed")
        return cls(
            relation_id,
            str(document["name"]),
            str(document["remote-service"]),
            {str(k): int(v) for k, v in (document.get("joined") or {}).items()},
            bool(document.get("left", False)),
            None
            if not failed
            else FailedHook(
                str(failed["kind"]),
                failed.get("remote"),
                int(failed.get("version", 0)),
                tuple(str(line) for line in failed.get("output") or ()),
            ),
        )


@dataclass(frozen=True)
class RelationView:
    """The relation as ZooKeeper shows it now. *alive*: the relation is in the topology and the unit is not
    dying; *members*: remote units in the scope -> their settings version."""

    id: int
    name: str
    remote_service: str
    alive: bool
    members: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RelationStep:
    """Do *action* — ``enter`` (create our settings node), ``leave`` (delete it) or ``hook`` (run
    ``<name>-relation-<kind>`` for *remote*) — then the relation is *success* (None: forgotten), or *failure* if
    the hook failed."""

    action: str
    success: RelationLocal | None
    failure: RelationLocal
    kind: str | None = None
    remote: str | None = None
    version: int = 0
    clears_resolved: bool = False

    def hook_name(self) -> str | None:
        return None if self.kind is None else f"{self.failure.name}-relation-{self.kind}"


def _after(local: RelationLocal, kind: str, remote: str | None, version: int) -> RelationLocal | None:
    """*local* once the hook *kind* for *remote* worked (None: the relation is done with)."""
    joined = dict(local.joined)
    if kind == "joined" and remote is not None:
        joined[remote] = CHANGED_PENDING
    elif kind == "changed" and remote is not None:
        joined[remote] = version
    elif kind == "departed":
        joined.pop(remote or "", None)
    elif kind == "broken":
        return None
    return replace(local, joined=joined, failed=None)


def _hook(local: RelationLocal, kind: str, remote: str | None, version: int = 0) -> RelationStep:
    return RelationStep(
        "hook",
        _after(local, kind, remote, version),
        replace(local, failed=FailedHook(kind, remote, version)),
        kind,
        remote,
        version,
    )


def next_step(
    local: RelationLocal | None, view: RelationView | None, resolved: bool | None = None
) -> RelationStep | None:
    """The next thing to do for one relation; *resolved* is a pending ``resolved`` request for this
    relation (its retry flag), None when there is none."""
    if local is None:
        if view is None or not view.alive:
            return None
        entered = RelationLocal(view.id, view.name, view.remote_service)
        return RelationStep("enter", entered, entered)
    if local.failed is not None:
        if resolved is None:
            return None
        failed = local.failed
        if resolved:
            return replace(_hook(local, failed.kind, failed.remote, failed.version), clears_resolved=True)
        after = _after(local, failed.kind, failed.remote, failed.version)
        return RelationStep("resolve", after, local, clears_resolved=True)
    members = view.members if view is not None else {}
    for remote, seen in sorted(local.joined.items()):
        if seen == CHANGED_PENDING:  # joined is always followed by changed
            return _hook(local, "changed", remote, members.get(remote, GONE))
    leaving = local.left or view is None or not view.alive
    if leaving:
        if not local.left:
            return RelationStep("leave", replace(local, left=True), local)
        for remote in sorted(local.joined):
            return _hook(local, "departed", remote)
        return _hook(local, "broken", None)
    for remote in sorted(local.joined):
        if remote not in members:
            return _hook(local, "departed", remote)
    for remote in sorted(members):
        if remote not in local.joined:
            return _hook(local, "joined", remote)
    for remote, seen in sorted(local.joined.items()):
        if members[remote] != seen:
            return _hook(local, "changed", remote, members[remote])
    return None
