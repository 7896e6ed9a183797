"""The state layer against a real ZooKeeper (Debian's 3.8, started on loopback by the ``zookeeper`` fixture)."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, task

from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, ZooKeeperServerError, free_port
from ensemble_orchestra.state import (
    StateAuthError,
    StateClient,
    StateConnectionError,
    StateNotFoundError,
    Topology,
    TopologyError,
    TopologyNode,
)

SECRET = "zk-admin-secret-test"  # the secret the `connect` fixture (conftest) opens clients with
Connect = Callable[..., Awaitable[StateClient]]


class TickRecorder:
    """A LoopingCall every 10 ms on the real reactor: the longest gap between ticks shows any blocking."""

    def __init__(self) -> None:
        from twisted.internet import reactor

        self.times: list[float] = []
        self.loop = task.LoopingCall(lambda: self.times.append(time.monotonic()))
        self.loop.clock = reactor
        self.loop.start(0.01)

    def stop(self) -> float:
        """Stop ticking; the longest gap seen, in seconds."""
        self.loop.stop()
        self.times.append(time.monotonic())
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


@pytest_twisted.ensureDeferred
async def test_connect_write_read_close(connect: Connect, node_path: str) -> None:
    """A session writes and reads a node; once closed, a call is the retryable connection error."""
    client = await connect()
    await client.create(node_path, b"hello")
    data, stat = await client.get(node_path)
    assert (data, stat.version) == (b"hello", 0)
    await client.close()
    with pytest.raises(StateConnectionError) as raised:
        await client.get(node_path)
    assert raised.value.retryable


@pytest_twisted.ensureDeferred
async def test_concurrent_changes_all_survive(connect: Connect, node_path: str) -> None:
    """10 concurrent change() calls from two sessions, each adding a machine: all 10 are there, numbered
    0-9 without a gap or duplicate, and some had to be retried (so the version check is what saved them)."""
    sessions = [TopologyNode(await connect(), node_path), TopologyNode(await connect(), node_path)]
    calls: list[int] = []

    def add_machine(topology: Topology) -> Topology:
        calls.append(len(topology.machines))
        return topology.add_machine()

    ticks = TickRecorder()
    started = time.monotonic()
    written = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(sessions[i % 2].change(add_machine)) for i in range(10)], consumeErrors=True
    )
    elapsed = time.monotonic() - started
    longest_gap = ticks.stop()
    final = await sessions[0].read()
    assert sorted(final.machines) == list(range(10))
    assert final.machine_sequence == 10
    assert sorted(t.new_machine_id for t in written) == list(range(10))
    assert len(calls) > 10, "no change was retried: the test proved nothing about the version check"
    assert longest_gap < 0.5, f"the reactor stalled {longest_gap:.3f} s during the changes"
    print(f"10 concurrent changes: {elapsed:.3f} s, {len(calls)} attempts")


@pytest_twisted.ensureDeferred
async def test_change_round_trip_and_no_op(connect: Connect, node_path: str) -> None:
    """One change creates the node; an equal result writes nothing; a refused change writes nothing."""
    client = await connect()
    node = TopologyNode(client, node_path)
    started = time.monotonic()
    written = await node.change(lambda t: t.add_machine().add_service("mysql", "local:bookworm/mysql-1"))
    print(f"first change() (read, create): {1000 * (time.monotonic() - started):.1f} ms")
    started = time.monotonic()
    await node.change(lambda t: t.add_unit("mysql", machine=0))
    print(f"change() (read, set): {1000 * (time.monotonic() - started):.1f} ms")
    _, stat = await client.get(node_path)
    assert await node.change(lambda t: t) == await node.read()
    with pytest.raises(TopologyError):
        await node.change(lambda t: t.remove_machine(0))
    _, unchanged = await client.get(node_path)
    assert unchanged.version == stat.version == 1
    assert (await node.read()).services["mysql"].units["mysql/0"].machine == 0
    assert written.machines.keys() == {0}


@pytest_twisted.ensureDeferred
async def test_wrong_secret_cannot_read(connect: Connect, node_path: str) -> None:
    """A node we create carries the admin's digest ACL only: a session with another secret gets the fatal
    auth error, on read and on write."""
    await TopologyNode(await connect(), node_path).change(lambda t: t.add_machine())
    intruder = await connect(secret="not-the-secret")
    with pytest.raises(StateAuthError) as raised:
        await intruder.get(node_path)
    assert not raised.value.retryable
    assert "not-the-secret" not in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(StateAuthError):
        await intruder.set(node_path, b"machines: {}")
    with pytest.raises(StateNotFoundError):
        await intruder.get(node_path + "-absent")


@pytest_twisted.ensureDeferred
async def test_zookeeper_down_is_retryable_within_bound(connect: Connect) -> None:
    """Nothing listening: connect fails with the retryable error after its timeout, and the reactor kept
    ticking every 10 ms all along (kazoo's reconnect loop runs in its own thread)."""
    with socket.socket() as unused:  # a port nobody listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        hosts = f"127.0.0.1:{unused.getsockname()[1]}"
        ticks = TickRecorder()
        started = time.monotonic()
        with pytest.raises(StateConnectionError) as raised:
            await connect(hosts=hosts, timeout=1.5)
        elapsed = time.monotonic() - started
        longest_gap = ticks.stop()
    assert raised.value.retryable
    assert hosts in str(raised.value) and "1.5 s" in str(raised.value)
    assert 1.4 <= elapsed < 4.0, elapsed
    assert longest_gap < 0.5, f"the reactor stalled {longest_gap:.3f} s while connecting"
    assert len(ticks.times) > 50


def test_server_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    """A port in use: the start fails within its bound, names the log, and leaves no process."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        server = ZooKeeperServer(tmp_path, taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(ZooKeeperServerError) as raised:
            server.start(timeout=15)
    assert time.monotonic() - started < 16
    assert str(server.output_log) in str(raised.value) and "\n" not in str(raised.value)
    assert server.running_pid() is None


@pytest_twisted.ensureDeferred
async def test_zookeeper_gone_mid_session_is_retryable_within_bound(connect: Connect, tmp_path: Path) -> None:
    """A ZooKeeper of this test's own stops under a live session: the next read fails with the retryable
    connection error within the operation bound (kazoo would otherwise queue it until a reconnect)."""
    server = ZooKeeperServer(tmp_path, free_port())
    server.start()
    try:
        client = await connect(hosts=server.hosts, operation_timeout=1.0)
        await client.create("/here", b"x")
        assert server.stop()
        started = time.monotonic()
        with pytest.raises(StateConnectionError) as raised:
            await client.get("/here")
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert raised.value.retryable
    assert elapsed < 2.0, elapsed


@pytest_twisted.ensureDeferred
async def test_a_cancelled_call_leaves_no_timer(connect: Connect, node_path: str) -> None:
    """Cancelling a call (Ctrl-C) ends it at once with CancelledError and cancels its timeout timer."""
    from twisted.internet import reactor

    client = await connect(operation_timeout=30.0)
    before = len(reactor.getDelayedCalls())
    pending = defer.Deferred.fromCoroutine(client.get(node_path))
    assert len(reactor.getDelayedCalls()) == before + 1
    pending.cancel()
    with pytest.raises(defer.CancelledError):
        await pending
    assert len(reactor.getDelayedCalls()) == before
