"""Which endpoints ``add-relation A[:rel] B[:rel]`` relates, from the services' charm metadata (pure).

A relation joins a *provides* endpoint of one service to a *requires* endpoint of the other with the same
interface (Ensemble's rule); naming the relation on either side narrows the choice. Exactly one pair must be
left: none, or more than one, is a usage error that lists what there is, so the user can name the endpoints.
Peer relations are never added by hand: ``deploy`` adds one per ``peers`` entry of the charm.
An endpoint's ``limit`` (how many relations it may take part in) is enforced here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..charm.metadata import CharmMetadata, RelationSpec
from ..errors import UsageError
from .topology import Endpoint, Topology

__all__ = ["EndpointError", "Match", "match_relation", "parse_endpoint", "peer_relations"]

_ROLE_OF = {"provides": "server", "requires": "client", "peers": "peer"}


class EndpointError(UsageError):
    """``add-relation``/``remove-relation`` named endpoints that cannot be related (exit code 2)."""


@dataclass(frozen=True)
class Match:
    """The relation to add: its interface, scope and two endpoints."""

    interface: str
    scope: str
    endpoints: tuple[Endpoint, Endpoint]


def parse_endpoint(text: str) -> tuple[str, str | None]:
    """``wordpress`` or ``wordpress:db`` -> (service, relation name or None)."""
    service, sep, name = text.partition(":")
    if not service or (sep and not name) or ":" in name:
        raise EndpointError(f"endpoint {text!r}: expected SERVICE or SERVICE:RELATION, e.g. wordpress:db")
    return service, name or None


def _endpoints(metadata: CharmMetadata, role: str) -> dict[str, RelationSpec]:
    specs: Mapping[str, RelationSpec] = getattr(metadata, role)
    return dict(specs)


def _describe(service: str, metadata: CharmMetadata) -> str:
    parts = [
        f"{role} {name} ({spec.interface})"
        for role in ("provides", "requires")
        for name, spec in sorted(_endpoints(metadata, role).items())
    ]
    return f"{service} {', '.join(parts)}" if parts else f"{service} has no provides or requires relations"


def match_relation(
    first: tuple[str, str | None],
    second: tuple[str, str | None],
    metadata: Mapping[str, CharmMetadata],
    topology: Topology,
) -> Match:
    """The one relation ``add-relation first second`` means, checked against *topology* (services present,
    not related already, limits); EndpointError saying why not."""
    (a, a_name), (b, b_name) = first, second
    for service in (a, b):
        if service not in topology.services or service not in metadata:
            raise EndpointError(f"service {service} does not exist in the environment: see `ensemble status`")
    if a == b:
        raise EndpointError(f"cannot relate {a} to itself: peer relations are added by deploy from the charm's peers")
    for service, name in ((a, a_name), (b, b_name)):
        if name is not None and not any(name in _endpoints(metadata[service], r) for r in _ROLE_OF):
            raise EndpointError(
                f"service {service} has no relation named {name!r}: {_describe(service, metadata[service])}"
            )
    candidates: list[Match] = []
    for provider, p_name, requirer, r_name in ((a, a_name, b, b_name), (b, b_name, a, a_name)):
        provides = _endpoints(metadata[provider], "provides")
        requires = _endpoints(metadata[requirer], "requires")
        for pn, pspec in sorted(provides.items()):
            for rn, rspec in sorted(requires.items()):
                if pspec.interface != rspec.interface or p_name not in (None, pn) or r_name not in (None, rn):
                    continue
                scope = "container" if "container" in (pspec.scope, rspec.scope) else "global"
                candidates.append(
                    Match(pspec.interface, scope, (Endpoint(provider, pn, "server"), Endpoint(requirer, rn, "client")))
                )
    if not candidates:
        raise EndpointError(
            f"no relation between {_spell(first)} and {_spell(second)}: a provides and a requires of one interface"
            f" are needed ({_describe(a, metadata[a])}; {_describe(b, metadata[b])})"
        )
    if len(candidates) > 1:
        choices = "; ".join(f"{m.endpoints[0]} {m.endpoints[1]} ({m.interface})" for m in candidates)
        raise EndpointError(
            f"more than one relation between {_spell(first)} and {_spell(second)}: name one of {choices}"
        )
    match = candidates[0]
    if match.scope == "container":
        raise EndpointError(
            f"{match.endpoints[0]} {match.endpoints[1]}: container-scoped (subordinate) relations are not supported yet"
        )
    wanted = tuple(sorted(match.endpoints))
    for relation in topology.relations.values():
        if relation.endpoints == wanted:
            raise EndpointError(f"{relation.describe()}: related already (relation {relation.id})")
    for endpoint in match.endpoints:
        role = "provides" if endpoint.role == "server" else "requires"
        limit = _endpoints(metadata[endpoint.service], role)[endpoint.name].limit
        taken = sum(
            1 for relation in topology.relations_of(endpoint.service) if any(e == endpoint for e in relation.endpoints)
        )
        if limit is not None and taken >= limit:
            raise EndpointError(f"{endpoint} takes at most {limit} relation(s) (its charm's limit): remove one first")
    return match


def peer_relations(service: str, metadata: CharmMetadata) -> list[tuple[str, Endpoint]]:
    """(interface, endpoint) of each peer relation ``deploy`` adds for *service*."""
    return [(spec.interface, Endpoint(service, name, "peer")) for name, spec in sorted(metadata.peers.items())]


def _spell(endpoint: tuple[str, str | None]) -> str:
    return endpoint[0] if endpoint[1] is None else f"{endpoint[0]}:{endpoint[1]}"
