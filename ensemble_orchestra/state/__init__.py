"""The environment's state in ZooKeeper: a kazoo session bridged to Twisted, and typed access to its nodes.

Nodes, their content and who writes them: docs/state.md.
"""

from __future__ import annotations

from .client import ADMIN_USER, StateClient, admin_acl, digest_identity
from .errors import (
    StateAuthError,
    StateConflictError,
    StateConnectionError,
    StateCorruptError,
    StateError,
    StateNodeExistsError,
    StateNotFoundError,
    TopologyError,
)
from .topology import Machine, Service, Topology, Unit
from .topology_node import TOPOLOGY_PATH, TopologyNode
from .watch import NodeWatch, SessionState

__all__ = [
    "ADMIN_USER",
    "TOPOLOGY_PATH",
    "Machine",
    "NodeWatch",
    "Service",
    "SessionState",
    "StateAuthError",
    "StateClient",
    "StateConflictError",
    "StateConnectionError",
    "StateCorruptError",
    "StateError",
    "StateNodeExistsError",
    "StateNotFoundError",
    "Topology",
    "TopologyError",
    "TopologyNode",
    "Unit",
    "admin_acl",
    "digest_identity",
]
