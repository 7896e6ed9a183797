"""The per-system layer writers: apt proxy, host0's static address, and writing safely into a system's layer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ensemble_orchestra.lab.programs import system_layer
from ensemble_orchestra.lab.programs.system_layer import (
    apt_proxy_config,
    host0_network_config,
    write_apt_proxy,
    write_host0_network,
    write_layer_file,
)


def test_apt_proxy_file_points_apt_at_the_bridge(tmp_path: Path) -> None:
    written = write_apt_proxy(tmp_path, "10.251.0.1", 3142)
    assert written == tmp_path / "etc/apt/apt.conf.d/01lab-proxy"
    assert written.read_text() == 'Acquire::http::Proxy "http://10.251.0.1:3142/";\n'
    assert apt_proxy_config("fd00::1", 3142) == 'Acquire::http::Proxy "http://[fd00::1]:3142/";\n'


@pytest.mark.parametrize(("address", "port"), [("lab-host", 3142), ("10.251.0.1", 0), ("10.251.0.1", 70000)])
def test_apt_proxy_refuses_what_is_not_an_address_and_port(address: str, port: int) -> None:
    with pytest.raises(ValueError):
        apt_proxy_config(address, port)


def test_host0_network_is_static_without_ipv6_autoconfiguration(tmp_path: Path) -> None:
    """LinkLocalAddressing=no and IPv6AcceptRA=no: else systemd-networkd-wait-online holds the boot ~13 s."""
    written = write_host0_network(tmp_path, "10.251.0.5/24")
    assert written == tmp_path / "etc/systemd/network/10-lab-host0.network"
    text = written.read_text()
    assert text.splitlines() == [
        "[Match]",
        "Name=host0",
        "",
        "[Network]",
        "Address=10.251.0.5/24",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
    ]
    # Debian's own 80-container-host0.network (DHCP) sorts after it: the first match wins.
    assert written.name < "80-container-host0.network"


@pytest.mark.parametrize("address", ["10.251.0.5", "10.251.0.5/32", "not-an-address/24"])
def test_host0_address_needs_the_subnet_prefix(address: str) -> None:
    with pytest.raises(ValueError):
        host0_network_config(address)


def test_files_and_new_directories_have_fixed_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        written = write_layer_file(tmp_path, "/var/lib/cloud/seed/nocloud-net/user-data", "#cloud-config\n")
        secret = write_layer_file(tmp_path, "/etc/lab-secret", b"x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    for directory in ("var", "var/lib", "var/lib/cloud", "var/lib/cloud/seed/nocloud-net"):
        found = (tmp_path / directory).stat()
        assert stat.S_IMODE(found.st_mode) == 0o755 and found.st_uid == 0
    assert [p.name for p in written.parent.iterdir()] == ["user-data"]  # no temporary file left


def test_new_directories_copy_the_images_owner_and_mode(tmp_path: Path) -> None:
    """A directory made in the upper layer hides the image's attributes in the merged tree: it must carry them."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc/sudoers.d").mkdir(parents=True)
    (lower / "etc/sudoers.d").chmod(0o750)
    os.chown(lower / "etc/sudoers.d", 0, 4)
    upper.mkdir()
    write_layer_file(upper, "/etc/sudoers.d/lab", "x\n", mode=0o440, lower=lower)
    made = (upper / "etc/sudoers.d").stat()
    assert (stat.S_IMODE(made.st_mode), made.st_gid) == (0o750, 4)
    assert stat.S_IMODE((upper / "etc").stat().st_mode) == stat.S_IMODE((lower / "etc").stat().st_mode)


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    write_host0_network(tmp_path, "10.251.0.5/24")
    write_host0_network(tmp_path, "10.251.0.6/24")
    assert "Address=10.251.0.6/24" in (tmp_path / system_layer.HOST0_NETWORK_FILE.lstrip("/")).read_text()


def test_a_symlinked_directory_in_the_layer_is_never_followed(tmp_path: Path) -> None:
    """A system's previous boot may have left /etc/apt -> /etc (the host's, seen from here): refuse it."""
    upper, host_etc = tmp_path / "upper", tmp_path / "host-etc"
    (upper / "etc").mkdir(parents=True)
    host_etc.mkdir()
    (upper / "etc/apt").symlink_to(host_etc)
    with pytest.raises(ValueError, match=r"/etc/apt in the system's layer is not a directory"):
        write_apt_proxy(upper, "10.251.0.1", 3142)
    assert list(host_etc.iterdir()) == []
    (upper / "var").symlink_to(host_etc)  # the first component too
    with pytest.raises(ValueError, match="/var "):
        write_layer_file(upper, "/var/x", "x")
    assert list(host_etc.iterdir()) == []


def test_a_symlink_in_place_of_the_file_is_replaced_not_followed(tmp_path: Path) -> None:
    upper, host_file = tmp_path / "upper", tmp_path / "host-file"
    (upper / "etc/apt/apt.conf.d").mkdir(parents=True)
    host_file.write_text("host's\n")
    (upper / "etc/apt/apt.conf.d/01lab-proxy").symlink_to(host_file)
    written = write_apt_proxy(upper, "10.251.0.1", 3142)
    assert not written.is_symlink() and "10.251.0.1" in written.read_text()
    assert host_file.read_text() == "host's\n"


def test_a_whiteout_or_file_where_a_directory_belongs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("not a directory")
    with pytest.raises(ValueError, match="/etc in the system's layer"):
        write_apt_proxy(tmp_path, "10.251.0.1", 3142)


@pytest.mark.parametrize("path", ["etc/relative", "/etc/../../escape", "/", ""])
def test_paths_must_be_absolute_files_inside_the_system(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="absolute file path"):
        write_layer_file(tmp_path, path, "x")
