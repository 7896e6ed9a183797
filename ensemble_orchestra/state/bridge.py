"""kazoo → Twisted: a kazoo asynchronous result becomes a Deferred, without blocking the reactor.

kazoo talks to ZooKeeper from its own threads (its connection thread reads and writes the socket, its
completion thread runs callbacks). Its ``*_async`` calls only queue a request and return an ``IAsyncResult``;
``rawlink`` registers a callback that kazoo runs in its completion thread once the answer is in. That callback
hands the outcome to the reactor with ``callFromThread``, the one thread-safe way into it, where the Deferred
fires. So a request holds no thread of ours while it waits: ten concurrent changes are ten queued requests on
kazoo's one connection, not ten blocked threads (``deferToThread`` would park a pool thread in ``.get()`` per
call, and the reactor's pool has ten). Only the calls kazoo has no asynchronous form of, and that join its
threads (``stop``/``close``), run in the reactor's thread pool (:func:`in_thread`).

Every wait is bounded: the Deferred times out on the injected clock; a late answer is then dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from kazoo.interfaces import IAsyncResult
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["ReactorThread", "StateReactor", "deferred_from_async", "in_thread"]

T = TypeVar("T")


class ReactorThread(Protocol):
    """The one way into the reactor thread from kazoo's threads (all a watch or the log bridge needs)."""

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None: ...


class StateReactor(Protocol):
    """What the state layer needs of a reactor: time (timeouts), a way in from kazoo's threads, a thread pool."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...

    def seconds(self) -> float: ...

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None: ...

    def getThreadPool(self) -> ThreadPool: ...


def deferred_from_async(
    reactor: StateReactor,
    result: IAsyncResult,
    timeout: float,
    on_timeout: Callable[[], Exception],
) -> Deferred[Any]:
    """A Deferred that fires in the reactor with *result*'s value or exception, or with on_timeout() after *timeout*."""

    def cancel(_: Deferred[Any]) -> None:  # the caller gave up: the timer goes, a late answer is dropped
        if timer.active():
            timer.cancel()

    done: Deferred[Any] = Deferred(cancel)

    def fire(value: Any, failure: BaseException | None) -> None:  # in the reactor thread
        if done.called:
            return  # timed out or cancelled already
        timer.cancel()
        if failure is not None:
            done.errback(failure)
        else:
            done.callback(value)

    def expire() -> None:
        if not done.called:
            done.errback(on_timeout())

    def completed(answer: IAsyncResult) -> None:  # in kazoo's completion thread
        try:
            value = answer.get_nowait()  # ready: never blocks
        except Exception as failure:
            reactor.callFromThread(fire, None, failure)
        else:
            reactor.callFromThread(fire, value, None)

    timer = reactor.callLater(timeout, expire)
    result.rawlink(completed)
    return done


def in_thread(reactor: StateReactor, work: Callable[[], T]) -> Deferred[T]:
    """*work* (a blocking kazoo call) in the reactor's thread pool, so the reactor never waits for it."""
    return cast(Deferred[T], deferToThreadPool(cast(Any, reactor), reactor.getThreadPool(), work))
