"""The lab's network: one Linux bridge per lab on a private /24, and nothing routed beyond it.

The host reaches every system at its IP through the bridge, systems reach each other and the bridge
address (where the lab's servers listen), and nothing else: the host forwards nothing (``ip_forward`` must
be 0, checked at ``up``) and the bridge's own ``forwarding`` is set to 0, so even a system that adds a
default route gets no further than the host itself. IPv6 is off on the bridge.

Everything of a lab is found again from its bridge's name, which is derived from the lab directory
(``eol`` + 8 hex digits): the bridge, every link enslaved to it or whose alias names it (a veth left
behind if the bridge vanished), and the network namespaces named ``<bridge>-*``. That is how ``down``
and ``cleanup_leftovers`` (after a crashed lab) remove everything, and why two labs never share a bridge.

Synchronous, like the rest of the lab (it runs from the CLI before any reactor): every ``ip`` call is a
``subprocess.run`` bounded by a timeout (``iproute.py``); a failure is one NetworkError line naming the command.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from ..errors import EXIT_USAGE
from .iproute import IpCommand, NetworkError, already_gone, network_lock, remove_netns_dir_if_ours

__all__ = [
    "DEFAULT_POOL",
    "HostView",
    "IpCommand",
    "LabNetwork",
    "NetworkError",
    "SubnetRefused",
    "bridge_name",
    "check_forwarding_off",
    "check_subnet",
    "choose_subnet",
    "cleanup_leftovers",
    "down",
    "find_overlap",
    "lab_links",
    "lab_namespaces",
    "parse_subnet",
    "plan_network",
    "up",
]

DEFAULT_POOL = IPv4Network("10.251.0.0/16")  # a lab picks a free /24 in here unless given a subnet
DEFAULT_PREFIX = 24
BRIDGE_PREFIX = "eol"
ALIAS_PREFIX = "ensemble-lab:"  # the alias of every link we make: "ensemble-lab:<bridge>"
PROC_SYS = Path("/proc/sys")
_PRIVATE = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class SubnetRefused(NetworkError):
    """The lab's subnet is malformed, not private, too small, or overlaps the host's networks."""

    exit_code = EXIT_USAGE


def system_address(subnet: IPv4Network, index: int) -> IPv4Address:
    """The address of lab system *index* in *subnet*: after the network address and the bridge's."""
    return subnet.network_address + 2 + index


def bridge_name(lab_root: Path) -> str:
    """The bridge of the lab in *lab_root*: ``eol`` + 8 hex digits of its path (11 chars; Linux allows 15)."""
    digest = hashlib.sha256(str(Path(lab_root).resolve()).encode()).hexdigest()
    return BRIDGE_PREFIX + digest[:8]


@dataclass(frozen=True)
class LabNetwork:
    """One lab's bridge and subnet: the bridge holds the first host address, system *i* the next ones."""

    bridge: str
    subnet: IPv4Network

    @property
    def bridge_address(self) -> IPv4Address:
        """Where the systems find the lab's servers (Cobbler's ``server`` in a container lab)."""
        return self.subnet.network_address + 1

    @property
    def bridge_interface(self) -> IPv4Interface:
        return IPv4Interface(f"{self.bridge_address}/{self.subnet.prefixlen}")

    @property
    def capacity(self) -> int:
        """How many systems have an address (all hosts but the bridge's)."""
        return max(self.subnet.num_addresses - 3, 0)

    def system_address(self, index: int) -> IPv4Address:
        """The address of the system with ``SystemSpec.index`` *index* (0 → the second host address)."""
        if not 0 <= index < self.capacity:
            raise SubnetRefused(
                f"lab subnet {self.subnet} has addresses for {self.capacity} systems, not {index + 1}:"
                " choose a larger subnet"
            )
        return system_address(self.subnet, index)

    def system_interface(self, index: int) -> IPv4Interface:
        return IPv4Interface(f"{self.system_address(index)}/{self.subnet.prefixlen}")

    @property
    def namespace_prefix(self) -> str:
        """Network namespaces of this lab are named ``<bridge>-<name>`` (``lab_namespaces`` finds them)."""
        return f"{self.bridge}-"

    @property
    def alias(self) -> str:
        return ALIAS_PREFIX + self.bridge


# -- what the host already uses ------------------------------------------------------------------


@dataclass(frozen=True)
class HostView:
    """The host's IPv4 routes (every table) and addresses, each with a description for the error line."""

    routes: tuple[tuple[IPv4Network, str, str], ...]  # (destination, device, description)
    addresses: tuple[tuple[IPv4Interface, str, str], ...]  # (address, device, description)

    @classmethod
    def read(cls, ip: IpCommand) -> HostView:
        return cls.parse(ip.json("-4", "route", "show", "table", "all"), ip.json("-4", "addr"))

    @classmethod
    def parse(cls, routes: list[dict[str, Any]], links: list[dict[str, Any]]) -> HostView:
        """From ``ip -j -4 route show table all`` and ``ip -j -4 addr``."""
        found_routes = []
        for route in routes:
            dst = route.get("dst", "")
            if dst in ("", "default") or route.get("type") in ("broadcast", "multicast"):
                continue  # a default route overlaps everything; broadcast routes are covered by the addresses
            network = IPv4Network(dst, strict=False)
            if network.prefixlen == 0:
                continue
            dev = route.get("dev", "")
            where = f" dev {dev}" if dev else ""
            where += f" via {route['gateway']}" if "gateway" in route else ""
            where += f" (table {route['table']})" if route.get("table") not in (None, "main") else ""
            found_routes.append((network, dev, f"the host's route {dst}{where}"))
        found_addresses = []
        for link in links:
            name = link.get("ifname", "")
            owner = " (another lab's bridge)" if name.startswith(BRIDGE_PREFIX) else ""
            for info in link.get("addr_info", []):
                if info.get("family", "inet") != "inet":
                    continue
                address = IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                found_addresses.append((address, name, f"the address {address} on {name}{owner}"))
        return cls(tuple(found_routes), tuple(found_addresses))


def find_overlap(subnet: IPv4Network, host: HostView, own_bridge: str | None = None) -> str | None:
    """What of the host's networks *subnet* overlaps (the first found), ignoring *own_bridge*; None if nothing."""
    for address, dev, what in host.addresses:
        if dev != own_bridge and subnet.overlaps(address.network):
            return what
    for network, dev, what in host.routes:
        if dev != own_bridge and subnet.overlaps(network):
            return what
    return None


def parse_subnet(text: str) -> IPv4Network:
    """A subnet as the user wrote it: an IPv4 network without host bits (``check_subnet`` judges the rest)."""
    try:
        return IPv4Network(text.strip())
    except ValueError as exc:
        raise SubnetRefused(f"lab subnet {text!r} is not an IPv4 network such as 10.251.7.0/24 ({exc})") from None


def check_subnet(network: LabNetwork, host: HostView) -> None:
    """SubnetRefused if *network*'s subnet overlaps a host route or address (its own bridge aside), is too
    small, or is not a private range. An overlap is named first: it says the most about what to change."""
    subnet = network.subnet
    overlap = find_overlap(subnet, host, network.bridge)
    if overlap is not None:
        raise SubnetRefused(f"lab subnet {subnet} overlaps {overlap}: choose another subnet")
    if subnet.prefixlen > 29:
        raise SubnetRefused(f"lab subnet {subnet} is too small: use a /29 or larger (a /24 holds 253 systems)")
    if not any(subnet.subnet_of(private) for private in _PRIVATE):
        raise SubnetRefused(f"lab subnet {subnet} is not a private range: use one inside 10/8, 172.16/12 or 192.168/16")


def choose_subnet(bridge: str, host: HostView, pool: IPv4Network = DEFAULT_POOL) -> IPv4Network:
    """A free /24 of *pool*; the search starts at one derived from *bridge*, so labs rarely race for one."""
    candidates = list(pool.subnets(new_prefix=DEFAULT_PREFIX))
    start = int(hashlib.sha256(bridge.encode()).hexdigest(), 16) % len(candidates)
    for offset in range(len(candidates)):
        subnet = candidates[(start + offset) % len(candidates)]
        if find_overlap(subnet, host, bridge) is None:
            return subnet
    raise SubnetRefused(f"no free /{DEFAULT_PREFIX} left in {pool} for the lab: give one with a subnet setting")


def plan_network(lab_root: Path, subnet: str | None = None, *, ip: IpCommand | None = None) -> LabNetwork:
    """The network of the lab in *lab_root*: its bridge and *subnet* (checked), or a free /24 chosen for it."""
    ip = ip or IpCommand()
    bridge = bridge_name(lab_root)
    host = HostView.read(ip)
    network = LabNetwork(bridge, choose_subnet(bridge, host) if subnet is None else parse_subnet(subnet))
    check_subnet(network, host)
    return network


# -- bringing the bridge up and down -------------------------------------------------------------


def check_forwarding_off(proc_sys: Path = PROC_SYS) -> None:
    """NetworkError if the host forwards IPv4: the lab relies on it not routing between the bridge and the world."""
    setting = proc_sys / "net/ipv4/ip_forward"
    try:
        value = setting.read_text().strip()
    except OSError as exc:
        raise NetworkError(
            f"cannot read {setting} ({exc.strerror}): the lab must know the host forwards nothing"
        ) from None
    if value != "0":
        raise NetworkError(
            f"the host forwards IPv4 ({setting} is {value}): the lab would route its systems beyond its bridge;"
            " run 'sysctl -w net.ipv4.ip_forward=0' first"
        )


def _write_sysctl(proc_sys: Path, key: str, value: str) -> None:
    setting = proc_sys / key
    try:
        setting.write_text(value)
        current = setting.read_text().strip()
    except OSError as exc:
        raise NetworkError(f"cannot set {setting} to {value} ({exc.strerror})") from None
    if current != value:
        raise NetworkError(f"{setting} stays {current} after writing {value}")


def _link(ip: IpCommand, name: str) -> dict[str, Any] | None:
    done = ip("-j", "-d", "link", "show", "dev", name, check=False)
    if done.returncode != 0:
        if already_gone(done):
            return None
        ip("-j", "-d", "link", "show", "dev", name)  # raises with the reason
    links = json.loads(done.stdout or "[]")
    return links[0] if links else None


def _bridge_mac(bridge: str) -> str:
    """A fixed, locally administered MAC: else the bridge takes its lowest port's and systems' ARP caches go stale."""
    digest = hashlib.sha256(bridge.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def up(network: LabNetwork, *, ip: IpCommand | None = None, proc_sys: Path = PROC_SYS) -> None:
    """Create the lab's bridge with its address, forwarding off, and set it up; idempotent.

    Raises NetworkError if the host forwards IPv4 or the name belongs to something that is not a bridge,
    SubnetRefused if the subnet now overlaps something of the host's.
    """
    ip = ip or IpCommand()
    check_forwarding_off(proc_sys)
    with network_lock():
        check_subnet(network, HostView.read(ip))
        existing = _link(ip, network.bridge)
        if existing is None:
            ip("link", "add", network.bridge, "address", _bridge_mac(network.bridge), "type", "bridge",
               "forward_delay", "0", "stp_state", "0")  # fmt: skip
        elif existing.get("linkinfo", {}).get("info_kind") != "bridge":
            raise NetworkError(
                f"{network.bridge} exists and is not a bridge: remove it ('ip link del {network.bridge}')"
            )
        ip("link", "set", "dev", network.bridge, "alias", network.alias)
        _write_sysctl(proc_sys, f"net/ipv4/conf/{network.bridge}/forwarding", "0")
        if (proc_sys / f"net/ipv6/conf/{network.bridge}").is_dir():
            _write_sysctl(proc_sys, f"net/ipv6/conf/{network.bridge}/disable_ipv6", "1")
        wanted = str(network.bridge_interface)
        for link in ip.json("-4", "addr", "show", "dev", network.bridge):
            for info in link.get("addr_info", []):
                present = f"{info['local']}/{info['prefixlen']}"
                if present != wanted:  # an older subnet of this lab
                    ip("addr", "del", present, "dev", network.bridge)
        ip("addr", "replace", wanted, "dev", network.bridge)
        ip("link", "set", "dev", network.bridge, "up")


def lab_links(bridge: str, ip: IpCommand) -> list[dict[str, Any]]:
    """The links of the lab with *bridge* other than the bridge: enslaved to it, or carrying its alias."""
    alias = ALIAS_PREFIX + bridge
    return [
        link
        for link in ip.json("link")
        if link.get("ifname") != bridge and (link.get("master") == bridge or link.get("ifalias") == alias)
    ]


def lab_namespaces(bridge: str, ip: IpCommand) -> list[str]:
    """The network namespaces of the lab with *bridge* (named ``<bridge>-*``)."""
    names = [entry.get("name", "") for entry in ip.json("netns", "list")]
    return sorted(name for name in names if name.startswith(f"{bridge}-"))


def cleanup_leftovers(bridge: str, *, ip: IpCommand | None = None) -> list[str]:
    """Remove every namespace and veth of the lab with *bridge*, and the bridge, live or left by a crash.

    Returns what was removed ("namespace …", "link …", "bridge …"). Namespaces first, then links still on
    the bridge or carrying its alias (deleting one end of a veth deletes both; a namespace's veth may
    outlive it while a process inside holds it), then the bridge. Safe to run twice; ``lab up`` runs it
    with ``bridge_name(lab_root)`` before creating anything, ``down`` after stopping the systems.
    """
    ip = ip or IpCommand()
    removed = []
    with network_lock():
        for name in lab_namespaces(bridge, ip):
            if _delete(ip, "netns", "del", name):
                removed.append(f"namespace {name}")
        for link in lab_links(bridge, ip):
            if _delete(ip, "link", "del", "dev", link["ifname"]):
                removed.append(f"link {link['ifname']}")
        existing = _link(ip, bridge)
        if existing is not None:
            if existing.get("linkinfo", {}).get("info_kind") != "bridge":
                raise NetworkError(f"{bridge} is not a bridge of a lab: not removing it")
            if _delete(ip, "link", "del", "dev", bridge):
                removed.append(f"bridge {bridge}")
        remove_netns_dir_if_ours(ip.timeout)
    return removed


def _delete(ip: IpCommand, *args: str) -> bool:
    """Run an ``ip … del``; False if the thing was gone already (a NetworkError for any other failure)."""
    done = ip(*args, check=False)
    if done.returncode == 0:
        return True
    if already_gone(done):
        return False
    ip(*args)  # raises with the reason
    return False


def down(network: LabNetwork, *, ip: IpCommand | None = None) -> list[str]:
    """Remove the lab's bridge and everything attached to it; idempotent (see cleanup_leftovers)."""
    return cleanup_leftovers(network.bridge, ip=ip)
