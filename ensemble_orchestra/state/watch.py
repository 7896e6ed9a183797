"""Watches: a node's changes, and the session's state, delivered in the reactor thread.

A node watch is kazoo's ``DataWatch``: it reads the node and leaves a ZooKeeper watch; when the watch fires it
reads again (with a new watch), under a lock, so reads happen one at a time, in order; a read whose node
version (``mzxid``) did not move calls nobody. It survives connection loss and session expiry within one
``KazooClient``: after a reconnect, including the new session kazoo opens by itself after an expiry, it reads the
node again and re-arms the watch (the tests prove both, against a restarted ZooKeeper and an expired session).
Its reads run in kazoo's threads (they block there, never the reactor); :class:`NodeWatch` decodes the data
there too (a big topology takes tens of ms to parse) and hands the value over with ``callFromThread``, whose
FIFO keeps kazoo's order.

What a watch promises is ZooKeeper's: a watch fires once, and changes made between its firing and the read
that re-arms it are seen together. So the callback sees the node's states in order, never an older one after a
newer one, and the state it was last given is the node's latest; it may not see every intermediate state.
Consumers reconcile against the state they are given (level, not edge): that is what agents must do anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kazoo.protocol.states import ZnodeStat
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .bridge import ReactorThread

__all__ = ["NodeWatch", "SessionState"]

T = TypeVar("T")

log = Logger()


class SessionState(enum.Enum):
    """The ZooKeeper session as kazoo sees it (its ``KazooState``).

    SUSPENDED: the connection dropped; the session may still live (kazoo reconnects). LOST: the session expired,
    its ephemeral nodes are gone. CONNECTED after LOST is a new session: re-create ephemerals, re-read state.
    Node watches re-arm themselves after either.
    """

    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"


class NodeWatch(Generic[T]):
    """One node's values, ``decode(data, stat)`` or None when the node does not exist, given to *callback*.

    Built by ``StateClient.watch_data``; :meth:`stop` ends the deliveries at once.
    """

    def __init__(
        self,
        reactor: ReactorThread,
        path: str,
        callback: Callable[[T | None], object],
        decode: Callable[[bytes, ZnodeStat], T],
    ) -> None:
        self.reactor = reactor
        self.path = path
        self.callback = callback
        self.decode = decode
        self.deliveries = 0  # how many values the callback was given
        self.first: Deferred[None] = Deferred()  # fires after the first delivery, or with the first read's error
        self._stopped = False

    @property
    def active(self) -> bool:
        return not self._stopped

    def stop(self) -> None:
        """No callback from now on (even for a value already on its way). kazoo's own watch ends on the node's
        next change: its watch function then returns False."""
        self._stopped = True

    def changed(self, data: bytes | None, stat: ZnodeStat | None, event: Any = None) -> bool | None:
        """kazoo's DataWatch function, in kazoo's thread: decode here, deliver in the reactor.

        It never raises (DataWatch would call it again with two arguments on a TypeError, and log the rest).
        """
        if self._stopped:
            return False  # kazoo removes this watch
        try:
            value = None if stat is None else self.decode(data or b"", stat)
        except Exception:
            self.reactor.callFromThread(self._undecodable, Failure())
        else:
            self.reactor.callFromThread(self._deliver, value)
        return None

    def _deliver(self, value: T | None) -> None:  # in the reactor thread
        if self._stopped:
            return
        self.deliveries += 1
        try:
            self.callback(value)
        except Exception:
            log.failure("a watcher of {path} failed on a change; the watch goes on", path=self.path)
        if not self.first.called:
            self.first.callback(None)

    def failed(self, error: Exception) -> None:  # in the reactor thread
        """The watch could not start (its first read failed for good): the caller of watch_data hears why."""
        if not self._stopped and not self.first.called:
            self.first.errback(error)

    def _undecodable(self, failure: Failure) -> None:  # in the reactor thread
        if self._stopped:
            return
        if not self.first.called:
            self.first.errback(failure)  # the watch cannot start: the caller hears why
            return
        log.failure("{path} changed to something we cannot read; the watch goes on", failure, path=self.path)
