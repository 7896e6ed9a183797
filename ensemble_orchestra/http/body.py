"""Request bodies that can be sent twice, and reading a response body under a deadline.

An authenticated request may go out twice (after a 401), so its body must be
replayable: ``BytesBody`` holds it in memory. ``read_body`` replaces Twisted's
``readBody``, whose cancellation cannot abort the connection through an
Agent response's transport proxy (it warns instead): here cancelling stops
the transport, so a deadline really ends a stalled download.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import PartialDownloadError, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

__all__ = ["BytesBody", "buffered", "read_body"]


@implementer(IBodyProducer)
class BytesBody:
    """A request body held in memory, which can be produced any number of times.

    (camelCase method names: they are IBodyProducer's.)
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: object) -> Deferred[None]:
        consumer.write(self.data)  # type: ignore[attr-defined]
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Collector:
    """An IConsumer gathering what a producer writes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


async def buffered(producer: IBodyProducer | None) -> BytesBody | None:
    """*producer*'s whole body in memory (once), so it can be sent again."""
    if producer is None or isinstance(producer, BytesBody):
        return producer
    collector = _Collector()
    await producer.startProducing(collector)
    return BytesBody(b"".join(collector.chunks))


class _BodyReader(Protocol):
    def __init__(self, response: IResponse, done: Deferred[bytes]) -> None:
        self.response = response
        self.done = done
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        if not self.done.called:
            self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        body = b"".join(self.chunks)
        if reason is None or reason.check(ResponseDone):
            self.done.callback(body)
        elif reason.check(PotentialDataLoss):  # no Content-Length: the close ended the body
            self.done.callback(body)
        else:
            self.done.errback(PartialDownloadError(self.response.code, b"body truncated", body))


def read_body(response: IResponse) -> Deferred[bytes]:
    """The whole body of *response*; cancelling the Deferred drops the connection."""
    reader: _BodyReader

    def cancel(d: Deferred[bytes]) -> None:
        # The Agent's transport proxy is a producer; aborting it drops the connection.
        stop = getattr(reader.transport, "stopProducing", None)
        if stop is not None:
            stop()

    done: Deferred[bytes] = Deferred(cancel)
    reader = _BodyReader(response, done)
    response.deliverBody(reader)
    return done
