"""NodeWatch's hand-over to the reactor and the kazoo log bridge, with a reactor whose callFromThread queues
calls until the test runs them (so "in flight" is a state the test can hold)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from kazoo.protocol.states import ZnodeStat
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from ensemble_orchestra.state import NodeWatch, StateCorruptError, Topology
from ensemble_orchestra.state.kazoo_log import KazooLogHandler, install_kazoo_logging, twisted_level

STAT = ZnodeStat(1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1)


class QueuedReactor(Clock):
    """A Clock whose callFromThread only queues: ``run()`` plays the queue, as the reactor thread would."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.queued.append((callable, args, kw))

    def run(self) -> None:
        queued, self.queued = self.queued, []
        for callable, args, kw in queued:
            callable(*args, **kw)


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    captured: list[LogEvent] = []
    observer = cast(ILogObserver, captured.append)
    globalLogPublisher.addObserver(observer)
    yield captured
    globalLogPublisher.removeObserver(observer)


def topology_watch(reactor: QueuedReactor, seen: list[Topology | None]) -> NodeWatch[Topology]:
    return NodeWatch(reactor, "/topology", seen.append, lambda data, stat: Topology.from_yaml(data))


def test_values_reach_the_callback_only_in_the_reactor_and_in_order() -> None:
    """kazoo's thread decodes and queues; nothing reaches the callback until the reactor runs the queue, then
    everything in kazoo's order. A missing node is None."""
    reactor, seen = QueuedReactor(), list[Topology | None]()
    watch = topology_watch(reactor, seen)
    assert watch.changed(None, None) is None
    assert watch.changed(Topology().add_machine().to_yaml().encode(), STAT) is None
    assert seen == [] and not watch.first.called
    reactor.run()
    assert seen == [None, Topology().add_machine()]
    assert watch.first.called and watch.deliveries == 2


def test_stop_drops_values_in_flight_and_ends_kazoos_watch() -> None:
    """A value queued before stop() is not delivered; kazoo's next call is answered False (its watch ends)."""
    reactor, seen = QueuedReactor(), list[Topology | None]()
    watch = topology_watch(reactor, seen)
    watch.changed(b"", STAT)
    reactor.run()
    watch.changed(Topology().add_machine().to_yaml().encode(), STAT)
    watch.stop()
    reactor.run()
    assert seen == [Topology()]
    assert watch.changed(b"", STAT) is False
    assert reactor.queued == []


def test_a_failing_callback_is_logged_and_the_watch_goes_on(events: list[LogEvent]) -> None:
    reactor, calls = QueuedReactor(), list[Topology | None]()

    def callback(value: Topology | None) -> None:
        calls.append(value)
        raise RuntimeError("agent bug")

    watch = NodeWatch(reactor, "/topology", callback, lambda data, stat: Topology.from_yaml(data))
    watch.changed(b"", STAT)
    watch.changed(b"", STAT)
    reactor.run()
    assert len(calls) == 2 and watch.first.called
    failures = [e for e in events if e.get("log_failure") is not None and e.get("path") == "/topology"]
    assert len(failures) == 2
    assert all(isinstance(e["log_failure"].value, RuntimeError) for e in failures)


def test_an_undecodable_first_value_fails_the_start_and_a_later_one_is_skipped(events: list[LogEvent]) -> None:
    """First read unreadable: ``first`` fails with StateCorruptError. After a good start, an unreadable value
    is logged and skipped: the callback keeps its last good value."""
    reactor, seen = QueuedReactor(), list[Topology | None]()
    broken = topology_watch(reactor, seen)
    broken.changed(b"version: 99", STAT)
    reactor.run()
    failures: list[Any] = []
    broken.first.addErrback(failures.append)
    assert failures and failures[0].check(StateCorruptError)

    watch = topology_watch(reactor, seen)
    watch.changed(b"", STAT)
    watch.changed(b"version: 99", STAT)
    reactor.run()
    assert seen == [Topology()]
    assert any(e.get("log_failure") is not None and e["log_failure"].check(StateCorruptError) for e in events)


@pytest.mark.parametrize(
    ("stdlib", "twisted"),
    [
        (logging.CRITICAL, LogLevel.critical),
        (logging.ERROR, LogLevel.error),
        (logging.WARNING, LogLevel.warn),
        (logging.INFO, LogLevel.info),
        (logging.DEBUG, LogLevel.debug),
        (5, LogLevel.debug),  # kazoo's BLATHER
    ],
)
def test_log_levels(stdlib: int, twisted: LogLevel) -> None:
    assert twisted_level(stdlib) is twisted


def test_kazoo_warnings_become_twisted_events_not_stderr(
    events: list[LogEvent], capsys: pytest.CaptureFixture[str]
) -> None:
    """A kazoo warning from any thread is queued to the reactor and emitted there on a Logger named after
    kazoo's logger; nothing is printed. Installing twice keeps one handler."""
    kazoo_logger = logging.getLogger("kazoo")
    before = (list(kazoo_logger.handlers), kazoo_logger.propagate)  # a StateClient may have installed one
    for installed in before[0]:
        kazoo_logger.removeHandler(installed)
    reactor = QueuedReactor()
    try:
        handler = install_kazoo_logging(reactor)
        assert install_kazoo_logging(QueuedReactor()) is handler
        assert [h for h in kazoo_logger.handlers if isinstance(h, KazooLogHandler)] == [handler]
        logging.getLogger("kazoo.protocol.connection").warning("Znode %s has odd data", "/x")
        assert not [e for e in events if e.get("log_namespace") == "kazoo.protocol.connection"]
        reactor.run()
    finally:
        for installed in list(kazoo_logger.handlers):
            kazoo_logger.removeHandler(installed)
        for installed in before[0]:
            kazoo_logger.addHandler(installed)
        kazoo_logger.propagate = before[1]
    [event] = [e for e in events if e.get("log_namespace") == "kazoo.protocol.connection"]
    assert event["log_level"] is LogLevel.warn
    assert event["kazoo_message"] == "Znode /x has odd data"
    assert capsys.readouterr().err == ""


def test_kazoos_reconnect_chatter_is_info_not_a_warning() -> None:
    """Our layer bounds reconnects and says what failed in one line: kazoo's warnings of each retry are info."""
    from ensemble_orchestra.state.kazoo_log import KazooLogHandler

    events: list[dict[str, object]] = []

    class Immediate:
        def callFromThread(self, f, *args, **kwargs):  # type: ignore[no-untyped-def]
            from twisted.logger import globalLogPublisher

            globalLogPublisher.addObserver(events.append)
            try:
                f(*args, **kwargs)
            finally:
                globalLogPublisher.removeObserver(events.append)

    handler = KazooLogHandler(Immediate())  # type: ignore[arg-type]
    for text in ("Connection dropped: socket connection broken", "Session has expired", "Znode /x has odd data"):
        handler.emit(logging.LogRecord("kazoo.client", logging.WARNING, __file__, 1, text, None, None))
    levels = [e["log_level"] for e in events if e.get("log_namespace") == "kazoo.client"]
    assert levels == [LogLevel.info, LogLevel.info, LogLevel.warn]
