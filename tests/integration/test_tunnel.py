"""The SSH tunnel against a real sshd (Debian's OpenSSH, started by the test on 127.0.0.1) and a real ZooKeeper.

Each test runs its own sshd (``sshd -D -e -f <config>``): a host key made in the test's directory, its own
authorized_keys, no PAM, root by key only. Through the tunnel the session's ZooKeeper answers ``srvr`` and a
state session writes a node that a direct session reads.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, task, threads

from ensemble_orchestra.cli.tunnel import (
    PROGRESS_EVERY,
    SSHTunnel,
    TunnelAuthError,
    TunnelHostKeyError,
    TunnelLost,
    TunnelSpec,
    TunnelUnreachable,
    open_tunnel,
)
from ensemble_orchestra.lab.sshkey import ensure_lab_key
from ensemble_orchestra.lab.testing import process_table
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, four_letter_word, free_port
from ensemble_orchestra.state import StateClient

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege separation directory
START_TIMEOUT = 10.0
SLACK = 1.0  # s past an open's bound that a TunnelUnreachable may take (stopping ssh, the reactor's turn)
Connect = Callable[..., Awaitable[StateClient]]


def _reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


def _children(pid: int) -> list[int]:
    """Every descendant of *pid* (sshd's per-connection and session processes), from /proc."""
    parents = {child: ppid for child, (_, ppid) in process_table().items()}
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def ssh_processes(ssh_port: int) -> list[int]:
    """Pids of running ssh clients whose command line targets port *ssh_port* (ours: each test has its port)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ssh") and b"-N" in argv and f"-p\0{ssh_port}\0".encode() in b"\0".join(argv):
            pids.append(int(entry.name))
    return pids


def recorded(known_hosts: Path, entry: str) -> bool:
    """Whether *known_hosts* has a key for *entry* (ssh may hash the names: Debian's ssh_config says so)."""
    found = subprocess.run(["ssh-keygen", "-F", entry, "-f", str(known_hosts)], capture_output=True, check=False)
    return found.returncode == 0


class SSHServer:
    """One sshd of the test's own on 127.0.0.1:*port*; stopped (with its session processes) by its pid."""

    def __init__(self, directory: Path, port: int, host_key_dir: Path, authorized: Path) -> None:
        self.directory = directory
        self.port = port
        self.host_key = host_key_dir / "id_ed25519"
        ensure_lab_key(host_key_dir, "test-host")
        self.authorized = authorized
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"sshd-{port}.log"

    def config(self) -> Path:
        path = self.directory / f"sshd-{self.port}.conf"
        path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized}",
                    f"PidFile {self.directory / f'sshd-{self.port}.pid'}",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",  # the test's files are under /tmp, which is world-writable
                    "AllowTcpForwarding local",
                    "",
                ]
            )
        )
        return path

    def start(self, *, wait: bool = True) -> None:
        assert SSHD.exists(), f"{SSHD} is missing: run scripts/install (openssh-server)"
        if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config())], stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            deadline = time.monotonic() + START_TIMEOUT
            while not self.listening():
                assert self.process.poll() is None, f"sshd exited: {self.log.read_text()[-300:]}"
                assert time.monotonic() < deadline, f"sshd not listening after {START_TIMEOUT} s: see {self.log}"
                time.sleep(0.02)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """TERM sshd and every process it started (the sessions outlive a killed sshd otherwise), by pid."""
        if self.process is None:
            return
        for pid in [*_children(self.process.pid), self.process.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


class SSHWorld:
    """A client key the servers accept, a key they do not, and this test's known_hosts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ensure_lab_key(directory / "client").with_suffix("")
        self.wrong_key = ensure_lab_key(directory / "wrong").with_suffix("")
        self.authorized = directory / "authorized_keys"
        self.authorized.write_text(self.key.with_suffix(".pub").read_text())
        self.known_hosts = directory / "env" / "known_hosts"  # parent created by the tunnel
        self.servers: list[SSHServer] = []

    def server(self, port: int | None = None, *, host_key: str = "host", start: bool = True) -> SSHServer:
        server = SSHServer(self.directory, port or free_port(), self.directory / host_key, self.authorized)
        self.servers.append(server)
        if start:
            server.start()
        return server

    def spec(self, port: int, remote_port: int, *, key: Path | None = None) -> TunnelSpec:
        return TunnelSpec(
            host="127.0.0.1",
            remote_host="127.0.0.1",
            remote_port=remote_port,
            user=getpass.getuser(),
            identity_file=key or self.key,
            known_hosts=self.known_hosts,
            ssh_port=port,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SSHWorld]:
    made = SSHWorld(tmp_path)
    yield made
    for server in made.servers:
        server.stop()


async def _opened(spec: TunnelSpec, **options: object) -> tuple[SSHTunnel, float]:
    started = time.monotonic()
    tunnel = await open_tunnel(_reactor(), spec, **options)  # type: ignore[arg-type]
    return tunnel, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_tunnel_forwards_to_zookeeper(
    world: SSHWorld, zookeeper: ZooKeeperServer, connect: Connect, node_path: str
) -> None:
    """Through the tunnel ZooKeeper answers srvr, and a state session's write is what a direct session reads;
    the known_hosts file and its 0700 directory were made; close() fires ``ended`` and leaves no ssh."""
    server = world.server()
    tunnel, took = await _opened(world.spec(server.port, zookeeper.port), timeout=20)
    print(f"\ntunnel open in {took * 1000:.0f} ms")
    try:
        assert recorded(world.known_hosts, f"[127.0.0.1]:{server.port}")
        assert world.known_hosts.parent.stat().st_mode & 0o777 == 0o700
        answer = await threads.deferToThread(four_letter_word, "127.0.0.1", tunnel.local_port, "srvr", 5.0)
        assert answer is not None and "Mode: standalone" in answer
        through = await connect(hosts=f"127.0.0.1:{tunnel.local_port}")
        await through.create(node_path, b"via-ssh")
        await through.close()
        direct = await connect()
        assert (await direct.get(node_path))[0] == b"via-ssh"
        assert ssh_processes(server.port) == [tunnel.pid]
    finally:
        await tunnel.close()
    assert tunnel.ended.called and await tunnel.ended is None
    assert ssh_processes(server.port) == []


@pytest_twisted.ensureDeferred
async def test_wrong_key_is_auth_error_at_once(world: SSHWorld) -> None:
    """A key the server does not accept is TunnelAuthError (fatal) well inside the bound, naming user, host, key."""
    server = world.server()
    started = time.monotonic()
    with pytest.raises(TunnelAuthError) as raised:
        await open_tunnel(_reactor(), world.spec(server.port, 9, key=world.wrong_key), timeout=30)
    took = time.monotonic() - started
    print(f"\nwrong key refused in {took * 1000:.0f} ms")
    assert took < 3
    assert not raised.value.retryable
    message = str(raised.value)
    assert f"{getpass.getuser()}@127.0.0.1" in message and str(world.wrong_key) in message
    assert "authorized-keys" in message and "\n" not in message
    assert ssh_processes(server.port) == []


@pytest_twisted.ensureDeferred
async def test_waits_for_sshd_started_later(world: SSHWorld, zookeeper: ZooKeeperServer) -> None:
    """While nothing listens (machine 0 booting) the open waits, saying so at most every PROGRESS_EVERY s; an sshd
    started 6 s later lets it through."""
    server = world.server(start=False)
    reactor = _reactor()
    reactor.callLater(6.0, server.start, wait=False)
    said: list[tuple[float, str]] = []
    started = time.monotonic()
    tunnel = await open_tunnel(
        reactor,
        world.spec(server.port, zookeeper.port),
        timeout=30,
        progress=lambda text: said.append((time.monotonic() - started, text)),
    )
    took = time.monotonic() - started
    print(f"\nopened {took:.2f} s after the start (sshd started at 6 s); progress at {[round(t, 1) for t, _ in said]}")
    try:
        assert 6.0 <= took < 6.0 + 3.0  # the retry delay is at most 2 s, plus ssh's own connect
        assert said and all(text == "waiting for SSH on 127.0.0.1" for _, text in said)
        assert 2 <= len(said) <= 2 + int(6.0 // PROGRESS_EVERY)
        assert all(b - a >= PROGRESS_EVERY - 0.1 for (a, _), (b, _) in zip(said, said[1:], strict=False))
        answer = await threads.deferToThread(four_letter_word, "127.0.0.1", tunnel.local_port, "srvr", 5.0)
        assert answer is not None and "Mode: " in answer
    finally:
        await tunnel.close()


@pytest_twisted.ensureDeferred
async def test_nothing_listening_is_unreachable_within_timeout(world: SSHWorld) -> None:
    """Nobody on the port: TunnelUnreachable (retryable) once the bound passes, naming host, time and ssh's line."""
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TunnelUnreachable) as raised:
        await open_tunnel(_reactor(), world.spec(port, 9), timeout=3)
    took = time.monotonic() - started
    print(f"\nunreachable after {took:.2f} s (bound 3 s)")
    assert 3.0 <= took < 3.0 + SLACK
    assert raised.value.retryable
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "after waiting 3 s" in message and "Connection refused" in message


@pytest_twisted.ensureDeferred
async def test_silent_server_is_unreachable_within_timeout(world: SSHWorld) -> None:
    """A port that accepts TCP but never speaks SSH (a booting machine's half-up sshd) still ends at the bound,
    with our ssh stopped."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TunnelUnreachable):
            await open_tunnel(_reactor(), world.spec(port, 9), timeout=2.5)
        took = time.monotonic() - started
    print(f"\nsilent server: unreachable after {took:.2f} s (bound 2.5 s)")
    assert 2.5 <= took < 2.5 + SLACK
    assert ssh_processes(port) == []


@pytest_twisted.ensureDeferred
async def test_sshd_killed_while_up_is_tunnel_lost(world: SSHWorld, zookeeper: ZooKeeperServer) -> None:
    """sshd (and its session) killed under an open tunnel: ``ended`` fails with TunnelLost quoting ssh's last line."""
    server = world.server()
    tunnel, _ = await _opened(world.spec(server.port, zookeeper.port), timeout=20)
    killed = time.monotonic()
    server.stop()
    with pytest.raises(TunnelLost) as raised:
        await defer.Deferred.fromCoroutine(_bounded(tunnel.ended, 10))
    print(f"\ntunnel lost noticed {(time.monotonic() - killed) * 1000:.0f} ms after sshd was killed")
    assert raised.value.retryable and raised.value.ssh_line in str(raised.value)
    # What ssh says depends on whether it was reading or writing when the session died (both seen here).
    assert any(words in raised.value.ssh_line for words in ("closed by remote host", "Broken pipe", "reset by peer"))
    await tunnel.close()  # idempotent once ssh is gone
    assert ssh_processes(server.port) == []


@pytest_twisted.ensureDeferred
async def test_changed_host_key_is_host_key_error(world: SSHWorld) -> None:
    """A reinstalled machine 0 (another host key on the same address and port, same known_hosts) is refused at
    once: TunnelHostKeyError naming the known_hosts file and saying to remove the host's line."""
    first = world.server()
    tunnel, _ = await _opened(world.spec(first.port, 9), timeout=20)
    await tunnel.close()
    first.stop()
    world.server(first.port, host_key="host-reinstalled")
    started = time.monotonic()
    with pytest.raises(TunnelHostKeyError) as raised:
        await open_tunnel(_reactor(), world.spec(first.port, 9), timeout=30)
    took = time.monotonic() - started
    print(f"\nchanged host key refused in {took * 1000:.0f} ms")
    assert took < 3 and not raised.value.retryable
    message = str(raised.value)
    assert str(world.known_hosts) in message and "remove its line" in message and f"[127.0.0.1]:{first.port}" in message
    assert "\n" not in message


@pytest_twisted.ensureDeferred
async def test_cancel_during_open_leaves_no_ssh(world: SSHWorld) -> None:
    """Ctrl-C while ssh waits for a silent server: the open is CancelledError and our ssh is gone."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        opening = defer.Deferred.fromCoroutine(open_tunnel(_reactor(), world.spec(port, 9), timeout=30))
        await task.deferLater(_reactor(), 1.0)
        assert len(ssh_processes(port)) == 1  # the test can fail: ssh is running when we cancel
        opening.cancel()
        with pytest.raises(defer.CancelledError):
            await opening
        assert ssh_processes(port) == []


async def _bounded(d: defer.Deferred[None], seconds: float) -> None:
    from ensemble_orchestra.http.deadline import within

    await within(_reactor(), seconds, d)
