"""The workstation's way to the environment's ZooKeeper: an OpenSSH tunnel to machine 0, as Ensemble made it.

ZooKeeper listens on machine 0's own address only, so the CLI runs OpenSSH's client (the user's agent, config and
key handling come with it) as ``ssh -N -L 127.0.0.1:<local port>:<remote_host>:<remote_port> user@host`` and talks
to the local end. Key authentication only (``BatchMode``): nothing secret is ever on ssh's command line.

Ready means ssh authenticated and its local listener accepts a connection: ssh binds the listener only after
authentication, so a connection is the proof (``ExitOnForwardFailure`` makes a failed bind an exit, not a tunnel
that forwards nothing). Every failure is read from ssh's stderr through ONE table (``tunnel_errors``): a refused
key or a changed host key ends the open at once; a machine still booting (refused, timed out, closed before
authentication) is tried again on a schedule until the open's bound. A local port taken between our pick and
ssh's bind is a new port at once. The residual race: a program that takes the port and listens on it before ssh
binds would answer the readiness check; ssh then exits and ``ended`` says so.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectingCancelledError, ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorTCP, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.protocol import Protocol as TCPProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..http.deadline import within
from ..schedule import Schedule
from .tunnel_errors import (
    ERROR_TABLE,
    LocalPortTaken,
    TunnelAuthError,
    TunnelError,
    TunnelHostKeyError,
    TunnelLost,
    TunnelUnreachable,
    classify,
)

__all__ = [
    "ERROR_TABLE",
    "SSHTunnel",
    "TunnelAuthError",
    "TunnelError",
    "TunnelHostKeyError",
    "TunnelLost",
    "TunnelReactor",
    "TunnelSpec",
    "TunnelUnreachable",
    "classify",
    "open_tunnel",
    "ssh_arguments",
]

_log = Logger()

LOCAL_HOST = "127.0.0.1"
RETRY_DELAYS = (0.5, 1.0, 2.0)  # s between tries while machine 0 boots; the last repeats until the open's bound
POLL_DELAYS = (0.05, 0.1)  # s between checks of the local listener while ssh authenticates
PROGRESS_EVERY = 5.0  # s: "waiting for SSH" at most this often
CONNECT_TIMEOUT_MAX = 10  # s: ssh's ConnectTimeout per try (TCP connect and banner), cut to what the bound leaves
PROBE_TIMEOUT = 1.0  # s for one readiness connection to the local listener
STOP_TIMEOUT = 5.0  # s to wait for ssh after TERM, and again after KILL


@dataclass(frozen=True)
class TunnelSpec:
    """Where the tunnel goes: ssh to *user*@*host*, forwarding to *remote_host*:*remote_port* as machine 0 sees it."""

    host: str  # machine 0's address (what ssh connects to)
    remote_host: str  # where the forward goes, seen from machine 0 (its own address: ZooKeeper binds it)
    remote_port: int  # 2181
    user: str  # login user on the machine
    identity_file: Path | None  # private key; None = ssh's defaults and agent
    known_hosts: Path  # this environment's known_hosts (created if missing, its directory 0700)
    ssh_port: int = 22

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def known_hosts_entry(self) -> str:
        """How known_hosts names the host (``[host]:port`` off port 22)."""
        return self.host if self.ssh_port == 22 else f"[{self.host}]:{self.ssh_port}"


class TunnelReactor(Protocol):
    """What the tunnel needs of a reactor: time, a child process, a TCP connection (the readiness check)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any, env: Any = ..., **kw: Any) -> Any: ...

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = ..., bindAddress: Any = ...) -> Any: ...


def _time(reactor: TunnelReactor) -> IReactorTime:
    """*reactor* as the IReactorTime that Schedule, within and deferLater are typed with (it provides it)."""
    return cast(IReactorTime, reactor)


def ssh_arguments(spec: TunnelSpec, local_port: int, connect_timeout: int) -> list[str]:
    """ssh's arguments (after argv[0]) for a tunnel from 127.0.0.1:*local_port*; key authentication only."""
    options = [
        "BatchMode=yes",  # never prompt (a password or a passphrase would hang us): key or agent, or fail
        "ExitOnForwardFailure=yes",  # a listener that cannot bind is an exit, not a tunnel to nowhere
        f"ConnectTimeout={connect_timeout}",
        "ServerAliveInterval=5",  # a silent machine 0 ends the tunnel within ~15 s
        "ServerAliveCountMax=3",
        "StrictHostKeyChecking=accept-new",  # the first key is recorded, a changed one refused
        f"UserKnownHostsFile={spec.known_hosts}",
        "PasswordAuthentication=no",
        "ControlPath=none",  # our own connection, never the user's multiplexing master: close() must end it
    ]
    if spec.identity_file is not None:
        options.append("IdentitiesOnly=yes")  # exactly this key, not every key the agent holds
    argv = ["-N", "-L", f"{LOCAL_HOST}:{local_port}:{spec.remote_host}:{spec.remote_port}"]
    for option in options:
        argv += ["-o", option]
    argv += ["-p", str(spec.ssh_port)]
    if spec.identity_file is not None:
        argv += ["-i", str(spec.identity_file)]
    return [*argv, spec.target]


class _SSHProcess(ProcessProtocol):
    """One ssh child: its stderr lines (logged at debug), its exit, and stopping it by its pid."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lines: deque[str] = deque(maxlen=40)
        self.count = 0  # lines ever written (the deque keeps the last ones)
        self.ended = False
        self.exit_code: int | None = None
        self.signal: int | None = None
        self._partial = b""
        self._waiters: list[Deferred[None]] = []

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    @property
    def last_line(self) -> str:
        return self.lines[-1] if self.lines else "ssh said nothing"

    def errReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").strip()
        if line:
            self.lines.append(line)
            self.count += 1
            _log.debug("ssh {target} (pid {pid}): {line}", target=self.target, pid=self.pid, line=line)

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        self.ended = True
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:  # a waiter may have been cancelled (a race it lost)
                waiter.callback(None)

    def exited(self) -> Deferred[None]:
        """Fires when ssh has exited (at once if it has); a new Deferred for each caller, safe to cancel."""
        if self.ended:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def how(self) -> str:
        return f"killed by signal {self.signal}" if self.signal else f"exit {self.exit_code}"

    async def stop(self, clock: TunnelReactor) -> None:
        """TERM our ssh by its pid, then KILL; each wait bounded by STOP_TIMEOUT. Idempotent."""
        for signal in ("TERM", "KILL"):
            if self.ended:
                return
            try:
                cast(IProcessTransport, self.transport).signalProcess(signal)
            except ProcessExitedAlready:
                pass
            try:
                await within(_time(clock), STOP_TIMEOUT, self.exited())
            except TimeoutError:
                _log.warn(
                    "ssh {target} (pid {pid}) still running {s} s after {signal}",
                    target=self.target,
                    pid=self.pid,
                    s=STOP_TIMEOUT,
                    signal=signal,
                )
        if not self.ended:
            raise TunnelError(f"ssh {self.target} (pid {self.pid}) did not exit after KILL: kill it by hand")


class SSHTunnel:
    """An open tunnel: 127.0.0.1:``local_port`` forwards to the spec's remote end while our ssh runs.

    ``ended`` fires with None after ``close()``, or fails with TunnelLost (ssh's last line) if ssh exits on its own;
    whoever holds the tunnel should add an errback to it.
    """

    def __init__(self, clock: TunnelReactor, spec: TunnelSpec, local_port: int, process: _SSHProcess) -> None:
        self.spec = spec
        self.local_port = local_port
        self.ended: Deferred[None] = Deferred()
        self._clock = clock
        self._process = process
        self._closing = False
        self._said_before = process.count  # what ssh said while opening is not why the tunnel ended
        process.exited().addCallback(self._exited)

    @property
    def pid(self) -> int | None:
        """Our ssh's process id (while it runs)."""
        return self._process.pid

    def _exited(self, _: None) -> None:
        if self._closing or self.ended.called:
            return
        line = self._process.last_line if self._process.count > self._said_before else "ssh said nothing"
        _log.warn("SSH tunnel to {target} ended: {line}", target=self.spec.target, line=line)
        self.ended.errback(
            TunnelLost(
                f"the SSH tunnel to {self.spec.target} ended (ssh {self._process.how()}: {line}): open it again",
                ssh_line=line,
            )
        )

    async def close(self) -> None:
        """Stop our ssh (TERM, then KILL, each wait bounded) and fire ``ended``; idempotent."""
        self._closing = True
        await self._process.stop(self._clock)
        if not self.ended.called:
            self.ended.callback(None)


async def open_tunnel(
    reactor: TunnelReactor,
    spec: TunnelSpec,
    *,
    timeout: float,
    progress: Callable[[str], None] | None = None,
    ssh: str = "ssh",
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
) -> SSHTunnel:
    """Open a tunnel for *spec*, trying again while machine 0's SSH is not answering, for at most *timeout* s.

    Raises TunnelAuthError or TunnelHostKeyError at once, TunnelUnreachable past the bound (or at once if the
    host's name does not resolve). Cancelling the returned coroutine's Deferred stops our ssh before it ends.
    """
    executable = shutil.which(ssh)
    if executable is None:
        raise TunnelError(f"{ssh} (OpenSSH's client) is not installed: install openssh-client", retryable=False)
    if spec.identity_file is not None and not spec.identity_file.is_file():
        raise TunnelAuthError(f"the SSH key {spec.identity_file} does not exist: check the environment's settings")
    _prepare_known_hosts(spec.known_hosts)
    run = Schedule(retry_delays, timeout=timeout).start(_time(reactor))
    said = ""  # ssh's last line of the latest try that said anything
    progressed: float | None = None
    while (left := timeout - run.elapsed()) > 0:
        local_port = _free_local_port()
        try:
            process = await _try_once(reactor, spec, executable, local_port, left)
        except TunnelError as error:
            if not error.retryable:
                raise
            said = error.ssh_line or said
            _log.debug("no tunnel to {target} yet: {error}", target=spec.target, error=error)
            if isinstance(error, LocalPortTaken):
                continue  # another port at once, no wait
        else:
            _log.info(
                "SSH tunnel to {target} open on {local}:{port} in {s:.2f} s",
                target=spec.target,
                local=LOCAL_HOST,
                port=local_port,
                s=run.elapsed(),
            )
            return SSHTunnel(reactor, spec, local_port, process)
        delay = run.next_delay()
        if delay is None:
            break
        if progress is not None and (progressed is None or reactor.seconds() - progressed >= PROGRESS_EVERY):
            progressed = reactor.seconds()
            progress(f"waiting for SSH on {spec.host}")
        await deferLater(_time(reactor), delay)
    line = said or "ssh said nothing"
    raise TunnelUnreachable(
        f"no SSH on {spec.host}:{spec.ssh_port} after waiting {run.elapsed():.0f} s (ssh: {line}):"
        " is machine 0 up? try again later",
        ssh_line=line,
    )


def _prepare_known_hosts(path: Path) -> None:
    """Create *path* (0600) and its directory (0700) if missing: ssh records machine 0's first host key there."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
            path.parent.chmod(0o700)  # mkdir's mode is cut by the umask
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise TunnelError(f"cannot create the known_hosts file {path}: {exc.strerror}", retryable=False) from None


async def _try_once(
    reactor: TunnelReactor, spec: TunnelSpec, executable: str, local_port: int, left: float
) -> _SSHProcess:
    """Start ssh and wait (at most *left* s) until its listener accepts; on any failure our ssh is stopped."""
    process = _SSHProcess(spec.target)
    connect_timeout = max(1, min(CONNECT_TIMEOUT_MAX, math.ceil(left)))
    argv = [executable, *ssh_arguments(spec, local_port, connect_timeout)]
    reactor.spawnProcess(process, executable, argv, env=_ssh_environment())
    _log.debug(
        "started ssh {target} (pid {pid}) for local port {port}", target=spec.target, pid=process.pid, port=local_port
    )
    try:
        await within(_time(reactor), left, Deferred.fromCoroutine(_until_ready(reactor, spec, process, local_port)))
    except TimeoutError:
        await process.stop(reactor)
        raise TunnelUnreachable(
            f"SSH on {spec.host}:{spec.ssh_port} did not let us in within {left:.0f} s ({process.last_line})",
            ssh_line=process.lines[-1] if process.lines else "",
        ) from None
    except BaseException:
        await process.stop(reactor)  # also on a cancel (Ctrl-C): nothing of ours keeps running
        raise
    return process


async def _until_ready(reactor: TunnelReactor, spec: TunnelSpec, process: _SSHProcess, local_port: int) -> None:
    """Poll the local listener until it accepts; ssh's exit first is its classified error."""
    tries = 0
    while True:
        if process.ended:
            raise classify(list(process.lines), spec, local_port=local_port, exit_code=process.exit_code)
        if await _accepts(reactor, local_port) and not process.ended:
            return
        delay = POLL_DELAYS[min(tries, len(POLL_DELAYS) - 1)]
        tries += 1
        try:
            await within(_time(reactor), delay, process.exited())  # the next check, sooner if ssh exits
        except TimeoutError:
            pass


async def _accepts(reactor: TunnelReactor, local_port: int) -> bool:
    """Whether 127.0.0.1:*local_port* accepts a TCP connection (closed at once: ssh opens and drops a channel)."""
    endpoint = TCP4ClientEndpoint(cast(IReactorTCP, reactor), LOCAL_HOST, local_port, timeout=PROBE_TIMEOUT)
    try:
        protocol = await connectProtocol(endpoint, TCPProtocol())
    except ConnectingCancelledError:  # the open was cancelled while this probe connected: say so as cancel does
        raise CancelledError() from None
    except ConnectError:
        return False
    protocol.transport.loseConnection()
    return True


def _free_local_port() -> int:
    """A port free on 127.0.0.1 right now (the kernel's pick); ssh binds it soon after (or says it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return int(sock.getsockname()[1])


def _ssh_environment() -> dict[str, str]:
    """ssh's environment: the user's agent and home, and the C locale (the error table reads English)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    for name in ("HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env
