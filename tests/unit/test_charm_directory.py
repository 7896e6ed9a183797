"""CharmDirectory: loading never writes, the revision file, hooks and the warnings about them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble_orchestra.charm import CharmDirectory, CharmError, CharmURL
from ensemble_orchestra.charm.testing import HOOK_OK, write_charm


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_mode) for p in root.rglob("*")}


def test_load(tmp_path: Path) -> None:
    charm = CharmDirectory.load(write_charm(tmp_path / "sample"))
    assert charm.path == tmp_path / "sample"
    assert charm.metadata.name == "sample" and charm.revision == 1
    assert charm.config.defaults()["port"] == 8080
    assert charm.url("bookworm") == CharmURL("local", "bookworm", "sample", 1)
    assert str(charm.url("trixie")) == "local:trixie/sample-1"


def test_missing_revision_is_zero_and_nothing_is_written(tmp_path: Path) -> None:
    """Ensemble wrote a revision file on load; reading a charm here never changes it."""
    root = write_charm(tmp_path / "sample", {"revision": None})
    before = snapshot(root)
    assert CharmDirectory.load(root).revision == 0
    assert not (root / "revision").exists()
    assert snapshot(root) == before


def test_missing_config_is_no_options(tmp_path: Path) -> None:
    charm = CharmDirectory.load(write_charm(tmp_path / "sample", {"config.yaml": None}))
    assert charm.config.options == {}


def test_obsolete_metadata_revision_counts_only_without_a_revision_file(tmp_path: Path) -> None:
    metadata = "name: old\nsummary: s\ndescription: d\nrevision: 5\n"
    without = CharmDirectory.load(write_charm(tmp_path / "a", {"metadata.yaml": metadata, "revision": None}))
    assert without.revision == 5
    assert any("'revision' is obsolete" in line for line in without.warnings())
    with_file = CharmDirectory.load(write_charm(tmp_path / "b", {"metadata.yaml": metadata, "revision": "9\n"}))
    assert with_file.revision == 9


def test_revision_file_with_spaces_and_newline(tmp_path: Path) -> None:
    assert CharmDirectory.load(write_charm(tmp_path / "s", {"revision": "  12 \n\n"})).revision == 12


def test_set_revision_writes_the_file(tmp_path: Path) -> None:
    """deploy -u: the new revision is on disk (a reload sees it) and in the returned charm."""
    charm = CharmDirectory.load(write_charm(tmp_path / "sample", {"revision": None}))
    bumped = charm.set_revision(charm.revision + 1)
    assert bumped.revision == 1 and charm.revision == 0
    assert (charm.path / "revision").read_text() == "1\n"
    assert CharmDirectory.load(charm.path).revision == 1
    assert sorted(p.name for p in charm.path.iterdir()) == ["config.yaml", "hooks", "metadata.yaml", "revision"]


def test_set_revision_refuses_nonsense(tmp_path: Path) -> None:
    charm = CharmDirectory.load(write_charm(tmp_path / "sample"))
    with pytest.raises(CharmError, match="revision -1 is not a whole number"):
        charm.set_revision(-1)
    assert (charm.path / "revision").read_text() == "1\n"


def test_set_revision_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    """A revision that cannot be replaced (here a directory in its place) is a CharmError; no temporary file stays."""
    charm = CharmDirectory.load(write_charm(tmp_path / "sample"))
    (charm.path / "revision").unlink()
    (charm.path / "revision").mkdir()
    with pytest.raises(CharmError, match=r"/sample/revision: cannot be written \(Is a directory\)"):
        charm.set_revision(2)
    assert sorted(p.name for p in charm.path.iterdir()) == ["config.yaml", "hooks", "metadata.yaml", "revision"]


def test_hook_names_and_known_hooks(tmp_path: Path) -> None:
    root = write_charm(
        tmp_path / "sample",
        hooks={"start": HOOK_OK, "db-relation-joined": HOOK_OK, ".swp": "x"},
    )
    (root / "hooks" / "lib").mkdir()
    charm = CharmDirectory.load(root)
    assert charm.hook_names() == ["db-relation-joined", "install", "start"]
    known = charm.known_hook_names()
    assert {"install", "config-changed", "start", "upgrade-charm", "stop"} <= known
    assert {"db-relation-joined", "website-relation-broken", "ring-relation-departed"} <= known
    assert "mysql-relation-joined" not in known
    assert charm.hook_path("start") == root / "hooks" / "start"
    assert charm.warnings() == []


def test_warnings_are_one_line_each_and_not_errors(tmp_path: Path) -> None:
    """A non-executable hook loads (the unit agent reports it when it runs it); warnings() names it."""
    root = write_charm(tmp_path / "sample", hooks={"config_changed": HOOK_OK, "start": HOOK_OK})
    (root / "hooks" / "start").chmod(0o644)
    (root / "hooks" / "stop").symlink_to("missing-file")
    charm = CharmDirectory.load(root)
    warnings = charm.warnings()
    assert warnings == [
        f"{root}/hooks/config_changed: not a hook name of this charm, so it never runs as a hook (fine for a "
        "helper): hooks are install, config-changed, start, upgrade-charm, stop and "
        "<relation>-relation-joined|changed|departed|broken",
        f"{root}/hooks/start: not executable, so the unit agent will fail to run it: chmod +x it",
        f"{root}/hooks/stop: not a file, so the unit agent cannot run it: make it an executable file",
    ]


def test_no_hooks_directory_is_a_warning(tmp_path: Path) -> None:
    root = write_charm(tmp_path / "sample", hooks={"install": None})
    expected = f"{root}/hooks: missing: the charm has no hooks, so deploying it does nothing"
    assert CharmDirectory.load(root).warnings() == [expected]


def test_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_charm(tmp_path / "sample")
    monkeypatch.chdir(tmp_path)
    assert CharmDirectory.load("sample").path == tmp_path / "sample"
