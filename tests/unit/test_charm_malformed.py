"""A table of malformed charms: each load fails with ONE line naming the charm's file and the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble_orchestra.charm import CharmDirectory, CharmError, CharmNotFoundError
from ensemble_orchestra.charm.testing import write_charm
from ensemble_orchestra.errors import EXIT_USAGE

HEAD = "name: sample\nsummary: s\ndescription: d\n"


def meta(extra: str = "", head: str = HEAD) -> dict[str, str]:
    return {"metadata.yaml": head + extra}


def config(text: str) -> dict[str, str]:
    return {"config.yaml": text}


CASES = [
    # (id, files, file at fault, key fragment, problem fragment)
    ("yaml-broken", meta(head="name: [sample\n"), "metadata.yaml", "line 2", "malformed YAML"),
    ("yaml-tab", meta(head="name: sample\n\tsummary: s\n"), "metadata.yaml", "line 2", "malformed YAML"),
    ("duplicate-key", meta("name: other\n"), "metadata.yaml", "'name'", "duplicate key"),
    ("not-mapping", meta(head="- name\n"), "metadata.yaml", "name, summary and description", "a list"),
    ("empty-file", meta(head=""), "metadata.yaml", "name, summary and description", "nothing"),
    ("missing-name", meta(head="summary: s\ndescription: d\n"), "metadata.yaml", "'name'", "is missing"),
    ("missing-summary", meta(head="name: sample\ndescription: d\n"), "metadata.yaml", "'summary'", "is missing"),
    ("missing-description", meta(head="name: sample\nsummary: s\n"), "metadata.yaml", "'description'", "missing"),
    ("empty-summary", meta(head="name: sample\nsummary: ' '\ndescription: d\n"), "metadata.yaml", "'summary'", "empty"),
    ("name-not-string", meta(head="name: 3\nsummary: s\ndescription: d\n"), "metadata.yaml", "'name'", "an int"),
    ("name-pattern", meta(head="name: My_SQL\nsummary: s\ndescription: d\n"), "metadata.yaml", "'name'", "My_SQL"),
    ("name-revision", meta(head="name: mysql-3\nsummary: s\ndescription: d\n"), "metadata.yaml", "'name'", "mysql-3"),
    ("unknown-key", meta("provide:\n  db: mysql\n"), "metadata.yaml", "'provide'", "unknown key"),
    ("provides-list", meta("provides: [db]\n"), "metadata.yaml", "'provides'", "must be a mapping"),
    ("spec-number", meta("provides:\n  db: 3\n"), "metadata.yaml", "'provides.db'", "an int"),
    ("spec-no-interface", meta("requires:\n  db: {limit: 2}\n"), "metadata.yaml", "'requires.db.interface'", "missing"),
    (
        "spec-unknown-key",
        meta("requires:\n  db: {interface: mysql, scopes: global}\n"),
        "metadata.yaml",
        "'requires.db.scopes'",
        "unknown key",
    ),
    (
        "spec-bad-interface",
        meta("requires:\n  db: {interface: My SQL}\n"),
        "metadata.yaml",
        "'requires.db.interface'",
        "must be",
    ),
    (
        "limit-zero",
        meta("requires:\n  db: {interface: mysql, limit: 0}\n"),
        "metadata.yaml",
        "'requires.db.limit'",
        ">= 1",
    ),
    (
        "limit-text",
        meta("peers:\n  ring: {interface: r, limit: many}\n"),
        "metadata.yaml",
        "'peers.ring.limit'",
        ">= 1",
    ),
    (
        "limit-bool",
        meta("peers:\n  ring: {interface: r, limit: true}\n"),
        "metadata.yaml",
        "'peers.ring.limit'",
        ">= 1",
    ),
    (
        "optional-text",
        meta("requires:\n  db: {interface: mysql, optional: maybe}\n"),
        "metadata.yaml",
        "'requires.db.optional'",
        "true or false",
    ),
    (
        "scope",
        meta("peers:\n  ring: {interface: r, scope: machine}\n"),
        "metadata.yaml",
        "'peers.ring.scope'",
        "global or",
    ),
    ("relation-name", meta("provides:\n  Web Site: http\n"), "metadata.yaml", "'provides.Web Site'", "relation name"),
    ("reserved-name", meta("provides:\n  juju-info: http\n"), "metadata.yaml", "'provides.juju-info'", "reserved"),
    (
        "reserved-interface",
        meta("provides:\n  info: ensemble-info\n"),
        "metadata.yaml",
        "'provides.info.interface'",
        "reserved",
    ),
    (
        "relation-twice",
        meta("provides:\n  db: mysql\nrequires:\n  db: mysql\n"),
        "metadata.yaml",
        "'requires.db'",
        "'provides.db'",
    ),
    ("subordinate-no-container", meta("subordinate: true\n"), "metadata.yaml", "'subordinate'", "scope: container"),
    ("subordinate-text", meta("subordinate: sometimes\n"), "metadata.yaml", "'subordinate'", "true or false"),
    ("obsolete-revision", meta("revision: x\n"), "metadata.yaml", "'revision'", "whole number"),
    ("not-utf8", {"metadata.yaml": b"name: caf\xe9\n"}, "metadata.yaml", "byte 9", "not UTF-8"),
    ("config-yaml-broken", config("options:\n  port: {type: int\n"), "config.yaml", "line 3", "malformed YAML"),
    ("config-not-mapping", config("[port]\n"), "config.yaml", "'options:'", "a list"),
    ("config-unknown-key", config("option:\n  port: {type: int}\n"), "config.yaml", "'option'", "unknown key"),
    ("options-list", config("options: [port]\n"), "config.yaml", "'options'", "must be a mapping"),
    ("option-not-mapping", config("options:\n  port: int\n"), "config.yaml", "'options.port'", "must be a mapping"),
    ("option-no-type", config("options:\n  port: {default: 1}\n"), "config.yaml", "'options.port.type'", "missing"),
    ("option-bad-type", config("options:\n  port: {type: integer}\n"), "config.yaml", "'options.port.type'", "one of"),
    (
        "default-string-for-int",
        config("options:\n  port: {type: int, default: '3306'}\n"),
        "config.yaml",
        "'options.port.default'",
        "a string, not an int",
    ),
    (
        "default-int-for-string",
        config("options:\n  title: {type: string, default: 3306}\n"),
        "config.yaml",
        "'options.title.default'",
        "an int, not a string",
    ),
    (
        "default-bool-for-int",
        config("options:\n  port: {type: int, default: true}\n"),
        "config.yaml",
        "'options.port.default'",
        "a boolean, not an int",
    ),
    (
        "default-float-for-int",
        config("options:\n  port: {type: int, default: 1.5}\n"),
        "config.yaml",
        "'options.port.default'",
        "a float, not an int",
    ),
    (
        "default-text-for-boolean",
        config("options:\n  debug: {type: boolean, default: 'yes'}\n"),
        "config.yaml",
        "'options.debug.default'",
        "a string, not a boolean",
    ),
    (
        "option-unknown-key",
        config("options:\n  port: {type: int, defualt: 1}\n"),
        "config.yaml",
        "'options.port.defualt'",
        "unknown key",
    ),
    ("option-name", config("options:\n  a b: {type: string}\n"), "config.yaml", "'a b'", "option name"),
    (
        "option-description",
        config("options:\n  port: {type: int, description: [x]}\n"),
        "config.yaml",
        "'options.port.description'",
        "a list",
    ),
    ("revision-text", {"revision": "abc\n"}, "revision", "'abc'", "not a revision"),
    ("revision-negative", {"revision": "-1\n"}, "revision", "'-1'", "not a revision"),
    ("revision-empty", {"revision": ""}, "revision", "''", "not a revision"),
    ("revision-float", {"revision": "1.5"}, "revision", "'1.5'", "not a revision"),
]


@pytest.mark.parametrize(("files", "file", "key", "problem"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_malformed_charm_names_file_and_key(tmp_path: Path, files, file, key, problem) -> None:
    """The message is one line: the charm's file (its full path), the key, and the problem."""
    charm = write_charm(tmp_path / "sample", files)
    with pytest.raises(CharmError) as failure:
        CharmDirectory.load(charm)
    message = str(failure.value)
    assert message.startswith(f"{charm / file}: "), message
    assert key in message, message
    assert problem in message, message
    assert "\n" not in message
    assert failure.value.exit_code == EXIT_USAGE
    assert not isinstance(failure.value, CharmNotFoundError)  # a broken charm, not a missing one


def test_missing_metadata_is_not_a_charm(tmp_path: Path) -> None:
    charm = write_charm(tmp_path / "sample", {"metadata.yaml": None})
    with pytest.raises(CharmNotFoundError, match=f"^{charm}: not a charm: it has no metadata.yaml$"):
        CharmDirectory.load(charm)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_path_that_is_no_directory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "charm"
    if kind == "file":
        path.write_text("x")
    with pytest.raises(CharmNotFoundError, match="does not exist" if kind == "missing" else "is not a directory"):
        CharmDirectory.load(path)


def test_no_value_is_echoed(tmp_path: Path) -> None:
    """A default of the wrong type is described by its kind, never shown: it may be a password."""
    charm = write_charm(tmp_path / "c", config("options:\n  password: {type: int, default: hunter2secret}\n"))
    with pytest.raises(CharmError) as failure:
        CharmDirectory.load(charm)
    assert "hunter2secret" not in str(failure.value)
    assert "'options.password.default' is a string, not an int" in str(failure.value)


def test_every_case_is_valid_without_its_fault(tmp_path: Path) -> None:
    """The table's base charm loads, so each failure above comes from its own change."""
    charm = CharmDirectory.load(write_charm(tmp_path / "sample"))
    assert charm.metadata.name == "sample" and charm.revision == 1
