"""The system image's recipe hash, the host mirror, the cache (lock, atomic rename, cleanup) and the preparation.

The builds here are fakes standing in for debootstrap; the real image is inspected and booted in
tests/integration/test_system_image.py.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ensemble_orchestra.lab import system_image
from ensemble_orchestra.lab.debian_mirror import (
    MirrorError,
    host_mirror,
    mirror_from_deb822,
    mirror_from_sources_list,
)
from ensemble_orchestra.lab.system_image import RECIPE, Recipe, SystemImageError, ensure_image, image_dir, recipe_key

# -- recipe hash ---------------------------------------------------------------------------------------------


def test_recipe_key_is_stable_and_ignores_package_order() -> None:
    reordered = dataclasses.replace(RECIPE, packages=tuple(reversed(RECIPE.packages)))
    assert recipe_key(RECIPE) == recipe_key(Recipe()) == recipe_key(reordered)
    assert len(recipe_key(RECIPE)) == 12


@pytest.mark.parametrize(
    "change",
    [
        {"packages": (*RECIPE.packages, "less")},
        {"suite": "trixie"},
        {"files": (*RECIPE.files, ("/etc/motd", "lab\n"))},
        {"files": (("/etc/machine-id", "x"), *RECIPE.files[1:])},
        {"removed": RECIPE.removed[1:]},
        {"masked_units": RECIPE.masked_units[1:]},
        {"enabled_units": ()},
        {"links": ()},
        {"version": RECIPE.version + 1},
    ],
)
def test_any_recipe_change_names_a_new_image(change: dict[str, object], tmp_path: Path) -> None:
    """A changed package list or preparation step builds a new image instead of reusing the old one."""
    changed = dataclasses.replace(RECIPE, **change)  # type: ignore[arg-type]
    assert recipe_key(changed) != recipe_key(RECIPE)
    assert image_dir(tmp_path, changed) != image_dir(tmp_path, RECIPE)
    assert image_dir(tmp_path, changed).name == f"{changed.suite}-{recipe_key(changed)}"


def test_the_recipe_has_what_issue_11_needs() -> None:
    needed = {"systemd", "systemd-sysv", "dbus", "cloud-init", "openssh-server", "python3", "python3-cffi-backend"}
    assert needed | {"iproute2", "ca-certificates", "sudo"} <= set(RECIPE.packages)
    cloud_cfg = dict(RECIPE.files)["/etc/cloud/cloud.cfg.d/99-lab.cfg"]
    for line in ("datasource_list: [NoCloud, None]", "network: {config: disabled}", "locale: false"):
        assert line in cloud_cfg.splitlines()
    assert "manage_etc_hosts: localhost" in cloud_cfg.splitlines()


# -- the host's mirror ---------------------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: cdrom:[Debian 12]/
Suites: bookworm

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://mirror.example/debian/
  http://second.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_prefers_the_suite_over_security_skips_src_cdrom_and_disabled() -> None:
    assert mirror_from_deb822(DEB822, "bookworm") == "http://mirror.example/debian"


def test_deb822_falls_back_to_the_first_deb_stanza_and_survives_odd_lines() -> None:
    assert mirror_from_deb822(DEB822, "trixie") == "http://security.example/debian-security"
    assert mirror_from_deb822("  stray continuation\n\nTypes: deb\nURIs: file:/srv/debian\nSuites: x\n", "y") == (
        "file:/srv/debian"
    )
    assert mirror_from_deb822("Types: deb-src\nURIs: http://x/\nSuites: bookworm\n", "bookworm") is None
    assert mirror_from_deb822("", "bookworm") is None


def test_sources_list_lines_with_options_and_comments() -> None:
    text = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://security.example/debian-security bookworm-security main
deb [ trusted=yes ] https://mirror.example/debian/ bookworm main  # the main one
deb cdrom:[Debian]/ bookworm main
"""
    assert mirror_from_sources_list(text, "bookworm") == "https://mirror.example/debian"
    assert mirror_from_sources_list(text, "sid") == "http://security.example/debian-security"
    assert mirror_from_sources_list("deb\ndeb [broken\n", "bookworm") is None


def test_host_mirror_reads_deb822_then_sources_list(tmp_path: Path) -> None:
    deb822, sources_list = tmp_path / "debian.sources", tmp_path / "sources.list"
    sources_list.write_text("deb http://list.example/debian bookworm main\n")
    assert host_mirror("bookworm", deb822, sources_list) == "http://list.example/debian"  # no debian.sources
    deb822.write_text("Types: deb\nURIs: http://deb822.example/debian\nSuites: bookworm\n")
    assert host_mirror("bookworm", deb822, sources_list) == "http://deb822.example/debian"
    deb822.write_text("Types: deb-src\nURIs: http://deb822.example/debian\nSuites: bookworm\n")
    assert host_mirror("bookworm", deb822, sources_list) == "http://list.example/debian"


def test_no_mirror_is_one_line_naming_both_files(tmp_path: Path) -> None:
    deb822, sources_list = tmp_path / "debian.sources", tmp_path / "sources.list"
    sources_list.write_text("# nothing\n")
    with pytest.raises(MirrorError) as caught:
        host_mirror("bookworm", deb822, sources_list)
    message = str(caught.value)
    assert str(deb822) in message and str(sources_list) in message and "--mirror" in message
    assert "\n" not in message


# -- mounts left by a killed debootstrap ----------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:5 / /cache/images/.b-1/rootfs/proc rw - proc proc rw
91 22 0:6 / /cache/images/.b-1/rootfs/sys rw - sysfs sys rw
92 91 0:7 / /cache/images/.b-1/rootfs/sys/fs/cgroup rw - cgroup2 cgroup rw
93 22 0:8 / /cache/images/.b-10/rootfs/proc rw - proc proc rw
94 22 0:9 / /cache/images/.b-1/with\\040space rw - tmpfs tmpfs rw
"""


def test_mounts_under_finds_nested_mounts_deepest_first_and_unescapes() -> None:
    found = system_image.mounts_under(Path("/cache/images/.b-1"), MOUNTINFO)
    assert found[0] == Path("/cache/images/.b-1/rootfs/sys/fs/cgroup")
    assert set(found) == {
        Path("/cache/images/.b-1/rootfs/proc"),
        Path("/cache/images/.b-1/rootfs/sys"),
        Path("/cache/images/.b-1/rootfs/sys/fs/cgroup"),
        Path("/cache/images/.b-1/with space"),
    }  # not .b-10, a sibling whose name merely starts the same
    assert system_image.mounts_under(Path("/elsewhere"), MOUNTINFO) == []


# -- the cache: built once, atomically, under a lock ----------------------------------------------------------


class FakeBuild:
    """Stands in for debootstrap: a tiny root with a dpkg status; can fail or be slow."""

    def __init__(self, fail: bool = False, seconds: float = 0.0) -> None:
        self.calls = 0
        self.fail = fail
        self.seconds = seconds
        self.saw: list[tuple[str, Path, Path]] = []

    def __call__(self, recipe: Recipe, mirror: str, rootfs: Path, log: Path) -> None:
        self.calls += 1
        self.saw.append((mirror, rootfs, log))
        (rootfs / "var/lib/dpkg").mkdir(parents=True)
        (rootfs / "var/lib/dpkg/status").write_text(
            "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n\n"
            "Package: c\nStatus: install ok installed\n"
        )
        log.write_text("I: Base system installed successfully.\n")
        time.sleep(self.seconds)
        if self.fail:
            (rootfs / "partial").write_text("half a system")
            raise SystemImageError("debootstrap bookworm failed: E: Couldn't download packages")


def test_ensure_image_builds_once_then_returns_the_cache(tmp_path: Path) -> None:
    build = FakeBuild()
    rootfs = ensure_image(tmp_path, mirror="http://m.example/debian", build=build)
    assert rootfs == image_dir(tmp_path) / "rootfs"
    assert (rootfs / "var/lib/dpkg/status").exists()
    # Built beside the final place, under a temporary name, then renamed.
    mirror, built_in, log = build.saw[0]
    assert mirror == "http://m.example/debian"
    assert built_in.parent.parent == rootfs.parent.parent and built_in.parent.name.startswith(".")
    info = system_image.image_info(rootfs)
    assert info["packages"] == 2 and info["mirror"] == "http://m.example/debian"
    assert info["key"] == recipe_key(RECIPE) and isinstance(info["build_seconds"], float)
    assert isinstance(info["size_bytes"], int) and info["size_bytes"] > 0
    assert (rootfs.parent / "build.log").read_text().startswith("I: Base system")
    assert oct(rootfs.parent.stat().st_mode & 0o777) == oct(0o755)

    started = time.monotonic()
    assert ensure_image(tmp_path, build=build) == rootfs
    assert build.calls == 1 and time.monotonic() - started < 0.1
    assert sorted(p.name for p in rootfs.parent.parent.iterdir()) == [
        rootfs.parent.name,
        f"{rootfs.parent.name}.lock",
    ]


def test_two_concurrent_builders_build_once(tmp_path: Path) -> None:
    build = FakeBuild(seconds=0.5)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_image(tmp_path, mirror="http://m/", build=build)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert build.calls == 1
    assert results == [image_dir(tmp_path) / "rootfs"] * 3


def test_a_failed_build_leaves_no_image_and_no_build_tree_but_its_log(tmp_path: Path) -> None:
    with pytest.raises(SystemImageError, match="Couldn't download"):
        ensure_image(tmp_path, mirror="http://m/", build=FakeBuild(fail=True))
    images = image_dir(tmp_path).parent
    assert sorted(p.name for p in images.iterdir()) == [
        f"{image_dir(tmp_path).name}.build.log",
        f"{image_dir(tmp_path).name}.lock",
    ]
    # The next try builds afresh.
    build = FakeBuild()
    assert ensure_image(tmp_path, mirror="http://m/", build=build).is_dir() and build.calls == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_failed_build_unmounts_what_it_left_mounted_before_removing_its_tree(tmp_path: Path) -> None:
    """debootstrap killed mid-way leaves /proc and /sys mounted in its target: never delete through a mount."""
    build_trees: list[Path] = []

    def build(recipe: Recipe, mirror: str, rootfs: Path, log: Path) -> None:
        (rootfs / "proc").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "lab-test", str(rootfs / "proc")], check=True)
        (rootfs / "proc/inside-the-mount").write_text("x")
        build_trees.append(rootfs.parent)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_image(tmp_path, mirror="http://m/", build=build)
    assert system_image.mounts_under(tmp_path) == []
    assert not build_trees[0].exists()


def test_a_crashed_builders_tree_is_removed_before_building(tmp_path: Path) -> None:
    images = image_dir(tmp_path).parent
    stale = images / f".{image_dir(tmp_path).name}.build-dead"
    (stale / "rootfs/etc").mkdir(parents=True)
    other = images / ".trixie-000000000000.build-x"  # another recipe's: not ours to touch
    other.mkdir()
    ensure_image(tmp_path, mirror="http://m/", build=FakeBuild())
    assert not stale.exists() and other.exists()


def test_a_held_lock_times_out_naming_the_holder(tmp_path: Path) -> None:
    lock = image_dir(tmp_path).parent / f"{image_dir(tmp_path).name}.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        build = FakeBuild()
        with pytest.raises(SystemImageError, match=r"pid 4242\).*0 s"):
            ensure_image(tmp_path, mirror="http://m/", build=build, lock_timeout=0.3)
        assert build.calls == 0


def test_building_needs_root_but_a_cached_image_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system_image.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemImageError, match="needs root"):
        ensure_image(tmp_path, mirror="http://m/", build=FakeBuild())
    (image_dir(tmp_path) / "rootfs").mkdir(parents=True)
    assert ensure_image(tmp_path, build=FakeBuild()) == image_dir(tmp_path) / "rootfs"


def test_cli_prints_the_rootfs_or_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(system_image.os, "geteuid", lambda: 1000)
    assert system_image.main(["--cache", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "needs root" in err
    (image_dir(tmp_path) / "rootfs").mkdir(parents=True)
    assert system_image.main(["--cache", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{image_dir(tmp_path) / 'rootfs'}\n"


# -- preparation of a debootstrapped tree ----------------------------------------------------------------------


def _unit(root: Path, name: str, install: str = "") -> None:
    path = root / "lib/systemd/system" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n{install}")


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_prepare_makes_a_tree_system_neutral(tmp_path: Path) -> None:
    """What debootstrap leaves that is the same on every system (ids, keys, host name) goes; units are set."""
    root = tmp_path / "rootfs"
    _unit(root, "systemd-networkd.service", "[Install]\nWantedBy=multi-user.target\n")
    _unit(root, "apt-daily.timer", "[Install]\nWantedBy=timers.target\n")
    for path, text in {
        "etc/hostname": "buildhost\n",
        "etc/machine-id": "ab4f7a286d0f41388c708335e7c47c13\n",
        "etc/resolv.conf": "nameserver 10.255.255.53\n",
        "etc/ssh/ssh_host_ed25519_key": "secret",
        "etc/ssh/ssh_host_ed25519_key.pub": "public",
        "etc/ssh/sshd_config": "# kept\n",
        "var/lib/dbus/machine-id": "ab4f7a286d0f41388c708335e7c47c13\n",
        "var/cache/apt/archives/sudo_1.9_amd64.deb": "deb",
        "var/cache/apt/pkgcache.bin": "cache",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    system_image._prepare(root, RECIPE)
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/hostname").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert list((root / "var/cache/apt").rglob("*.*")) == []
    assert "nameserver" not in (root / "etc/resolv.conf").read_text()
    assert (root / "etc/cloud/cloud.cfg.d/99-lab.cfg").read_text() == system_image.CLOUD_CFG
    units = root / "etc/systemd/system"
    assert (units / "multi-user.target.wants/systemd-networkd.service").resolve().name == "systemd-networkd.service"
    for masked in RECIPE.masked_units:
        assert os.readlink(units / masked) == "/dev/null"


def test_image_json_is_what_the_builder_measured(tmp_path: Path) -> None:
    rootfs = ensure_image(tmp_path, mirror="http://m/", build=FakeBuild())
    recorded = json.loads((rootfs.parent / "image.json").read_text())
    assert recorded["recipe"]["packages"] == list(RECIPE.packages)
    assert recorded["suite"] == "bookworm"
