"""``/units``: each unit's state and open ports as its agent reports them, and the user's ``resolved`` requests.

``/units/<service>-<n>`` is created with the unit (``services.py``, in the topology's transaction) holding
``agent-state: pending``; from then on the unit agent writes it, its open ports included (one node: status
reads a unit in one request, and a state and its ports change together). Its ACL lets the provisioning agent
add the identity of the machine the unit is placed on (``grant``): a unit agent runs with its machine's
credential and may write its own unit's nodes, and no other unit's. Children: ``agent`` (ephemeral presence of
the unit agent), ``resolved`` (``retry: bool``: the CLI asks, the agent acts and deletes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kazoo.security import ACL, Id, Permissions

from ..deferreds import gather
from .acl import Identities
from .client import StateClient
from .errors import StateCorruptError, StateNotFoundError
from .layout import (
    dump_document,
    load_document,
    unit_agent_path,
    unit_path,
    unit_resolved_path,
)

__all__ = [
    "ERROR_STATES",
    "RelationError",
    "UNIT_STATES",
    "UnitPresence",
    "UnitRecord",
    "UnitsState",
    "format_port",
    "sort_ports",
]

# What a unit agent reports (``agent-state``); "down" is status's word for a unit whose agent is gone.
UNIT_STATES = (
    "pending",
    "installed",
    "started",
    "stopped",
    "install-error",
    "start-error",
    "configure-error",
    "stop-error",
    "upgrade-error",
)
ERROR_STATES = ("install-error", "start-error", "configure-error", "stop-error", "upgrade-error")
OUTPUT_LINES = 20  # a failing hook's last lines kept in the unit's node (its whole output is in the unit's log)


def format_port(port: int, protocol: str) -> str:
    return f"{port}/{protocol}"


def sort_ports(ports: Iterable[str]) -> tuple[str, ...]:
    """``port/protocol`` texts, once each, by port number."""
    return tuple(sorted(set(ports), key=lambda p: (int(p.partition("/")[0]), p)))


@dataclass(frozen=True)
class RelationError:
    """A relation whose hook failed on this unit: nothing more of it runs until ``resolved UNIT RELATION``."""

    name: str  # the relation's name on this unit's side: "db"
    remote_service: str
    hook: str  # "db-relation-changed"
    remote_unit: str | None  # the hook's remote unit (None for -broken)
    hook_output: tuple[str, ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "remote-service": self.remote_service,
            "hook": self.hook,
            "remote-unit": self.remote_unit,
            "hook-output": list(self.hook_output),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> RelationError:
        remote = document.get("remote-unit")
        return cls(
            str(document["name"]),
            str(document["remote-service"]),
            str(document["hook"]),
            None if remote is None else str(remote),
            tuple(str(line) for line in document.get("hook-output") or ()),
        )


@dataclass(frozen=True)
class UnitRecord:
    """What ``/units/<service>-<n>`` holds."""

    name: str
    agent_state: str = "pending"
    charm: str | None = None  # the charm id the unit runs (set by its agent once deployed)
    hook: str | None = None  # in an error state: the hook that failed
    hook_output: tuple[str, ...] = ()  # ... and its last lines
    private_address: str | None = None
    public_address: str | None = None
    open_ports: tuple[str, ...] = ()  # "3306/tcp", sorted by port
    relation_errors: Mapping[str, RelationError] = field(default_factory=dict)  # by relation id ("db:3")
    # Why the machine agent could not deploy the unit (it tries again); None once it could. Written only when set.
    deploy_error: str | None = None

    def to_document(self) -> dict[str, Any]:
        document = {
            "agent-state": self.agent_state,
            "charm": self.charm,
            "hook": self.hook,
            "hook-output": list(self.hook_output),
            "private-address": self.private_address,
            "public-address": self.public_address,
            "open-ports": list(self.open_ports),
            "relation-errors": {key: error.to_document() for key, error in sorted(self.relation_errors.items())},
        }
        if self.deploy_error is not None:
            document["deploy-error"] = self.deploy_error
        return document

    @classmethod
    def from_document(cls, name: str, document: dict[str, Any]) -> UnitRecord:
        state = str(document.get("agent-state", "pending"))
        if state not in UNIT_STATES:
            raise StateCorruptError(f"{unit_path(name)}: unknown agent-state {state!r}: repair it or remove the unit")

        def text(key: str) -> str | None:
            value = document.get(key)
            return None if value is None else str(value)

        return cls(
            name,
            state,
            text("charm"),
            text("hook"),
            tuple(str(line) for line in document.get("hook-output") or ()),
            text("private-address"),
            text("public-address"),
            sort_ports(str(p) for p in document.get("open-ports") or ()),
            {str(k): RelationError.from_document(v) for k, v in (document.get("relation-errors") or {}).items()},
            text("deploy-error"),
        )

    @property
    def in_error(self) -> bool:
        return self.agent_state in ERROR_STATES


@dataclass(frozen=True)
class UnitPresence:
    """What a unit agent says of itself in its ephemeral node."""

    pid: int
    version: str

    def to_document(self) -> dict[str, Any]:
        return {"pid": self.pid, "version": self.version}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> UnitPresence:
        return cls(int(document.get("pid", 0)), str(document.get("version", "")))


class UnitsState:
    """Typed access to the units' nodes of one ZooKeeper session (CLI, provisioning agent or unit agent)."""

    def __init__(self, client: StateClient, identities: Identities) -> None:
        self.client = client
        self.identities = identities

    def unit_acl(self, machine_identity: str | None = None) -> list[ACL]:
        """A unit's node: provisioning-owned (so the provisioning agent can grant), plus its machine's agent."""
        extra = [ACL(Permissions.ALL, Id("digest", machine_identity))] if machine_identity else []
        return self.identities.provisioning_owned() + extra

    # -- reads ---------------------------------------------------------------------------------------------

    async def read(self, name: str) -> UnitRecord:
        path = unit_path(name)
        data, _ = await self.client.get(path)
        return UnitRecord.from_document(name, load_document(data, path))

    async def read_if_there(self, name: str) -> UnitRecord | None:
        try:
            return await self.read(name)
        except StateNotFoundError:
            return None

    async def read_many(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        found = await gather([self.read_if_there(n) for n in names])
        return dict(zip(names, found, strict=True))

    async def presence(self, name: str) -> UnitPresence | None:
        path = unit_agent_path(name)
        try:
            data, _ = await self.client.get(path)
        except StateNotFoundError:
            return None
        return UnitPresence.from_document(load_document(data, path))

    async def connected(self, names: Sequence[str]) -> dict[str, bool]:
        """Whether each unit's agent is connected: ``exists`` only (no data to read and parse), for status."""
        found = await gather([self.client.exists(unit_agent_path(n)) for n in names])
        return {name: stat is not None for name, stat in zip(names, found, strict=True)}

    async def resolved_request(self, name: str) -> bool | None:
        """The pending ``resolved`` request: its retry flag, or None when there is none."""
        path = unit_resolved_path(name)
        try:
            data, _ = await self.client.get(path)
        except StateNotFoundError:
            return None
        return bool(load_document(data, path).get("retry", False))

    # -- the CLI -------------------------------------------------------------------------------------------

    async def request_resolved(self, name: str, retry: bool, relation: str | None = None) -> None:
        """Ask the unit's agent to leave its error state, or *relation*'s (running the failed hook again with
        *retry*)."""
        document: dict[str, Any] = {"retry": retry}
        if relation is not None:
            document["relation"] = relation
        await self.client.create(unit_resolved_path(name), dump_document(document), acl=self.identities.shared())

    # -- the provisioning agent ----------------------------------------------------------------------------

    async def grant(self, name: str, machine_identity: str) -> bool:
        """Let the agent of the unit's machine write the unit's nodes; True when the ACL changed."""
        path = unit_path(name)
        wanted = self.unit_acl(machine_identity)
        current = await self.client.get_acls(path)
        if sorted(map(str, current)) == sorted(map(str, wanted)):
            return False
        await self.client.set_acls(path, wanted)
        return True

    # -- the machine agent ---------------------------------------------------------------------------------

    async def record_deploy_error(self, name: str, error: str | None) -> None:
        """The machine agent's word on unit *name*: why it could not deploy it, or None once it could.

        A compare-and-set on the node's version: it never overwrites what the unit's agent wrote meanwhile
        (StateConflictError then; the caller's next try reads again)."""
        path = unit_path(name)
        data, stat = await self.client.get(path)
        record = UnitRecord.from_document(name, load_document(data, path))
        if record.deploy_error == error:
            return
        changed = replace(record, deploy_error=error)
        await self.client.set(path, dump_document(changed.to_document()), version=stat.version)

    # -- the unit agent ------------------------------------------------------------------------------------

    async def report(self, record: UnitRecord) -> None:
        await self.client.set(unit_path(record.name), dump_document(record.to_document()))

    async def register(self, name: str, presence: UnitPresence, owner: str) -> None:
        await self.client.create(
            unit_agent_path(name),
            dump_document(presence.to_document()),
            ephemeral=True,
            acl=self.identities.presence(owner),
        )

    async def clear_resolved(self, name: str) -> None:
        try:
            await self.client.delete(unit_resolved_path(name))
        except StateNotFoundError:
            pass
