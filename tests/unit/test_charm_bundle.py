"""Bundles: same content -> same bytes wherever it is built; unpacking checks the sha256 and never leaves the target."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from ensemble_orchestra.charm import (
    Bundle,
    CharmDirectory,
    CharmError,
    CharmURL,
    CharmURLError,
    bundle_name,
    make_bundle,
    unpack_bundle,
)
from ensemble_orchestra.charm.testing import HOOK_OK, write_charm


def load(path: Path) -> CharmDirectory:
    return CharmDirectory.load(path)


@pytest.fixture
def charm(tmp_path: Path) -> Path:
    root = write_charm(
        tmp_path / "sample", {"files/data.txt": "payload\n", "files/empty/.keep": ""}, hooks={"start": HOOK_OK}
    )
    (root / "files" / "link-to-data").symlink_to("data.txt")
    (root / "hooks" / "stop").symlink_to("start")
    return root


def names(bundle: Bundle) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(bundle.data)).namelist()


def test_same_directory_twice_same_bytes(charm: Path) -> None:
    first, second = make_bundle(load(charm)), make_bundle(load(charm))
    assert first.data == second.data and first.sha256 == second.sha256
    assert first.sha256 == hashlib.sha256(first.data).hexdigest()


def test_a_copy_with_other_mtimes_and_modes_has_the_same_sha256(charm: Path, tmp_path: Path) -> None:
    """Timestamps, umask-dependent modes and directory listing order do not reach the bundle."""
    copy = tmp_path / "elsewhere" / "sample-copy"
    shutil.copytree(charm, copy, symlinks=True)
    for path in copy.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_000_000_000, 1_234_567_890))
    (copy / "hooks" / "install").chmod(0o700)  # still executable: 0755 in the bundle
    (copy / "metadata.yaml").chmod(0o600)  # still not executable: 0644
    assert make_bundle(load(copy)).sha256 == make_bundle(load(charm)).sha256


@pytest.mark.parametrize(
    "change",
    ["content", "revision", "exec-bit", "new-file"],
)
def test_any_real_change_changes_the_sha256(charm: Path, change: str) -> None:
    before = make_bundle(load(charm)).sha256
    if change == "content":
        (charm / "files" / "data.txt").write_text("payload!\n")
    elif change == "revision":
        load(charm).set_revision(2)
    elif change == "exec-bit":
        (charm / "files" / "data.txt").chmod(0o755)
    else:
        (charm / "files" / "more").write_text("")
    assert make_bundle(load(charm)).sha256 != before


def test_entries_are_sorted_with_fixed_times_and_modes(charm: Path) -> None:
    archive = zipfile.ZipFile(io.BytesIO(make_bundle(load(charm)).data))
    infos = archive.infolist()
    assert [i.filename for i in infos] == [
        "config.yaml",
        "files/",
        "files/data.txt",
        "files/empty/",
        "files/link-to-data",
        "hooks/",
        "hooks/install",
        "hooks/start",
        "hooks/stop",
        "metadata.yaml",
        "revision",
    ]
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes["files/"] == stat.S_IFDIR | 0o755
    assert modes["hooks/install"] == stat.S_IFREG | 0o755
    assert modes["metadata.yaml"] == stat.S_IFREG | 0o644
    assert modes["hooks/stop"] == stat.S_IFLNK | 0o777
    assert archive.read("hooks/stop") == b"start"
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}


def test_dotfiles_and_top_level_build_are_left_out(charm: Path) -> None:
    (charm / ".git" / "objects").mkdir(parents=True)
    (charm / ".git" / "config").write_text("[core]\n")
    (charm / ".bzrignore").write_text("")
    (charm / "hooks" / ".install.swp").write_text("")
    (charm / "build" / "out").mkdir(parents=True)
    (charm / "build" / "out" / "x").write_text("")
    (charm / "files" / "build").mkdir()  # only the top-level build/ is left out
    (charm / "files" / "build" / "kept").write_text("")
    listed = names(make_bundle(load(charm)))
    assert not [n for n in listed if n.startswith((".", "build")) or "/." in n]
    assert "files/build/kept" in listed
    assert "files/empty/" in listed and "files/empty/.keep" not in listed


@pytest.mark.parametrize(
    ("name", "target", "fragment"),
    [
        ("abs", "/etc/passwd", "symlink to the absolute path /etc/passwd"),
        ("up", "../../outside", "leads outside the charm"),
        ("root-up", "..", "leads outside the charm"),
        ("hidden", ".git/config", "which is not bundled"),
        ("via-self", "self/../x", "leads outside the charm"),  # 'self' -> '.', so self/.. is the parent
    ],
)
def test_symlinks_must_stay_inside(charm: Path, name: str, target: str, fragment: str) -> None:
    (charm / ".git").mkdir()
    (charm / ".git" / "config").write_text("")
    (charm / "self").symlink_to(".")
    (charm / name).symlink_to(target)
    with pytest.raises(CharmError) as failure:
        make_bundle(load(charm))
    assert str(failure.value).startswith(f"{charm / name}: ") and fragment in str(failure.value)


def test_a_symlink_to_a_directory_inside_is_kept_as_a_symlink(charm: Path) -> None:
    (charm / "lib").symlink_to("files")
    archive = zipfile.ZipFile(io.BytesIO(make_bundle(load(charm)).data))
    assert archive.getinfo("lib").external_attr >> 16 == stat.S_IFLNK | 0o777
    assert not [n for n in archive.namelist() if n.startswith("lib/")]


def test_a_fifo_is_refused(charm: Path) -> None:
    os.mkfifo(charm / "files" / "pipe")
    with pytest.raises(CharmError, match="pipe: not a file, directory or symlink"):
        make_bundle(load(charm))


def test_unpack_round_trip_keeps_exec_bits_and_symlinks(charm: Path, tmp_path: Path) -> None:
    bundle = make_bundle(load(charm))
    target = tmp_path / "units" / "sample-0" / "charm"
    unpack_bundle(bundle.data, target, bundle.sha256)
    unpacked = load(target)
    assert unpacked.metadata == load(charm).metadata and unpacked.revision == 1
    assert stat.S_IMODE((target / "hooks" / "install").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "metadata.yaml").stat().st_mode) == 0o644
    assert os.readlink(target / "hooks" / "stop") == "start"
    assert (target / "files" / "link-to-data").read_text() == "payload\n"
    assert (target / "files" / "empty").is_dir()
    assert make_bundle(unpacked).sha256 == bundle.sha256  # what the machine has is what was published


def test_unpack_into_an_existing_empty_directory(charm: Path, tmp_path: Path) -> None:
    bundle = make_bundle(load(charm))
    target = tmp_path / "empty"
    target.mkdir()
    unpack_bundle(bundle.data, target, bundle.sha256)
    assert (target / "hooks" / "install").is_file()


def test_unpack_checks_the_sha256_first(charm: Path, tmp_path: Path) -> None:
    bundle = make_bundle(load(charm))
    target = tmp_path / "target"
    damaged = bundle.data[:-1] + bytes([bundle.data[-1] ^ 1])
    with pytest.raises(CharmError) as failure:
        unpack_bundle(damaged, target, bundle.sha256, "local:bookworm/sample-1")
    assert str(failure.value).startswith("local:bookworm/sample-1: sha256 ")
    assert f"is not the expected {bundle.sha256}" in str(failure.value)
    assert not target.exists()


def test_unpack_refuses_a_target_with_content(charm: Path, tmp_path: Path) -> None:
    bundle = make_bundle(load(charm))
    target = tmp_path / "target"
    target.mkdir()
    (target / "old").write_text("keep me")
    with pytest.raises(CharmError, match="exists and is not an empty directory"):
        unpack_bundle(bundle.data, target, bundle.sha256)
    assert (target / "old").read_text() == "keep me"


def crafted(entries: list[tuple[str, int, bytes]]) -> Bundle:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we mean to write
        for name, mode, content in entries:
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return Bundle.of(buffer.getvalue())


FILE = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([("ok", FILE, b""), ("../x", FILE, b"evil")], "'../x' has an empty, '.', '..'"),
        ([("a/../../x", FILE, b"evil")], "'..'"),
        ([("/tmp/x", FILE, b"evil")], "'/tmp/x' has an absolute path"),
        ([("C:/x", FILE, b"evil")], "absolute path"),
        ([("a//b", FILE, b"")], "empty"),
        ([("link", LINK, b"/etc/passwd")], "symlink 'link' points to an absolute path"),
        ([("link", LINK, b"../../x")], "symlink 'link' leads outside"),
        ([("self", LINK, b"."), ("link", LINK, b"self/../x")], "symlink 'link' leads outside"),
        ([("d", LINK, b"sub"), ("d/x", FILE, b"")], "symlink 'd' clashes"),
        ([("x", FILE, b"1"), ("x", FILE, b"2")], "entry 'x' appears twice"),
    ],
)
def test_unpack_refuses_crafted_bundles_and_leaves_nothing(tmp_path: Path, entries, fragment) -> None:
    bundle = crafted(entries)
    target = tmp_path / "deep" / "target"
    with pytest.raises(CharmError) as failure:
        unpack_bundle(bundle.data, target, bundle.sha256)
    assert fragment in str(failure.value) and "\n" not in str(failure.value)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep"]  # nothing written beside it either


def test_unpack_cleans_a_given_empty_directory_on_failure(tmp_path: Path) -> None:
    bundle = crafted([("a", FILE, b""), ("link", LINK, b"../../x")])
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(CharmError):
        unpack_bundle(bundle.data, target, bundle.sha256)
    assert target.is_dir() and list(target.iterdir()) == []


def test_unpack_of_a_non_zip(tmp_path: Path) -> None:
    bundle = Bundle.of(b"not a zip at all")
    with pytest.raises(CharmError, match="not a zip file"):
        unpack_bundle(bundle.data, tmp_path / "t", bundle.sha256)
    assert not (tmp_path / "t").exists()


def test_setuid_bits_are_not_restored(tmp_path: Path) -> None:
    bundle = crafted([("tool", stat.S_IFREG | 0o4777, b"#!/bin/sh\n")])
    unpack_bundle(bundle.data, tmp_path / "t", bundle.sha256)
    assert stat.S_IMODE((tmp_path / "t" / "tool").stat().st_mode) == 0o755


def test_bundle_name() -> None:
    sha = "ab" * 32
    assert bundle_name(CharmURL("local", "bookworm", "mysql", 3), sha) == (
        f"ensemble-charms/local_bookworm_mysql-3-{sha}.zip"
    )
    with pytest.raises(CharmURLError, match="with a revision"):
        bundle_name(CharmURL("local", "bookworm", "mysql"), sha)
    with pytest.raises(CharmError, match="is not a sha256"):
        bundle_name(CharmURL("local", "bookworm", "mysql", 3), "AB" * 32)


def test_repr_does_not_dump_the_bytes() -> None:
    bundle = Bundle.of(b"x" * 10_000)
    assert repr(bundle) == f"Bundle(10000 bytes, sha256={bundle.sha256})"
