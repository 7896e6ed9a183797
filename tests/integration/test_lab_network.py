"""The lab network on the real kernel: bridges, veths and namespaces made with ``ip``, reachability proven by TCP.

Every test removes what it made in ``finally`` and then asserts that no bridge, veth or namespace of it is
left. Traffic only ever goes to the labs' own bridge addresses and namespaces (and host loopback).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from ensemble_orchestra.lab import iproute
from ensemble_orchestra.lab.iproute import NetworkError, network_lock
from ensemble_orchestra.lab.netns import LabNamespace, add_namespace, remove_namespace
from ensemble_orchestra.lab.network import (
    LabNetwork,
    SubnetRefused,
    bridge_name,
    cleanup_leftovers,
    down,
    plan_network,
    up,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 to make bridges"
    ),
]

WAIT = 5.0  # seconds: the bound of every wait in these tests
_SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
time.sleep(60)
"""
_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def _ip_json(*args: str) -> list[dict]:
    done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=WAIT, check=True)
    return json.loads(done.stdout) if done.stdout.strip() else []


def leftovers(bridge: str) -> list[str]:
    """Everything of the lab with *bridge* still on the host: its bridge, links on it or aliased to it, namespaces."""
    found = [
        link["ifname"]
        for link in _ip_json("link")
        if link["ifname"] == bridge or link.get("master") == bridge or link.get("ifalias") == f"ensemble-lab:{bridge}"
    ]
    found += [ns["name"] for ns in _ip_json("netns", "list") if ns["name"].startswith(f"{bridge}-")]
    return found


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., LabNetwork]]:
    """Plans and brings up lab networks; takes them down afterwards and checks that nothing of them is left."""
    made: list[LabNetwork] = []

    def make(name: str = "lab", subnet: str | None = None) -> LabNetwork:
        network = plan_network(tmp_path / name, subnet)
        made.append(network)
        up(network)
        return network

    try:
        yield make
    finally:
        for network in made:
            down(network)
        for network in made:
            assert leftovers(network.bridge) == []


@contextmanager
def namespaces(network: LabNetwork, *names: str) -> Iterator[list[LabNamespace]]:
    made = []
    try:
        for index, name in enumerate(names):
            made.append(add_namespace(network, name, network.system_address(index)))
        yield made
    finally:
        for namespace in made:
            remove_namespace(namespace)


@contextmanager
def server_in(namespace: LabNamespace, port: int = 7000) -> Iterator[int]:
    """A TCP listener at the namespace's address, started with ``ip netns exec``; stopped by its pid."""
    process = subprocess.Popen(
        namespace.argv([sys.executable, "-c", _SERVER, str(namespace.address.ip), str(port)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], WAIT)
        assert ready and process.stdout.readline().strip() == "ready", "the server in the namespace did not start"
        yield port
    finally:
        process.kill()
        process.wait(timeout=WAIT)


@contextmanager
def process_in(namespace: LabNamespace) -> Iterator[None]:
    """A process inside the namespace (it keeps the namespace alive after ``ip netns del``), stopped by its pid."""
    process = subprocess.Popen(
        namespace.argv([sys.executable, "-c", "import time; print('in', flush=True); time.sleep(60)"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], WAIT)
        assert ready and process.stdout.readline().strip() == "in", "the process did not enter the namespace"
        yield
    finally:
        process.kill()
        process.wait(timeout=WAIT)


def connect_from(namespace: LabNamespace, host: str, port: int) -> str:
    """ "connected", or the name of the error a TCP connect from inside *namespace* ends in (1 s bound)."""
    done = subprocess.run(
        namespace.argv([sys.executable, "-c", _CONNECT, host, str(port)]),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return done.stdout.strip()


def host_listener(address: str) -> socket.socket:
    listener = socket.socket()
    listener.bind((address, 0))
    listener.listen(8)
    return listener


def test_two_namespaces_on_the_bridge_reach_each_other(make_lab: Callable[..., LabNetwork]) -> None:
    network = make_lab()
    with namespaces(network, "a", "b") as (a, b), server_in(b) as port:
        assert str(b.address.ip) == str(network.system_address(1))
        assert connect_from(a, str(b.address.ip), port) == "connected"
        assert connect_from(a, str(b.address.ip), port + 1) == "ConnectionRefusedError"  # it was TCP that answered


def test_the_host_reaches_a_namespace_at_its_ip_through_the_bridge(make_lab: Callable[..., LabNetwork]) -> None:
    network = make_lab()
    with namespaces(network, "a") as (a,), server_in(a) as port:
        route = _ip_json("route", "get", str(a.address.ip))[0]
        assert route["dev"] == network.bridge and route["prefsrc"] == str(network.bridge_address)
        socket.create_connection((str(a.address.ip), port), timeout=WAIT).close()


def test_a_namespace_reaches_the_bridge_address_but_not_host_loopback(make_lab: Callable[..., LabNetwork]) -> None:
    """A server on the bridge address serves the systems; one bound to 127.0.0.1 only stays out of their reach."""
    network = make_lab()
    on_bridge = host_listener(str(network.bridge_address))
    on_loopback = host_listener("127.0.0.1")
    try:
        with namespaces(network, "a") as (a,):
            assert connect_from(a, str(network.bridge_address), on_bridge.getsockname()[1]) == "connected"
            loopback_port = on_loopback.getsockname()[1]
            assert connect_from(a, str(network.bridge_address), loopback_port) == "ConnectionRefusedError"
            assert connect_from(a, "127.0.0.1", loopback_port) == "ConnectionRefusedError"
    finally:
        on_bridge.close()
        on_loopback.close()


def test_a_namespace_has_no_route_beyond_the_lab_subnet(make_lab: Callable[..., LabNetwork]) -> None:
    """No default route: the host's addresses outside the lab are unreachable (the kernel is asked, nothing sent)."""
    network = make_lab()
    outside = [
        info["local"]
        for link in _ip_json("-4", "addr")
        if link["ifname"] != "lo" and not link["ifname"].startswith("eol")
        for info in link["addr_info"]
    ] or ["198.51.100.1"]
    with namespaces(network, "a") as (a,):
        routes = _ip_json("-n", a.name, "-4", "route")
        assert [route["dst"] for route in routes] == [str(network.subnet)]
        for address in outside:
            done = subprocess.run(
                ["ip", "-n", a.name, "route", "get", address], capture_output=True, text=True, timeout=WAIT
            )
            assert done.returncode != 0 and "Network is unreachable" in done.stderr, address


def test_the_host_routes_nothing_between_two_labs(make_lab: Callable[..., LabNetwork]) -> None:
    """Even a namespace that routes another lab's subnet via its bridge gets nothing through: forwarding is off."""
    first, second = make_lab("first"), make_lab("second")
    for network in (first, second):
        assert Path(f"/proc/sys/net/ipv4/conf/{network.bridge}/forwarding").read_text().strip() == "0"
        if Path(f"/proc/sys/net/ipv6/conf/{network.bridge}").is_dir():
            assert Path(f"/proc/sys/net/ipv6/conf/{network.bridge}/disable_ipv6").read_text().strip() == "1"
    with namespaces(first, "a") as (a,), namespaces(second, "b") as (b,), server_in(b) as port:
        socket.create_connection((str(b.address.ip), port), timeout=WAIT).close()  # the server is there
        for namespace, there, gateway in ((a, second, first), (b, first, second)):  # both ways, as a router needs
            subprocess.run(
                ["ip", "-n", namespace.name, "route", "add", str(there.subnet), "via", str(gateway.bridge_address)],
                check=True,
                timeout=WAIT,
            )
        assert connect_from(a, str(b.address.ip), port) in ("TimeoutError", "OSError")


def test_the_hosts_own_subnet_is_refused_naming_the_overlap(tmp_path: Path) -> None:
    host_routes = [
        route
        for route in _ip_json("-4", "route")
        if route["dst"] != "default" and not route.get("dev", "").startswith("eol") and route.get("dev") != "lo"
    ]
    if not host_routes:
        pytest.skip("this host has no IPv4 route but the default one")
    subnet = str(IPv4Network(host_routes[0]["dst"], strict=False))
    with pytest.raises(SubnetRefused) as caught:
        plan_network(tmp_path / "lab", subnet)
    assert str(caught.value).startswith(f"lab subnet {subnet} overlaps ")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert leftovers(bridge_name(tmp_path / "lab")) == []


def test_two_labs_get_different_bridges_and_subnets_and_the_second_cannot_take_the_first(
    make_lab: Callable[..., LabNetwork], tmp_path: Path
) -> None:
    first, second = make_lab("first"), make_lab("second")
    assert first.bridge != second.bridge and not first.subnet.overlaps(second.subnet)
    with pytest.raises(SubnetRefused) as caught:
        plan_network(tmp_path / "third", str(first.subnet))
    assert str(caught.value) == (
        f"lab subnet {first.subnet} overlaps the address {first.bridge_interface} on {first.bridge}"
        " (another lab's bridge): choose another subnet"
    )


def test_up_twice_then_down_twice_leaves_nothing(tmp_path: Path) -> None:
    network = plan_network(tmp_path / "lab")
    try:
        up(network)
        up(network)
        addresses = _ip_json("-4", "addr", "show", "dev", network.bridge)[0]["addr_info"]
        assert [f"{a['local']}/{a['prefixlen']}" for a in addresses] == [str(network.bridge_interface)]
        link = _ip_json("-d", "link", "show", "dev", network.bridge)[0]
        assert link["linkinfo"]["info_kind"] == "bridge" and "UP" in link["flags"]
        assert link["ifalias"] == f"ensemble-lab:{network.bridge}"
    finally:
        assert down(network) == [f"bridge {network.bridge}"]
        assert down(network) == []
    assert leftovers(network.bridge) == []


def test_up_again_with_another_subnet_moves_the_bridge(tmp_path: Path) -> None:
    network = plan_network(tmp_path / "lab")
    moved = LabNetwork(network.bridge, next(s for s in network.subnet.supernet().subnets() if s != network.subnet))
    try:
        up(network)
        up(moved)
        addresses = _ip_json("-4", "addr", "show", "dev", network.bridge)[0]["addr_info"]
        assert [f"{a['local']}/{a['prefixlen']}" for a in addresses] == [f"{moved.bridge_address}/24"]
    finally:
        down(network)
    assert leftovers(network.bridge) == []


def test_cleanup_after_a_crash_removes_namespaces_veths_and_the_bridge(tmp_path: Path) -> None:
    """A lab that died without down: its namespaces (one still held by a process), their veths, its bridge."""
    network = plan_network(tmp_path / "lab")
    try:
        up(network)
        a = add_namespace(network, "a", network.system_address(0))
        add_namespace(network, "b", network.system_address(1))
        with process_in(a):
            assert len(leftovers(network.bridge)) == 5  # bridge, two veths, two namespaces
            removed = cleanup_leftovers(bridge_name(tmp_path / "lab"))
            assert {f"namespace {a.name}", f"namespace {network.bridge}-b", f"bridge {network.bridge}"} <= set(removed)
            assert leftovers(network.bridge) == []
    finally:
        down(network)
    assert leftovers(network.bridge) == []


def test_cleanup_finds_a_veth_whose_bridge_was_deleted_by_its_alias(tmp_path: Path) -> None:
    """Someone removed the bridge by hand while a process held a namespace: the detached veth is still found."""
    network = plan_network(tmp_path / "lab")
    try:
        up(network)
        a = add_namespace(network, "a", network.system_address(0))
        with process_in(a):
            subprocess.run(["ip", "netns", "del", a.name], check=True, timeout=WAIT)
            subprocess.run(["ip", "link", "del", network.bridge], check=True, timeout=WAIT)
            assert leftovers(network.bridge) == [a.veth]
            assert cleanup_leftovers(network.bridge) == [f"link {a.veth}"]
    finally:
        down(network)
    assert leftovers(network.bridge) == []


def test_a_device_of_the_bridges_name_that_is_no_bridge_is_neither_used_nor_removed(tmp_path: Path) -> None:
    network = plan_network(tmp_path / "lab")
    peer = network.bridge + "p"
    subprocess.run(
        ["ip", "link", "add", network.bridge, "type", "veth", "peer", "name", peer], check=True, timeout=WAIT
    )
    try:
        with pytest.raises(NetworkError) as caught:
            up(network)
        assert (
            str(caught.value)
            == f"{network.bridge} exists and is not a bridge: remove it ('ip link del {network.bridge}')"
        )
        with pytest.raises(NetworkError, match="is not a bridge of a lab: not removing it"):
            cleanup_leftovers(network.bridge)
        assert _ip_json("-d", "link", "show", "dev", network.bridge)[0]["linkinfo"]["info_kind"] == "veth"
    finally:
        subprocess.run(["ip", "link", "del", network.bridge], check=True, timeout=WAIT)
    assert leftovers(network.bridge) == []


def test_run_netns_is_undone_once_no_namespace_is_left_if_a_lab_made_it(make_lab: Callable[..., LabNetwork]) -> None:
    """``ip netns add`` bind-mounts /run/netns; the lab undoes that mount when it made it and nothing uses it."""
    network = make_lab()
    with namespaces(network, "a"):
        assert iproute.is_mount_point(iproute.NETNS_DIR)
    with network_lock():  # no lab (or other test worker) changes namespaces meanwhile
        if iproute.NETNS_DIR.is_dir() and not any(iproute.NETNS_DIR.iterdir()):
            assert not iproute.NETNS_MARKER.exists(), "an empty /run/netns made by a lab was left mounted"


def test_up_and_down_are_quick(tmp_path: Path) -> None:
    """Bringing a lab network up and down is a few ip calls: well under a second each (measured ~15 ms / ~10 ms)."""
    network = plan_network(tmp_path / "lab")
    try:
        started = time.monotonic()
        up(network)
        up_s = time.monotonic() - started
        started = time.monotonic()
        down(network)
        down_s = time.monotonic() - started
    finally:
        down(network)
    assert up_s < 1.0 and down_s < 1.0, (up_s, down_s)
    assert leftovers(network.bridge) == []
