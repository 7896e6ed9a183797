"""The topology's relations and exposed flags: adding and removing relations (ids from a sequence that never
goes back), which relations a service takes part in, services with relations, and the YAML that carries them —
including a topology written before relations existed, which must read back and write out unchanged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ensemble_orchestra.state import Topology, TopologyError
from ensemble_orchestra.state.topology import Endpoint, Relation

DB = (Endpoint("wordpress", "db", "client"), Endpoint("mysql", "db", "server"))
CLUSTER = (Endpoint("mysql", "cluster", "peer"),)
CACHE = (Endpoint("memcached", "cache", "server"), Endpoint("wordpress", "cache", "client"))


def services() -> Topology:
    return (
        Topology()
        .add_machine()
        .add_service("mysql", "local:bookworm/mysql-11")
        .add_service("wordpress", "local:bookworm/wordpress-3")
        .add_service("memcached", "local:bookworm/memcached-1")
    )


def related() -> Topology:
    """mysql's peer relation (0), mysql-wordpress (1), memcached-wordpress (2)."""
    return services().add_relation("mysql-ha", CLUSTER).add_relation("mysql", DB).add_relation("memcache", CACHE)


def test_add_relation() -> None:
    """A relation gets the next id, keeps its endpoints sorted (so the same pair is the same relation in any
    order), and names itself for each side's hooks; the topology it was added to is left as it was."""
    before = services()
    after = before.add_relation("mysql", DB)
    assert before.relations == {} and before.relation_sequence == 0
    assert after.new_relation_id == 0 and after.relation_sequence == 1
    relation = after.relations[0]
    assert relation == Relation(0, "mysql", (DB[1], DB[0]), "global")
    assert relation.endpoints == (Endpoint("mysql", "db", "server"), Endpoint("wordpress", "db", "client"))
    assert relation.services == ("mysql", "wordpress")
    assert relation.key("wordpress") == "db:0" and relation.remote_service("wordpress") == "mysql"
    assert relation.describe() == "mysql:db wordpress:db (mysql)"
    with pytest.raises(TopologyError, match="relation 0 does not involve service memcached"):
        relation.endpoint("memcached")
    peer = after.add_relation("mysql-ha", CLUSTER).relations[1]
    assert peer.services == ("mysql",) and peer.remote_service("mysql") == "mysql" and peer.key("mysql") == "cluster:1"


def test_relations_of_a_service_by_id() -> None:
    """The relations a service takes part in (peer ones too), by id even when stored in another order."""
    topology = related()
    assert [r.id for r in topology.relations_of("wordpress")] == [1, 2]
    assert [r.id for r in topology.relations_of("mysql")] == [0, 1]
    assert [r.id for r in topology.relations_of("memcached")] == [2]
    assert topology.relations_of("nosuch") == []
    shuffled = Topology(services=topology.services, relations=dict(sorted(topology.relations.items(), reverse=True)))
    assert [r.id for r in shuffled.relations_of("wordpress")] == [1, 2]


def test_relation_ids_never_go_back() -> None:
    """A relation removed and added again is a new relation (a new id), even after every relation went and
    after a YAML round trip."""
    topology = services().add_relation("mysql", DB).add_relation("memcache", CACHE)
    topology = topology.remove_relation(1).add_relation("memcache", CACHE)
    assert sorted(topology.relations) == [0, 2] and topology.new_relation_id == 2
    emptied = topology.remove_relation(0).remove_relation(2)
    assert emptied.relations == {} and emptied.relation_sequence == 3
    again = Topology.from_yaml(emptied.to_yaml())
    assert again == emptied
    assert again.add_relation("mysql", DB).new_relation_id == 3


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.add_relation("mysql", DB), "mysql:db wordpress:db (mysql) are related already (relation 1)"),
        (lambda t: t.add_relation("mysql", (DB[1], DB[0])), "related already (relation 1)"),
        (lambda t: t.add_relation("mysql-ha", CLUSTER), "related already (relation 0)"),
        (lambda t: t.add_relation("x", (Endpoint("nosuch", "db", "client"), DB[1])), "service nosuch does not exist"),
        (lambda t: t.add_relation("x", (Endpoint("mysql", "db", "boss"),)), "mysql:db: unknown role 'boss'"),
        (lambda t: t.add_relation("x", (DB[1], Endpoint("mysql", "x", "client"))), "two services, or one service's"),
        (lambda t: t.add_relation("x", ()), "a relation joins two services"),
        (lambda t: t.add_relation("x", (*DB, CACHE[0])), "a relation joins two services"),
        (lambda t: t.remove_relation(7), "relation 7 does not exist"),
        (lambda t: t.remove_service("wordpress"), "service wordpress has relations (mysql:db wordpress:db (mysql); "),
        (lambda t: t.remove_service("mysql"), "service mysql has relations (mysql:db wordpress:db (mysql)): remove"),
        (lambda t: t.set_exposed("nosuch", True), "service nosuch does not exist"),
    ],
)
def test_refused(change: Callable[[Topology], Topology], words: str) -> None:
    """Each refused change is a fatal TopologyError in one line saying what is wrong."""
    with pytest.raises(TopologyError) as raised:
        change(related())
    assert words in str(raised.value)
    assert "\n" not in str(raised.value) and not raised.value.retryable


def test_remove_service_drops_its_peer_relations_once_the_others_are_gone() -> None:
    """A service with only its peer relations left can go, and they go with it; others' relations stay."""
    topology = related().remove_relation(1)
    gone = topology.remove_service("mysql")
    assert "mysql" not in gone.services
    assert sorted(gone.relations) == [2] and gone.relation_sequence == 3
    assert topology.remove_relation(2).remove_service("wordpress").relations_of("mysql") == [topology.relations[0]]


def test_set_exposed() -> None:
    """expose/unexpose set a service's flag; setting it to what it is already returns the same topology."""
    topology = services()
    exposed = topology.set_exposed("wordpress", True)
    assert exposed.services["wordpress"].exposed and not topology.services["wordpress"].exposed
    assert not exposed.services["mysql"].exposed
    assert exposed.set_exposed("wordpress", True) is exposed
    assert topology.set_exposed("wordpress", False) is topology
    assert exposed.set_exposed("wordpress", False) == topology


def test_yaml_round_trip_with_relations_and_exposed() -> None:
    """Relations (ids, interfaces, scopes, endpoints with roles), the sequence and exposed flags survive YAML,
    byte for byte."""
    topology = related().add_unit("wordpress", machine=0).set_exposed("wordpress", True).remove_relation(2)
    text = topology.to_yaml()
    again = Topology.from_yaml(text.encode())
    assert again == topology and again.to_yaml() == text
    assert again.services["wordpress"].exposed and not again.services["mysql"].exposed
    assert again.relations[1] == Relation(1, "mysql", DB) and again.relation_sequence == 3
    assert "    exposed: true\n" in text
    assert text.endswith(
        "relation-sequence: 3\n"
        "relations:\n"
        "  0:\n"
        "    interface: mysql-ha\n"
        "    scope: global\n"
        "    endpoints:\n"
        "    - service: mysql\n"
        "      name: cluster\n"
        "      role: peer\n"
        "  1:\n"
        "    interface: mysql\n"
        "    scope: global\n"
        "    endpoints:\n"
        "    - service: mysql\n"
        "      name: db\n"
        "      role: server\n"
        "    - service: wordpress\n"
        "      name: db\n"
        "      role: client\n"
    )


# What to_yaml wrote before relations and exposed existed (its code at d7f2b29^, run on that topology).
OLD_FORMAT = """\
version: 1
machine-sequence: 2
machines:
  0: {}
  1: {}
services:
  mysql:
    charm: local:bookworm/mysql-11
    units:
      mysql/0:
        machine: 1
  wordpress:
    charm: local:bookworm/wordpress-3
    units:
      wordpress/0:
        machine: null
        dying: true
unit-sequence:
  mysql: 1
  wordpress: 1
"""


def test_a_topology_written_before_relations_reads_back_unchanged() -> None:
    """No relations, no sequence, nothing exposed; and it is written out exactly as it was (so agents of the
    older version read what this one writes until relations are used)."""
    topology = Topology.from_yaml(OLD_FORMAT)
    assert topology.relations == {} and topology.relation_sequence == 0
    assert not any(service.exposed for service in topology.services.values())
    assert topology.unit("wordpress/0").dying
    assert topology.to_yaml() == OLD_FORMAT
    assert "relation" not in topology.set_exposed("mysql", False).to_yaml()
    assert topology.add_relation("mysql-ha", CLUSTER).relation_sequence == 1
