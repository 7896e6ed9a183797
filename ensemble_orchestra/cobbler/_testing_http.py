"""FakeCobbler served over HTTP: as an IAgent (no sockets, scripted network failures) or a twisted.web resource.

Public through ``ensemble_orchestra.cobbler.testing``; kept apart so the fake server's logic stays one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web import client as web_client
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from zope.interface import implementer

if TYPE_CHECKING:
    from .testing import FakeCobbler

__all__ = ["FakeCobblerAgent", "FakeCobblerResource"]


@implementer(IResponse)
class _Response:
    version = (b"HTTP", 1, 1)
    previousResponse = None  # IResponse attribute

    def __init__(self, code: int, body: bytes) -> None:
        self.code, self.phrase, self._body = code, b"OK" if code == 200 else b"Error", body
        self.headers = Headers({b"Content-Type": [b"text/xml"]})
        self.length = len(body)
        self.request = None

    def deliverBody(self, protocol: Any) -> None:  # IResponse
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(web_client.ResponseDone()))

    def setPreviousResponse(self, response: Any) -> None:
        self.previousResponse = response


class _Collector:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)


@implementer(IAgent)
class FakeCobblerAgent:
    """Serves a FakeCobbler as an IAgent; `script` injects failures into the next requests, in order.

    Script entries: "refuse" (connection refused), "reset" (connection lost before a response),
    "hang" (never answers: only a timeout ends it), or an HTTP status code such as 503.
    """

    def __init__(self, cobbler: FakeCobbler, *, clock: IReactorTime | None = None, latency: float = 0.0) -> None:
        self.cobbler, self.clock, self.latency = cobbler, clock, latency
        self.script: list[str | int] = []
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        self.requests += 1
        collector = _Collector()
        if bodyProducer is not None:
            bodyProducer.startProducing(collector)  # type: ignore[arg-type]
        action = self.script.pop(0) if self.script else None
        if action == "refuse":
            return fail(net_error.ConnectionRefusedError("fake: connection refused"))
        if action == "reset":
            return fail(web_client.ResponseNeverReceived([Failure(net_error.ConnectionLost("fake: reset"))]))
        if action == "hang":
            return Deferred(lambda d: None)
        if isinstance(action, int):
            return self._later(_Response(action, b"<html>fake error</html>"))
        return self._later(_Response(200, self.cobbler.handle(b"".join(collector.parts))))

    def _later(self, response: _Response) -> Deferred[IResponse]:
        if not self.latency or self.clock is None:
            return succeed(response)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

        def answer() -> _Response:
            self.in_flight -= 1
            return response

        return deferLater(self.clock, self.latency, answer)


class FakeCobblerResource(Resource):
    """A FakeCobbler behind twisted.web, to serve on a real port (e.g. ``/RPC2``)."""

    isLeaf = True  # twisted.web attribute

    def __init__(self, cobbler: FakeCobbler, *, clock: IReactorTime | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.cobbler, self.clock, self.delay = cobbler, clock, delay

    def render_POST(self, request: server.Request) -> Any:  # twisted.web
        body = self.cobbler.handle(request.content.read() if request.content is not None else b"")
        request.setHeader(b"Content-Type", b"text/xml")
        if not self.delay or self.clock is None:
            return body

        def finish() -> None:
            if not request._disconnected:
                request.write(body)
                request.finish()

        self.clock.callLater(self.delay, finish)
        return server.NOT_DONE_YET
