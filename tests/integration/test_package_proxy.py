"""The lab's package proxy: a real apt-cacher-ng, real apt, the host's real Debian mirror through it.

Each test runs its own daemon on 127.0.0.1 and a free port below 32768, with a cache root of its own (not the
machine's shared one), and stops it by its pid. apt runs from a throwaway configuration (APT_CONFIG): its
sources, lists, archives and status live in a temporary directory, so nothing on the host changes.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ensemble_orchestra.lab import processes
from ensemble_orchestra.lab.package_proxy import (
    ACNG_BIN,
    DAEMON_USER,
    MAX_PORT,
    PackageProxy,
    PackageProxyError,
    host_mirrors,
)
from ensemble_orchestra.lab.ports import port_free, tcp_listening
from ensemble_orchestra.lab.programs.package_proxy_exec import SLOTS, slot_lock

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not ACNG_BIN.exists(), reason="Debian's apt-cacher-ng is not installed (scripts/install)"),
]

APT_TIMEOUT = 120.0  # apt-get update fetches ~9 MB of indexes through the proxy (~1 s here)
STOP_TIMEOUT = 5.0
LOG_TIMEOUT = 5.0  # a delivery is logged within milliseconds of apt having it
PACKAGE = "hello"  # 53 KB, in every Debian release


def free_port() -> int:
    """A free TCP port on 127.0.0.1 that apt-cacher-ng can use: below 32768, unlike the kernel's ephemeral ones."""
    for _ in range(200):
        port = random.randrange(20000, MAX_PORT)
        if port_free(port):
            return port
    raise AssertionError("no free port below 32768 after 200 tries")


def connects(address: str, port: int) -> bool:
    """Whether a TCP connect to address:port succeeds (any 127.0.0.0/8 address reaches a wildcard listener)."""
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class RunningProxy:
    proxy: PackageProxy
    pid_file: Path
    output_log: Path
    pids: list[int] = field(default_factory=list)

    def start(self, *, offline: bool = False) -> int:
        pid = self.proxy.start(self.pid_file, self.output_log, offline=offline)
        self.pids.append(pid)
        return pid

    def reap(self) -> None:
        """Collect our stopped (or killed) daemons: no zombie outlives the test."""
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped already

    def stop(self) -> bool:
        return self.proxy.stop(self.pid_file)

    def pid(self) -> int | None:
        return processes.running_pid(self.pid_file)


def make_proxy(base: Path, name: str, cache_root: Path) -> RunningProxy:
    lab = base / name
    proxy = PackageProxy(lab / "package-proxy", lab / "logs" / "package-proxy", ("127.0.0.1",), free_port(), cache_root)
    return RunningProxy(proxy, lab / "run" / "package-proxy.pid", lab / "logs" / "package-proxy.log")


@pytest.fixture
def base(lab_parent: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory the daemon's user (apt-cacher-ng, when the tests run as root) can traverse."""
    path = lab_parent / f"package-proxy-{request.node.name}-{os.getpid()}"
    path.mkdir()
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def started(base: Path) -> Iterator[list[RunningProxy]]:
    """Every proxy a test makes is stopped afterwards, by its pid file."""
    made: list[RunningProxy] = []
    yield made
    for running in made:
        running.stop()
        running.reap()


class Apt:
    """apt-get with a configuration of its own: nothing read from or written to the host's apt state."""

    def __init__(self, root: Path, proxy_url: str) -> None:
        self.root = root
        self.downloads = root / "downloads"
        for sub in ("etc/parts", "etc/preferences.d", "lists/partial", "cache/archives/partial", "downloads"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "status").write_text("")
        mirror = host_mirrors().debian
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        (root / "etc/sources.list").write_text(f"deb [signed-by={keyring}] {mirror} bookworm main\n")
        options = {
            "Dir::Etc::Main": "/dev/null",
            "Dir::Etc::Parts": root / "etc/parts",
            "Dir::Etc::SourceList": root / "etc/sources.list",
            "Dir::Etc::SourceParts": root / "etc/parts",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": root / "etc/preferences.d",
            "Dir::State::Lists": root / "lists",
            "Dir::State::Status": root / "status",
            "Dir::Cache": root / "cache",
            "Acquire::http::Proxy": proxy_url,
            "Acquire::Languages": "none",
            "Acquire::Retries": "0",
            "Debug::NoLocking": "true",
        }
        if os.geteuid() == 0:
            options["APT::Sandbox::User"] = "root"  # _apt could not write into the test's directories
        config = root / "apt.conf"
        config.write_text("".join(f'{key} "{value}";\n' for key, value in options.items()))
        self.env = {**os.environ, "APT_CONFIG": str(config), "LC_ALL": "C"}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "-q", *args],
            cwd=self.downloads,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
            check=False,
        )

    def download(self, package: str) -> Path:
        """Download *package*'s .deb into an empty downloads dir and return it."""
        for old in self.downloads.iterdir():
            old.unlink()
        done = self.run("download", package)
        assert done.returncode == 0, done.stdout + done.stderr
        (deb,) = self.downloads.glob(f"{package}_*.deb")
        return deb


def sources_of(proxy: PackageProxy, deb: Path, count: int) -> list[str]:
    """Where each delivery of *deb* came from, per the proxy's apt-cacher.log, in order, once *count* are logged.

    apt-cacher-ng writes a delivery's line when it has finished sending, which can be just after apt has
    the file: wait for it (bounded) rather than read too early.
    """

    def logged() -> list[str]:
        return [d.source for d in proxy.deliveries() if d.path.endswith("/" + deb.name)]

    processes.wait_until(lambda: len(logged()) >= count, timeout=LOG_TIMEOUT)
    return logged()


def test_apt_fetches_through_the_proxy_then_from_its_cache_even_offline_after_a_restart(
    base: Path, started: list[RunningProxy]
) -> None:
    """The whole life of the lab's cache: a cold fetch goes to the mirror, the next is a hit, and after the
    daemon is stopped (gone: no process, no listener) a new one on the same cache serves the package with the
    mirror forbidden (Offlinemode), while a package it never fetched then fails."""
    running = make_proxy(base, "lab", base / "cache")
    started.append(running)
    began = time.monotonic()
    pid = running.start()
    start_s = time.monotonic() - began
    assert start_s < 5.0, f"the proxy took {start_s:.1f} s to answer"
    assert tcp_listening(running.proxy.port)
    assert not connects("127.0.0.2", running.proxy.port), "it listens beyond the address it was given"

    apt = Apt(base / "apt", running.proxy.url())
    update = apt.run("update")
    assert update.returncode == 0, update.stdout + update.stderr
    deb = apt.download(PACKAGE)
    assert sources_of(running.proxy, deb, 1) == ["mirror"]
    assert {d.client for d in running.proxy.deliveries()} == {"127.0.0.1"}
    cached = running.proxy.cache_dir()
    assert cached is not None and cached.parent == (base / "cache").resolve()
    assert list(cached.rglob(deb.name)), f"{deb.name} is not in the cache {cached}"

    again = apt.download(PACKAGE)
    assert again.read_bytes() == deb.read_bytes()
    assert sources_of(running.proxy, deb, 2) == ["mirror", "cache"]

    assert running.stop()
    assert running.pid() is None and processes.process_start_time(pid) is None
    assert not tcp_listening(running.proxy.port)

    running.start(offline=True)
    assert running.proxy.cache_dir() == cached, "a restarted proxy takes the free cache it had"
    third = apt.download(PACKAGE)
    assert third.read_bytes() == deb.read_bytes()
    assert sources_of(running.proxy, deb, 3) == ["mirror", "cache", "cache"]
    never_fetched = apt.run("download", "cowsay")  # in the lists, never fetched: offline, it cannot come
    assert never_fetched.returncode != 0
    assert not list(apt.downloads.glob("cowsay_*.deb"))


def test_two_running_proxies_never_share_a_cache_and_a_killed_one_frees_its_own(
    base: Path, started: list[RunningProxy]
) -> None:
    """apt-cacher-ng coordinates downloads only within one process: a second lab's proxy takes the next slot,
    and the slot of a daemon that died (even by SIGKILL) is free again for the next one."""
    cache_root = base / "cache"
    first, second, third = (make_proxy(base, name, cache_root) for name in ("one", "two", "three"))
    started += [first, second, third]
    first.start()
    second.start()
    assert first.proxy.cache_dir() == (cache_root / "0").resolve()
    assert second.proxy.cache_dir() == (cache_root / "1").resolve()

    pid = first.pid()
    assert pid is not None
    os.kill(pid, 9)
    assert processes.wait_until(lambda: first.pid() is None, timeout=STOP_TIMEOUT)
    third.start()
    assert third.proxy.cache_dir() == (cache_root / "0").resolve()


def test_a_proxy_that_cannot_start_is_one_line_naming_its_log_and_leaves_nothing_running(
    base: Path, started: list[RunningProxy]
) -> None:
    """With every cache slot held, the daemon never starts: the error is one line that says why and names
    the log, and no process is left."""
    cache_root = base / "cache"
    cache_root.mkdir()
    held = []
    for slot in range(SLOTS):
        fd = os.open(slot_lock(cache_root, slot), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fd)
    running = make_proxy(base, "lab", cache_root)
    started.append(running)
    try:
        with pytest.raises(PackageProxyError) as failed:
            running.start()
    finally:
        for fd in held:
            os.close(fd)
    message = str(failed.value)
    assert "\n" not in message
    assert "exited" in message and "in use" in message
    assert str(running.output_log) in message
    assert running.pid() is None
    assert not tcp_listening(running.proxy.port)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the daemon to its own user")
def test_as_root_the_daemon_runs_as_its_own_user(base: Path, started: list[RunningProxy]) -> None:
    """The daemon answers the lab's systems on the bridge: it runs as apt-cacher-ng, not root, and its cache
    and logs are that user's."""
    running = make_proxy(base, "lab", base / "cache")
    started.append(running)
    pid = running.start()
    uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])
    daemon = pwd.getpwnam(DAEMON_USER)
    assert uid == daemon.pw_uid
    cache = running.proxy.cache_dir()
    assert cache is not None and cache.stat().st_uid == daemon.pw_uid
    assert running.proxy.access_log.stat().st_uid == daemon.pw_uid
