"""The firewall policy rendered as nft rules: exact text, one table of policies, bad values refused, same bytes."""

from __future__ import annotations

import re

import pytest

from ensemble_orchestra.agents.firewall_rules import (
    SSH_PORT,
    FirewallPolicy,
    FirewallPolicyError,
    parse_port,
    render,
)
from ensemble_orchestra.errors import EnsembleError

# The whole script for a machine 0 with one exposed service: what `nft -f` gets, byte for byte.
MACHINE0 = FirewallPolicy(
    world=frozenset({"80/tcp", "53/udp"}),
    peers={"2181/tcp": frozenset({"10.251.0.3", "10.251.0.2", "fd00::2"}), "3306/tcp": frozenset({"10.251.0.3"})},
)
MACHINE0_RULES = """\
#!/usr/sbin/nft -f
# Written by ensemble-orchestra's machine agent (issue #14): this machine's firewall. Do not edit: it is
# replaced whenever the environment changes. Only the table inet ensemble is ours (created if missing,
# deleted and defined again, in one transaction); other tables are left alone.
table inet ensemble
delete table inet ensemble
table inet ensemble {
\tset world {
\t\ttype inet_proto . inet_service
\t\telements = {
\t\t\ttcp . 80,
\t\t\tudp . 53,
\t\t}
\t}
\tset peers4 {
\t\ttype ipv4_addr . inet_proto . inet_service
\t\telements = {
\t\t\t10.251.0.2 . tcp . 2181,
\t\t\t10.251.0.3 . tcp . 2181,
\t\t\t10.251.0.3 . tcp . 3306,
\t\t}
\t}
\tset peers6 {
\t\ttype ipv6_addr . inet_proto . inet_service
\t\telements = {
\t\t\tfd00::2 . tcp . 2181,
\t\t}
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tiif "lo" accept
\t\tct state established,related accept
\t\tct state invalid drop
\t\tmeta l4proto { icmp, ipv6-icmp } accept comment "neighbour discovery, path MTU, ping"
\t\tudp sport 67 udp dport 68 accept comment "DHCPv4 replies"
\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment "DHCPv6 replies"
\t\ttcp dport 22 accept comment "SSH, always"
\t\tmeta l4proto . th dport @world accept
\t\tip saddr . meta l4proto . th dport @peers4 accept
\t\tip6 saddr . meta l4proto . th dport @peers6 accept
\t}
}
"""

# policy -> (world elements, peers4 elements, peers6 elements), in the order rendered
TABLE: list[tuple[str, FirewallPolicy, tuple[list[str], list[str], list[str]]]] = [
    ("nothing but the constants", FirewallPolicy(), ([], [], [])),
    ("one exposed port", FirewallPolicy(world=frozenset({"8080/tcp"})), (["tcp . 8080"], [], [])),
    (
        "ports sorted by protocol then number, not as text",
        FirewallPolicy(world=frozenset({"9/udp", "10/tcp", "9/tcp", "65535/udp", "1/tcp"})),
        (["tcp . 1", "tcp . 9", "tcp . 10", "udp . 9", "udp . 65535"], [], []),
    ),
    (
        "ZooKeeper from every machine",
        FirewallPolicy(peers={"2181/tcp": frozenset({"10.0.0.10", "10.0.0.9", "10.0.0.1"})}),
        ([], ["10.0.0.1 . tcp . 2181", "10.0.0.9 . tcp . 2181", "10.0.0.10 . tcp . 2181"], []),
    ),
    (
        "addresses in canonical form, IPv6 in its own set",
        FirewallPolicy(peers={"5432/tcp": frozenset({"FD00:0:0::1", "2001:db8::a"})}),
        ([], [], ["2001:db8::a . tcp . 5432", "fd00::1 . tcp . 5432"]),
    ),
    (
        "one address, several ports and protocols",
        FirewallPolicy(peers={"53/udp": frozenset({"192.0.2.7"}), "53/tcp": frozenset({"192.0.2.7"})}),
        ([], ["192.0.2.7 . tcp . 53", "192.0.2.7 . udp . 53"], []),
    ),
    (
        "a port with no peers opens nothing",
        FirewallPolicy(peers={"3306/tcp": frozenset()}),
        ([], [], []),
    ),
    (
        "a port both exposed and related: in both sets",
        FirewallPolicy(world=frozenset({"80/tcp"}), peers={"80/tcp": frozenset({"10.1.2.3"})}),
        (["tcp . 80"], ["10.1.2.3 . tcp . 80"], []),
    ),
]


def set_elements(rules: str, name: str) -> list[str]:
    """The elements of named set *name* in rendered *rules*, in their order."""
    found = re.search(rf"\tset {name} {{\n\t\ttype [^\n]+\n(?:\t\telements = {{\n(.*?)\t\t}}\n)?\t}}", rules, re.S)
    assert found, f"no set {name}"
    return [line.strip().rstrip(",") for line in (found.group(1) or "").splitlines()]


def test_machine0_rules_exactly() -> None:
    """The complete script: atomic replacement of our table only, drop policy, the fixed accepts, the sets."""
    assert render(MACHINE0) == MACHINE0_RULES


@pytest.mark.parametrize(("policy", "expected"), [(p, e) for _, p, e in TABLE], ids=[name for name, _, _ in TABLE])
def test_policy_table(policy: FirewallPolicy, expected: tuple[list[str], list[str], list[str]]) -> None:
    """Each policy's ports land in the right set, sorted; everything else is the same fixed text."""
    rules = render(policy)
    assert (set_elements(rules, "world"), set_elements(rules, "peers4"), set_elements(rules, "peers6")) == expected
    fixed = re.sub(r"\t\telements = \{\n.*?\t\t\}\n", "", rules, flags=re.S)
    assert fixed == re.sub(r"\t\telements = \{\n.*?\t\t\}\n", "", MACHINE0_RULES, flags=re.S)


def test_ssh_is_always_open() -> None:
    """SSH is accepted from anywhere whatever the policy, so a wrong policy cannot cut the machine off."""
    assert SSH_PORT == "22/tcp"
    assert '\t\ttcp dport 22 accept comment "SSH, always"\n' in render(FirewallPolicy())


def test_only_our_table() -> None:
    """The script names no other table and never flushes the ruleset (Debian's nftables.conf does that)."""
    rules = render(MACHINE0)
    statements = [line for line in rules.splitlines() if line and not line.startswith(("#", "\t", "}"))]
    assert statements == ["table inet ensemble", "delete table inet ensemble", "table inet ensemble {"]
    assert "flush" not in rules and "ruleset" not in rules


def test_same_policy_same_bytes() -> None:
    """Order of insertion never shows: the file's bytes decide whether nft runs again."""
    ports = ["443/tcp", "80/tcp", "53/udp", "8080/tcp"]
    addresses = ["10.0.0.3", "10.0.0.1", "fd00::9", "10.0.0.2"]
    one = FirewallPolicy(frozenset(ports), {"2181/tcp": frozenset(addresses), "3306/tcp": frozenset(addresses[:2])})
    other = FirewallPolicy(
        frozenset(reversed(ports)),
        dict(reversed([("2181/tcp", frozenset(reversed(addresses))), ("3306/tcp", frozenset(addresses[1::-1]))])),
    )
    assert render(one) == render(other)
    assert one == other


BAD: list[tuple[str, dict[str, object], str]] = [
    ("no protocol", {"world": frozenset({"80"})}, "'80': expected NUMBER/tcp or NUMBER/udp"),
    ("unknown protocol", {"world": frozenset({"80/sctp"})}, "'80/sctp': expected NUMBER/tcp"),
    ("upper case", {"world": frozenset({"80/TCP"})}, "'80/TCP': expected NUMBER/tcp"),
    ("port 0", {"world": frozenset({"0/tcp"})}, "'0/tcp': the number must be 1-65535"),
    ("port too big", {"world": frozenset({"65536/udp"})}, "'65536/udp': the number must be 1-65535"),
    ("leading zero", {"world": frozenset({"080/tcp"})}, "'080/tcp': expected"),
    ("sign", {"world": frozenset({"+80/tcp"})}, "'+80/tcp': expected"),
    ("space", {"world": frozenset({" 80/tcp"})}, "' 80/tcp': expected"),
    ("range", {"world": frozenset({"80-90/tcp"})}, "'80-90/tcp': expected"),
    ("not digits", {"world": frozenset({"http/tcp"})}, "'http/tcp': expected"),
    ("unicode digits", {"world": frozenset({"８０/tcp"})}, "expected NUMBER/tcp"),
    ("an int", {"world": frozenset({80})}, "firewall port 80 is not a string"),
    ("world as a string", {"world": "80/tcp"}, "world must be a set of strings, not '80/tcp'"),
    ("bad peer port", {"peers": {"2181": frozenset({"10.0.0.1"})}}, "'2181': expected NUMBER/tcp"),
    ("not an address", {"peers": {"2181/tcp": frozenset({"node001"})}}, "'node001' of 2181/tcp is not an IP address"),
    ("a network", {"peers": {"2181/tcp": frozenset({"10.0.0.0/24"})}}, "'10.0.0.0/24' of 2181/tcp is not an IP"),
    ("octet too big", {"peers": {"2181/tcp": frozenset({"10.0.0.256"})}}, "'10.0.0.256' of 2181/tcp is not an IP"),
    ("scoped IPv6", {"peers": {"2181/tcp": frozenset({"fe80::1%eth0"})}}, "scoped IPv6 address cannot be matched"),
    ("peers as a string", {"peers": {"2181/tcp": "10.0.0.1"}}, "the peers of 2181/tcp must be a set of strings"),
    ("peers not a mapping", {"peers": [("2181/tcp", frozenset())]}, "peers must map ports to addresses"),
    ("an address as int", {"peers": {"2181/tcp": frozenset({167772161})}}, "expected an IP address as a string"),
]


@pytest.mark.parametrize(("fields", "message"), [(f, m) for _, f, m in BAD], ids=[name for name, _, _ in BAD])
def test_bad_values_refused(fields: dict[str, object], message: str) -> None:
    """A bad value is a bug upstream: refused when the policy is made, in one line naming the value."""
    with pytest.raises(FirewallPolicyError) as raised:
        FirewallPolicy(**fields)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, EnsembleError) and not raised.value.retryable


def test_parse_port() -> None:
    assert parse_port("1/tcp") == ("tcp", 1)
    assert parse_port("65535/udp") == ("udp", 65535)
