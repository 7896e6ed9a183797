"""The hook tools' wire protocol with the unit agent, and its failures (stdlib only: the tools import it).

A UNIX stream socket, one request per connection, one JSON object per line each way::

    -> {"version": 1, "client-id": "<from the hook's environment>", "tool": "config-get", "args": {"key": null}}
    <- {"ok": true, "result": <any JSON value>}    or    {"ok": false, "error": "<one line>"}

``args`` are already parsed and typed by the tool, so the agent never parses a command line. Each tool's
arguments (checked on both sides, by ``check_args``)::

    config-get    {"key": str | null}                    -> the value (null: unknown key), or every setting
    unit-get      {"name": "private-address" | "public-address"} -> str
    open-port     {"port": 1..65535, "protocol": "tcp" | "udp"}  -> null
    close-port    (as open-port)
    ensemble-log  {"level": "DEBUG" | ... | "CRITICAL", "message": str}  -> null

    relation-get  {"relation-id": "db:3" | null, "key": str | null, "unit": str | null} -> str | null | {...}
    relation-set  {"relation-id": "db:3" | null, "settings": {str: str | null}}  -> null (null deletes)
    relation-list {"relation-id": "db:3" | null}             -> [remote unit names]
    relation-ids  {"name": str | null}                       -> ["db:3", ...]

A null relation id is the running hook's own relation. A new tool is one entry in ``TOOL_ARGS`` plus a handler.

Sizes are bounded (a request line of at most ``MAX_REQUEST`` bytes, a response of ``MAX_RESPONSE``) so neither
side can be made to buffer without end.
"""

from __future__ import annotations

import json
import socket
import time

from ...errors import EnsembleError

TYPE_CHECKING = False  # typing itself costs a tool's start ~5 ms; mypy reads this as typing's
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LEVELS",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "PROTOCOLS",
    "TOOL_ARGS",
    "UNIT_SETTINGS",
    "VERSION",
    "AgentUnreachable",
    "HookToolError",
    "ProtocolError",
    "Request",
    "call",
    "check_args",
    "check_port",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_result",
    "parse_port",
]

VERSION = 1
MAX_REQUEST = 1024 * 1024
MAX_RESPONSE = 8 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0  # the whole answer; a tool never waits longer than this for the agent

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PROTOCOLS = ("tcp", "udp")
UNIT_SETTINGS = ("private-address", "public-address")


class HookToolError(EnsembleError):
    """A hook tool's request failed in a way its user must hear about (an invalid port, no hook running).

    The unit agent answers ``{"ok": false, "error": str(error)}``; the tool prints ``<tool>: <error>`` and exits 1.
    """


class ProtocolError(HookToolError):
    """A request or response that is not what this protocol says (malformed JSON, too long, wrong arguments)."""


class AgentUnreachable(HookToolError):
    """The tool could not reach the unit agent or got no answer in time (the agent may be restarting)."""

    retryable = True


# name -> (JSON types allowed, required). One table for both sides; handlers may check values further.
_STR, _OPT_STR, _INT = (str,), (str, type(None)), (int,)
TOOL_ARGS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "config-get": {"key": (_OPT_STR, False)},
    "unit-get": {"name": (_STR, True)},
    "open-port": {"port": (_INT, True), "protocol": (_STR, True)},
    "close-port": {"port": (_INT, True), "protocol": (_STR, True)},
    "ensemble-log": {"level": (_STR, True), "message": (_STR, True)},
    "relation-get": {"relation-id": (_OPT_STR, False), "key": (_OPT_STR, False), "unit": (_OPT_STR, False)},
    "relation-set": {"relation-id": (_OPT_STR, False), "settings": ((dict,), True)},
    "relation-list": {"relation-id": (_OPT_STR, False)},
    "relation-ids": {"name": (_OPT_STR, False)},
}


class Request:
    """One tool call. (A plain class: dataclasses would cost every tool run ~6 ms of imports.)"""

    __slots__ = ("args", "client_id", "tool")

    def __init__(self, client_id: str, tool: str, args: dict[str, Any]) -> None:
        self.client_id = client_id
        self.tool = tool
        self.args = args

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and (self.client_id, self.tool, self.args) == (
            other.client_id,
            other.tool,
            other.args,
        )

    def __repr__(self) -> str:
        return f"Request(tool={self.tool!r}, args={self.args!r})"


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed (no message)"


def encode_request(request: Request) -> bytes:
    data = _line({"version": VERSION, "client-id": request.client_id, "tool": request.tool, "args": request.args})
    if len(data) > MAX_REQUEST:
        raise ProtocolError(f"the request is too long ({len(data)} bytes, at most {MAX_REQUEST}): send less")
    return data


def decode_request(line: bytes) -> Request:
    """The request in *line* (without its newline), or ProtocolError saying what is wrong with it."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the request is not a JSON object in UTF-8") from None
    if not isinstance(data, dict):
        raise ProtocolError("the request is not a JSON object")
    if data.get("version") != VERSION:
        raise ProtocolError(
            f"protocol version {data.get('version')!r} is not supported (this unit agent speaks {VERSION}):"
            " use the hook tools the agent installed"
        )
    client_id, tool, args = data.get("client-id"), data.get("tool"), data.get("args", {})
    if not isinstance(client_id, str) or not isinstance(tool, str) or not isinstance(args, dict):
        raise ProtocolError('the request needs "client-id" and "tool" (strings) and "args" (an object)')
    return Request(client_id, tool, args)


def check_args(tool: str, args: dict[str, Any]) -> None:
    """Raise ProtocolError unless *args* fit *tool*'s entry in ``TOOL_ARGS`` (the tool must be known)."""
    spec = TOOL_ARGS[tool]
    unexpected = sorted(set(args) - set(spec))
    if unexpected:
        raise ProtocolError(f"{tool} takes no argument {unexpected[0]!r}")
    for name, (types, required) in spec.items():
        if name not in args:
            if required:
                raise ProtocolError(f"{tool} needs the argument {name!r}")
            continue
        value = args[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ProtocolError(f"{tool}'s argument {name!r} has the wrong type ({type(value).__name__})")


def encode_result(result: Any) -> bytes:
    data = _line({"ok": True, "result": result})
    if len(data) > MAX_RESPONSE:
        return encode_error(f"the answer is too long ({len(data)} bytes, at most {MAX_RESPONSE})")
    return data


def encode_error(message: str) -> bytes:
    return _line({"ok": False, "error": _one_line(message)})


def decode_response(line: bytes) -> Any:
    """The result in the agent's answer *line*; HookToolError with the agent's message if it failed."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the unit agent's answer is not JSON: are the hook tools the agent's own?") from None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise ProtocolError("the unit agent's answer has no \"ok\": are the hook tools the agent's own?")
    if not data["ok"]:
        raise HookToolError(_one_line(str(data.get("error", ""))))
    return data.get("result")


def parse_port(text: str) -> tuple[int, str]:
    """``PORT[/tcp|udp]`` -> (port, protocol); tcp when not given. ValueError with a one-line message."""
    port_text, _, protocol = text.partition("/")
    protocol = protocol.lower() if protocol else "tcp"
    try:
        port = int(port_text, 10)
    except ValueError:
        raise ValueError(f"invalid port {port_text!r}: expected PORT[/tcp|udp], e.g. 80 or 53/udp") from None
    check_port(port, protocol)
    return port, protocol


def check_port(port: int, protocol: str) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {port}: ports are 1 to 65535")
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid protocol {protocol!r}: use tcp or udp")


def call(
    socket_path: str,
    request: Request,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    """Send *request* to the agent at *socket_path* and return its result (blocking: this is the tools' side).

    Raises AgentUnreachable (no agent there, or no full answer within *read_timeout*), HookToolError (the agent
    said no) or ProtocolError.
    """
    data = encode_request(request)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(socket_path)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise AgentUnreachable(
                f"cannot reach the unit agent at {socket_path} ({reason}): the hook may have ended or the agent"
                " be restarting"
            ) from None
        deadline = time.monotonic() + read_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            sock.settimeout(read_timeout)
            sock.sendall(data)
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if b"\n" in chunk or size > MAX_RESPONSE:
                    break
        except TimeoutError:
            raise AgentUnreachable(f"the unit agent did not answer within {read_timeout:g} s: see its log") from None
        except OSError as exc:
            raise AgentUnreachable(f"the connection to the unit agent failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    answer = b"".join(chunks)
    if size > MAX_RESPONSE:
        raise ProtocolError(f"the unit agent's answer is longer than {MAX_RESPONSE} bytes")
    if not answer.endswith(b"\n") and b"\n" not in answer:
        raise AgentUnreachable("the unit agent closed the connection without answering: see its log")
    return decode_response(answer.split(b"\n", 1)[0])
