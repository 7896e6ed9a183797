"""The lab network's plan and checks without touching the host: names, addresses, overlap, forwarding, ip calls."""

from __future__ import annotations

import hashlib
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.errors import EXIT_USAGE, EnsembleError
from ensemble_orchestra.lab.errors import LabError
from ensemble_orchestra.lab.iproute import IpCommand, NetworkError
from ensemble_orchestra.lab.netns import add_namespace, veth_name
from ensemble_orchestra.lab.network import (
    DEFAULT_POOL,
    HostView,
    LabNetwork,
    SubnetRefused,
    bridge_name,
    check_forwarding_off,
    check_subnet,
    choose_subnet,
    find_overlap,
    parse_subnet,
    up,
)

# What `ip -j -4 route show table all` and `ip -j -4 addr` print on a host with eth0 on 192.168.7.0/24,
# a VPN route to 10.0.0.0/8 in its own table, and another lab's bridge on 10.251.5.0/24.
ROUTES: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "192.168.7.1", "dev": "eth0", "flags": []},
    {"dst": "192.168.7.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.168.7.2"},
    {"dst": "10.0.0.0/8", "gateway": "192.168.7.254", "dev": "eth0", "table": "100", "flags": []},
    {"dst": "10.251.5.0/24", "dev": "eol11111111", "protocol": "kernel", "scope": "link"},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "prefsrc": "127.0.0.1"},
    {"type": "broadcast", "dst": "192.168.7.255", "dev": "eth0", "table": "local", "prefsrc": "192.168.7.2"},
]
LINKS: list[dict[str, Any]] = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.168.7.2", "prefixlen": 24}]},
    {"ifname": "eol11111111", "addr_info": [{"family": "inet", "local": "10.251.5.1", "prefixlen": 24}]},
    {"ifname": "eol22222222", "addr_info": [{"family": "inet", "local": "172.20.0.1", "prefixlen": 24}]},
]
HOST = HostView.parse(ROUTES, LINKS)
# A plain host: eth0 and loopback only (what `ip` shows on a CI machine).
PLAIN_HOST = HostView.parse(ROUTES[:2], LINKS[:2])


class RecordingIp(IpCommand):
    """Records every ip call and answers success with empty output: for checks that must run before any call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(["ip", *args], 0, "", "")


def test_bridge_names_fit_linux_and_differ_per_lab(tmp_path: Path) -> None:
    """Interface names hold 15 characters; the same lab directory always gets the same bridge, two labs two."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert len(bridge_name(first)) <= 15 and bridge_name(first).startswith("eol")
    assert bridge_name(first) == bridge_name(tmp_path / "x" / ".." / "a")
    assert bridge_name(first) != bridge_name(second)


def test_addresses_bridge_first_then_systems_in_index_order() -> None:
    network = LabNetwork("eol00000000", IPv4Network("10.251.7.0/24"))
    assert network.bridge_address == IPv4Address("10.251.7.1")
    assert str(network.bridge_interface) == "10.251.7.1/24"
    assert [str(network.system_address(i)) for i in (0, 1, 252)] == ["10.251.7.2", "10.251.7.3", "10.251.7.254"]
    assert str(network.system_interface(0)) == "10.251.7.2/24"
    assert network.capacity == 253


def test_a_system_beyond_the_subnet_is_one_line_naming_the_subnet() -> None:
    network = LabNetwork("eol00000000", IPv4Network("10.251.7.0/29"))
    assert network.capacity == 5 and str(network.system_address(4)) == "10.251.7.6"
    with pytest.raises(SubnetRefused) as caught:
        network.system_address(5)
    assert str(caught.value) == "lab subnet 10.251.7.0/29 has addresses for 5 systems, not 6: choose a larger subnet"
    with pytest.raises(SubnetRefused):
        network.system_address(-1)


@pytest.mark.parametrize(
    ("subnet", "overlap"),
    [
        ("192.168.7.0/25", "the address 192.168.7.2/24 on eth0"),
        ("192.168.0.0/16", "the address 192.168.7.2/24 on eth0"),
        ("10.251.5.0/24", "the address 10.251.5.1/24 on eol11111111 (another lab's bridge)"),
        ("172.20.0.128/25", "the address 172.20.0.1/24 on eol22222222 (another lab's bridge)"),
        ("10.9.0.0/24", "the host's route 10.0.0.0/8 dev eth0 via 192.168.7.254 (table 100)"),
        ("127.0.0.0/24", "the address 127.0.0.1/8 on lo"),
    ],
)
def test_an_overlap_names_what_of_the_host_it_overlaps(subnet: str, overlap: str) -> None:
    assert find_overlap(IPv4Network(subnet), HOST) == overlap
    with pytest.raises(SubnetRefused) as caught:
        check_subnet(LabNetwork("eol33333333", IPv4Network(subnet)), HOST)
    assert str(caught.value) == f"lab subnet {subnet} overlaps {overlap}: choose another subnet"
    assert "\n" not in str(caught.value)


def test_routes_only_a_default_route_or_broadcast_has_are_no_overlap() -> None:
    """The default route covers everything and must not make every subnet "taken"; the lab's own bridge is its own."""
    routes_only = HostView.parse(ROUTES, [])
    assert find_overlap(IPv4Network("172.31.0.0/24"), routes_only) is None
    assert find_overlap(IPv4Network("192.168.7.255/32"), routes_only) is not None  # via the /24 route, not broadcast
    assert find_overlap(IPv4Network("10.251.5.0/24"), HostView.parse([], LINKS), own_bridge="eol11111111") is None
    assert find_overlap(IPv4Network("10.251.5.0/24"), HostView.parse(ROUTES[3:4], []), "eol11111111") is None


def test_subnet_refusals_are_usage_errors_of_the_lab() -> None:
    with pytest.raises(SubnetRefused) as caught:
        check_subnet(LabNetwork("eol33333333", IPv4Network("192.168.7.0/24")), HOST)
    assert isinstance(caught.value, LabError) and isinstance(caught.value, EnsembleError)
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.251.7.5/24", "lab subnet '10.251.7.5/24' is not an IPv4 network such as 10.251.7.0/24"),
        ("lab", "lab subnet 'lab' is not an IPv4 network such as 10.251.7.0/24"),
        ("fd00::/64", "lab subnet 'fd00::/64' is not an IPv4 network such as 10.251.7.0/24"),
    ],
)
def test_a_malformed_subnet_is_one_line(text: str, message: str) -> None:
    with pytest.raises(SubnetRefused) as caught:
        parse_subnet(text)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.251.7.0/30", "lab subnet 10.251.7.0/30 is too small: use a /29 or larger (a /24 holds 253 systems)"),
        (
            "198.51.100.0/24",
            "lab subnet 198.51.100.0/24 is not a private range: use one inside 10/8, 172.16/12 or 192.168/16",
        ),
        ("11.0.0.0/24", "lab subnet 11.0.0.0/24 is not a private range: use one inside 10/8, 172.16/12 or 192.168/16"),
    ],
)
def test_a_subnet_too_small_or_not_private_is_refused(subnet: str, message: str) -> None:
    with pytest.raises(SubnetRefused) as caught:
        check_subnet(LabNetwork("eol33333333", parse_subnet(subnet)), PLAIN_HOST)
    assert str(caught.value) == message


def test_a_free_private_subnet_passes() -> None:
    """Next to (not overlapping) the host's and another lab's networks; the VPN's 10/8 route refuses 10.251/16."""
    check_subnet(LabNetwork("eol33333333", parse_subnet(" 10.251.7.0/24 ")), PLAIN_HOST)
    check_subnet(LabNetwork("eol33333333", parse_subnet("172.20.1.0/29")), HOST)
    check_subnet(LabNetwork("eol33333333", parse_subnet("192.168.8.0/24")), HOST)
    with pytest.raises(SubnetRefused, match="overlaps the host's route 10.0.0.0/8"):
        check_subnet(LabNetwork("eol33333333", parse_subnet("10.251.7.0/24")), HOST)


def _start(bridge: str) -> IPv4Network:
    """The /24 where choose_subnet starts looking for *bridge* (its documented derivation)."""
    candidates = list(DEFAULT_POOL.subnets(new_prefix=24))
    return candidates[int(hashlib.sha256(bridge.encode()).hexdigest(), 16) % len(candidates)]


def test_the_chosen_subnet_is_a_free_24_of_the_pool_stable_per_bridge() -> None:
    chosen = choose_subnet("eol33333333", PLAIN_HOST)
    assert chosen == _start("eol33333333") and chosen.prefixlen == 24 and chosen.subnet_of(DEFAULT_POOL)
    assert choose_subnet("eol33333333", PLAIN_HOST) == chosen


def test_a_second_lab_whose_start_is_taken_gets_the_next_free_24() -> None:
    """Two labs whose bridges hash to the same /24: the second skips the first's bridge address."""
    taken = _start("eol33333333")
    other = next(f"eol{n:08x}" for n in range(100000) if _start(f"eol{n:08x}") == taken and n != 0x33333333)
    first_lab = [{"ifname": "eol33333333", "addr_info": [{"local": str(taken.network_address + 1), "prefixlen": 24}]}]
    host = HostView.parse(ROUTES[:2], LINKS[:2] + first_lab)
    second = choose_subnet(other, host)
    assert second != taken and not second.overlaps(taken) and second.subnet_of(DEFAULT_POOL)
    assert choose_subnet("eol33333333", host) == taken  # a lab's own bridge does not push it off its subnet


def test_no_free_24_left_is_one_line() -> None:
    full = HostView.parse([{"dst": "10.251.0.0/16", "dev": "tun0"}], [])
    with pytest.raises(SubnetRefused) as caught:
        choose_subnet("eol33333333", full)
    assert str(caught.value) == "no free /24 left in 10.251.0.0/16 for the lab: give one with a subnet setting"


def _proc_sys(tmp_path: Path, ip_forward: str | None) -> Path:
    proc_sys = tmp_path / "sys"
    (proc_sys / "net/ipv4").mkdir(parents=True)
    if ip_forward is not None:
        (proc_sys / "net/ipv4/ip_forward").write_text(ip_forward + "\n")
    return proc_sys


def test_forwarding_on_is_refused_naming_the_setting_and_the_fix(tmp_path: Path) -> None:
    check_forwarding_off(_proc_sys(tmp_path / "off", "0"))
    proc_sys = _proc_sys(tmp_path / "on", "1")
    with pytest.raises(NetworkError) as caught:
        check_forwarding_off(proc_sys)
    assert str(caught.value) == (
        f"the host forwards IPv4 ({proc_sys}/net/ipv4/ip_forward is 1): the lab would route its systems beyond"
        " its bridge; run 'sysctl -w net.ipv4.ip_forward=0' first"
    )
    with pytest.raises(NetworkError, match="cannot read .*ip_forward"):
        check_forwarding_off(_proc_sys(tmp_path / "none", None))


def test_up_with_forwarding_on_touches_nothing_and_never_writes_the_setting(tmp_path: Path) -> None:
    proc_sys = _proc_sys(tmp_path, "1")
    ip = RecordingIp()
    with pytest.raises(NetworkError, match="forwards IPv4"):
        up(LabNetwork("eol33333333", IPv4Network("10.251.7.0/24")), ip=ip, proc_sys=proc_sys)
    assert ip.calls == []
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "1\n"


def test_ip_failures_are_one_line_naming_the_command(tmp_path: Path) -> None:
    failing = tmp_path / "ip"
    failing.write_text('#!/bin/sh\necho "Error: either \\"dev\\" is duplicate, or \\"x\\" is a garbage." >&2\n'
                       'echo second line >&2\nexit 255\n')  # fmt: skip
    failing.chmod(0o755)
    with pytest.raises(NetworkError) as caught:
        IpCommand(str(failing))("link", "show", "dev", "x")
    assert (
        str(caught.value) == """'ip link show dev x' failed: Error: either "dev" is duplicate, or "x" is a garbage."""
    )
    assert IpCommand(str(failing))("link", check=False).returncode == 255


def test_a_missing_ip_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(NetworkError) as caught:
        IpCommand(str(tmp_path / "no-ip")).json("link")
    assert str(caught.value) == f"{tmp_path / 'no-ip'} is not installed: apt-get install iproute2"


def test_an_ip_call_that_hangs_is_bounded(tmp_path: Path) -> None:
    hanging = tmp_path / "ip"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    with pytest.raises(NetworkError) as caught:
        IpCommand(str(hanging), timeout=0.2)("link")
    assert str(caught.value) == "'ip link' did not finish within 0.2 s"


def test_namespace_names_and_addresses_are_checked_before_any_ip_call() -> None:
    network = LabNetwork("eol33333333", IPv4Network("10.251.7.0/24"))
    ip = RecordingIp()
    for address in ("10.251.7.1", "10.251.7.0", "10.251.7.255", "10.251.8.2"):
        with pytest.raises(NetworkError, match=f"{address} is not a system address of the lab subnet 10.251.7.0/24"):
            add_namespace(network, "a", address, ip=ip)
    with pytest.raises(NetworkError, match="'node' is not an IPv4 address of the lab subnet 10.251.7.0/24"):
        add_namespace(network, "a", "node", ip=ip)
    for name in ("A", "-a", "a b", "a" * 33, "a\n"):
        with pytest.raises(NetworkError, match="namespace name"):
            add_namespace(network, name, "10.251.7.2", ip=ip)
    assert ip.calls == []


def test_veth_names_fit_linux_and_differ_per_namespace() -> None:
    names = {veth_name(f"eol{n:08x}-node{i:03d}") for n in range(3) for i in range(100)}
    assert len(names) == 300 and all(len(name) <= 15 for name in names)
