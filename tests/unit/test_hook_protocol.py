"""The hook tools' wire protocol: encoding, the argument table, ports, and the client's failures on a bad peer."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.agents.hooks.protocol import (
    MAX_REQUEST,
    TOOL_ARGS,
    AgentUnreachable,
    HookToolError,
    ProtocolError,
    Request,
    call,
    check_args,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_result,
    parse_port,
)
from ensemble_orchestra.errors import EnsembleError


def test_request_round_trip() -> None:
    request = Request("cid", "relation-set", {"relation-id": "db:0", "settings": {"user": "wp", "x": None}})
    line = encode_request(request)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["version"] == 1
    assert decode_request(line.rstrip(b"\n")) == request


def test_too_long_a_request_is_refused_before_sending() -> None:
    with pytest.raises(ProtocolError, match="too long"):
        encode_request(Request("cid", "ensemble-log", {"level": "INFO", "message": "x" * MAX_REQUEST}))


BAD_REQUESTS = [
    (b"not json", "not a JSON object"),
    (b"\xff\xfe", "not a JSON object"),
    (b"[1]", "not a JSON object"),
    (b'{"version": 2, "client-id": "c", "tool": "t"}', "version 2 is not supported"),
    (b'{"client-id": "c", "tool": "t"}', "version None is not supported"),
    (b'{"version": 1, "tool": "t"}', '"client-id" and "tool"'),
    (b'{"version": 1, "client-id": "c", "tool": "t", "args": []}', '"args" (an object)'),
]


@pytest.mark.parametrize(("line", "message"), BAD_REQUESTS)
def test_bad_requests(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_request(line)


ARGS = [
    ("config-get", {}, None),
    ("config-get", {"key": None}, None),
    ("config-get", {"key": "title"}, None),
    ("config-get", {"key": 3}, "wrong type"),
    ("config-get", {"key": "a", "extra": 1}, "no argument 'extra'"),
    ("unit-get", {}, "needs the argument 'name'"),
    ("open-port", {"port": 80, "protocol": "tcp"}, None),
    ("open-port", {"port": "80", "protocol": "tcp"}, "wrong type"),
    ("open-port", {"port": True, "protocol": "tcp"}, "wrong type"),  # bool is an int in Python, not here
    ("ensemble-log", {"level": "INFO"}, "needs the argument 'message'"),
]


@pytest.mark.parametrize(("tool", "args", "error"), ARGS)
def test_argument_table(tool: str, args: dict[str, Any], error: str | None) -> None:
    if error is None:
        check_args(tool, args)
    else:
        with pytest.raises(ProtocolError, match=error):
            check_args(tool, args)


def test_every_tool_has_an_argument_spec() -> None:
    assert set(TOOL_ARGS) == {
        "config-get",
        "unit-get",
        "open-port",
        "close-port",
        "ensemble-log",
        "relation-get",
        "relation-set",
        "relation-list",
        "relation-ids",
    }


PORTS = [
    ("80", (80, "tcp")),
    ("53/udp", (53, "udp")),
    ("443/TCP", (443, "tcp")),
    ("65535", (65535, "tcp")),
    ("0", "ports are 1 to 65535"),
    ("65536", "ports are 1 to 65535"),
    ("http", "invalid port 'http'"),
    ("80/sctp", "use tcp or udp"),
    ("", "invalid port ''"),
]


@pytest.mark.parametrize(("text", "expected"), PORTS)
def test_parse_port(text: str, expected: tuple[int, str] | str) -> None:
    if isinstance(expected, tuple):
        assert parse_port(text) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_port(text)


def test_responses() -> None:
    assert decode_response(encode_result({"a": [1, None]}).rstrip(b"\n")) == {"a": [1, None]}
    with pytest.raises(HookToolError, match="^no such thing: try again$"):
        decode_response(encode_error("no such\nthing:   try again").rstrip(b"\n"))  # one line, always
    with pytest.raises(ProtocolError):
        decode_response(b'{"result": 1}')
    assert issubclass(HookToolError, EnsembleError)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A misbehaving agent on a real UNIX socket: *behaviour* gets each accepted connection."""
    path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    threads: list[threading.Thread] = []

    def serve(behaviour: Callable[[socket.socket], None]) -> str:
        def accept() -> None:
            connection, _ = listener.accept()
            with connection:
                behaviour(connection)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield serve
    listener.close()
    for thread in threads:
        thread.join(timeout=5)


REQUEST = Request("cid", "config-get", {"key": None})


def test_no_agent_listening(tmp_path: Path) -> None:
    with pytest.raises(AgentUnreachable, match="cannot reach the unit agent at .*No such file"):
        call(str(tmp_path / "absent.sock"), REQUEST)


def test_an_agent_that_never_answers_times_out(peer: Any) -> None:
    path = peer(lambda connection: connection.recv(100) and __import__("time").sleep(1))
    with pytest.raises(AgentUnreachable, match="did not answer within 0.2 s"):
        call(path, REQUEST, read_timeout=0.2)


def test_an_agent_that_closes_without_answering(peer: Any) -> None:
    path = peer(lambda connection: connection.recv(100))
    with pytest.raises(AgentUnreachable, match="closed the connection without answering"):
        call(path, REQUEST)


def test_an_answer_in_pieces(peer: Any) -> None:
    def answer(connection: socket.socket) -> None:
        connection.recv(1000)
        for piece in (b'{"ok": tr', b'ue, "result": "x', b'"}\n'):
            connection.sendall(piece)
            __import__("time").sleep(0.01)

    assert call(peer(answer), REQUEST) == "x"
