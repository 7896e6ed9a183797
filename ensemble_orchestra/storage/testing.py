"""An in-memory ``IFileStorage`` for tests (public, like ``treq.testing``): the WebDAV storage's contract, no server.

A `MemoryStorageServer` plays the storage server: every environment's files, and the markers of
``create_exclusive`` in ONE namespace shared by all of them (as ``<base>/exclusive/`` is on the real
server), so claims across environments can be tested; ``server.storage("environments/alpha")`` is one
environment's `MemoryStorage`. Names are checked by the real storage's own rules (its validator is
reused, not copied); a marker's age is whole seconds on the injected clock (``task.Clock`` in tests),
so a lease passes with ``clock.advance`` instead of a sleep. Failures are injected per operation
(``fail_next``, ``hang_next``, ``down``) to drive error and rollback paths.

What only a real server shows (HTTP, Digest auth, mod_dav's MKCOL race, its clock) is proven against
the lab's Apache in ``tests/integration/test_webdav_storage.py``; ``tests/unit/test_storage_memory.py``
holds this fake to the same contract.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from zope.interface import implementer

from ..interfaces import IFileStorage
from .errors import StorageError, StorageUnavailable, error_for_status
from .webdav import DEFAULT_TIMEOUT, EXCLUSIVE_ROOT
from .webdav import _quoted as quoted  # the real storage's URL quoting and name rules, not copies
from .webdav import _segments as segments

__all__ = ["OPERATIONS", "MemoryStorage", "MemoryStorageServer"]

T = TypeVar("T")

# The operations that are requests to the server, so failures can be injected into them.
# (get_url makes no request; check_writable is a put, a get and a delete, as on WebDAV.)
OPERATIONS = ("get", "put", "delete", "list", "create_exclusive", "exclusive_age", "remove_exclusive")

_HANG = object()  # a scripted request that never gets an answer
_UNAVAILABLE = object()  # a scripted request that fails with StorageUnavailable

# `MemoryStorage.list` shadows the builtin inside the class body, annotations included.
_Names = list[str]


class MemoryStorageServer:
    """The storage server in memory: files of every environment, shared markers, scripted failures.

    *latency* delays every answer on *clock* (an operation takes effect when it answers, so concurrent
    callers interleave as on a real server); *timeout* is how long a hung request waits before it
    fails with ``StorageUnavailable``, like the real storage's per-request deadline.

    State, for tests to inspect: ``files`` (full path, e.g. ``environments/alpha/provider-state``
    -> bytes), ``markers`` (full path, e.g. ``exclusive/claims/<uid>`` -> clock time of creation),
    ``calls`` (requests per operation).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        base_url: str = "http://storage.test/webdav/",
        latency: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.clock = clock
        self.base_url = base_url.rstrip("/") + "/"
        self.latency = latency
        self.timeout = timeout
        self.files: dict[str, bytes] = {}
        self.markers: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.down = False  # True: every request fails at once, as when nothing listens
        self._script: defaultdict[str, list[tuple[str | None, object]]] = defaultdict(list)

    def storage(self, prefix: str, *, exclusive_root: str = EXCLUSIVE_ROOT) -> MemoryStorage:
        """One environment's storage, its files below *prefix*; markers below *exclusive_root* (shared)."""
        return MemoryStorage(self, prefix, exclusive_root=exclusive_root)

    def fail_next(
        self, operation: str, error: BaseException | None = None, *, times: int = 1, name: str | None = None
    ) -> None:
        """The next *times* requests of *operation* (on *name* only, if given) fail with *error*.

        The default error is ``StorageUnavailable``, as when the server is unreachable.
        """
        self._check_operation(operation)
        self._script[operation].extend([(name, _UNAVAILABLE if error is None else error)] * times)

    def hang_next(self, operation: str, *, times: int = 1, name: str | None = None) -> None:
        """The next *times* requests of *operation* (on *name*) never answer: ``StorageUnavailable`` after *timeout*."""
        self._check_operation(operation)
        self._script[operation].extend([(name, _HANG)] * times)

    def has_marker(self, name: str, *, exclusive_root: str = EXCLUSIVE_ROOT) -> bool:
        """Whether the marker *name* exists (what ``create_exclusive(name)`` would lose to)."""
        return "/".join(segments(exclusive_root, "exclusive root") + segments(name, "marker name")) in self.markers

    def _check_operation(self, operation: str) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"not a storage request: {operation!r} (one of {', '.join(OPERATIONS)})")

    def _next_scripted(self, operation: str, name: str) -> object:
        script = self._script.get(operation) or []
        for index, (only, action) in enumerate(script):
            if only is None or only == name:
                del script[index]
                return action
        return None


@implementer(IFileStorage)
class MemoryStorage:
    """One environment's files on a `MemoryStorageServer`; markers shared with every other environment."""

    def __init__(self, server: MemoryStorageServer, prefix: str, *, exclusive_root: str = EXCLUSIVE_ROOT) -> None:
        self._prefix = segments(prefix, "prefix")
        self._exclusive_root = segments(exclusive_root, "exclusive root")
        if self._prefix[0] == self._exclusive_root[0]:
            raise ValueError(f"the environment prefix {prefix!r} may not lie in the markers' {exclusive_root!r}")
        self.server = server
        self.closed = False

    def __repr__(self) -> str:
        return f"<MemoryStorage {self.server.base_url}{quoted(self._prefix)}/>"

    # -- IFileStorage: files -----------------------------------------------------------------

    def get(self, name: str) -> Deferred[bytes]:
        def prepare() -> Callable[[], bytes]:
            path, url = self._file(name)

            def read() -> bytes:
                if path in self.server.files:
                    return self.server.files[path]
                if self._is_directory(path):
                    raise StorageError(f"cannot get {url}: it is a directory", url=url)
                raise error_for_status(404, "GET", url)

            return read

        return self._request("get", name, prepare)

    def put(self, name: str, data: bytes) -> Deferred[None]:
        def prepare() -> Callable[[], None]:
            if not isinstance(data, bytes):
                raise TypeError(f"storage data must be bytes, not {type(data).__name__}")
            path, url = self._file(name)

            def write() -> None:
                if self._is_directory(path):
                    raise StorageError(f"cannot put {url}: it is a directory", url=url, status=405)
                parts = path.split("/")
                if any("/".join(parts[:depth]) in self.server.files for depth in range(1, len(parts))):
                    raise error_for_status(409, "PUT", url)  # a file cannot hold files
                self.server.files[path] = bytes(data)

            return write

        return self._request("put", name, prepare)

    def delete(self, name: str) -> Deferred[None]:
        def prepare() -> Callable[[], None]:
            path, url = self._file(name)

            def remove() -> None:
                if self._is_directory(path):
                    raise StorageError(f"refusing to delete {url}: it is a directory, not a file", url=url, status=400)
                self.server.files.pop(path, None)

            return remove

        return self._request("delete", name, prepare)

    def list(self, prefix: str = "") -> Deferred[_Names]:
        def prepare() -> Callable[[], _Names]:
            # The real storage's rules for a list prefix (WebDAVStorage._list), with its validator.
            if prefix and (prefix.startswith("/") or "//" in prefix):
                raise ValueError(f"bad storage list prefix {prefix!r}")
            directory = prefix.rpartition("/")[0]
            if directory:
                segments(directory, "list prefix")
            top = "/".join(self._prefix) + "/"

            def names() -> _Names:
                relative = (path[len(top) :] for path in self.server.files if path.startswith(top))
                return sorted(name for name in relative if name.startswith(prefix))

            return names

        return self._request("list", prefix, prepare)

    def get_url(self, name: str) -> Deferred[str]:
        """The file's URL; like the real storage, no request is made (and none can fail)."""
        try:
            return succeed(self._file(name)[1])
        except ValueError:
            return fail()

    # -- IFileStorage: markers ---------------------------------------------------------------

    def create_exclusive(self, name: str) -> Deferred[bool]:
        def prepare() -> Callable[[], bool]:
            path = self._marker(name)

            def test_and_set() -> bool:
                markers = self.server.markers
                if path in markers:
                    return False
                now = self.server.clock.seconds()
                parts = path.split("/")
                for depth in range(1, len(parts)):  # parents are made as collections too, as on WebDAV
                    markers.setdefault("/".join(parts[:depth]), now)
                markers[path] = now
                return True

            return test_and_set

        return self._request("create_exclusive", name, prepare)

    def exclusive_age(self, name: str) -> Deferred[float | None]:
        def prepare() -> Callable[[], float | None]:
            path = self._marker(name)

            def age() -> float | None:
                created = self.server.markers.get(path)
                if created is None:
                    return None
                # Whole seconds, like the HTTP dates the real storage compares.
                return float(max(0, math.floor(self.server.clock.seconds()) - math.floor(created)))

            return age

        return self._request("exclusive_age", name, prepare)

    def remove_exclusive(self, name: str) -> Deferred[None]:
        def prepare() -> Callable[[], None]:
            path = self._marker(name)

            def remove() -> None:
                for marker in [m for m in self.server.markers if m == path or m.startswith(path + "/")]:
                    del self.server.markers[marker]

            return remove

        return self._request("remove_exclusive", name, prepare)

    # -- IFileStorage: the rest --------------------------------------------------------------

    def check_writable(self) -> Deferred[None]:
        """Put, read back and delete a probe file, as the real storage does (so its faults apply)."""
        self.server.calls["check_writable"] += 1
        return Deferred.fromCoroutine(self._check_writable())

    async def _check_writable(self) -> None:
        name = ".ensemble-probe"
        await self.put(name, b"probe")
        try:
            back = await self.get(name)
        finally:
            await self.delete(name)
        if back != b"probe":
            raise StorageError("the storage did not return what was written", url=self._file(name)[1])

    def close(self) -> Deferred[None]:
        """Mark the storage closed: any later request fails, since the contract says none comes."""
        self.closed = True
        return succeed(None)

    # -- helpers -----------------------------------------------------------------------------

    def _file(self, name: str) -> tuple[str, str]:
        parts = self._prefix + segments(name, "file name")
        return "/".join(parts), self.server.base_url + quoted(parts)

    def _marker(self, name: str) -> str:
        return "/".join(self._exclusive_root + segments(name, "marker name"))

    def _is_directory(self, path: str) -> bool:
        return any(other.startswith(path + "/") for other in self.server.files)

    def _request(self, operation: str, name: str, prepare: Callable[[], Callable[[], T]]) -> Deferred[T]:
        """Check the arguments now (bad names fail before any request, as on WebDAV), then answer.

        The answer comes after the server's latency, or a scripted failure instead; the effect
        happens when the answer does, so a cancelled request changes nothing.
        """
        try:
            effect = prepare()
        except (ValueError, TypeError):
            return fail()
        server = self.server
        server.calls[operation] += 1
        if self.closed:
            return fail(RuntimeError(f"{self!r} used after close()"))
        url = f"{server.base_url}{quoted(self._prefix)}/"
        scripted = server._next_scripted(operation, name)
        if scripted is _HANG:
            return self._hang(operation, url)
        if isinstance(scripted, BaseException):
            return fail(scripted)
        if scripted is _UNAVAILABLE or server.down:
            why = "scripted by fail_next" if scripted is _UNAVAILABLE else "MemoryStorageServer.down"
            return fail(
                StorageUnavailable(
                    f"the storage is unavailable: {operation} {url} failed: ConnectionRefusedError:"
                    f" Connection was refused by other side ({why})",
                    url=url,
                )
            )
        if not server.latency:
            try:
                return succeed(effect())
            except Exception:
                return fail()
        return deferLater(server.clock, server.latency, effect)

    def _hang(self, operation: str, url: str) -> Deferred[T]:
        """No answer: the deadline fails it after the server's timeout; cancelling it is the caller's."""
        timeout = self.server.timeout

        def expire() -> None:
            answer.errback(
                StorageUnavailable(f"the storage is unavailable: no answer to {operation} {url} within {timeout:g}s")
            )

        deadline = self.server.clock.callLater(timeout, expire)
        answer: Deferred[T] = Deferred(lambda _: deadline.cancel())
        return answer
