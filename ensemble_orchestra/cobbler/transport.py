"""XML-RPC over Twisted's HTTP client: timeouts, a concurrency bound, retries on a schedule, call counts.

This layer knows nothing about Cobbler's objects or tokens. It turns a method call into one HTTP
POST, and every way that can go wrong into the error taxonomy (`errors`). Retryable failures
(connection refused/reset, timeouts, HTTP 5xx) are retried on a `Schedule`, whose delays are
data and whose clock is injected, so tests drive time with `twisted.internet.task.Clock`.

Connections are pooled (persistent HTTP/1.1 where the server allows it: Orchestra's Apache keeps
connections alive; a bare cobblerd speaks HTTP/1.0 and closes each one).
"""

from __future__ import annotations

import xmlrpc.client
from collections import Counter
from collections.abc import Iterable
from typing import Any
from xml.parsers.expat import ExpatError

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, TimeoutError
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from ..deferreds import deferred
from ..http.agent import CABundle, make_agent
from ..http.body import BytesBody, read_body
from ..http.cancel import is_cancellation
from ..http.deadline import within
from ..schedule import Schedule
from .errors import CobblerError, CobblerInvalidRequest, error_from_failure, error_from_fault, error_from_http_status

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "XmlRpcTransport"]

log = Logger()


DEFAULT_RETRY = Schedule.exponential()  # 0.5, 1, 2, 4 s: gives a restarting cobblerd ~7.5 s
NO_RETRY = Schedule((), repeat=False)


def _closes_after_response(response: IResponse) -> bool:
    """An HTTP/1.0 answer without keep-alive: the server closes the connection (a bare cobblerd does).

    Twisted's pool would keep such a connection (it only looks for "Connection: close"), and the
    next request written to it fails with ResponseNeverReceived.
    """
    tokens = b",".join(response.headers.getRawHeaders(b"connection", [])).lower()
    return tuple(response.version[1:]) == (1, 0) and b"keep-alive" not in tokens


class XmlRpcTransport:
    """Calls XML-RPC methods on one endpoint.

    *reactor* provides IReactorTCP (and IReactorTime/IReactorPluggableNameResolver, as Twisted's Agent
    needs); *clock* (default: the reactor) times timeouts and backoff. *agent* replaces the HTTP
    client, for tests. `calls` counts HTTP requests per method, retries and failures included.
    """

    def __init__(
        self,
        url: str,
        reactor: IReactorTCP,
        *,
        clock: IReactorTime | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 8,
        retry: Schedule = DEFAULT_RETRY,
        ca_bundle: CABundle | None = None,
        agent: IAgent | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Cobbler URL must be http:// or https://, not {url!r}")
        self.url = url
        self.timeout = timeout
        self.retry = retry
        self.calls: Counter[str] = Counter()
        self._clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        self._semaphore = DeferredSemaphore(max_concurrency)
        self._reactor = reactor
        self._ca_bundle = ca_bundle
        self._pool: HTTPConnectionPool | None = None
        if agent is None:
            agent, self._pool = make_agent(reactor, max_per_host=max_concurrency, ca_bundle=ca_bundle)
        self._agent = agent

    async def call(
        self,
        method: str,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool = True,
        secrets: Iterable[str] = (),
    ) -> Any:
        """The result of *method*(*args*), retried per the policy; raises a CobblerError.

        A non-idempotent call is retried only when the request certainly never reached the server.
        *secrets* are strings (token, password) to redact from any error text.
        """
        try:
            body = xmlrpc.client.dumps(tuple(args), methodname=method, allow_none=False).encode("utf-8")
        except TypeError as exc:
            raise CobblerInvalidRequest(f"cannot encode the arguments as XML-RPC: {exc}", method=method) from None
        limit = self.timeout if timeout is None else timeout
        secrets = tuple(secrets)
        retries = self.retry.start(self._clock)
        attempt = 1
        while True:
            try:
                return await self._semaphore.run(self._attempt_with_timeout, method, body, limit, secrets)
            except CobblerError as error:
                delay = retries.next_delay() if error.retryable else None
                sent = getattr(error, "request_sent", None)
                if delay is None or (not idempotent and sent is not False):
                    raise
                log.warn(
                    "Cobbler call {method} failed ({error}); retry {attempt} in {delay}s",
                    method=method,
                    error=str(error),
                    attempt=attempt,
                    delay=delay,
                )
                attempt += 1
                await deferLater(self._clock, delay)

    @deferred
    async def _attempt_with_timeout(self, method: str, body: bytes, limit: float, secrets: tuple[str, ...]) -> Any:
        """One attempt within *limit*. Our deadline becomes CobblerTimeout; a caller's cancel (Ctrl-C) stays a
        CancelledError, so the caller's cleanup runs instead of a retry or an error about Cobbler."""
        try:
            return await within(self._clock, limit, Deferred.fromCoroutine(self._attempt(method, body, limit, secrets)))
        except TimeoutError as exc:
            raise error_from_failure(exc, method, self.url, limit) from None

    async def _attempt(self, method: str, body: bytes, limit: float, secrets: tuple[str, ...]) -> Any:
        self.calls[method] += 1
        started = self._clock.seconds()
        try:
            response = await self._agent.request(
                b"POST",
                self.url.encode("ascii"),
                Headers({b"Content-Type": [b"text/xml"], b"User-Agent": [b"ensemble-orchestra"]}),
                BytesBody(body),
            )
            data = await read_body(response)
        except (CobblerError, CancelledError):
            raise
        except Exception as exc:  # Twisted's failures
            if is_cancellation(exc):
                raise CancelledError() from None  # the deadline's or a caller's cancel: see _attempt_with_timeout
            raise error_from_failure(exc, method, self.url, limit) from None
        if self._pool is not None and self._pool.persistent and _closes_after_response(response):
            self._stop_pooling()
        if response.code != 200:
            raise error_from_http_status(response.code, method, self.url)
        try:
            (result,), _ = xmlrpc.client.loads(data)
        except xmlrpc.client.Fault as fault:
            raise error_from_fault(fault, method, secrets) from None
        except (ExpatError, xmlrpc.client.ResponseError, ValueError) as exc:
            raise CobblerError(f"not an XML-RPC response from {self.url}: {exc}", method=method) from None
        log.debug("Cobbler call {method} took {elapsed:.3f}s", method=method, elapsed=self._clock.seconds() - started)
        return result

    def _stop_pooling(self) -> None:
        """Switch to one connection per request, for a server that will not keep connections alive."""
        log.info("Cobbler at {url} closes connections after each call (HTTP/1.0): not pooling", url=self.url)
        old = self._pool
        self._agent, self._pool = make_agent(self._reactor, persistent=False, ca_bundle=self._ca_bundle)
        if old is not None:
            old.closeCachedConnections()

    async def close(self) -> None:
        """Close pooled connections (call before the reactor stops)."""
        if self._pool is not None:
            await self._pool.closeCachedConnections()
