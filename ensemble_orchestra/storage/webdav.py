"""``IFileStorage`` on a WebDAV server (Orchestra's Apache mod_dav), over treq with Digest auth.

Layout on the server, below the storage URL (``<base>``)::

    <base>/<prefix>/<name>           one environment's files (put/get/list/delete)
    <base>/<exclusive_root>/<name>/  markers of create_exclusive, shared by all environments

Every request has a deadline (``timeout``, on the injected clock) and every
failure becomes one of ``storage.errors``' classes. The storage does not retry
a failed operation itself (``StorageUnavailable.retryable`` tells the caller it
may), except that a PUT or PROPFIND which never got an answer is sent once more,
as Twisted already does for GET and DELETE: a kept-alive connection the server
closed at the same moment must not fail an operation. MKCOL is never resent,
since a repeated win would read as a loss.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool, RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from ..http.agent import CABundle, make_agent
from ..http.body import BytesBody, read_body
from ..http.deadline import within
from ..http.digest import Credentials, HTTPAuthAgent, InsecureAuthRefused
from ..http.failures import classify
from ..interfaces import IFileStorage
from ..secret import Secret
from .errors import StorageAuthError, StorageError, error_for_exception, error_for_status
from .multistatus import PROPFIND_BODY, PROPFIND_TIMES_BODY, Entry, MultistatusError, parse_children, parse_properties

__all__ = ["DEFAULT_TIMEOUT", "EXCLUSIVE_ROOT", "WebDAVStorage", "open_webdav_storage"]

log = Logger()

DEFAULT_TIMEOUT = 30.0
EXCLUSIVE_ROOT = "exclusive"
_RESENDABLE = (RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived)
_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f]")
_MKCOL_RACE_RETRIES = 3  # a 403 on a marker that is absent again: MKCOL again, this many times


# `WebDAVStorage.list` shadows the builtin inside the class body, annotations included.
_Names = list[str]
_Parts = list[str]
_Entries = list[Entry]


@dataclass(frozen=True)
class _Reply:
    code: int
    headers: Headers
    body: bytes


def _segments(name: str, what: str) -> list[str]:
    """The path segments of a relative name; no empty, '.' or '..' segments, no control characters."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a storage {what} must be a non-empty string, not {name!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") or _BAD_SEGMENT.search(p) for p in parts):
        raise ValueError(f"bad storage {what} {name!r}: use relative names like 'charms/mysql-1.zip'")
    return parts


def _quoted(parts: Iterable[str]) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def open_webdav_storage(
    reactor: object,
    url: str,
    prefix: str,
    username: str,
    password: str | Secret,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ca_bundle: CABundle | None = None,
    basic_over_http: bool = False,
) -> WebDAVStorage:
    """The storage at *url* for one environment (*prefix*), authenticating as *username*."""
    agent, pool = make_agent(reactor, ca_bundle=ca_bundle, connect_timeout=timeout)
    pool.maxPersistentPerHost = 10  # concurrent claims and launches reuse their connections
    auth = HTTPAuthAgent(agent, Credentials(username, password), basic_over_http=basic_over_http)
    return WebDAVStorage(reactor, auth, url, prefix, timeout=timeout, pool=pool)  # type: ignore[arg-type]


@implementer(IFileStorage)
class WebDAVStorage:
    """One environment's files under ``<base>/<prefix>/`` on a WebDAV server.

    *agent* must authenticate (an ``HTTPAuthAgent``); *clock* bounds every
    request by *timeout* seconds. ``delete`` and ``remove_exclusive`` are
    idempotent. *pool*, if given, is closed by ``close()``.
    """

    def __init__(
        self,
        clock: IReactorTime,
        agent: IAgent,
        base_url: str,
        prefix: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        exclusive_root: str = EXCLUSIVE_ROOT,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the storage URL must be http(s)://host/path, not {parts.scheme or 'no'} scheme")
        if "@" in parts.netloc:
            raise ValueError("put the storage credentials in storage-user/storage-pass, not in the URL")
        if parts.query or parts.fragment:
            raise ValueError("the storage URL may not have a query or fragment")
        self._base = parts._replace(path=parts.path.rstrip("/") + "/").geturl()
        self._base_path = unquote(urlsplit(self._base).path)
        self._prefix = _segments(prefix, "prefix")
        self._exclusive_root = _segments(exclusive_root, "exclusive root")
        if self._prefix[0] == self._exclusive_root[0]:
            raise ValueError(f"the environment prefix {prefix!r} may not lie in the markers' {exclusive_root!r}")
        self._clock = clock
        self._http = HTTPClient(agent, data_to_body_producer=BytesBody)
        self._timeout = timeout
        self._pool = pool

    def __repr__(self) -> str:
        return f"<WebDAVStorage {self._base}{_quoted(self._prefix)}/>"

    # -- IFileStorage ------------------------------------------------------------------------

    def get(self, name: str) -> defer.Deferred[bytes]:
        return defer.Deferred.fromCoroutine(self._get(name))

    def put(self, name: str, data: bytes) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._put(name, data))

    def delete(self, name: str) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._delete(name))

    def list(self, prefix: str = "") -> defer.Deferred[_Names]:
        return defer.Deferred.fromCoroutine(self._list(prefix))

    def get_url(self, name: str) -> defer.Deferred[str]:
        try:
            return defer.succeed(self._file_url(name))
        except ValueError:
            return defer.fail()

    def create_exclusive(self, name: str) -> defer.Deferred[bool]:
        return defer.Deferred.fromCoroutine(self._create_exclusive(name))

    def exclusive_age(self, name: str) -> defer.Deferred[float | None]:
        return defer.Deferred.fromCoroutine(self._exclusive_age(name))

    def remove_exclusive(self, name: str) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._remove_exclusive(name))

    # -- beyond the interface ----------------------------------------------------------------

    def check_writable(self) -> defer.Deferred[None]:
        """Put, read back and delete a probe file: bootstrap's "is the storage usable" check."""
        return defer.Deferred.fromCoroutine(self._check_writable())

    def close(self) -> defer.Deferred[None]:
        """Close the kept-alive connections (if this storage owns its pool)."""
        if self._pool is None:
            return defer.succeed(None)
        return self._pool.closeCachedConnections()

    # -- operations --------------------------------------------------------------------------

    async def _get(self, name: str) -> bytes:
        url = self._file_url(name)
        reply = await self._exchange("GET", url)
        if reply.code != 200:
            raise error_for_status(reply.code, "GET", url)
        return reply.body

    async def _put(self, name: str, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"storage data must be bytes, not {type(data).__name__}")
        parts = self._prefix + _segments(name, "file name")
        url = self._base + _quoted(parts)
        reply = await self._exchange("PUT", url, body=data, resend=True)
        if reply.code == 409:  # a parent collection is missing: create them, then once more
            await self._make_collections(parts[:-1])
            reply = await self._exchange("PUT", url, body=data, resend=True)
        if reply.code == 405:
            raise StorageError(f"cannot put {url}: it is a directory", url=url, status=405)
        if reply.code not in (200, 201, 204):
            raise error_for_status(reply.code, "PUT", url)

    async def _delete(self, name: str) -> None:
        url = self._file_url(name)
        # Depth 0 makes mod_dav refuse (400) to delete a collection, which would take everything below it.
        reply = await self._exchange("DELETE", url, headers={"Depth": "0"})
        if reply.code == 400:
            raise StorageError(f"refusing to delete {url}: it is a directory, not a file", url=url, status=400)
        if reply.code not in (200, 204, 404):
            raise error_for_status(reply.code, "DELETE", url)

    async def _list(self, prefix: str) -> _Names:
        if prefix and (prefix.startswith("/") or "//" in prefix):
            raise ValueError(f"bad storage list prefix {prefix!r}")
        directory = prefix.rpartition("/")[0]
        start = _segments(directory, "list prefix") if directory else []
        names = await self._walk(start, prefix)
        return sorted(names)

    async def _walk(self, parts: _Parts, prefix: str) -> _Names:
        """Files below the collection *parts* (relative to the prefix) whose names start with *prefix*."""
        entries = await self._children(self._prefix + parts)
        found: _Names = []
        subdirs = []
        for entry in entries:
            rel = "/".join([*parts, entry.name])
            if not entry.is_collection:
                if rel.startswith(prefix):
                    found.append(rel)
            elif (rel + "/").startswith(prefix) or prefix.startswith(rel + "/"):
                subdirs.append(defer.Deferred.fromCoroutine(self._walk([*parts, entry.name], prefix)))
        for names in await defer.gatherResults(subdirs, consumeErrors=True) if subdirs else []:
            found.extend(names)
        return found

    async def _children(self, parts: _Parts) -> _Entries:
        """PROPFIND Depth 1 of a collection; an absent collection has no children."""
        url = self._base + _quoted(parts) + "/"
        reply = await self._exchange(
            "PROPFIND",
            url,
            body=PROPFIND_BODY,
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            resend=True,
        )
        if reply.code == 404:
            return []
        if reply.code != 207:
            raise error_for_status(reply.code, "PROPFIND", url)
        try:
            return parse_children(reply.body, self._base_path + "/".join(parts))
        except MultistatusError as exc:
            raise StorageError(f"{url}: {exc}", url=url) from None

    async def _create_exclusive(self, name: str) -> bool:
        parts = self._exclusive_root + _segments(name, "marker name")
        url = self._marker_url(name)
        reply = await self._exchange("MKCOL", url)
        if reply.code == 409:  # the markers' parent collections do not exist yet
            await self._make_collections(parts[:-1])
            reply = await self._exchange("MKCOL", url)
        for attempt in range(_MKCOL_RACE_RETRIES + 1):
            if reply.code != 403:
                break
            # mod_dav answers a MKCOL that lost the race inside mkdir (EEXIST) with 403, as it answers a
            # denied one: if the marker is there, the race was lost.
            if await self._exists(url):
                return False
            if attempt == _MKCOL_RACE_RETRIES:
                break  # 403 each time with nothing there: denied
            # Not there (any more): its winner dropped it between our mkdir and our look. Try again.
            reply = await self._exchange("MKCOL", url)
        if reply.code == 201:
            log.debug("won exclusive marker {url}", url=url)
            return True
        if reply.code == 405:
            return False
        raise error_for_status(reply.code, "MKCOL", url)

    async def _exclusive_age(self, name: str) -> float | None:
        url = self._marker_url(name)
        headers = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
        reply = await self._exchange("PROPFIND", url, body=PROPFIND_TIMES_BODY, headers=headers, resend=True)
        if reply.code == 404:
            return None
        if reply.code != 207:
            raise error_for_status(reply.code, "PROPFIND", url)
        try:
            modified = parsedate_to_datetime(parse_properties(reply.body)["getlastmodified"])
            now = parsedate_to_datetime((reply.headers.getRawHeaders(b"date") or [b""])[0].decode("latin-1"))
        except (KeyError, ValueError, TypeError, MultistatusError) as exc:
            raise StorageError(f"cannot tell the age of {url}: {exc!r}", url=url) from None
        return max(0.0, (now - modified).total_seconds())

    async def _remove_exclusive(self, name: str) -> None:
        url = self._marker_url(name)
        reply = await self._exchange("DELETE", url)
        if reply.code not in (200, 204, 404):
            raise error_for_status(reply.code, "DELETE", url)

    async def _check_writable(self) -> None:
        name = f".ensemble-probe-{secrets.token_hex(8)}"
        data = secrets.token_bytes(32)
        await self._put(name, data)
        try:
            back = await self._get(name)
        finally:
            await self._delete(name)
        if back != data:
            url = self._file_url(name)
            raise StorageError(f"the storage did not return what was written to {url}", url=url)

    # -- helpers -----------------------------------------------------------------------------

    def _marker_url(self, name: str) -> str:
        return self._base + _quoted(self._exclusive_root + _segments(name, "marker name")) + "/"

    def _file_url(self, name: str) -> str:
        return self._base + _quoted(self._prefix + _segments(name, "file name"))

    async def _exists(self, url: str) -> bool:
        reply = await self._exchange("PROPFIND", url, body=PROPFIND_BODY, headers={"Depth": "0"}, resend=True)
        return reply.code == 207

    async def _make_collections(self, parts: _Parts) -> None:
        """MKCOL each collection from the top down; existing ones (405, or 403 racing) are fine."""
        for depth in range(1, len(parts) + 1):
            url = self._base + _quoted(parts[:depth]) + "/"
            reply = await self._exchange("MKCOL", url)
            # 403 is also what a denied MKCOL gets: the request that needed the collection then says so.
            if reply.code not in (201, 405, 403):
                raise error_for_status(reply.code, "MKCOL", url)

    async def _exchange(
        self, method: str, url: str, *, body: bytes | None = None, headers: dict | None = None, resend: bool = False
    ) -> _Reply:
        """One request and its whole body within the deadline; transport failures become StorageErrors."""
        for attempt in (1, 2):
            started = self._clock.seconds()
            work = defer.Deferred.fromCoroutine(self._request(method, url, body, headers))
            try:
                reply = await within(self._clock, self._timeout, work)
            except InsecureAuthRefused as exc:
                raise StorageAuthError(str(exc), url=url) from None
            except defer.CancelledError:
                raise  # our caller's cancel, not a storage fault
            except Exception as exc:
                failure = classify(exc, url)
                if resend and attempt == 1 and isinstance(exc, _RESENDABLE) and failure and failure.retryable:
                    log.debug("{method} {url} got no answer, sending it again", method=method, url=url)
                    continue
                raise error_for_exception(exc, method, url, self._timeout) from exc
            log.debug(
                "{method} {url} -> {code} in {ms:.1f} ms",
                method=method,
                url=url,
                code=reply.code,
                ms=(self._clock.seconds() - started) * 1000,
            )
            return reply
        raise AssertionError("unreachable")

    async def _request(self, method: str, url: str, body: bytes | None, headers: dict | None) -> _Reply:
        response = await self._http.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,  # a redirect must not carry our credentials elsewhere
            unbuffered=True,
            reactor=cast(Any, self._clock),  # treq reads only its clock: ours, injected
        )
        content = await read_body(response.original)  # cancellable: the deadline drops the connection
        return _Reply(response.code, response.headers, content)
