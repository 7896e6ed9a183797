"""LocalRepository: found by metadata name, highest revision, broken neighbours skipped but never hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from ensemble_orchestra.charm import CharmError, CharmNotFoundError, CharmURL, LocalRepository, resolve_repository
from ensemble_orchestra.charm.testing import write_charm


def charm(repo: Path, directory: str, name: str, revision: int | None, series: str = "bookworm") -> Path:
    files = {"metadata.yaml": f"name: {name}\nsummary: s\ndescription: d\n"}
    files["revision"] = None if revision is None else f"{revision}\n"  # type: ignore[assignment]
    return write_charm(repo / series / directory, files)


def url(text: str) -> CharmURL:
    return CharmURL.parse(text, "bookworm")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    charm(root, "mysql", "mysql", 1)
    charm(root, "mysql-new", "mysql", 3)  # matched by metadata name, not directory
    charm(root, "mysql-older", "mysql", 2)
    charm(root, "wordpress", "wordpress", None)
    charm(root, "mysql-trixie", "mysql", 9, series="trixie")
    return root


def test_highest_revision_by_metadata_name(repo: Path) -> None:
    found = LocalRepository(repo).find(url("mysql"))
    assert found.path == repo / "bookworm" / "mysql-new" and found.revision == 3


@pytest.mark.parametrize(("revision", "directory"), [(1, "mysql"), (2, "mysql-older"), (3, "mysql-new")])
def test_a_given_revision(repo: Path, revision: int, directory: str) -> None:
    found = LocalRepository(repo).find(url(f"local:bookworm/mysql-{revision}"))
    assert found.path == repo / "bookworm" / directory


def test_series_is_a_directory(repo: Path) -> None:
    assert LocalRepository(repo).find(url("local:trixie/mysql")).revision == 9


def test_revision_not_there_lists_the_ones_there(repo: Path) -> None:
    with pytest.raises(CharmNotFoundError) as failure:
        LocalRepository(repo).find(url("mysql-7"))
    assert str(failure.value) == (
        f"local:bookworm/mysql-7: charm repository {repo} has mysql at revision 1, 2, 3 only: "
        "deploy one of those, or local:bookworm/mysql for the latest"
    )


def test_unknown_charm_names_url_and_repository(repo: Path) -> None:
    with pytest.raises(CharmNotFoundError) as failure:
        LocalRepository(repo).find(url("postgresql"))
    message = str(failure.value)
    assert message.startswith(f"local:bookworm/postgresql: not in charm repository {repo}: ")
    assert "'name: postgresql'" in message and "\n" not in message


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [("missing", "does not exist"), ("file", "is not a directory"), ("no-series", "has no bookworm/ directory")],
)
def test_missing_repository_or_series(tmp_path: Path, layout: str, fragment: str) -> None:
    root = tmp_path / "repo"
    if layout == "file":
        root.write_text("")
    elif layout == "no-series":
        (root / "trixie").mkdir(parents=True)
    with pytest.raises(CharmNotFoundError, match=fragment) as failure:
        LocalRepository(root).find(url("mysql"))
    assert str(root) in str(failure.value) and str(failure.value).startswith("local:bookworm/mysql: ")


def test_broken_neighbours_are_skipped_and_logged(repo: Path) -> None:
    """A broken charm that is not the one asked for does not stop the lookup, but it is logged."""
    (repo / "bookworm" / "wordpress" / "metadata.yaml").write_text("name: [broken\n")
    write_charm(repo / "bookworm" / "junk", {"config.yaml": "options: [x]\n"})
    (repo / "bookworm" / "empty-dir").mkdir()
    (repo / "bookworm" / "README").write_text("not a charm")
    (repo / "bookworm" / ".git").mkdir()
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert LocalRepository(repo).find(url("mysql")).revision == 3
    finally:
        globalLogPublisher.removeObserver(events.append)
    skipped = sorted(str(e["path"].name) for e in events if "skipped the broken charm" in e.get("log_format", ""))
    assert skipped == ["junk", "wordpress"]
    assert all(e["log_level"] == LogLevel.warn for e in events if "skipped" in e.get("log_format", ""))


def test_a_broken_charm_in_the_wanted_directory_gives_its_own_error(repo: Path) -> None:
    """mysql/ is the copy being edited: deploying mysql-new/ instead would hide the mistake."""
    (repo / "bookworm" / "mysql" / "config.yaml").write_text("options:\n  port: {type: int, default: x}\n")
    with pytest.raises(CharmError) as failure:
        LocalRepository(repo).find(url("mysql"))
    assert str(failure.value).startswith(f"{repo}/bookworm/mysql/config.yaml: 'options.port.default'")


def test_a_wanted_directory_without_metadata(tmp_path: Path) -> None:
    """No charm anywhere, but a directory named like it: its problem is the one to show."""
    root = tmp_path / "repo"
    (root / "bookworm" / "mysql").mkdir(parents=True)
    with pytest.raises(CharmNotFoundError, match=f"^{root}/bookworm/mysql: not a charm: it has no metadata.yaml$"):
        LocalRepository(root).find(url("mysql"))
    charm(root, "mysql-real", "mysql", 4)  # a real one elsewhere wins over an empty directory
    assert LocalRepository(root).find(url("mysql")).revision == 4


def test_two_copies_of_one_revision_are_ambiguous(repo: Path) -> None:
    charm(repo, "mysql-copy", "mysql", 3)
    with pytest.raises(CharmError, match="has mysql revision 3 twice") as failure:
        LocalRepository(repo).find(url("mysql"))
    assert "mysql-copy" in str(failure.value) and "mysql-new" in str(failure.value)


@pytest.mark.parametrize(
    ("option", "environ", "expected"),
    [
        ("/opt/charms", {"ENSEMBLE_REPOSITORY": "/e", "JUJU_REPOSITORY": "/j"}, "/opt/charms"),
        (None, {"ENSEMBLE_REPOSITORY": "/e", "JUJU_REPOSITORY": "/j"}, "/e"),
        (None, {"JUJU_REPOSITORY": "/j"}, "/j"),
        (None, {"ENSEMBLE_REPOSITORY": "", "JUJU_REPOSITORY": "/j"}, "/j"),  # empty = unset
        (None, {}, None),
        ("", {}, None),
    ],
)
def test_resolve_repository(option, environ, expected) -> None:
    result = resolve_repository(option, environ)
    assert result == (Path(expected) if expected else None)


def test_resolve_repository_expands_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert resolve_repository("~/charms", {}) == Path("/home/someone/charms")
