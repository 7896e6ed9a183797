"""The state layer's errors, and the ONE table that maps kazoo's exceptions onto them.

Fatal vs retryable is the class's ``retryable``: a lost connection or an expired session may heal on its own
(the caller reconnects or tries again); a refused identity or a missing node needs someone to act.
"""

from __future__ import annotations

from kazoo import exceptions as zk

from ..errors import EnsembleError

__all__ = [
    "ERROR_TABLE",
    "StateAuthError",
    "StateConflictError",
    "StateConnectionError",
    "StateCorruptError",
    "StateError",
    "StateNodeExistsError",
    "StateNotFoundError",
    "TopologyError",
    "state_error",
]


class StateError(EnsembleError):
    """A ZooKeeper (environment state) operation failed; str() is one line naming the node and what to do."""

    path: str | None = None  # the node it failed on, when one is known


class StateConnectionError(StateError):
    """ZooKeeper did not answer, the connection dropped or the session expired: try again (reconnect)."""

    retryable = True


class StateAuthError(StateError):
    """ZooKeeper refused our identity (no access to the node, or authentication failed): fatal."""


class StateNotFoundError(StateError):
    """The node does not exist (the environment is not initialized, or the thing was removed)."""


class StateNodeExistsError(StateError):
    """The node exists already where we meant to create it."""


class StateConflictError(StateError):
    """Others kept changing the node: a version-checked write lost every one of its attempts."""

    retryable = True


class StateCorruptError(StateError):
    """A node holds something we cannot read (not the YAML shape we write): fatal until someone repairs it."""


class TopologyError(StateError):
    """A topology change makes no sense (an unknown machine or service, a duplicate name...)."""


# kazoo's exception → (our class, what to tell the user). The first matching row wins: subclasses first.
ERROR_TABLE: tuple[tuple[type[Exception], type[StateError], str], ...] = (
    (zk.NoAuthError, StateAuthError, "not allowed to access {path}: check the environment's admin-secret"),
    (zk.AuthFailedError, StateAuthError, "ZooKeeper refused our credentials at {path}: check the admin-secret"),
    (zk.NoNodeError, StateNotFoundError, "{path} does not exist in ZooKeeper: is the environment initialized?"),
    (zk.NodeExistsError, StateNodeExistsError, "{path} exists already in ZooKeeper"),
    (zk.ConnectionLoss, StateConnectionError, "lost the connection to ZooKeeper during {path}: try again"),
    (zk.SessionExpiredError, StateConnectionError, "the ZooKeeper session expired during {path}: reconnect"),
    (zk.ConnectionClosedError, StateConnectionError, "the ZooKeeper connection is closed ({path}): reconnect"),
    (zk.OperationTimeoutError, StateConnectionError, "ZooKeeper did not answer in time ({path}): try again"),
    (TimeoutError, StateConnectionError, "ZooKeeper did not answer in time ({path}): try again"),
    (zk.BadVersionError, StateConflictError, "{path} changed while we were changing it: try again"),
    (zk.NotEmptyError, StateConflictError, "{path} gained a child while we were removing it: try again"),
)


def state_error(failure: BaseException, path: str) -> StateError:
    """Our error for kazoo's *failure* on node *path* (an unknown kazoo error is a fatal StateError)."""
    if isinstance(failure, StateError):
        return failure
    error: StateError | None = None
    for raised, ours, message in ERROR_TABLE:
        if isinstance(failure, raised):
            error = ours(message.format(path=path))
            break
    if error is None:
        error = StateError(f"ZooKeeper failed on {path}: {type(failure).__name__} {failure}".strip())
    error.path = path
    return error
