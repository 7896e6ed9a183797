"""A ZooKeeper session for the environment's state: connect (bounded), authenticate, read and write nodes, close.

A thin layer over kazoo's ``KazooClient``: every call returns when ZooKeeper answered, as an awaitable that the
reactor fires (see ``bridge``), bounded by ``operation_timeout``, and every kazoo failure leaves as a
``StateError`` through the one table in ``errors``. The CLI authenticates as ``admin`` with the environment's
admin secret through ZooKeeper's digest scheme; nodes we create carry the admin's digest ACL only (nothing for
anyone else: Ensemble's world-open ACL is gone). The secret itself stays in this process: ZooKeeper and the
machines see only :func:`digest_identity` (``admin:base64(sha1("admin:<secret>"))``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from kazoo.client import KazooClient
from kazoo.exceptions import RolledBackError
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.recipe.watchers import DataWatch
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_digest_acl
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..secret import Secret, reveal
from .acl import ADMIN_USER, Credential, digest_identity
from .bridge import StateReactor, deferred_from_async, in_thread
from .errors import StateConnectionError, state_error
from .kazoo_log import install_kazoo_logging
from .transaction import Operation
from .watch import NodeWatch, SessionState

__all__ = ["ADMIN_USER", "StateClient", "admin_acl", "digest_identity"]

CONNECT_TIMEOUT = 10.0
OPERATION_TIMEOUT = 10.0
SESSION_TIMEOUT = 10.0  # ZooKeeper keeps our ephemeral nodes this long after we vanish

log = Logger()

T = TypeVar("T")


def admin_acl(secret: str | Secret) -> list[ACL]:
    """The ACL of the nodes we create: every permission for the admin identity, none for anyone else."""
    return [make_digest_acl(ADMIN_USER, reveal(secret), all=True)]


class StateClient:
    """One authenticated ZooKeeper session; build it with :meth:`connect`, end it with :meth:`close`."""

    def __init__(
        self, reactor: StateReactor, kazoo: KazooClient, hosts: str, acl: list[ACL], operation_timeout: float
    ) -> None:
        self.reactor = reactor
        self.kazoo = kazoo
        self.hosts = hosts
        self.acl = acl
        self.operation_timeout = operation_timeout

    @classmethod
    async def connect(
        cls,
        reactor: StateReactor,
        hosts: str,
        admin_secret: str | Secret | None = None,
        *,
        credentials: Sequence[Credential] = (),
        timeout: float = CONNECT_TIMEOUT,
        operation_timeout: float = OPERATION_TIMEOUT,
    ) -> StateClient:
        """A session with ZooKeeper at *hosts* (``host:port,...``); StateConnectionError after *timeout*.

        The session authenticates as admin (with *admin_secret*: the CLI) or with *credentials* (an agent's);
        nodes created without an explicit ACL get every permission for those identities only. kazoo would
        retry a refused connection forever: past *timeout* we stop it (in a thread: stop joins kazoo's
        threads) and say so in one line.
        """
        if admin_secret is not None:
            credentials = [Credential(ADMIN_USER, Secret(reveal(admin_secret))), *credentials]
        if not credentials:
            raise ValueError("a state session needs the admin secret or an agent's credentials")
        default_acl = [make_digest_acl(c.user, c.secret.reveal(), all=True) for c in credentials]
        install_kazoo_logging(reactor)
        kazoo = KazooClient(
            hosts=hosts,
            timeout=SESSION_TIMEOUT,
            auth_data=[c.auth_data() for c in credentials],
            default_acl=default_acl,
            connection_retry=KazooRetry(max_tries=-1, max_delay=1.0),  # we bound the whole wait ourselves
        )
        client = cls(reactor, kazoo, hosts, default_acl, operation_timeout)
        connected: Deferred[None] = Deferred()

        def fire(state: str) -> None:  # in the reactor thread
            if connected.called:
                return
            if state == KazooState.CONNECTED:
                connected.callback(None)
            elif state == "timeout":
                connected.errback(
                    StateConnectionError(
                        f"ZooKeeper at {hosts} did not answer within {timeout:g} s: is it running and reachable?"
                    )
                )
            else:
                connected.errback(StateConnectionError(f"ZooKeeper at {hosts} ended our session as it began"))

        def listener(state: str) -> bool:  # in kazoo's connection thread
            reactor.callFromThread(fire, state)
            return state == KazooState.CONNECTED  # True: stop listening

        kazoo.add_listener(listener)
        timer = reactor.callLater(timeout, fire, "timeout")
        try:
            await in_thread(reactor, kazoo.start_async)
            await connected
        except BaseException:
            await client.close()
            raise
        finally:
            if timer.active():
                timer.cancel()
        log.debug("connected to ZooKeeper at {hosts}", hosts=hosts)
        return client

    async def _call(self, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """kazoo's ``<method>_async(*args)`` on *path*, awaited through the bridge; failures mapped."""
        try:
            result = getattr(self.kazoo, f"{method}_async")(path, *args, **kwargs)
        except Exception as failure:  # kazoo refuses some calls at once (a closed client, a bad argument)
            raise state_error(failure, path) from failure
        timeout = self.operation_timeout

        def expired() -> Exception:
            return StateConnectionError(f"ZooKeeper at {self.hosts} did not answer within {timeout:g} s ({path})")

        try:
            return await deferred_from_async(self.reactor, result, timeout, expired)
        except CancelledError:
            raise  # the caller gave up (Ctrl-C): not ZooKeeper's failure
        except Exception as failure:
            raise state_error(failure, path) from failure

    async def get(self, path: str) -> tuple[bytes, ZnodeStat]:
        """The node's data and its stat (``stat.version`` is what a version-checked write gives back)."""
        return cast(tuple[bytes, ZnodeStat], await self._call(path, "get"))

    async def exists(self, path: str) -> ZnodeStat | None:
        return cast("ZnodeStat | None", await self._call(path, "exists"))

    async def create(
        self, path: str, data: bytes = b"", *, ephemeral: bool = False, acl: list[ACL] | None = None
    ) -> str:
        """Create *path* with *acl* (default: this session's identities only); StateNodeExistsError if it is there."""
        return cast(str, await self._call(path, "create", data, acl=acl or self.acl, ephemeral=ephemeral))

    async def get_children(self, path: str) -> list[str]:
        return cast(list[str], await self._call(path, "get_children"))

    async def get_acls(self, path: str) -> list[ACL]:
        return cast(list[ACL], (await self._call(path, "get_acls"))[0])

    async def set_acls(self, path: str, acl: list[ACL], version: int = -1) -> ZnodeStat:
        return cast(ZnodeStat, await self._call(path, "set_acls", acl, version))

    async def commit(self, operations: Sequence[Operation], where: str) -> None:
        """Apply *operations* all or none (one ZooKeeper multi-transaction); the error names *where*.

        A failed transaction leaves ZooKeeper as it was; the error is that of the operation that failed.
        """
        transaction = self.kazoo.transaction()
        for operation in operations:
            operation.add_to(transaction, self.acl)
        timeout = self.operation_timeout

        def expired() -> Exception:
            return StateConnectionError(f"ZooKeeper at {self.hosts} did not answer within {timeout:g} s ({where})")

        try:
            results = await deferred_from_async(self.reactor, transaction.commit_async(), timeout, expired)
        except CancelledError:
            raise
        except Exception as failure:
            raise state_error(failure, where) from failure
        failures = [(op, r) for op, r in zip(operations, results, strict=True) if isinstance(r, Exception)]
        real = [(op, r) for op, r in failures if not isinstance(r, RolledBackError)]
        if real:
            operation, refused = real[0]
            raise state_error(refused, operation.path) from refused

    async def set(self, path: str, data: bytes, version: int = -1) -> ZnodeStat:
        """Write *data* if the node is still at *version* (-1: any); StateConflictError if it moved on."""
        return cast(ZnodeStat, await self._call(path, "set", data, version))

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(path, "delete", version)

    def on_session(self, callback: Callable[[SessionState], object]) -> Callable[[], None]:
        """Call *callback* in the reactor with every change of the session's state; return what stops it.

        kazoo reconnects by itself, after an expiry too (a new session: CONNECTED after LOST). Node watches
        re-arm themselves; what a LOST session takes away (ephemeral nodes) is the listener's to restore.
        """
        stopped = False

        def deliver(state: SessionState) -> None:  # in the reactor thread
            if stopped:
                return
            try:
                callback(state)
            except Exception:
                log.failure("a session listener failed on {state}", state=state.name)

        def listener(state: str) -> None:  # in kazoo's connection thread: must not block
            self.reactor.callFromThread(deliver, SessionState(state))

        def stop() -> None:
            nonlocal stopped
            stopped = True
            self.kazoo.remove_listener(listener)

        self.kazoo.add_listener(listener)
        return stop

    async def watch_data(
        self, path: str, callback: Callable[[T | None], object], decode: Callable[[bytes, ZnodeStat], T]
    ) -> NodeWatch[T]:
        """Watch *path*: *callback* gets ``decode(data, stat)`` (None while the node does not exist) in the
        reactor, now and after every change (see ``watch``), until the returned watch is stopped.

        Returns once the callback has had the node's current value, within ``operation_timeout``
        (StateConnectionError past it). An undecodable node fails the start; later it is logged and skipped.
        """
        watch = NodeWatch(self.reactor, path, callback, decode)

        # DataWatch reads the node as it is built, blocking: in a thread of kazoo's (it re-reads in kazoo's
        # threads anyway), not the reactor's pool, where a ZooKeeper that is down would hold it.
        def start() -> None:  # in kazoo's thread
            try:
                DataWatch(self.kazoo, path, watch.changed)
            except Exception as failure:  # kazoo retries a lost connection; the rest (NoAuth...) ends here
                self.reactor.callFromThread(watch.failed, state_error(failure, path))

        self.kazoo.handler.spawn(start)
        timeout = self.operation_timeout

        def expired(result: object, after: float) -> None:
            raise StateConnectionError(f"ZooKeeper at {self.hosts} did not answer within {timeout:g} s ({path})")

        try:
            await watch.first.addTimeout(timeout, cast(IReactorTime, self.reactor), onTimeoutCancel=expired)
        except BaseException:
            watch.stop()
            raise
        return watch

    async def wait_for(self, path: str, *, present: bool, timeout: float | None = None, why: str = "") -> bytes | None:
        """Until *path* exists (*present*) or is gone, through a watch; its data then (None: gone).

        With *timeout*, StateConnectionError past it, saying *why* (what to look at) when given.
        """
        reached: Deferred[bytes | None] = Deferred()

        def changed(value: bytes | None) -> None:
            if (value is not None) == present and not reached.called:
                reached.callback(value)

        watch = await self.watch_data(path, changed, lambda data, stat: data)
        try:
            if timeout is not None and not reached.called:

                def expired(result: object, after: float) -> None:
                    raise StateConnectionError(
                        why or f"{path} did not {'appear' if present else 'go'} in {timeout:g} s"
                    )

                reached.addTimeout(timeout, cast(IReactorTime, self.reactor), onTimeoutCancel=expired)
            return await reached
        finally:
            watch.stop()

    async def close(self) -> None:
        """End the session (our ephemeral nodes go with it) and free kazoo's threads; safe to call twice."""

        def stop() -> None:
            self.kazoo.stop()
            self.kazoo.close()

        await in_thread(self.reactor, stop)
