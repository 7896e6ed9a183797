"""The machine's firewall as nftables rules: a policy value in, one atomic ``nft -f`` script out (pure, no I/O).

Issue #14: inbound traffic is refused except SSH, what the environment's agents need, ports that related units
opened (from those units' machines only) and the ports of exposed services (from anywhere). What to allow is
computed from the environment's state elsewhere; this module says it in nftables' syntax.

Only our table, ``inet ensemble``, is touched: the script creates it if missing, deletes it and defines it again,
in one transaction (nft 1.0.6, Debian 12: ``destroy table`` does not exist yet), so a packet sees the old rules or
the new ones, never none. Other tables are left alone — but a packet must pass every input hook, so another
table can still refuse what ours accepts. Ports are kept in named sets so ``nft list set inet ensemble world``
shows what is open, and one lookup serves any number of ports and machines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import EnsembleError

__all__ = ["PROTOCOLS", "SSH_PORT", "TABLE", "FirewallPolicy", "FirewallPolicyError", "parse_port", "render"]

TABLE = "ensemble"  # family inet: one table for IPv4 and IPv6
PROTOCOLS = ("tcp", "udp")
# Always open to anyone, whatever the policy says: a machine whose SSH a wrong policy closed could not be repaired.
SSH_PORT = "22/tcp"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FirewallPolicyError(EnsembleError):
    """A firewall policy holds a value nft cannot mean: a bug in whatever computed it, never the user's input."""


def parse_port(text: str) -> tuple[str, int]:
    """``"80/tcp"`` → ``("tcp", 80)``; anything else (``"80"``, ``"080/tcp"``, ``"0/udp"``, ``"80/TCP"``) refused."""
    if not isinstance(text, str):
        raise FirewallPolicyError(f"firewall port {text!r} is not a string like '80/tcp': fix the policy's source")
    number, _, protocol = text.partition("/")
    if protocol not in PROTOCOLS or not number.isascii() or not number.isdigit() or str(int(number)) != number:
        raise FirewallPolicyError(f"firewall port {text!r}: expected NUMBER/tcp or NUMBER/udp, like '80/tcp'")
    if not 1 <= int(number) <= 65535:
        raise FirewallPolicyError(f"firewall port {text!r}: the number must be 1-65535")
    return protocol, int(number)


def _address(text: str, port: str) -> Address:
    if not isinstance(text, str):
        raise FirewallPolicyError(f"firewall peer {text!r} of {port}: expected an IP address as a string")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise FirewallPolicyError(
            f"firewall peer {text!r} of {port} is not an IP address: fix the policy's source"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise FirewallPolicyError(f"firewall peer {text!r} of {port}: a scoped IPv6 address cannot be matched")
    return address


def _members(value: object, what: str) -> Iterable[str]:
    # A bare string is iterable too: "10.0.0.1" would otherwise become the addresses "1", "0", ".".
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise FirewallPolicyError(f"firewall policy: {what} must be a set of strings, not {value!r}")
    return value


@dataclass(frozen=True)
class FirewallPolicy:
    """What one machine lets in, besides SSH (always) and the traffic every machine needs (see ``render``).

    ``world``: ports open to anyone (``"80/tcp"``). ``peers``: port → the addresses allowed to reach it (the
    environment's machines running related units; on machine 0 ``"2181/tcp"`` → every machine's addresses).
    A port in both is open to anyone. Constructing a policy validates it (FirewallPolicyError).
    """

    world: frozenset[str] = frozenset()
    peers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for port in _members(self.world, "world"):
            parse_port(port)
        if not isinstance(self.peers, Mapping):
            raise FirewallPolicyError(f"firewall policy: peers must map ports to addresses, not {self.peers!r}")
        for port, addresses in self.peers.items():
            parse_port(port)
            for address in _members(addresses, f"the peers of {port}"):
                _address(address, port)


def _sorted_ports(ports: Iterable[str]) -> list[tuple[str, int]]:
    return sorted({parse_port(port) for port in ports})


def _peer_elements(policy: FirewallPolicy, version: int) -> list[str]:
    found: set[tuple[Address, str, int]] = set()
    for port, addresses in policy.peers.items():
        protocol, number = parse_port(port)
        for text in addresses:
            address = _address(text, port)
            if address.version == version:
                found.add((address, protocol, number))
    return [f"{address} . {protocol} . {number}" for address, protocol, number in sorted(found)]


def _set(name: str, key: str, elements: list[str]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {key}"]
    if elements:
        lines += ["\t\telements = {", *(f"\t\t\t{element}," for element in elements), "\t\t}"]
    return [*lines, "\t}"]


def render(policy: FirewallPolicy) -> str:
    """The complete nft script replacing table ``inet ensemble`` atomically (same policy, same bytes).

    Input hook, policy drop. Accepted: loopback; established and related connections (answers to what the
    machine sent, ICMP errors about them); all ICMP and ICMPv6 (neighbour discovery, path MTU discovery, ping);
    DHCP replies (v4, and v6 from link-local servers); SSH; the world ports; each peer port from its addresses.
    Packets conntrack finds invalid are dropped. Outbound and forwarded traffic are not filtered.
    """
    ssh_protocol, ssh_number = parse_port(SSH_PORT)
    world = [f"{protocol} . {number}" for protocol, number in _sorted_ports(policy.world)]
    lines = [
        "#!/usr/sbin/nft -f",
        "# Written by ensemble-orchestra's machine agent (issue #14): this machine's firewall. Do not edit: it is",
        "# replaced whenever the environment changes. Only the table inet ensemble is ours (created if missing,",
        "# deleted and defined again, in one transaction); other tables are left alone.",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *_set("world", "inet_proto . inet_service", world),
        *_set("peers4", "ipv4_addr . inet_proto . inet_service", _peer_elements(policy, 4)),
        *_set("peers6", "ipv6_addr . inet_proto . inet_service", _peer_elements(policy, 6)),
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tmeta l4proto { icmp, ipv6-icmp } accept comment "neighbour discovery, path MTU, ping"',
        '\t\tudp sport 67 udp dport 68 accept comment "DHCPv4 replies"',
        '\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment "DHCPv6 replies"',
        f'\t\t{ssh_protocol} dport {ssh_number} accept comment "SSH, always"',
        "\t\tmeta l4proto . th dport @world accept",
        "\t\tip saddr . meta l4proto . th dport @peers4 accept",
        "\t\tip6 saddr . meta l4proto . th dport @peers6 accept",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
