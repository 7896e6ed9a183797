"""HookToolServer on a real UNIX socket, answering the protocol's client (run in a thread: it blocks) through a
FakeHookContext: dispatch, client ids, refusals, internal errors, sizes, the socket's modes, stale sockets."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from ensemble_orchestra.agents.hooks import context as context_module
from ensemble_orchestra.agents.hooks.protocol import MAX_REQUEST, HookToolError, Request, call, encode_request
from ensemble_orchestra.agents.hooks.server import (
    HANDLERS,
    INTERNAL_ERROR,
    NO_HOOK,
    HookServerError,
    HookToolServer,
    _Factory,
)
from ensemble_orchestra.agents.hooks.testing import FakeHookContext
from ensemble_orchestra.agents.hooks.tools import ALIASES, TOOL_NAMES


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def server(hook_server: HookToolServer) -> HookToolServer:
    return hook_server  # tests/unit/conftest.py: a started HookToolServer, stopped after the test


async def ask(server: HookToolServer, client_id: str, tool: str, **args: Any) -> Any:
    """One request as a tool sends it (the blocking client, in a thread)."""
    return await threads.deferToThread(call, str(server.socket_path), Request(client_id, tool, args))


async def refused(server: HookToolServer, client_id: str, tool: str, **args: Any) -> str:
    try:
        await ask(server, client_id, tool, **args)
    except HookToolError as exc:
        return str(exc)
    raise AssertionError(f"{tool} {args} was answered")


def test_fake_context_keeps_the_interface() -> None:
    assert verifyObject(context_module.IHookContext, FakeHookContext())


def test_one_handler_per_tool() -> None:
    """The tools' names (less aliases) and the server's table are the same set."""
    assert {ALIASES.get(name, name) for name in TOOL_NAMES} == set(HANDLERS)


@pytest_twisted.ensureDeferred
async def test_each_tool_reaches_its_context(server: HookToolServer) -> None:
    fake = FakeHookContext(config={"title": "blog", "port": 3306})
    cid = server.open_context(fake)
    assert await ask(server, cid, "config-get", key="title") == "blog"
    assert await ask(server, cid, "config-get", key=None) == {"title": "blog", "port": 3306}
    assert await ask(server, cid, "config-get", key="absent") is None  # not an error, as in Ensemble
    assert await ask(server, cid, "unit-get", name="public-address") == "unit-0.example"
    assert await ask(server, cid, "open-port", port=80, protocol="tcp") is None
    assert await ask(server, cid, "open-port", port=53, protocol="udp") is None
    assert await ask(server, cid, "close-port", port=80, protocol="tcp") is None
    assert await ask(server, cid, "ensemble-log", level="WARNING", message="disk low") is None
    assert fake.ports == {(53, "udp")}
    assert fake.logs == [("WARNING", "disk low")]


@pytest_twisted.ensureDeferred
async def test_client_ids(server: HookToolServer) -> None:
    """A client id works from open_context to close_context, and only for its own context."""
    first, second = FakeHookContext(config={"n": 1}), FakeHookContext(config={"n": 2})
    a, b = server.open_context(first), server.open_context(second)
    assert a != b and len(a) >= 20
    assert await ask(server, b, "config-get", key="n") == 2
    server.close_context(a)
    server.close_context(a)  # idempotent
    assert await refused(server, a, "config-get", key="n") == NO_HOOK
    assert await refused(server, "made-up", "config-get", key="n") == NO_HOOK
    assert await ask(server, b, "config-get", key="n") == 2


@pytest_twisted.ensureDeferred
async def test_refusals(server: HookToolServer) -> None:
    cid = server.open_context(FakeHookContext(addresses={"private-address": "10.0.0.2"}))
    assert "unknown hook tool 'relation-fetch'" in await refused(server, cid, "relation-fetch")
    assert "name the relation with -r ID" in await refused(server, cid, "relation-get")
    assert "not a string" in await refused(server, cid, "relation-set", settings={"a": 1})
    assert "invalid relation setting name 'a b'" in await refused(server, cid, "relation-set", settings={"a b": "1"})
    assert await refused(server, cid, "open-port", port=0, protocol="tcp") == "invalid port 0: ports are 1 to 65535"
    assert "use tcp or udp" in await refused(server, cid, "close-port", port=80, protocol="icmp")
    assert "wrong type" in await refused(server, cid, "open-port", port="80", protocol="tcp")
    assert "unknown setting 'hostname'" in await refused(server, cid, "unit-get", name="hostname")
    assert "unknown log level 'LOUD'" in await refused(server, cid, "ensemble-log", level="LOUD", message="x")
    # the context's own HookToolError reaches the tool as it is
    assert "no public-address yet" in await refused(server, cid, "unit-get", name="public-address")


@pytest_twisted.ensureDeferred
async def test_a_bug_in_the_context_is_logged_not_shown(server: HookToolServer) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        fake = FakeHookContext(failures={"config_get": KeyError("secret-internal-detail")})
        cid = server.open_context(fake)
        message = await refused(server, cid, "config-get", key=None)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert message == INTERNAL_ERROR
    failures = [e for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["tool"] == "config-get"
    assert failures[0]["log_failure"].check(KeyError)


def _raw(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        try:
            sock.sendall(data)
        except BrokenPipeError:
            pass
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest_twisted.ensureDeferred
async def test_bounded_request_and_malformed_lines(server: HookToolServer) -> None:
    answer = await threads.deferToThread(_raw, server.socket_path, b"x" * (MAX_REQUEST + 10))
    assert b"longer than 1048576 bytes" in answer
    answer = await threads.deferToThread(_raw, server.socket_path, b"{oops}\n")
    assert b'"ok":false' in answer and b"not a JSON object" in answer
    # one request per connection: a second line on the same connection is not answered
    cid = server.open_context(FakeHookContext(config={"a": 1}))
    line = Request(cid, "config-get", {"key": "a"})
    answer = await threads.deferToThread(_raw, server.socket_path, encode_request(line) * 2)
    assert answer.count(b"\n") == 1 and b'"result":1' in answer


def test_a_silent_connection_is_dropped_after_the_idle_timeout(tmp_path: Path) -> None:
    """On a Clock: a connection that never sends its line is aborted after idle_timeout; one that did is not."""
    clock = Clock()
    server = HookToolServer(_reactor(), tmp_path / "s.sock", clock=clock, idle_timeout=30)
    silent, talking = StringTransport(), StringTransport()
    _Factory(server).buildProtocol(None).makeConnection(silent)
    answering = _Factory(server).buildProtocol(None)
    answering.makeConnection(talking)
    answering.dataReceived(b"{}\n")
    clock.advance(29.9)
    assert not silent.disconnected
    clock.advance(0.1)
    assert silent.disconnected
    assert not talking.disconnected and not clock.getDelayedCalls()


def test_socket_and_directory_modes(server: HookToolServer) -> None:
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(server.socket_path.stat().st_mode)
    assert stat.S_IMODE(server.socket_path.parent.stat().st_mode) == 0o700


@pytest_twisted.ensureDeferred
async def test_stale_socket_of_a_killed_agent_is_replaced(tmp_path: Path) -> None:
    """A socket (and lock) left by an agent that died is replaced; the new server answers on it."""
    path = tmp_path / "run" / "agent.sock"
    path.parent.mkdir(mode=0o700)
    for lock_pid in (None, 2**22 + 7, os.getpid()):  # no lock; a dead pid's lock; our own pid (a reused pid)
        left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left.bind(str(path))
        left.close()  # the file stays, nobody listens
        if lock_pid is not None:
            os.symlink(str(lock_pid), f"{path}.lock")
        server = HookToolServer(_reactor(), path)
        server.start()
        try:
            cid = server.open_context(FakeHookContext(config={"ok": True}))
            assert await ask(server, cid, "config-get", key="ok") is True
        finally:
            await server.stop()
        assert not path.exists() and not os.path.lexists(f"{path}.lock")


@pytest_twisted.ensureDeferred
async def test_a_live_agent_on_the_path_is_not_displaced(server: HookToolServer, tmp_path: Path) -> None:
    """Neither a second server of this process nor another live process's socket (its lock names a live pid)."""
    with pytest.raises(HookServerError, match="is another unit agent for this unit running"):
        HookToolServer(_reactor(), server.socket_path).start()
    cid = server.open_context(FakeHookContext(config={"still": "here"}))
    assert await ask(server, cid, "config-get", key="still") == "here"

    theirs = tmp_path / "theirs" / "agent.sock"
    theirs.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(theirs))
    os.symlink("1", f"{theirs}.lock")  # pid 1 is alive
    with pytest.raises(HookServerError, match="is another unit agent for this unit running"):
        HookToolServer(_reactor(), theirs).start()
    assert theirs.exists()


def test_refused_places(tmp_path: Path) -> None:
    with pytest.raises(HookServerError, match="bytes \\(at most 107\\)"):
        HookToolServer(_reactor(), tmp_path / ("x" * 120) / "agent.sock").start()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(HookServerError, match="shared with other users"):
        HookToolServer(_reactor(), shared / "agent.sock").start()
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "agent.sock").write_text("not a socket")
    with pytest.raises(HookServerError, match="is not a socket"):
        HookToolServer(_reactor(), tmp_path / "own" / "agent.sock").start()
