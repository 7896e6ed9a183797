"""Watches and session loss against a real ZooKeeper (Debian's 3.8 on loopback): changes made by another
session reach the watcher in the reactor, in order, the latest last; a stopped watch hears nothing; a watch
outlives a ZooKeeper restart and an expired session."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import pytest_twisted
from kazoo.client import KazooClient
from twisted.internet import defer, task, threads

from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, free_port
from ensemble_orchestra.state import SessionState, StateAuthError, StateClient, Topology, TopologyNode

BOUND = 10.0  # seconds any delivery may take here (measured: milliseconds; a restart: a few seconds)
Connect = Callable[..., Awaitable[StateClient]]


class Seen:
    """What a watch callback was given, when, and in which thread."""

    def __init__(self) -> None:
        self.values: list[Topology | None] = []
        self.times: list[float] = []
        self.threads: set[str] = set()

    def __call__(self, topology: Topology | None) -> None:
        self.values.append(topology)
        self.times.append(time.monotonic())
        self.threads.add(threading.current_thread().name)

    @property
    def last(self) -> Topology | None:
        return self.values[-1]


RESTART_BOUND = 30.0


async def eventually(condition: Callable[[], bool], what: str, bound: float = BOUND) -> float:
    """Wait (polling every 10 ms on the reactor) until *condition* holds; the seconds it took. Fails past *bound*."""
    from twisted.internet import reactor

    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > bound:
            pytest.fail(f"{what}: not within {bound:g} s")
        await task.deferLater(reactor, 0.01)
    return time.monotonic() - started


def machines(topology: Topology | None) -> int:
    return -1 if topology is None else topology.machine_sequence


@pytest_twisted.ensureDeferred
async def test_change_from_another_session_reaches_the_watcher(connect: Connect, node_path: str) -> None:
    """The watch starts with the node's state (None: no node yet); each change another session makes reaches
    the callback, in the reactor thread, within the bound. Prints the delivery latency (write sent → callback)."""
    seen = Seen()
    watch = await TopologyNode(await connect(), node_path).watch(seen)
    assert seen.values == [None]
    writer = TopologyNode(await connect(), node_path)
    latencies = []
    for expected in range(1, 21):
        sent = time.monotonic()
        await writer.change(lambda t: t.add_machine())
        await eventually(lambda: machines(seen.last) == expected, f"machine {expected - 1} at the watcher")  # noqa: B023
        latencies.append(seen.times[-1] - sent)
    assert [machines(v) for v in seen.values] == [-1, *range(1, 21)]
    assert seen.threads == {threading.main_thread().name}
    assert watch.deliveries == 21
    print(
        f"watch delivery after change(): median {1000 * statistics.median(latencies):.1f} ms, "
        f"max {1000 * max(latencies):.1f} ms (20 changes)"
    )


@pytest_twisted.ensureDeferred
async def test_rapid_changes_end_with_the_final_state(connect: Connect, node_path: str) -> None:
    """30 changes as fast as two sessions can make them: the watcher's states only move forward (never an
    older after a newer, no repeat) and the last one it holds is the node's final state."""
    seen = Seen()
    await TopologyNode(await connect(), node_path).watch(seen)
    writers = [TopologyNode(await connect(), node_path), TopologyNode(await connect(), node_path)]
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(writers[i % 2].change(lambda t: t.add_machine())) for i in range(30)],
        consumeErrors=True,
    )
    final = await writers[0].read()
    assert final.machine_sequence == 30
    await eventually(lambda: seen.last == final, "the final state at the watcher")
    sequence = [machines(v) for v in seen.values]
    assert sequence == sorted(set(sequence)), f"out of order or repeated: {sequence}"
    print(f"30 rapid changes: the watcher was called {len(seen.values) - 1} times after its first value")


@pytest_twisted.ensureDeferred
async def test_a_stopped_watch_hears_nothing(connect: Connect, node_path: str) -> None:
    """After stop() no change is delivered, while a second watch on the same node (the control) sees it."""
    client = await connect()
    stopped, control = Seen(), Seen()
    watch = await TopologyNode(client, node_path).watch(stopped)
    await TopologyNode(client, node_path).watch(control)
    writer = TopologyNode(await connect(), node_path)
    await writer.change(lambda t: t.add_machine())
    await eventually(lambda: machines(stopped.last) == 1, "the first change at the watch to stop")
    watch.stop()
    assert not watch.active
    for expected in (2, 3):
        await writer.change(lambda t: t.add_machine())
        await eventually(lambda: machines(control.last) == expected, f"change {expected} at the control")  # noqa: B023
    from twisted.internet import reactor

    await task.deferLater(reactor, 0.2)  # time for a late delivery to arrive, if one were on its way
    assert [machines(v) for v in stopped.values] == [-1, 1]
    assert watch.deliveries == 2


@pytest_twisted.ensureDeferred
async def test_a_watch_without_access_fails_at_once(connect: Connect, node_path: str) -> None:
    """A node the session may not read: watch() fails with the fatal auth error, well before its bound."""
    await TopologyNode(await connect(), node_path).change(lambda t: t.add_machine())
    intruder = await connect(secret="not-the-secret", operation_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(StateAuthError):
        await TopologyNode(intruder, node_path).watch(Seen())
    assert time.monotonic() - started < 2.0


@pytest_twisted.ensureDeferred
async def test_watch_survives_a_zookeeper_restart(connect: Connect, tmp_path: Path) -> None:
    """ZooKeeper (this test's own) stops and starts again on the same port and data: the watching session
    is SUSPENDED, then CONNECTED again (the same session: the server restored it, no LOST), and a change
    made from a new session after the restart reaches the watcher within the bound."""
    server = ZooKeeperServer(tmp_path, free_port())
    server.start()
    try:
        watcher = await connect(hosts=server.hosts)
        states: list[SessionState] = []
        watcher.on_session(states.append)
        seen = Seen()
        await TopologyNode(watcher, "/topology").watch(seen)
        session_id = watcher.kazoo.client_id[0]
        await TopologyNode(await connect(hosts=server.hosts), "/topology").change(lambda t: t.add_machine())
        await eventually(lambda: machines(seen.last) == 1, "the change before the restart")
        assert server.stop()
        await eventually(lambda: SessionState.SUSPENDED in states, "SUSPENDED after the stop")
        await threads.deferToThread(server.start)
        restarted = time.monotonic()
        writer = TopologyNode(await connect(hosts=server.hosts), "/topology")
        await writer.change(lambda t: t.add_machine())
        # The watcher's session reconnects on kazoo's backoff, to a JVM just started: on a loaded machine (CI's
        # two cores with labs beside) that took over 10 s once.
        took = await eventually(lambda: machines(seen.last) == 2, "the change after the restart", RESTART_BOUND)
        print(
            f"after the restart: the change reached the watcher {time.monotonic() - restarted:.2f} s after the "
            f"server was ready ({took:.2f} s after the write); session states {[s.name for s in states]}"
        )
        assert states == [SessionState.SUSPENDED, SessionState.CONNECTED]
        assert watcher.kazoo.client_id[0] == session_id, "ZooKeeper keeps a session across its restart"
    finally:
        server.stop()


def _expire(hosts: str, session: tuple[int, bytes]) -> None:
    """End a live session the way ZooKeeper's own tests do: attach a second client to it, then close that."""
    intruder = KazooClient(hosts=hosts, client_id=session)
    intruder.start(timeout=10)
    intruder.stop()
    intruder.close()


@pytest_twisted.ensureDeferred
async def test_watch_survives_an_expired_session(connect: Connect, node_path: str) -> None:
    """The watching session expires (its ephemeral node goes): the client reports LOST, kazoo opens a new
    session by itself (CONNECTED, a new session id, authenticated again), and a change made after that
    reaches the watcher. No restart of the client is needed."""
    watcher = await connect()
    states: list[SessionState] = []
    watcher.on_session(states.append)
    seen = Seen()
    await TopologyNode(watcher, node_path).watch(seen)
    await watcher.create(node_path + "-presence", ephemeral=True)
    old_session = watcher.kazoo.client_id
    await threads.deferToThread(_expire, watcher.hosts, old_session)
    await eventually(lambda: states[-2:] == [SessionState.LOST, SessionState.CONNECTED], "LOST, then CONNECTED")
    assert watcher.kazoo.client_id[0] != old_session[0]
    assert await watcher.exists(node_path + "-presence") is None
    await TopologyNode(await connect(), node_path).change(lambda t: t.add_machine())
    await eventually(lambda: machines(seen.last) == 1, "the change after the expiry")
    await watcher.get(node_path)  # the new session reads the admin-only node: it authenticated again
    print(f"session states: {[s.name for s in states]}")
