"""The unit agent's end of the hook tools' socket: ``HookToolServer`` (protocol in ``protocol.py``).

Who may talk to it: the socket is mode 0600 in a directory of mode 0700 owned by the agent, so only the agent's
user (root: the hooks run as root) reaches it; a request must also carry the client id of a hook that is running
now, which the agent hands only to that hook (``open_context``) and forgets when the hook ends
(``close_context``). A tool run by anything else (a shell on the machine, a leftover background process of an
ended hook) is refused with a message saying why.

Every request is answered through one table, ``HANDLERS`` (tool name -> coroutine), so the relation tools are
entries there. Failures map in one place, ``_answer``: ``HookToolError`` -> its message; anything else -> logged
with its traceback and answered ``INTERNAL_ERROR``. Nothing here blocks the reactor: a connection that sends
nothing is dropped after ``idle_timeout``.
"""

from __future__ import annotations

import inspect
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ...errors import EnsembleError
from .context import IHookContext
from .protocol import (
    LEVELS,
    MAX_REQUEST,
    TOOL_ARGS,
    UNIT_SETTINGS,
    HookToolError,
    ProtocolError,
    check_args,
    check_port,
    decode_request,
    encode_error,
    encode_result,
)

__all__ = ["HANDLERS", "INTERNAL_ERROR", "NO_HOOK", "HookServerError", "HookToolServer"]

log = Logger()

NO_HOOK = "no hook is running with this client id (a hook tool must be run by the hook itself, while it runs)"
INTERNAL_ERROR = "internal error in the unit agent: see its log"
IDLE_TIMEOUT = 30.0
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with its NUL

Handler = Callable[[IHookContext, dict[str, Any]], Awaitable[Any]]


class HookServerError(EnsembleError):
    """The hook tools' socket cannot be served (path too long, directory open to others, another agent on it)."""


async def _call(result: Any) -> Any:
    """A context method's result: awaited if it is a coroutine or Deferred (see IHookContext's contract)."""
    if inspect.isawaitable(result):
        return await result
    return result


def _port(args: dict[str, Any]) -> tuple[int, str]:
    try:
        check_port(args["port"], args["protocol"])
    except ValueError as exc:
        raise HookToolError(str(exc)) from None
    return args["port"], args["protocol"]


async def _config_get(context: IHookContext, args: dict[str, Any]) -> Any:
    return await _call(context.config_get(args.get("key")))


async def _unit_get(context: IHookContext, args: dict[str, Any]) -> Any:
    if args["name"] not in UNIT_SETTINGS:
        raise HookToolError(f"unknown setting {args['name']!r}: use private-address or public-address")
    return await _call(context.unit_get(args["name"]))


async def _open_port(context: IHookContext, args: dict[str, Any]) -> None:
    await _call(context.open_port(*_port(args)))


async def _close_port(context: IHookContext, args: dict[str, Any]) -> None:
    await _call(context.close_port(*_port(args)))


async def _log(context: IHookContext, args: dict[str, Any]) -> None:
    if args["level"] not in LEVELS:
        raise HookToolError(f"unknown log level {args['level']!r}: use one of {', '.join(LEVELS)}")
    await _call(context.log(args["level"], args["message"]))


def _relation_key(key: str) -> str:
    if not key or "=" in key or any(c.isspace() for c in key):
        raise HookToolError(f"invalid relation setting name {key!r}: no spaces or '=', not empty")
    return key


async def _relation_get(context: IHookContext, args: dict[str, Any]) -> Any:
    return await _call(context.relation_get(args.get("relation-id"), args.get("key"), args.get("unit")))


async def _relation_set(context: IHookContext, args: dict[str, Any]) -> None:
    settings: dict[str, str | None] = {}
    for key, value in args["settings"].items():
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"relation-set: the value of {key!r} is not a string")
        settings[_relation_key(key)] = value or None
    await _call(context.relation_set(args.get("relation-id"), settings))


async def _relation_list(context: IHookContext, args: dict[str, Any]) -> Any:
    return await _call(context.relation_list(args.get("relation-id")))


async def _relation_ids(context: IHookContext, args: dict[str, Any]) -> Any:
    return await _call(context.relation_ids(args.get("name")))


HANDLERS: dict[str, Handler] = {
    "config-get": _config_get,
    "unit-get": _unit_get,
    "open-port": _open_port,
    "close-port": _close_port,
    "ensemble-log": _log,
    "relation-get": _relation_get,
    "relation-set": _relation_set,
    "relation-list": _relation_list,
    "relation-ids": _relation_ids,
}
assert set(HANDLERS) == set(TOOL_ARGS), "every tool has its arguments in protocol.TOOL_ARGS and a handler here"


class _ToolConnection(LineOnlyReceiver):
    """One tool's connection: one request line in, one answer line out, then closed."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST
    transport: Any  # a UNIX server transport (abortConnection, pauseProducing), not just ITransport

    def __init__(self, server: HookToolServer) -> None:
        self._server = server
        self._answered = False
        self._idle: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._server._connections.add(self)
        self._idle = self._server._clock.callLater(self._server.idle_timeout, self.transport.abortConnection)

    def lineReceived(self, line: bytes) -> None:
        if self._answered:
            return
        self._answered = True
        self._stop_idle()
        self.transport.pauseProducing()  # one request per connection: read nothing more
        self._server._answer(line).addCallback(self._reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self._answered:
            self._answered = True
            self._stop_idle()
            self._reply(encode_error(f"the request is longer than {MAX_REQUEST} bytes: send less"))

    def _reply(self, answer: bytes) -> None:
        if self.transport is not None and self.connected:
            self.transport.write(answer)
            self.transport.loseConnection()

    def _stop_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008 (Twisted's)
        self._stop_idle()
        self._server._connections.discard(self)


class _Factory(Factory):
    def __init__(self, server: HookToolServer) -> None:
        self._server = server

    def buildProtocol(self, addr: Any) -> _ToolConnection:
        return _ToolConnection(self._server)


class HookToolServer:
    """Serves the hook tools of one unit agent on *socket_path* (see the module docstring).

    ``start()`` listens (a stale socket from a killed agent is replaced; another live agent on the same path is
    a HookServerError); ``stop()`` stops listening and drops open connections. *clock* defaults to *reactor*.
    """

    def __init__(
        self,
        reactor: Any,
        socket_path: str | os.PathLike[str],
        *,
        clock: Any = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self.socket_path = Path(socket_path)
        self.idle_timeout = idle_timeout
        self._contexts: dict[str, IHookContext] = {}
        self._connections: set[_ToolConnection] = set()
        self._port: IListeningPort | None = None

    # -- the unit agent's side

    def open_context(self, context: IHookContext) -> str:
        """A fresh client id under which the hook's tools reach *context*, valid until ``close_context``."""
        client_id = secrets.token_urlsafe(18)
        self._contexts[client_id] = context
        return client_id

    def close_context(self, client_id: str) -> None:
        """End *client_id* (the hook ended): its tools are refused from now on. Idempotent."""
        self._contexts.pop(client_id, None)

    _serving: ClassVar[set[Path]] = set()  # paths this process serves: a lock naming our own pid may still be live

    def start(self) -> None:
        path = os.fsencode(self.socket_path)
        if len(path) > MAX_SOCKET_PATH:
            raise HookServerError(
                f"the hook tools' socket path {self.socket_path} is {len(path)} bytes (at most {MAX_SOCKET_PATH}):"
                " use a shorter directory"
            )
        in_use = HookServerError(
            f"cannot serve the hook tools on {self.socket_path} (in use): is another unit agent for this unit"
            " running? Stop it first"
        )
        if self.socket_path.absolute() in self._serving:
            raise in_use
        self._prepare_directory(self.socket_path.parent)
        self._clear_stale(self.socket_path)
        try:
            self._port = self._reactor.listenUNIX(str(self.socket_path), _Factory(self), mode=0o600, wantPID=True)
        except CannotListenError:
            raise in_use from None
        self._serving.add(self.socket_path.absolute())
        log.info("hook tools served on {path}", path=str(self.socket_path))

    async def stop(self) -> None:
        """Stop listening (the socket file and its lock go) and drop connections still open. Idempotent."""
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abortConnection()
        port, self._port = self._port, None
        if port is None:
            return
        self._serving.discard(self.socket_path.absolute())
        stopped = port.stopListening()
        if stopped is not None:
            await stopped

    # -- requests

    def _answer(self, line: bytes) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._answer_line(line))

    async def _answer_line(self, line: bytes) -> bytes:
        """The answer to one request line: the one place failures turn into answers."""
        tool = "?"
        try:
            request = decode_request(line)
            tool = request.tool
            context = self._contexts.get(request.client_id)
            if context is None:
                raise HookToolError(NO_HOOK)
            handler = HANDLERS.get(request.tool)
            if handler is None:
                known = ", ".join(sorted(HANDLERS))
                raise ProtocolError(f"unknown hook tool {request.tool!r} (this unit agent has {known})")
            check_args(request.tool, request.args)
            log.debug("hook tool {tool}", tool=request.tool)
            return encode_result(await handler(context, request.args))
        except HookToolError as exc:
            return encode_error(str(exc))
        except Exception:
            log.failure("hook tool {tool} failed in the unit agent", tool=tool)
            return encode_error(INTERNAL_ERROR)

    # -- the socket's directory

    @staticmethod
    def _prepare_directory(directory: Path) -> None:
        """*directory* exists, is the agent's own and only the agent may enter it (0700)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
            raise HookServerError(
                f"{directory} is shared with other users (a sticky or world-writable directory, or not ours): give"
                " the hook tools' socket a directory of its own"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            directory.chmod(0o700)

    @staticmethod
    def _clear_stale(path: Path) -> None:
        """Remove what a killed agent left that Twisted's lock would not clear (see ``listenUNIX(wantPID=True)``).

        Twisted removes a socket whose ``.lock`` names a dead process; it refuses a lock naming a live one. Two
        cases remain: a lock naming *our own* pid while we do not serve the path (a restarted agent given its
        predecessor's pid, as in a container) and a socket with no lock at all.
        """
        lock = Path(f"{path}.lock")
        try:
            owner = int(os.readlink(lock))
        except (OSError, ValueError):
            owner = None
        if owner == os.getpid():
            lock.unlink()
        if lock.is_symlink():
            return
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise HookServerError(f"{path} exists and is not a socket: remove it or choose another socket path")
        path.unlink()
