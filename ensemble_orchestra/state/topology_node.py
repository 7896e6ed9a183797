"""``/topology``: read it, and change it atomically with a version-checked read-modify-write.

``change(fn)`` reads the node and its version, computes ``fn(topology)`` and writes the result only if the node
is still at that version (a set with the version, or a create when the node does not exist yet). A write that
lost the race (BadVersion, or NodeExists for the first create) is retried from a fresh read, so *fn* must be a
pure function of the topology it is given (``Topology``'s methods are). Every concurrent change survives: each
round, at least one writer wins. The attempts are bounded; past them the change fails as retryable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kazoo.protocol.states import ZnodeStat
from twisted.logger import Logger

from .client import StateClient
from .errors import StateConflictError, StateNodeExistsError, StateNotFoundError
from .topology import Topology
from .transaction import Create, Operation, SetData
from .watch import NodeWatch

__all__ = ["MAX_ATTEMPTS", "TOPOLOGY_PATH", "TopologyNode"]

TOPOLOGY_PATH = "/topology"
MAX_ATTEMPTS = 100  # n concurrent writers need at most n rounds; this is far beyond any real contention

log = Logger()


class TopologyNode:
    """Typed access to the topology node of one ZooKeeper session."""

    def __init__(self, client: StateClient, path: str = TOPOLOGY_PATH, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.client = client
        self.path = path
        self.max_attempts = max_attempts

    async def read(self) -> Topology:
        """The topology now (an empty one if the node does not exist yet)."""
        topology, _ = await self._read()
        return topology

    async def change(
        self,
        change: Callable[[Topology], Topology],
        also: Callable[[Topology, Topology], Sequence[Operation]] | None = None,
    ) -> Topology:
        """Apply *change* atomically, retried on conflict; return the topology written.

        *also(old, new)* gives operations on other nodes that must happen with this change or not at all
        (``/machines/machine-N`` with the machine): one multi-transaction then carries them all. A change that
        returns an equal topology writes nothing. Errors *change* raises (TopologyError) end it at once,
        without a write.
        """
        for attempt in range(1, self.max_attempts + 1):
            current, version = await self._read()
            changed = change(current)
            if changed == current:
                return current
            data = changed.to_yaml().encode()
            others = list(also(current, changed)) if also else []
            try:
                if others:
                    own: Operation = Create(self.path, data) if version is None else SetData(self.path, data, version)
                    await self.client.commit([own, *others], self.path)
                elif version is None:
                    await self.client.create(self.path, data)
                else:
                    await self.client.set(self.path, data, version)
            except (StateConflictError, StateNodeExistsError) as conflict:
                if others and not _about(conflict, self.path):
                    raise
                log.debug("{path} changed under us (attempt {attempt}): again", path=self.path, attempt=attempt)
                continue
            return changed
        raise StateConflictError(
            f"{self.path} kept changing under us: {self.max_attempts} attempts to change it lost; try again"
        )

    async def watch(self, callback: Callable[[Topology | None], object]) -> NodeWatch[Topology]:
        """*callback* gets the topology (None while the node does not exist) in the reactor, now and after every
        change, in order, the latest last (see ``state.watch``); ``.stop()`` on the result ends it."""

        def decode(data: bytes, stat: ZnodeStat) -> Topology:  # in kazoo's thread: parsing stays off the reactor
            return Topology.from_yaml(data, self.path)

        return await self.client.watch_data(self.path, callback, decode)

    async def read_versioned(self) -> tuple[Topology, int | None]:
        """The topology and the node's version (None: no node yet), for a change checked elsewhere."""
        return await self._read()

    async def _read(self) -> tuple[Topology, int | None]:
        """The topology and the node's version (None: no node yet)."""
        try:
            data, stat = await self.client.get(self.path)
        except StateNotFoundError:
            return Topology(), None
        return Topology.from_yaml(data, self.path), stat.version


def _about(error: StateConflictError | StateNodeExistsError, path: str) -> bool:
    """Whether a transaction's conflict is the topology's own (then a fresh read and another round help)."""
    return error.path == path
