"""metadata.yaml: Ensemble's defaults, the short and full relation forms, and a lossless round trip."""

from __future__ import annotations

import pytest

from ensemble_orchestra.charm import CharmError, CharmMetadata, RelationSpec

FULL = """\
name: wordpress
summary: a blog
description: |
  WordPress, on two lines
  of description.
provides:
  website: http
  admin:
    interface: http
    limit: 3
requires:
  db: mysql
  cache:
    interface: memcache
    optional: true
peers:
  ring: wp-ring
maintainer: Someone <someone@example.com>
categories: [applications]
"""


def test_short_and_full_forms_with_ensembles_default_limits() -> None:
    """provides: no limit; requires and peers: 1; optional false and scope global unless given."""
    metadata = CharmMetadata.parse(FULL, "wordpress/metadata.yaml")
    assert metadata.name == "wordpress" and metadata.summary == "a blog"
    assert metadata.description == "WordPress, on two lines\nof description.\n"
    assert metadata.provides == {
        "website": RelationSpec("website", "http", None, False, "global"),
        "admin": RelationSpec("admin", "http", 3, False, "global"),
    }
    assert metadata.requires == {
        "db": RelationSpec("db", "mysql", 1, False, "global"),
        "cache": RelationSpec("cache", "memcache", 1, True, "global"),
    }
    assert metadata.peers == {"ring": RelationSpec("ring", "wp-ring", 1, False, "global")}
    assert metadata.subordinate is False and metadata.obsolete_revision is None
    assert sorted(metadata.relations()) == ["admin", "cache", "db", "ring", "website"]


def test_round_trip_through_the_state() -> None:
    """to_dict is what the state stores; from_dict gives the same metadata back (ignored keys dropped)."""
    metadata = CharmMetadata.parse(FULL, "wordpress/metadata.yaml")
    stored = metadata.to_dict()
    assert "maintainer" not in stored and stored["requires"]["db"] == {
        "interface": "mysql",
        "limit": 1,
        "optional": False,
        "scope": "global",
    }
    assert CharmMetadata.from_dict(stored) == metadata


def test_from_dict_checks_again() -> None:
    """A stored node is input too: a damaged one is a one-line error naming where it came from."""
    with pytest.raises(CharmError, match=r"^/charms/local_bookworm_x-1: 'summary' is missing"):
        CharmMetadata.from_dict({"name": "x", "description": "d"}, "/charms/local_bookworm_x-1")


def test_subordinate_with_a_container_relation() -> None:
    text = (
        "name: logger\nsummary: s\ndescription: d\nsubordinate: true\n"
        "requires:\n  juju-info: {interface: juju-info, scope: container}\n"
    )
    metadata = CharmMetadata.parse(text, "logger/metadata.yaml")
    assert metadata.subordinate is True
    assert metadata.requires["juju-info"].scope == "container"  # juju- is reserved only in provides
    assert CharmMetadata.from_dict(metadata.to_dict()) == metadata


def test_obsolete_revision_is_kept() -> None:
    metadata = CharmMetadata.parse("name: old\nsummary: s\ndescription: d\nrevision: 7\n", "old/metadata.yaml")
    assert metadata.obsolete_revision == 7
    assert CharmMetadata.from_dict(metadata.to_dict()).obsolete_revision == 7


def test_bytes_are_read_as_utf8() -> None:
    metadata = CharmMetadata.parse("name: cafe\nsummary: café\ndescription: d\n".encode(), "cafe/metadata.yaml")
    assert metadata.summary == "café"
