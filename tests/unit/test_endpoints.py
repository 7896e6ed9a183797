"""add-relation's endpoint matching as a table: small charms, a topology of deployed services (with the peer
relations deploy adds, and relations added before), and what ``match_relation`` makes of two endpoints — the
one match, or a one-line usage error (exit code 2) whose key words say why and what there is to choose."""

from __future__ import annotations

from typing import Any

import pytest

from ensemble_orchestra.charm.metadata import CharmMetadata
from ensemble_orchestra.errors import UsageError
from ensemble_orchestra.state.endpoints import EndpointError, Match, match_relation, parse_endpoint, peer_relations
from ensemble_orchestra.state.topology import Endpoint, Topology


def charm(name: str, **relations: Any) -> CharmMetadata:
    return CharmMetadata.from_dict({"name": name, "summary": name, "description": name, **relations})


MYSQL = charm("mysql", provides={"db": "mysql", "db-admin": "mysql-root"}, peers={"cluster": "mysql-ha"})
# service name -> its charm (two services of the mysql charm, for the limit of wordpress:db)
METADATA = {
    "mysql": MYSQL,
    "mysql-b": MYSQL,
    "wordpress": charm(
        "wordpress", requires={"db": "mysql", "cache": "memcache"}, provides={"website": "http"}
    ),
    "memcached": charm("memcached", provides={"cache": "memcache"}),
    "haproxy": charm("haproxy", requires={"reverseproxy": "http"}, peers={"ring": "haproxy-peer", "ha": "vrrp"}),
    "twodb": charm("twodb", requires={"main": "mysql", "replica": {"interface": "mysql", "limit": 2}}),
    "api": charm("api", provides={"api": {"interface": "rest", "limit": 1}}),
    "web1": charm("web1", requires={"api": "rest"}),
    "web2": charm("web2", requires={"api": "rest"}),
    "logger": charm(
        "logger", subordinate=True, requires={"logs": {"interface": "syslog", "scope": "container"}}
    ),
    "rsyslog": charm("rsyslog", provides={"logs": "syslog"}),
    "hostinfo": charm("hostinfo", provides={"info": {"interface": "host-info", "scope": "container"}}),
    "monitor": charm("monitor", requires={"info": "host-info"}),
    "lonely": charm("lonely"),
}


def deployed(*related: tuple[str, str]) -> Topology:
    """Every service of METADATA deployed (with its peer relations, as deploy adds them), then *related*
    pairs related as add-relation would."""
    topology = Topology()
    for service, metadata in METADATA.items():
        topology = topology.add_service(service, f"local:bookworm/{metadata.name}-1")
        for interface, endpoint in peer_relations(service, metadata):
            topology = topology.add_relation(interface, (endpoint,))
    for first, second in related:
        match = match_relation(parse_endpoint(first), parse_endpoint(second), METADATA, topology)
        topology = topology.add_relation(match.interface, match.endpoints, match.scope)
    return topology


def server(service: str, name: str) -> Endpoint:
    return Endpoint(service, name, "server")


def client(service: str, name: str) -> Endpoint:
    return Endpoint(service, name, "client")


def pair(interface: str, provides: str, requires: str) -> Match:
    """The global relation of *interface* between ``service:name`` that provides and one that requires."""
    return Match(interface, "global", (server(*provides.split(":")), client(*requires.split(":"))))


# (first, second, related before) -> the Match
MATCHES = [
    ("wordpress", "mysql", (), pair("mysql", "mysql:db", "wordpress:db")),
    ("mysql", "wordpress", (), pair("mysql", "mysql:db", "wordpress:db")),
    ("mysql:db", "wordpress", (), pair("mysql", "mysql:db", "wordpress:db")),
    ("wordpress:db", "mysql:db", (), pair("mysql", "mysql:db", "wordpress:db")),
    ("wordpress", "memcached", (), pair("memcache", "memcached:cache", "wordpress:cache")),
    ("haproxy", "wordpress", (), pair("http", "wordpress:website", "haproxy:reverseproxy")),
    ("twodb:replica", "mysql", (), pair("mysql", "mysql:db", "twodb:replica")),
    ("mysql", "twodb:main", (), pair("mysql", "mysql:db", "twodb:main")),
    # provides has no limit by default: mysql:db serves a second client
    ("twodb:main", "mysql", (("wordpress", "mysql"),), pair("mysql", "mysql:db", "twodb:main")),
    # a limit of 2 takes a second relation
    ("twodb:replica", "mysql-b", (("twodb:replica", "mysql"),), pair("mysql", "mysql-b:db", "twodb:replica")),
    ("web1", "api", (), pair("rest", "api:api", "web1:api")),
]


@pytest.mark.parametrize(("first", "second", "related", "expected"), MATCHES)
def test_the_one_match(first: str, second: str, related: tuple[tuple[str, str], ...], expected: Match) -> None:
    """The provides side is the server, the requires side the client, whichever order they are named in."""
    topology = deployed(*related)
    assert match_relation(parse_endpoint(first), parse_endpoint(second), METADATA, topology) == expected


# (first, second, related before) -> words the one-line message has
REFUSALS = [
    # none: the message lists what each side provides and requires
    ("wordpress", "lonely", (), [
        "no relation between wordpress and lonely",
        "wordpress provides website (http), requires cache (memcache), requires db (mysql)",
        "lonely has no provides or requires relations",
    ]),
    ("mysql", "memcached", (), [
        "no relation between mysql and memcached",
        "mysql provides db (mysql), provides db-admin (mysql-root)",
        "memcached provides cache (memcache)",
    ]),
    ("wordpress:cache", "mysql", (), ["no relation between wordpress:cache and mysql", "requires db (mysql)"]),
    ("mysql:cluster", "wordpress", (), ["no relation between mysql:cluster and wordpress"]),  # peers: deploy's
    ("web1", "web2", (), ["no relation between web1 and web2", "web1 requires api (rest)", "web2 requires api (rest)"]),
    # more than one: the message lists the choices
    ("twodb", "mysql", (), [
        "more than one relation between twodb and mysql",
        "name one of mysql:db twodb:main (mysql); mysql:db twodb:replica (mysql)",
    ]),
    ("mysql:db", "twodb", (), ["more than one relation between mysql:db and twodb", "twodb:main", "twodb:replica"]),
    # unknown service or relation name
    ("nosuch", "wordpress", (), ["service nosuch does not exist", "ensemble status"]),
    ("wordpress", "nosuch", (), ["service nosuch does not exist"]),
    ("wordpress:nosuch", "mysql", (), [
        "service wordpress has no relation named 'nosuch'",
        "wordpress provides website (http)",
    ]),
    ("wordpress", "mysql:dbx", (), ["service mysql has no relation named 'dbx'", "mysql provides db (mysql)"]),
    # itself, twice, limits, container scope
    ("mysql", "mysql", (), ["cannot relate mysql to itself", "peer relations are added by deploy"]),
    ("mysql:db", "mysql:cluster", (), ["cannot relate mysql to itself"]),
    ("mysql", "wordpress", (("wordpress", "mysql"),), ["mysql:db wordpress:db (mysql): related already (relation"]),
    ("wordpress:db", "mysql:db", (("mysql", "wordpress"),), ["related already"]),
    # the provider's name sorts after the requirer's: still the same relation
    ("wordpress", "haproxy", (("haproxy", "wordpress"),), ["haproxy:reverseproxy wordpress:website (http): related"]),
    ("wordpress", "mysql-b", (("wordpress", "mysql"),), [
        "wordpress:db takes at most 1 relation(s)",
        "its charm's limit",
        "remove one first",
    ]),
    ("web2", "api", (("web1", "api"),), ["api:api takes at most 1 relation(s)"]),
    ("logger", "rsyslog", (), [
        "rsyslog:logs logger:logs",
        "container-scoped (subordinate) relations are not supported yet",
    ]),
    ("monitor", "hostinfo", (), ["hostinfo:info monitor:info: container-scoped"]),  # scope on the provides side
]


@pytest.mark.parametrize(("first", "second", "related", "words"), REFUSALS)
def test_refused(first: str, second: str, related: tuple[tuple[str, str], ...], words: list[str]) -> None:
    """Each refusal is an EndpointError: a usage error (exit code 2, not retryable) in one line naming it."""
    topology = deployed(*related)
    with pytest.raises(EndpointError) as raised:
        match_relation(parse_endpoint(first), parse_endpoint(second), METADATA, topology)
    message = str(raised.value)
    for word in words:
        assert word in message
    assert "\n" not in message
    assert isinstance(raised.value, UsageError)
    assert raised.value.exit_code == 2 and not raised.value.retryable


def test_a_limit_counts_relations_not_peers_and_frees_when_one_goes() -> None:
    """twodb:replica (limit 2) takes two relations and refuses a third; removing one makes room again. The
    services' peer relations never count towards a provides or requires limit."""
    topology = deployed(("twodb:replica", "mysql"), ("twodb:replica", "mysql-b"))
    extra = topology.add_service("mysql-c", "local:bookworm/mysql-1")
    metadata = {**METADATA, "mysql-c": MYSQL}
    with pytest.raises(EndpointError, match=r"twodb:replica takes at most 2 relation\(s\)"):
        match_relation(("twodb", "replica"), ("mysql-c", None), metadata, extra)
    first = next(r for r in extra.relations_of("twodb") if "mysql" in r.services)
    freed = extra.remove_relation(first.id)
    match = match_relation(("twodb", "replica"), ("mysql-c", None), metadata, freed)
    assert match.endpoints == (server("mysql-c", "db"), client("twodb", "replica"))


def test_a_service_missing_from_the_charms_read_is_unknown() -> None:
    """A service in the topology whose charm metadata was not given is reported as not there (nothing to match)."""
    metadata = {k: v for k, v in METADATA.items() if k != "mysql"}
    with pytest.raises(EndpointError, match="service mysql does not exist"):
        match_relation(("wordpress", None), ("mysql", None), metadata, deployed())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wordpress", ("wordpress", None)),
        ("wordpress:db", ("wordpress", "db")),
        ("mysql-b:db-admin", ("mysql-b", "db-admin")),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", ":", ":db", "wordpress:", "wordpress:db:x", "a::b"])
def test_malformed_endpoint_text(text: str) -> None:
    """Anything but SERVICE or SERVICE:RELATION is a usage error quoting the text and showing the form."""
    with pytest.raises(EndpointError) as raised:
        parse_endpoint(text)
    assert str(raised.value) == f"endpoint {text!r}: expected SERVICE or SERVICE:RELATION, e.g. wordpress:db"
    assert raised.value.exit_code == 2


def test_peer_relations() -> None:
    """deploy adds one peer relation per peers entry, by name; a charm without peers gets none."""
    assert peer_relations("mysql-b", MYSQL) == [("mysql-ha", Endpoint("mysql-b", "cluster", "peer"))]
    assert peer_relations("haproxy", METADATA["haproxy"]) == [
        ("vrrp", Endpoint("haproxy", "ha", "peer")),
        ("haproxy-peer", Endpoint("haproxy", "ring", "peer")),
    ]
    assert peer_relations("wordpress", METADATA["wordpress"]) == []
    topology = deployed()
    peers = [r.describe() for r in topology.relations_of("haproxy")]
    assert peers == ["haproxy:ha (vrrp)", "haproxy:ring (haproxy-peer)"]
