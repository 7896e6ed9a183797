"""What a machine's firewall lets in, computed from the topology (agents/firewall_policy.py), as a table: each row
a topology, the machine asked about and its inputs, and the exact policy and unknown machines expected.

The environment of most rows: machine 0 (ZooKeeper), mysql/0 and mysql/1 on machines 1 and 2 (peers through
``cluster``), wordpress/0 and wordpress/1 on machines 3 and 4 (no peers), memcached/0 on machine 5, and other/0 on
machine 6, related to nobody. wordpress requires mysql's db and memcached's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pytest

from ensemble_orchestra.agents.firewall_policy import PolicyInputs, firewall_policy, needed_machines
from ensemble_orchestra.agents.firewall_rules import FirewallPolicy
from ensemble_orchestra.state.topology import Endpoint, Topology

CLUSTER = (Endpoint("mysql", "cluster", "peer"),)
DB = (Endpoint("mysql", "db", "server"), Endpoint("wordpress", "db", "client"))
CACHE = (Endpoint("memcached", "cache", "server"), Endpoint("wordpress", "cache", "client"))

ADDRESSES: dict[int, tuple[str, ...]] = {
    0: ("10.0.0.10",),
    1: ("10.0.0.1",),
    2: ("10.0.0.2",),
    3: ("10.0.0.3", "fd00::3"),  # a machine with two addresses: both are let in
    4: ("10.0.0.4",),
    5: ("10.0.0.5",),
    6: ("10.0.0.6",),
}


def _relation(topology: Topology, endpoints: tuple[Endpoint, ...]) -> int:
    return next(r.id for r in topology.relations.values() if r.endpoints == tuple(sorted(endpoints)))


def placed() -> Topology:
    """The machines and units, no relation yet."""
    topology = Topology()
    for _ in range(7):
        topology = topology.add_machine()
    for service, machines in (("mysql", (1, 2)), ("wordpress", (3, 4)), ("memcached", (5,)), ("other", (6,))):
        topology = topology.add_service(service, f"local:bookworm/{service}-1")
        for machine in machines:
            topology = topology.add_unit(service, machine)
    return topology


def environment() -> Topology:
    """Relations 0 (mysql's peers), 1 (db), 2 (cache)."""
    return placed().add_relation("mysql-ha", CLUSTER).add_relation("mysql", DB).add_relation("memcache", CACHE)


def colocated() -> Topology:
    """mysql/0 and wordpress/0 on machine 1, wordpress/1 on machine 2, related by db."""
    topology = Topology().add_machine().add_machine().add_machine()
    topology = topology.add_service("mysql", "local:bookworm/mysql-1").add_unit("mysql", 1)
    topology = topology.add_service("wordpress", "local:bookworm/wordpress-1").add_unit("wordpress", 1)
    return topology.add_unit("wordpress", 2).add_relation("mysql", DB)


def _without(machine: int) -> dict[int, tuple[str, ...]]:
    return {m: a for m, a in ADDRESSES.items() if m != machine}


def _from(*machines: int) -> frozenset[str]:
    return frozenset(a for m in machines for a in ADDRESSES[m])


@dataclass(frozen=True)
class Case:
    topology: Callable[[], Topology]
    machine: int
    open_ports: Mapping[str, Collection[str]]
    world: frozenset[str] = frozenset()
    peers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)
    addresses: Mapping[int, Collection[str]] = field(default_factory=lambda: ADDRESSES)
    zookeeper_port: int | None = None


MYSQL0 = {"mysql/0": ["3306/tcp"]}
WORDPRESS0 = {"wordpress/0": ["80/tcp", "443/tcp"]}

CASES: dict[str, Case] = {
    "provider's port from the requirers' machines and its peers'": Case(
        environment, 1, MYSQL0, peers={"3306/tcp": _from(2, 3, 4)}
    ),
    "requirer's port from its providers' machines (the other direction), two related services": Case(
        environment, 3, WORDPRESS0, peers={"80/tcp": _from(1, 2, 5), "443/tcp": _from(1, 2, 5)}
    ),
    "peers only: another unit of the service, not the unit's own machine": Case(
        lambda: placed().add_relation("mysql-ha", CLUSTER), 1, MYSQL0, peers={"3306/tcp": _from(2)}
    ),
    "a service without relations: its ports open to nobody": Case(placed, 1, MYSQL0),
    "an unrelated service's unit: nothing, whatever it opened": Case(environment, 6, {"other/0": ["8000/tcp"]}),
    "a unit that opened no port: nothing": Case(environment, 1, {"mysql/0": []}),
    "a unit whose record is missing: nothing": Case(environment, 1, {}),
    "another machine's unit's ports are not this machine's": Case(environment, 2, MYSQL0),
    "exposed: its ports from anywhere, not listed as peers": Case(
        lambda: environment().set_exposed("wordpress", True), 3, WORDPRESS0, world=frozenset(WORDPRESS0["wordpress/0"])
    ),
    "exposed, even with no relation and addresses unknown": Case(
        lambda: placed().set_exposed("other", True),
        6,
        {"other/0": ["8000/tcp", "53/udp"]},
        world=frozenset({"8000/tcp", "53/udp"}),
        addresses={},
    ),
    "unexposed again: back to the related machines": Case(
        lambda: environment().set_exposed("wordpress", True).set_exposed("wordpress", False),
        3,
        WORDPRESS0,
        peers={"80/tcp": _from(1, 2, 5), "443/tcp": _from(1, 2, 5)},
    ),
    "exposing the other side opens nothing here": Case(
        lambda: environment().set_exposed("wordpress", True), 1, MYSQL0, peers={"3306/tcp": _from(2, 3, 4)}
    ),
    "a port opened by an exposed and an unexposed unit of one machine: open to all": Case(
        lambda: colocated().set_exposed("wordpress", True),
        1,
        {"mysql/0": ["3306/tcp", "80/tcp"], "wordpress/0": ["80/tcp"]},
        world=frozenset({"80/tcp"}),
        peers={"3306/tcp": _from(2)},
    ),
    "a related unit on the same machine: its machine is not a peer": Case(
        colocated, 1, MYSQL0, peers={"3306/tcp": _from(2)}
    ),
    "the related units all on the unit's own machine: nothing, nothing unknown": Case(
        lambda: colocated().remove_unit("wordpress/1"), 1, MYSQL0
    ),
    "removing the relation removes its machines (the peers stay)": Case(
        lambda: environment().remove_relation(_relation(environment(), DB)), 1, MYSQL0, peers={"3306/tcp": _from(2)}
    ),
    "removing every relation removes every peer": Case(
        lambda: environment().remove_relation(0).remove_relation(1).remove_relation(2), 1, MYSQL0
    ),
    "a related machine without an address: the others let in, it is reported": Case(
        environment, 1, MYSQL0, peers={"3306/tcp": _from(2, 4)}, unknown=[3], addresses=_without(3)
    ),
    "no related machine's address known: the port opens to nobody yet": Case(
        lambda: placed().add_relation("mysql-ha", CLUSTER), 1, MYSQL0, unknown=[2], addresses=_without(2)
    ),
    "an unplaced related unit is no machine": Case(
        lambda: environment().add_unit("wordpress"), 1, MYSQL0, peers={"3306/tcp": _from(2, 3, 4)}
    ),
    "machine 0: ZooKeeper from every other machine": Case(
        environment, 0, {}, peers={"2181/tcp": _from(1, 2, 3, 4, 5, 6)}, zookeeper_port=2181
    ),
    "machine 0: ZooKeeper on its configured port": Case(
        lambda: Topology().add_machine().add_machine(), 0, {}, peers={"2281/tcp": _from(1)}, zookeeper_port=2281
    ),
    "machine 0: ZooKeeper open to all while a machine's address is unknown": Case(
        environment, 0, {}, world=frozenset({"2181/tcp"}), unknown=[4], addresses=_without(4), zookeeper_port=2181
    ),
    "machine 0 alone: ZooKeeper needs nobody": Case(lambda: Topology().add_machine(), 0, {}, zookeeper_port=2181),
    "machine 0 without a ZooKeeper port: nothing of ZooKeeper": Case(environment, 0, {}),
    "another machine's ZooKeeper port is not opened": Case(environment, 1, {}, zookeeper_port=2181),
}


@pytest.mark.parametrize("name", list(CASES))
def test_policy(name: str) -> None:
    case = CASES[name]
    inputs = PolicyInputs(case.open_ports, case.addresses, case.zookeeper_port)
    policy, unknown = firewall_policy(case.machine, case.topology(), inputs)
    assert policy == FirewallPolicy(case.world, dict(case.peers))
    assert unknown == case.unknown


def test_policy_is_a_pure_function_of_its_inputs() -> None:
    """The same inputs give an equal policy (Firewall.apply skips nft when the policy did not change)."""
    inputs = PolicyInputs(MYSQL0, ADDRESSES)
    assert firewall_policy(1, environment(), inputs) == firewall_policy(1, environment(), inputs)


NEEDED: dict[str, tuple[Callable[[], Topology], int, set[int]]] = {
    "machine 0: every other machine": (environment, 0, {1, 2, 3, 4, 5, 6}),
    "machine 0 alone: none": (lambda: Topology().add_machine(), 0, set()),
    "a provider: its peers' and its requirers' machines": (environment, 1, {2, 3, 4}),
    "a requirer of two services: both services' machines": (environment, 3, {1, 2, 5}),
    "a provider without peers": (environment, 5, {3, 4}),
    "an unrelated service's machine: none": (environment, 6, set()),
    "a machine without units: none": (lambda: environment().add_machine(), 7, set()),
    "a co-located related unit's machine is its own: left out": (colocated, 1, {2}),
    "after the relations are removed: none": (lambda: placed(), 3, set()),
    "an unplaced unit needs no machine": (lambda: environment().add_unit("memcached"), 3, {1, 2, 5}),
}


@pytest.mark.parametrize("name", list(NEEDED))
def test_needed_machines(name: str) -> None:
    topology, machine, expected = NEEDED[name]
    assert needed_machines(machine, topology()) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_unknown_machines_are_among_the_needed(name: str) -> None:
    """The keeper reads addresses only of the needed machines: a machine the policy asks about must be one."""
    case = CASES[name]
    topology = case.topology()
    _, unknown = firewall_policy(case.machine, topology, PolicyInputs(case.open_ports, {}, case.zookeeper_port))
    assert set(unknown) <= needed_machines(case.machine, topology)
