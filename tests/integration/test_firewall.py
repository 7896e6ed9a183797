"""The machine firewall on the real kernel: Firewall.apply runs real nft inside a network namespace "b" and TCP
from namespace "a" proves what gets in.

Two namespaces joined by one veth (192.0.2.1 and .3 in a, 192.0.2.2 in b; nothing routed, nothing on the host),
a listener in b on 22, 80, 2181 and 3306. A port nft drops makes a connect time out (PROBE_TIMEOUT); a port with
no listener is refused (RST). Every test removes its namespaces, and the processes it started, in ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from ensemble_orchestra.agents.firewall import Firewall, NftNotPermitted
from ensemble_orchestra.agents.firewall_rules import FirewallPolicy, render
from ensemble_orchestra.lab.iproute import network_lock, note_netns_dir_before_add, remove_netns_dir_if_ours

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft", path="/usr/sbin:/usr/bin") is None or shutil.which("ip") is None,
    reason="needs root, nftables and iproute2 (network namespaces)",
)

A, A_OTHER, B = "192.0.2.1", "192.0.2.3", "192.0.2.2"
PORTS = (22, 80, 2181, 3306)  # b listens on these
PROBE_TIMEOUT = 0.5  # seconds: a dropped SYN shows as a timeout
APPLY_BOUND = 2.0  # seconds: one apply (file + nft) must take less; measured ~20 ms

_SERVER = """
import socket, sys, threading
def echo(conn):
    for data in iter(lambda: conn.recv(64), b""):
        conn.sendall(data)
def serve(listener):
    while True:
        threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
_PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(item):
    source, host, port = item
    s = socket.socket(); s.settimeout(float(sys.argv[1]))
    try:
        s.bind((source, 0)); s.connect((host, port)); return "open"
    except socket.timeout: return "dropped"
    except ConnectionRefusedError: return "refused"
    except OSError as exc: return type(exc).__name__
    finally: s.close()
items = json.loads(sys.argv[2])
with ThreadPoolExecutor(len(items)) as pool: print(json.dumps(list(pool.map(probe, items))))
"""
# Connects, says so, then on each line from stdin sends it and prints the echo (or the error).
_HOLD = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode()); print(s.recv(64).decode().strip() or "closed", flush=True)
    except OSError as exc:
        print(type(exc).__name__, flush=True)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Pair:
    a: str
    b: str
    rules: Path

    def in_ns(self, ns: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *command]

    def firewall(self) -> Firewall:
        return Firewall(reactor, nft=self.in_ns(self.b, "nft"), path=self.rules)

    def nft(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.in_ns(self.b, "nft", *args), capture_output=True, text=True, timeout=10)

    def probe(self, *items: tuple[str, int]) -> dict[tuple[str, int], str]:
        """(source address in a, port in b) → open / dropped / refused, all probed at once."""
        argv = [sys.executable, "-c", _PROBE, str(PROBE_TIMEOUT), json.dumps([[s, B, p] for s, p in items])]
        done = subprocess.run(self.in_ns(self.a, *argv), capture_output=True, text=True, timeout=10, check=True)
        return dict(zip(items, json.loads(done.stdout), strict=True))


def everything(*sources: str) -> list[tuple[str, int]]:
    return [(source, port) for source in sources for port in (*PORTS, 9999)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """Namespaces a and b joined by a veth, a listener in b; all removed afterwards (and checked gone)."""
    tag = f"eofw{os.getpid() % 100000}"
    made = Pair(f"{tag}a", f"{tag}b", tmp_path / "etc" / "firewall.nft")
    server = None
    try:
        with network_lock():
            note_netns_dir_before_add()
            for ns in (made.a, made.b):
                _ip("netns", "add", ns)
        _ip("link", "add", "fw0", "netns", made.a, "type", "veth", "peer", "name", "fw0", "netns", made.b)
        for ns, addresses in ((made.a, (A, A_OTHER)), (made.b, (B,))):
            for address in addresses:
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "fw0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "fw0", "up")
        server = subprocess.Popen(
            made.in_ns(made.b, sys.executable, "-c", _SERVER, *map(str, PORTS)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield made
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        with network_lock():
            for ns in (made.a, made.b):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)
            remove_netns_dir_if_ours()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        assert made.a not in left and made.b not in left


async def timed_apply(firewall: Firewall, policy: FirewallPolicy) -> tuple[bool, float]:
    started = time.monotonic()
    changed = await firewall.apply(policy)
    return changed, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_only_what_the_policy_allows_gets_in(pair: Pair) -> None:
    """SSH and world ports from anyone, a peer port only from its addresses, nothing else (dropped, not refused)."""
    assert set(pair.probe(*everything(A, A_OTHER)).values()) == {"open", "refused"}  # no firewall yet: all reach b

    policy = FirewallPolicy(world=frozenset({"80/tcp"}), peers={"2181/tcp": frozenset({A, "fd00::1"})})
    changed, seconds = await timed_apply(pair.firewall(), policy)
    assert changed and seconds < APPLY_BOUND
    print(f"first apply: {seconds * 1000:.1f} ms")

    assert pair.probe(*everything(A, A_OTHER)) == {
        (A, 22): "open",
        (A, 80): "open",
        (A, 2181): "open",
        (A, 3306): "dropped",  # listening, not in the policy
        (A, 9999): "dropped",  # not listening: dropped before any RST
        (A_OTHER, 22): "open",
        (A_OTHER, 80): "open",
        (A_OTHER, 2181): "dropped",  # a peer port, from an address not in its set
        (A_OTHER, 3306): "dropped",
        (A_OTHER, 9999): "dropped",
    }
    assert pair.rules.read_text() == render(policy)
    assert oct(pair.rules.stat().st_mode & 0o777) == "0o600"
    assert list(pair.rules.parent.iterdir()) == [pair.rules]  # no temporary left


@pytest_twisted.ensureDeferred
async def test_a_change_takes_effect_when_apply_returns(pair: Pair) -> None:
    """Unexpose and move a peer port: new connections follow the new policy as soon as apply returns; the same
    policy again runs no nft; a connection already established survives (conntrack accepts its packets)."""
    firewall = pair.firewall()
    exposed = FirewallPolicy(world=frozenset({"80/tcp"}), peers={"2181/tcp": frozenset({A})})
    await firewall.apply(exposed)
    hold = subprocess.Popen(
        pair.in_ns(pair.a, sys.executable, "-c", _HOLD, B, "80", str(PROBE_TIMEOUT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hold.stdout is not None and hold.stdin is not None
        assert hold.stdout.readline() == "connected\n"

        unexposed = FirewallPolicy(peers={"2181/tcp": frozenset({A_OTHER})})
        timings = []
        for policy in (unexposed, exposed, unexposed):
            changed, seconds = await timed_apply(firewall, policy)
            assert changed
            timings.append(seconds)
        assert max(timings) < APPLY_BOUND
        print("apply with a change: " + ", ".join(f"{t * 1000:.1f}" for t in timings) + " ms")
        after = pair.probe((A, 80), (A_OTHER, 80), (A, 2181), (A_OTHER, 2181), (A, 22))
        assert after == {
            (A, 80): "dropped",
            (A_OTHER, 80): "dropped",
            (A, 2181): "dropped",
            (A_OTHER, 2181): "open",
            (A, 22): "open",
        }

        hold.stdin.write("still there\n")
        hold.stdin.flush()
        assert hold.stdout.readline() == "still there\n"  # established before the change: not cut

        changed, seconds = await timed_apply(firewall, unexposed)
        assert not changed
        print(f"apply without a change (nft list only): {seconds * 1000:.1f} ms")
    finally:
        hold.kill()
        hold.wait(10)


@pytest_twisted.ensureDeferred
async def test_rules_come_back_when_the_table_is_gone(pair: Pair) -> None:
    """As after a reboot (or a flush): the table is gone, the file is there; apply loads it again. A new Firewall
    on the same file (an agent restart) with the table present changes nothing."""
    policy = FirewallPolicy(world=frozenset({"80/tcp"}))
    assert await pair.firewall().apply(policy)
    written = pair.rules.read_text()

    assert pair.nft("delete", "table", "inet", "ensemble").returncode == 0
    firewall = pair.firewall()
    assert not await firewall.present()
    assert pair.probe((A, 3306))[(A, 3306)] == "open"

    assert await firewall.apply(policy)
    assert await firewall.present()
    assert pair.rules.read_text() == written
    assert pair.probe((A, 80), (A, 3306)) == {(A, 80): "open", (A, 3306): "dropped"}

    assert not await pair.firewall().apply(policy)  # restarted agent, table in place: no nft -f


@pytest_twisted.ensureDeferred
async def test_other_tables_are_left_alone(pair: Pair) -> None:
    """Another table in b (an administrator's) keeps its rules across our applies; ours replaces only itself."""
    other = "table ip admin {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t}\n}\n"
    loaded = subprocess.run(pair.in_ns(pair.b, "nft", "-f", "-"), input=other, text=True, timeout=10)
    assert loaded.returncode == 0
    firewall = pair.firewall()
    await firewall.apply(FirewallPolicy(world=frozenset({"80/tcp"})))
    await firewall.apply(FirewallPolicy(world=frozenset({"443/tcp"})))
    tables = pair.nft("list", "tables").stdout.split("\n")
    assert "table ip admin" in tables and "table inet ensemble" in tables
    listed = pair.nft("list", "set", "inet", "ensemble", "world").stdout
    assert "tcp . 443" in listed and "tcp . 80" not in listed


@pytest_twisted.ensureDeferred
async def test_a_refused_load_changes_nothing(pair: Pair) -> None:
    """nft without CAP_NET_ADMIN over b's network (in a user namespace): the real kernel refuses. The error is one
    line naming what to do; the rules in force and the file stay; the refused rules are kept beside it."""
    good = FirewallPolicy(world=frozenset({"80/tcp"}))
    await pair.firewall().apply(good)
    written = pair.rules.read_text()

    powerless = Firewall(reactor, nft=pair.in_ns(pair.b, "unshare", "--user", "nft"), path=pair.rules)
    with pytest.raises(NftNotPermitted) as raised:
        await powerless.apply(FirewallPolicy(world=frozenset({"3306/tcp"})))
    message = str(raised.value)
    assert "\n" not in message and "Operation not permitted" in message and "run the machine agent as root" in message
    assert not raised.value.retryable

    assert pair.rules.read_text() == written
    assert "tcp . 3306" in (pair.rules.parent / "firewall.nft.rejected").read_text()
    assert pair.probe((A, 80), (A, 3306)) == {(A, 80): "open", (A, 3306): "dropped"}
