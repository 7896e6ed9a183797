"""The SSH tunnel's error table, command line, retry schedule, cancel and stop on a fake reactor (task.Clock).

The fake reactor's ssh does what a scenario says (writes ssh's real stderr lines, exits, binds its listener
after a while, ignores TERM); its listener is a set of ports the fake TCP connect accepts. What real ssh and
sshd do is proven in tests/integration/test_tunnel.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError, ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ensemble_orchestra.cli.tunnel import (
    ERROR_TABLE,
    PROGRESS_EVERY,
    STOP_TIMEOUT,
    SSHTunnel,
    TunnelAuthError,
    TunnelError,
    TunnelHostKeyError,
    TunnelLost,
    TunnelSpec,
    TunnelUnreachable,
    classify,
    open_tunnel,
    ssh_arguments,
)
from ensemble_orchestra.cli.tunnel_errors import LocalPortTaken
from ensemble_orchestra.testing import result_of

HOST = "10.20.0.5"


def spec(tmp_path: Path, *, key: bool = True, port: int = 22) -> TunnelSpec:
    identity = tmp_path / "id_ed25519"
    identity.write_text("not a real key: the fake ssh never reads it\n")
    return TunnelSpec(
        host=HOST,
        remote_host=HOST,
        remote_port=2181,
        user="debian",
        identity_file=identity if key else None,
        known_hosts=tmp_path / "env" / "known_hosts",
        ssh_port=port,
    )


# -- the error table ---------------------------------------------------------------------------------------

KNOWN_HOSTS_WARNING = "Warning: Permanently added '10.20.0.5' (ED25519) to the list of known hosts."
CHANGED = [
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!",
    "Host key for 10.20.0.5 has changed and you have requested strict checking.",
    "Host key verification failed.",
]

# (what ssh wrote on stderr, our class, retryable, what the message must say). Real ssh 9.2 lines.
CASES: list[tuple[list[str], type[TunnelError], bool, list[str]]] = [
    (CHANGED, TunnelHostKeyError, False, ["known_hosts", "remove its line", "reinstalled"]),
    (["Host key verification failed."], TunnelHostKeyError, False, ["known_hosts", "remove its line"]),
    (
        ["@ WARNING: UNPROTECTED PRIVATE KEY FILE! @", "Permissions 0644 for 'k' are too open.",
         "debian@10.20.0.5: Permission denied (publickey)."],
        TunnelAuthError, False, ["chmod 600"],
    ),
    (
        [KNOWN_HOSTS_WARNING, "debian@10.20.0.5: Permission denied (publickey)."],
        TunnelAuthError, False, ["ssh to debian@10.20.0.5 refused the key", "id_ed25519", "authorized-keys"],
    ),
    (
        ["ssh: Could not resolve hostname machine0.invalid: Name or service not known"],
        TunnelUnreachable, False, ["cannot resolve", "Name or service not known"],
    ),
    (
        ["bind [127.0.0.1]:40124: Address already in use",
         "channel_setup_fwd_listener_tcpip: cannot listen to port: 40124", "Could not request local forwarding."],
        LocalPortTaken, True, ["local port 40124"],
    ),
    (["ssh: connect to host 10.20.0.5 port 22: Connection refused"], TunnelUnreachable, True, ["refused"]),
    (["ssh: connect to host 10.20.0.5 port 22: Connection timed out"], TunnelUnreachable, True, ["did not answer"]),
    (["Connection timed out during banner exchange"], TunnelUnreachable, True, ["did not answer"]),
    (["ssh: connect to host 10.20.0.5 port 22: No route to host"], TunnelUnreachable, True, ["no route"]),
    (["ssh: connect to host 10.20.0.5 port 22: Network is unreachable"], TunnelUnreachable, True, ["no route"]),
    (["Connection closed by 10.20.0.5 port 22"], TunnelUnreachable, True, ["closed the connection"]),
    (["Connection reset by 10.20.0.5 port 22"], TunnelUnreachable, True, ["closed the connection"]),
    (
        ["kex_exchange_identification: read: Connection reset by peer"],
        TunnelUnreachable, True, ["closed the connection"],
    ),
    (
        ["kex_exchange_identification: Connection closed by remote host"],
        TunnelUnreachable, True, ["closed the connection"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "error", "retryable", "says"), CASES)
def test_error_table(
    tmp_path: Path, lines: list[str], error: type[TunnelError], retryable: bool, says: list[str]
) -> None:
    """Each kind of ssh failure is its class with its retryable flag and a one-line message saying what to do."""
    raised = classify(lines, spec(tmp_path), local_port=40124, exit_code=255)
    assert type(raised) is error and raised.retryable is retryable
    message = str(raised)
    assert "\n" not in message and all(part in message for part in says), message
    assert raised.ssh_line == lines[-1]


def test_every_row_of_the_table_has_a_case() -> None:
    """No row of ERROR_TABLE goes untested."""
    for pattern, *_ in ERROR_TABLE:
        assert any(pattern.lower() in line.lower() for lines, *_ in CASES for line in lines), pattern


def test_unknown_failure_is_fatal_and_quotes_ssh(tmp_path: Path) -> None:
    """Nothing in the table matched: a fatal TunnelError with the exit status and ssh's last line."""
    raised = classify(["command-line line 0: Bad configuration option: frobnicate"], spec(tmp_path), exit_code=255)
    assert type(raised) is TunnelError and not raised.retryable
    assert "exit 255" in str(raised) and "Bad configuration option" in str(raised)
    assert "ssh said nothing" in str(classify([], spec(tmp_path), exit_code=255))


def test_host_key_message_names_the_known_hosts_entry_off_port_22(tmp_path: Path) -> None:
    raised = classify(CHANGED, spec(tmp_path, port=2222))
    assert f"ssh-keygen -f {tmp_path / 'env' / 'known_hosts'} -R '[10.20.0.5]:2222'" in str(raised)


# -- ssh's command line -------------------------------------------------------------------------------------


def test_ssh_arguments(tmp_path: Path) -> None:
    """The forward binds loopback only; batch mode, key only, bounded connect, our known_hosts; key last-but-one."""
    the_spec = spec(tmp_path, port=2222)
    argv = ssh_arguments(the_spec, 40000, 7)
    assert argv[:3] == ["-N", "-L", f"127.0.0.1:40000:{HOST}:2181"]
    options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    assert options == [
        "BatchMode=yes",
        "ExitOnForwardFailure=yes",
        "ConnectTimeout=7",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
        "StrictHostKeyChecking=accept-new",
        f"UserKnownHostsFile={tmp_path / 'env' / 'known_hosts'}",
        "PasswordAuthentication=no",
        "ControlPath=none",
        "IdentitiesOnly=yes",
    ]
    assert argv[-5:] == ["-p", "2222", "-i", str(tmp_path / "id_ed25519"), "debian@10.20.0.5"]


def test_ssh_arguments_without_a_key_leave_keys_to_ssh(tmp_path: Path) -> None:
    argv = ssh_arguments(spec(tmp_path, key=False), 40000, 7)
    assert "-i" not in argv and "IdentitiesOnly=yes" not in argv
    assert argv[-3:] == ["-p", "22", "debian@10.20.0.5"]


# -- a fake reactor: a Clock whose ssh follows a scenario ---------------------------------------------------


class FakeProcess:
    """The IProcessTransport side of one fake ssh: records signals; the scenario decides what they do."""

    def __init__(self, reactor: FakeReactor, protocol: ProcessProtocol, argv: list[str], pid: int) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.argv = argv
        self.pid: int | None = pid
        self.signals: list[str] = []
        self.ignores_term = False
        self.local_port = int(argv[argv.index("-L") + 1].split(":")[1])

    def say(self, *lines: str) -> None:
        self.protocol.errReceived(("\n".join(lines) + "\n").encode())

    def exit(self, code: int | None = 255, signal: int | None = None) -> None:
        if self.pid is None:
            return
        self.pid = None
        self.reactor.listening.discard(self.local_port)
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code, signal=signal)
        self.protocol.processEnded(Failure(reason))

    def listen(self) -> None:
        self.reactor.listening.add(self.local_port)

    def signalProcess(self, signal: str) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        if signal == "KILL" or not self.ignores_term:
            self.reactor.callLater(0.01, self.exit, None, 15 if signal == "TERM" else 9)

    def closeStdin(self) -> None:
        pass


Scenario = Callable[["FakeReactor", FakeProcess], None]


class FakeReactor(Clock):
    """A Clock with spawnProcess (each ssh runs the next scenario) and connectTCP (accepts ports in ``listening``)."""

    def __init__(self, *scenarios: Scenario) -> None:
        super().__init__()
        self.scenarios = list(scenarios)
        self.processes: list[FakeProcess] = []
        self.env: list[dict[str, str]] = []
        self.listening: set[int] = set()

    def spawnProcess(self, protocol: ProcessProtocol, executable: str, args: list[str], env: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
        process = FakeProcess(self, protocol, list(args), pid=1000 + len(self.processes))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        self.processes.append(process)
        self.env.append(env)
        scenario = self.scenarios.pop(0) if len(self.scenarios) > 1 else self.scenarios[0]
        scenario(self, process)
        return process

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None):  # type: ignore[no-untyped-def]
        assert host == "127.0.0.1"

        def answer() -> None:
            if port in self.listening:
                protocol = factory.buildProtocol(None)
                protocol.makeConnection(StringTransport())
            else:
                factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

        self.callLater(0.001, answer)
        return None

    def running(self) -> list[FakeProcess]:
        return [p for p in self.processes if p.pid is not None]

    def run(self, d: Deferred[Any], *, step: float = 0.01, limit: float = 120) -> None:
        """Advance the clock until *d* fired (at most *limit* s)."""
        done: list[bool] = []
        d.addBoth(lambda result: (done.append(True), result)[1])
        while not done and self.seconds() < limit:
            self.advance(step)
        assert done, f"not done after {limit} s on the clock"


def refused(reactor: FakeReactor, ssh: FakeProcess) -> None:
    reactor.callLater(0.01, ssh.say, f"ssh: connect to host {HOST} port 22: Connection refused")
    reactor.callLater(0.01, ssh.exit)


def denied(reactor: FakeReactor, ssh: FakeProcess) -> None:
    reactor.callLater(0.1, ssh.say, KNOWN_HOSTS_WARNING, f"debian@{HOST}: Permission denied (publickey).")
    reactor.callLater(0.1, ssh.exit)


def port_taken(reactor: FakeReactor, ssh: FakeProcess) -> None:
    lines = [f"bind [127.0.0.1]:{ssh.local_port}: Address already in use", "Could not request local forwarding."]
    reactor.callLater(0.1, ssh.say, *lines)
    reactor.callLater(0.1, ssh.exit)


def up(reactor: FakeReactor, ssh: FakeProcess) -> None:
    reactor.callLater(0.1, ssh.listen)  # bound after authentication


def silent(reactor: FakeReactor, ssh: FakeProcess) -> None:
    pass


def stubborn(reactor: FakeReactor, ssh: FakeProcess) -> None:
    ssh.ignores_term = True
    up(reactor, ssh)


def opening(reactor: FakeReactor, the_spec: TunnelSpec, **options: Any) -> Deferred[SSHTunnel]:
    return Deferred.fromCoroutine(open_tunnel(reactor, the_spec, **{"timeout": 30, **options}))


def test_opens_once_the_listener_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ready is the local listener accepting; ssh runs with the C locale and the user's agent, nothing else."""
    reactor = FakeReactor(up)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/user/0/agent.sock")
    monkeypatch.setenv("ENSEMBLE_ADMIN_SECRET", "not-for-ssh")
    d = opening(reactor, spec(tmp_path))
    reactor.run(d)
    opened = result_of(d)
    assert opened.local_port == reactor.processes[0].local_port and opened.pid == 1000
    assert reactor.seconds() < 0.3
    env = reactor.env[0]
    assert env["LC_ALL"] == "C" and env["SSH_AUTH_SOCK"] == "/run/user/0/agent.sock"
    assert set(env) <= {"PATH", "LC_ALL", "HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK"}
    assert (tmp_path / "env").stat().st_mode & 0o777 == 0o700 and (tmp_path / "env" / "known_hosts").exists()


def test_refused_is_tried_again_until_the_bound(tmp_path: Path) -> None:
    """A booting machine (refused): tries on the schedule (0.5, 1, 2, 2...), progress at most every 5 s, then
    TunnelUnreachable at the bound naming host, time waited and ssh's last line; no ssh left."""
    reactor = FakeReactor(refused)
    said: list[float] = []
    d = opening(reactor, spec(tmp_path), timeout=20, progress=lambda text: said.append(reactor.seconds()))
    reactor.run(d)
    with pytest.raises(TunnelUnreachable) as raised:
        result_of(d)
    assert 20 <= reactor.seconds() < 20.1
    assert raised.value.retryable
    assert str(raised.value) == (
        f"no SSH on {HOST}:22 after waiting 20 s (ssh: ssh: connect to host {HOST} port 22: Connection refused):"
        " is machine 0 up? try again later"
    )
    starts = [0.0, 0.5, 1.5, 3.5, 5.5, 7.5, 9.5, 11.5, 13.5, 15.5, 17.5, 19.5]
    assert len(reactor.processes) == len(starts)
    assert all(b - a >= PROGRESS_EVERY for a, b in zip(said, said[1:], strict=False)) and len(said) == 4
    assert reactor.running() == []


def test_up_after_booting(tmp_path: Path) -> None:
    """Refused three times, then in: one tunnel, one progress line."""
    reactor = FakeReactor(refused, refused, refused, up)
    said: list[str] = []
    d = opening(reactor, spec(tmp_path), progress=said.append)
    reactor.run(d)
    assert result_of(d).local_port == reactor.processes[3].local_port
    assert said == [f"waiting for SSH on {HOST}"]
    assert [p.pid is not None for p in reactor.processes] == [False, False, False, True]


def test_refused_key_is_fatal_at_once(tmp_path: Path) -> None:
    """Permission denied ends the open on the first try, inside the bound."""
    reactor = FakeReactor(denied)
    d = opening(reactor, spec(tmp_path))
    reactor.run(d)
    with pytest.raises(TunnelAuthError):
        result_of(d)
    assert len(reactor.processes) == 1 and reactor.seconds() < 0.2


def test_missing_key_is_auth_error_before_ssh(tmp_path: Path) -> None:
    the_spec = spec(tmp_path)
    assert the_spec.identity_file is not None
    the_spec.identity_file.unlink()
    reactor = FakeReactor(up)
    d = opening(reactor, the_spec)
    with pytest.raises(TunnelAuthError, match="does not exist"):
        result_of(d)
    assert reactor.processes == []


def test_local_port_taken_picks_another_port_at_once(tmp_path: Path) -> None:
    """'Address already in use' (our free port taken before ssh bound it): another port, no wait, no progress."""
    reactor = FakeReactor(port_taken, up)
    said: list[str] = []
    d = opening(reactor, spec(tmp_path), progress=said.append)
    reactor.run(d)
    assert result_of(d).local_port == reactor.processes[1].local_port
    assert said == [] and reactor.seconds() < 0.5


def test_silent_server_ends_at_the_bound_with_ssh_stopped(tmp_path: Path) -> None:
    """ssh stuck (a port that never speaks SSH): at the bound our ssh is TERMed and the open is TunnelUnreachable."""
    reactor = FakeReactor(silent)
    d = opening(reactor, spec(tmp_path), timeout=5)
    reactor.run(d)
    with pytest.raises(TunnelUnreachable, match="after waiting 5 s"):
        result_of(d)
    assert reactor.processes[0].signals == ["TERM"] and reactor.running() == []
    assert reactor.seconds() < 5.1


def test_a_try_cut_by_the_bound_keeps_the_last_reason(tmp_path: Path) -> None:
    """Refused twice, then a try that says nothing until the bound: the error still quotes 'Connection refused'."""
    reactor = FakeReactor(refused, refused, silent)
    d = opening(reactor, spec(tmp_path), timeout=5)
    reactor.run(d)
    with pytest.raises(TunnelUnreachable, match="Connection refused") as raised:
        result_of(d)
    assert "after waiting 5 s" in str(raised.value) and len(reactor.processes) == 3


def test_cancel_stops_ssh(tmp_path: Path) -> None:
    """Ctrl-C during the open: CancelledError, after our ssh was stopped."""
    reactor = FakeReactor(silent)
    d = opening(reactor, spec(tmp_path))
    reactor.advance(1)
    assert len(reactor.running()) == 1
    d.cancel()
    reactor.run(d)
    with pytest.raises(CancelledError):
        result_of(d)
    assert reactor.processes[0].signals == ["TERM"] and reactor.running() == []


def test_cancel_between_tries_leaves_nothing(tmp_path: Path) -> None:
    reactor = FakeReactor(refused)
    d = opening(reactor, spec(tmp_path))
    reactor.advance(0.3)  # the first ssh was refused; we wait before the next
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    reactor.advance(5)
    assert len(reactor.processes) == 1 and reactor.running() == []


def test_close_kills_an_ssh_that_ignores_term(tmp_path: Path) -> None:
    """close() is bounded: TERM, STOP_TIMEOUT s, then KILL; ``ended`` fires with None."""
    reactor = FakeReactor(stubborn)
    d = opening(reactor, spec(tmp_path))
    reactor.run(d)
    opened = result_of(d)
    closing = Deferred.fromCoroutine(opened.close())
    reactor.run(closing)
    result_of(closing)
    assert reactor.processes[0].signals == ["TERM", "KILL"]
    assert STOP_TIMEOUT <= reactor.seconds() < STOP_TIMEOUT + 0.5
    assert result_of(opened.ended) is None
    again = Deferred.fromCoroutine(opened.close())
    assert result_of(again) is None  # idempotent


@pytest.mark.parametrize(
    ("last_words", "quoted"),
    [
        ([f"Connection to {HOST} closed by remote host."], f"Connection to {HOST} closed by remote host."),
        ([], "ssh said nothing"),  # not the "Permanently added" line it wrote while opening
    ],
)
def test_exit_while_up_is_tunnel_lost(tmp_path: Path, last_words: list[str], quoted: str) -> None:
    def up_then_warned(reactor: FakeReactor, ssh: FakeProcess) -> None:
        reactor.callLater(0.05, ssh.say, KNOWN_HOSTS_WARNING)
        up(reactor, ssh)

    reactor = FakeReactor(up_then_warned)
    d = opening(reactor, spec(tmp_path))
    reactor.run(d)
    opened = result_of(d)
    ssh = reactor.processes[0]
    if last_words:
        ssh.say(*last_words)
    ssh.exit(255)
    with pytest.raises(TunnelLost) as raised:
        result_of(opened.ended)
    assert raised.value.retryable and raised.value.ssh_line == quoted
    assert str(raised.value) == f"the SSH tunnel to debian@{HOST} ended (ssh exit 255: {quoted}): open it again"


def test_cancelling_while_the_readiness_probe_connects_is_a_cancel() -> None:
    """The open cancelled while its probe's TCP connect is in flight (a loaded machine): CancelledError, as any
    other cancel, not Twisted's ConnectingCancelledError (CI saw it once)."""
    from twisted.internet.testing import MemoryReactorClock

    from ensemble_orchestra.cli.tunnel import _accepts

    reactor = MemoryReactorClock()
    probing = Deferred.fromCoroutine(_accepts(reactor, 40123))
    assert len(reactor.tcpClients) == 1 and not probing.called  # connecting, not connected
    probing.cancel()
    failures: list[Any] = []
    probing.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError), failures
