"""The package proxy's pure parts: reading apt-cacher.log, the host's mirrors, the config, and what it refuses.

The daemon itself, apt through it and its cache slots are proven in tests/integration/test_package_proxy.py.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
from pathlib import Path

import pytest

from ensemble_orchestra.lab.package_proxy import (
    ACNG_BIN,
    MAX_PORT,
    Delivery,
    Mirrors,
    PackageProxy,
    PackageProxyError,
    deliveries,
    host_mirrors,
)
from ensemble_orchestra.lab.processes import ProcessStartError
from ensemble_orchestra.lab.programs import package_proxy_exec
from ensemble_orchestra.lab.programs.package_proxy_exec import slot_lock, take_slot

MIRRORS = Mirrors("http://mirror.example/debian/", "http://mirror.example/debian-security/")

DEB = "debrep/pool/main/h/hello/hello_2.10-3_amd64.deb"


# -- apt-cacher.log ------------------------------------------------------------------------------------------


def test_a_delivery_after_a_download_came_from_the_mirror_one_without_from_the_cache() -> None:
    log = [
        f"1796012559|I|53344|10.0.0.2|{DEB}\n",
        f"1796012559|O|53313|10.0.0.2|{DEB}\n",
        f"1796012560|O|53313|10.0.0.3|{DEB}\n",
    ]
    assert deliveries(log) == [
        Delivery(DEB, "10.0.0.2", 53313, "mirror"),
        Delivery(DEB, "10.0.0.3", 53313, "cache"),
    ]


def test_index_files_revalidated_each_time_count_as_mirror_deliveries() -> None:
    release = "debrep/dists/bookworm/Release"
    log = [f"1|I|149506|127.0.0.1|{release}", f"1|O|149482|127.0.0.1|{release}"] * 2
    assert [d.source for d in deliveries(log)] == ["mirror", "mirror"]


def test_downloads_are_matched_per_path() -> None:
    other = "debrep/pool/main/c/cowsay/cowsay_3.03+dfsg2-8_all.deb"
    log = [f"1|I|10|c|{other}", f"1|O|10|c|{DEB}", f"1|O|10|c|{other}"]
    assert [(d.path, d.source) for d in deliveries(log)] == [(DEB, "cache"), (other, "mirror")]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "1|X|10|c|path",  # neither I nor O
        "1|O|many|c|path",  # size not a number
        "1|O|10|path",  # VerboseLog 0: no client
    ],
)
def test_lines_that_are_not_transfers_are_skipped(line: str) -> None:
    assert deliveries([line, f"1|O|5|c|{DEB}"]) == [Delivery(DEB, "c", 5, "cache")]


# -- the host's mirrors ------------------------------------------------------------------------------------

DEBIAN_SOURCES = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_host_mirrors_are_the_debian_and_security_uris_with_a_trailing_slash(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(DEBIAN_SOURCES)
    assert host_mirrors(deb822=sources, sources_list=tmp_path / "none") == Mirrors(
        "http://mirror.example/debian/", "http://security.example/debian-security/"
    )


def test_a_host_without_a_security_source_has_no_security_mirror(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(DEBIAN_SOURCES.split("\n\n")[0] + "\n")
    assert host_mirrors(deb822=sources, sources_list=tmp_path / "none") == Mirrors("http://mirror.example/debian/")


def test_one_line_sources_list_works_too(tmp_path: Path) -> None:
    sources_list = tmp_path / "sources.list"
    sources_list.write_text(
        "deb http://mirror.example/debian bookworm main\ndeb http://security.example/ bookworm-security main\n"
    )
    assert host_mirrors(deb822=tmp_path / "none", sources_list=sources_list) == Mirrors(
        "http://mirror.example/debian/", "http://security.example/"
    )


def test_a_file_mirror_cannot_be_forwarded_to(tmp_path: Path) -> None:
    sources_list = tmp_path / "sources.list"
    sources_list.write_text("deb file:/srv/mirror/debian bookworm main\n")
    with pytest.raises(PackageProxyError, match="file:/srv/mirror/debian/ .* not http"):
        host_mirrors(deb822=tmp_path / "none", sources_list=sources_list)


# -- config and refusals -----------------------------------------------------------------------------------


def free_low_port() -> int:
    """A port below 32768 that nothing listens on (the kernel's own picks are above apt-cacher-ng's range).

    Tried in a random order: the suite's other worker looks for one at the same time, and two that took the
    first free one had the same port (seen in CI: "port 23000 is in use")."""
    for port in random.sample(range(23000, 24000), 1000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 23000-23999")


def make_proxy(tmp_path: Path, addresses: tuple[str, ...] = ("127.0.0.1",), port: int | None = None) -> PackageProxy:
    return PackageProxy(
        tmp_path / "package-proxy",
        tmp_path / "logs",
        addresses,
        free_low_port() if port is None else port,
        tmp_path / "cache",
    )


def conf_lines(proxy: PackageProxy) -> dict[str, str]:
    text = (proxy.config_dir / "acng.conf").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_config_binds_only_the_given_addresses_and_forwards_to_the_host_mirrors(tmp_path: Path) -> None:
    proxy = make_proxy(tmp_path)
    argv = proxy.write_config(MIRRORS)
    conf = conf_lines(proxy)
    assert conf["BindAddress"].split() == ["127.0.0.1"]
    assert conf["Port"].strip() == str(proxy.port)
    assert conf["LogDir"].strip() == str(proxy.log_dir.resolve())
    assert conf["ForeGround"].strip() == "1"
    assert conf["SocketPath"].strip() == "" and conf["PidFile"].strip() == ""
    assert "CacheDir" not in conf  # the launcher passes the slot it takes
    assert "Offlinemode" not in conf
    assert conf["Remap-debrep"].split(";")[1].split() == ["file:backends_debian"]
    assert MIRRORS.debian in conf["Remap-debrep"].split(";")[0].split()
    assert (proxy.config_dir / "backends_debian").read_text() == MIRRORS.debian + "\n"
    assert (proxy.config_dir / "backends_debian_security").read_text() == f"{MIRRORS.security}\n"
    assert argv[-3:] == [str(ACNG_BIN), "-c", str(proxy.config_dir.resolve())]
    assert argv[1:3] == ["-m", package_proxy_exec.__name__]
    assert argv[argv.index("--cache-root") + 1] == str((tmp_path / "cache").resolve())
    assert ("--user" in argv) == (os.geteuid() == 0)


def test_offline_forbids_the_mirror(tmp_path: Path) -> None:
    proxy = make_proxy(tmp_path)
    proxy.write_config(MIRRORS, offline=True)
    assert conf_lines(proxy)["Offlinemode"].strip() == "1"


def test_without_a_security_mirror_the_stock_security_backends_stay(tmp_path: Path) -> None:
    proxy = make_proxy(tmp_path)
    proxy.write_config(Mirrors(MIRRORS.debian))
    assert not (proxy.config_dir / "backends_debian_security").exists()
    assert "deb.debian.org/debian-security" in conf_lines(proxy)["Remap-secdeb"].split(";")[1].split()


@pytest.mark.parametrize("port", [MAX_PORT + 1, 39142, 65535, 0])
def test_ports_apt_cacher_ng_cannot_listen_on_are_refused(tmp_path: Path, port: int) -> None:
    """apt-cacher-ng 3.7 formats its port as a signed 16-bit number: above 32767 it runs and never listens."""
    proxy = make_proxy(tmp_path, port=port)
    with pytest.raises(PackageProxyError, match=f"port {port}: apt-cacher-ng 3.7 takes ports 1-32767"):
        proxy.write_config(MIRRORS)
    with pytest.raises(PackageProxyError, match=f"port {port}: apt-cacher-ng 3.7 takes ports 1-32767"):
        proxy.check_can_listen()
    assert not (tmp_path / "package-proxy").exists()


@pytest.mark.parametrize(
    ("addresses", "wanted"),
    [
        (("0.0.0.0",), "may not listen on 0.0.0.0 .every interface."),
        (("127.0.0.1", "::"), "may not listen on :: .every interface."),
        (("localhost",), "'localhost' is not an IP address"),
        ((), "needs at least one address"),
    ],
)
def test_addresses_that_are_no_ip_literal_or_a_wildcard_are_refused(
    tmp_path: Path, addresses: tuple[str, ...], wanted: str
) -> None:
    proxy = make_proxy(tmp_path, addresses)
    with pytest.raises(PackageProxyError, match=wanted):
        proxy.write_config(MIRRORS)
    with pytest.raises(PackageProxyError, match=wanted):
        proxy.check_can_listen()


def test_an_address_this_host_does_not_have_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """A daemon told to listen there too would serve on the other addresses and never become ready."""
    proxy = make_proxy(tmp_path, ("127.0.0.1", "198.51.100.7"))
    proxy.write_config(MIRRORS)  # the config may be written (the lab writes every server's first)
    with pytest.raises(PackageProxyError, match="198.51.100.7 port .*no address of this host .is the lab bridge up"):
        proxy.check_can_listen()


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    proxy = make_proxy(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", proxy.port))
        busy.listen()
        proxy.write_config(MIRRORS)  # rewriting the config of a running daemon is harmless
        with pytest.raises(PackageProxyError, match=f"127.0.0.1 port {proxy.port}: the port is in use"):
            proxy.check_can_listen()


def test_its_errors_are_the_lab_servers_start_error() -> None:
    assert issubclass(PackageProxyError, ProcessStartError)


def test_the_proxy_url_brackets_ipv6() -> None:
    proxy = PackageProxy(Path("d"), Path("l"), ("::1", "127.0.0.1"), 3142, Path("c"))
    assert proxy.url() == "http://[::1]:3142/"
    assert proxy.url("127.0.0.1") == "http://127.0.0.1:3142/"


# -- cache slots -------------------------------------------------------------------------------------------


def test_a_slot_is_taken_by_one_holder_at_a_time_and_free_once_it_closes(tmp_path: Path) -> None:
    first = take_slot(tmp_path, slots=2)
    second = take_slot(tmp_path, slots=2)
    assert first is not None and second is not None
    assert (first[0], second[0]) == (0, 1)
    assert take_slot(tmp_path, slots=2) is None
    os.close(first[1])
    again = take_slot(tmp_path, slots=2)
    assert again is not None and again[0] == 0
    for fd in (second[1], again[1]):
        os.close(fd)


def test_a_slot_held_by_another_process_is_skipped(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    fd = os.open(slot_lock(tmp_path, 0), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:  # the child sees the parent's lock as someone else's
        taken = take_slot(tmp_path, slots=2)
        os._exit(0 if taken is not None and taken[0] == 1 else 1)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_launcher_says_in_one_line_when_every_slot_is_busy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = take_slot(tmp_path, slots=1)
    assert held is not None
    try:
        code = package_proxy_exec.main(
            ["--cache-root", str(tmp_path), "--record", str(tmp_path / "rec"), "--slots", "1", "--", "/bin/true"]
        )
    finally:
        os.close(held[1])
    assert code == package_proxy_exec.EXIT_ALL_SLOTS_BUSY
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "all 1 package caches" in err and str(tmp_path) in err
    assert not (tmp_path / "rec").exists()
