"""The lab's package proxy: Debian's apt-cacher-ng as the lab's own instance, not the system service.

Orchestra ships squid-deb-proxy so that installed servers fetch their packages through the provisioning
server; Debian 12 has no squid-deb-proxy, so the lab runs apt-cacher-ng (Ensemble's local provider used it
too). Its config is written into the lab directory, self-contained (nothing from /etc/apt-cacher-ng), and
it forwards to the Debian mirror the host already uses: apt-cacher-ng's built-in backend
(ftp.debian.org) need not resolve where the host's mirror does.

The cache lives outside the lab, under the lab cache (``/var/cache/ensemble-lab/apt-cacher-ng`` as root),
so it survives ``lab down`` and ``lab reset`` and is shared by every lab on the machine — one running
instance per cache directory (see ``programs/package_proxy_exec.py``).

apt-cacher-ng 3.7 formats its port as a signed 16-bit number: on a port above 32767 it stays running but
never listens ("Error resolving address for binding"), so such ports are refused here.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import pwd
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import debian_mirror, processes, vm_image
from .processes import ProcessStartError
from .programs import package_proxy_exec

__all__ = [
    "ACNG_BIN",
    "DAEMON_USER",
    "MAX_PORT",
    "Delivery",
    "Mirrors",
    "PackageProxy",
    "PackageProxyError",
    "default_cache_root",
    "deliveries",
    "host_mirrors",
]

ACNG_BIN = Path("/usr/sbin/apt-cacher-ng")
SUPPORT_DIR = Path("/usr/lib/apt-cacher-ng")  # the package's mirror lists (deb_mirror*.gz) and report page
DAEMON_USER = "apt-cacher-ng"  # created by Debian's package; the daemon runs as it when the lab is root
MAX_PORT = 32767
START_TIMEOUT = 10.0  # it listens ~25 ms after exec
STOP_TIMEOUT = 5.0
REPORT_PAGE = "acng-report.html"
ACCESS_LOG = "apt-cacher.log"  # one line per transfer: TIME|I (from the mirror) or O (to a client)|SIZE|CLIENT|PATH
ERROR_LOG = "apt-cacher.err"

# Stock acng.conf's prefixes for the security archive; the host's own security mirror is added to them.
_SECURITY_PREFIXES = (
    "security.debian.org",
    "security.debian.org/debian-security",
    "deb.debian.org/debian-security",
    "/debian-security",
    "cdn-fastly.deb.debian.org/debian-security",
)
_SECURITY_BACKENDS = (
    "deb.debian.org/debian-security",
    "security.debian.org",
    "cdn-fastly.deb.debian.org/debian-security",
)


class PackageProxyError(ProcessStartError):
    """The package proxy cannot be configured or did not start; the message says why and where to look."""


@dataclass(frozen=True)
class Mirrors:
    """Where the proxy fetches from: the Debian archive and, if the host has one, the security archive."""

    debian: str
    security: str | None = None


def host_mirrors(
    suite: str = "bookworm",
    deb822: Path = debian_mirror.DEB822_SOURCES,
    sources_list: Path = debian_mirror.SOURCES_LIST,
) -> Mirrors:
    """The host's mirrors for *suite* and *suite*-security, as apt-cacher-ng backends (trailing slash).

    The security archive is the stanza (or line) naming ``SUITE-security``; a host without one gets the
    stock security backends.
    """
    debian = debian_mirror.host_mirror(suite, deb822, sources_list)
    security = debian_mirror.host_mirror(f"{suite}-security", deb822, sources_list)
    # host_mirror falls back to the first source when none names the suite: that one is no security archive.
    mirrors = Mirrors(_backend(debian), _backend(security) if security != debian else None)
    for url in (mirrors.debian, mirrors.security):
        if url is not None and not url.startswith(("http://", "https://")):
            raise PackageProxyError(
                f"the host's mirror {url} (in {deb822} or {sources_list}) is not http(s):"
                " apt-cacher-ng can only forward to an HTTP mirror"
            )
    return mirrors


def default_cache_root() -> Path:
    """The package caches shared by every lab: the lab cache's ``apt-cacher-ng`` (see vm_image.cache_dir)."""
    return vm_image.cache_dir() / "apt-cacher-ng"


@dataclass(frozen=True)
class Delivery:
    """One file apt-cacher-ng sent to a client, and whether it came from the mirror or from its cache."""

    path: str  # as the cache names it, e.g. debrep/pool/main/h/hello/hello_2.10-3_amd64.deb
    client: str
    size: int
    source: Literal["mirror", "cache"]


def deliveries(access_log_lines: Iterable[str]) -> list[Delivery]:
    """The deliveries an ``apt-cacher.log`` records, in order.

    The log has an ``I`` line for each download from the mirror and an ``O`` line for each file sent to a
    client; an ``O`` with no ``I`` of the same path before it (since the last delivery) was a cache hit.
    Index files (Release, Packages) are revalidated with the mirror, so only package files hit reliably.
    A delivery is logged once the daemon has finished sending, which may be a moment after the client has it.
    """
    pending: dict[str, int] = {}
    found = []
    for line in access_log_lines:
        fields = line.rstrip("\n").split("|")
        if len(fields) != 5 or fields[1] not in ("I", "O") or not fields[2].isdigit():
            continue
        _, direction, size, client, path = fields
        if direction == "I":
            pending[path] = pending.get(path, 0) + 1
            continue
        fetched = pending.get(path, 0) > 0
        if fetched:
            pending[path] -= 1
        found.append(Delivery(path, client, int(size), "mirror" if fetched else "cache"))
    return found


@dataclass(frozen=True)
class PackageProxy:
    """One lab's apt-cacher-ng: its files in the lab, the addresses it listens on, the shared cache root.

    *directory* holds the config and the record of which cache it uses; *log_dir* is a directory of its own
    (as root it is handed to the daemon's user), where ``apt-cacher.log`` shows every transfer.
    """

    directory: Path
    log_dir: Path
    addresses: tuple[str, ...]
    port: int
    cache_root: Path = field(default_factory=default_cache_root)

    @property
    def config_dir(self) -> Path:
        return self.directory / "conf"

    @property
    def cache_record(self) -> Path:
        """Which cache directory the daemon took (written when it starts)."""
        return self.directory / "cache-dir"

    @property
    def access_log(self) -> Path:
        return self.log_dir / ACCESS_LOG

    def url(self, address: str | None = None) -> str:
        """The proxy URL apt is given (``Acquire::http::Proxy``), on *address* or the first one."""
        host = address or self.addresses[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def write_config(self, mirrors: Mirrors | None = None, *, offline: bool = False) -> list[str]:
        """Write the daemon's config (mirrors: the host's by default); return the argv that starts it.

        *offline*: serve only what the cache holds, never contact the mirror (a 503 for anything else).
        Refuses a port the daemon cannot use and any address that is not an IP literal or is a wildcard.
        Safe while the daemon runs (it reads its config only when it starts).
        """
        _check_port(self.port)
        _check_addresses(self.addresses)
        mirrors = mirrors or host_mirrors()
        user = _daemon_user()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(self.log_dir, user.pw_uid, user.pw_gid)
        backends = {"backends_debian": mirrors.debian}
        if mirrors.security:
            backends["backends_debian_security"] = mirrors.security
        for name, url in backends.items():
            _write(self.config_dir / name, f"{url}\n")
        _write(self.config_dir / "acng.conf", self._conf_text(mirrors, offline))
        argv = [sys.executable, "-m", package_proxy_exec.__name__]
        argv += ["--cache-root", str(self.cache_root.resolve()), "--record", str(self.cache_record.resolve())]
        if user is not None:
            argv += ["--user", user.pw_name]
        return [*argv, "--", str(ACNG_BIN), "-c", str(self.config_dir.resolve())]

    def check_can_listen(self) -> None:
        """Raise PackageProxyError unless every address is this host's and the port is free on it.

        Call it before starting a daemon that is not running: a missing bridge address or a port in use is
        then one line, rather than a daemon that listens on only some addresses and never becomes ready.
        """
        _check_port(self.port)
        _check_addresses(self.addresses)
        for address in self.addresses:
            family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
            problem = _bind_problem(family, address, self.port)
            if problem:
                raise PackageProxyError(f"the package proxy cannot listen on {address} port {self.port}: {problem}")

    def ready(self, timeout: float = 1.0) -> bool:
        """True once the daemon serves its report page on every address (a bare connect proves less)."""
        return all(_report_page_answers(address, self.port, timeout) for address in self.addresses)

    def cache_dir(self) -> Path | None:
        """The cache directory the daemon took when it last started, if it ever did."""
        try:
            return Path(self.cache_record.read_text().strip())
        except OSError:
            return None

    def deliveries(self) -> list[Delivery]:
        try:
            with open(self.access_log, errors="replace") as log:
                return deliveries(log)
        except FileNotFoundError:
            return []

    def start(
        self,
        pid_path: Path,
        output_log: Path,
        *,
        mirrors: Mirrors | None = None,
        offline: bool = False,
        timeout: float = START_TIMEOUT,
    ) -> int:
        """Check, write the config, start the daemon recorded in *pid_path*, wait (bounded) until it answers.

        The lab starts it through its own plans (``check_can_listen`` when it is not running, then
        ``write_config`` + ``ready``); this is the same for a caller on its own, e.g. the tests. On failure
        the daemon is stopped and the one-line error names *output_log*, where apt-cacher-ng says why.
        """
        argv = self.write_config(mirrors, offline=offline)
        self.check_can_listen()
        output_start = output_log.stat().st_size if output_log.exists() else 0

        def alive() -> bool:
            return processes.running_pid(pid_path) is not None

        pid = processes.start_process(argv, pid_path, output_log)
        if processes.wait_until(self.ready, timeout=timeout, alive=alive):
            return pid
        state = "exited" if not alive() else f"did not answer within {timeout:.0f} s"
        processes.stop_process(pid_path, STOP_TIMEOUT)
        reason = processes.last_log_line(output_log, output_start)
        raise PackageProxyError(f"the package proxy (apt-cacher-ng) {state}{reason}: see {output_log}")

    @staticmethod
    def stop(pid_path: Path, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the daemon recorded in *pid_path* (its cache lock goes with it); False if none ran."""
        return processes.stop_process(pid_path, timeout)

    def _conf_text(self, mirrors: Mirrors, offline: bool) -> str:
        security_prefixes = [*_SECURITY_PREFIXES]
        if mirrors.security:
            security_prefixes.append(mirrors.security)
            security_backends = "file:backends_debian_security"
        else:
            security_backends = " ".join(_SECURITY_BACKENDS)
        lines = [
            "# Written by ensemble_orchestra.lab.package_proxy: the lab's own apt-cacher-ng, not the system service.",
            "# Self-contained: nothing from /etc/apt-cacher-ng. CacheDir is given on the command line (a free",
            "# slot of the shared cache, see programs/package_proxy_exec.py).",
            f"SupportDir: {SUPPORT_DIR}",
            f"LogDir: {self.log_dir.resolve()}",
            f"Port: {self.port}",
            f"BindAddress: {' '.join(self.addresses)}",
            "ForeGround: 1",
            "# The lab records the pid; no admin socket (nothing here uses acngtool).",
            "PidFile:",
            "SocketPath:",
            "# Every transfer logged with its client, at once: the lab and its tests read apt-cacher.log.",
            "VerboseLog: 1",
            "UnbufferLogs: 1",
            f"ReportPage: {REPORT_PAGE}",
            "ExThreshold: 4",
            "# No CONNECT tunnels: systems reach package archives through the cache, nothing else.",
            "PassThroughPattern: ^$",
            "# The host's mirror serves every Debian mirror URL a client asks for (one cache for them all).",
            f"Remap-debrep: file:deb_mirror*.gz /debian {mirrors.debian} ; file:backends_debian",
            f"Remap-secdeb: {' '.join(security_prefixes)} ; {security_backends}",
        ]
        if offline:
            lines += ["# Offline: only what the cache holds, never the mirror.", "Offlinemode: 1"]
        return "\n".join(lines) + "\n"


def _backend(url: str) -> str:
    return url.rstrip("/") + "/"


def _check_port(port: int) -> None:
    if not 1 <= port <= MAX_PORT:
        raise PackageProxyError(
            f"the package proxy cannot listen on port {port}: apt-cacher-ng 3.7 takes ports 1-{MAX_PORT} only"
            " (above, it starts but never listens); choose a lower port"
        )


def _check_addresses(addresses: Sequence[str]) -> None:
    """Each address must be an IP literal, never a wildcard: the proxy listens where the lab says only."""
    if not addresses:
        raise PackageProxyError("the package proxy needs at least one address to listen on")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise PackageProxyError(f"the package proxy's listen address {address!r} is not an IP address") from None
        if ip.is_unspecified:
            raise PackageProxyError(
                f"the package proxy may not listen on {address} (every interface): give the lab's addresses"
            )


def _bind_problem(family: socket.AddressFamily, address: str, port: int) -> str | None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is in use"
            if exc.errno == errno.EADDRNOTAVAIL:
                return "that is no address of this host (is the lab bridge up?)"
            return exc.strerror or str(exc)
    return None


def _daemon_user() -> pwd.struct_passwd | None:
    """The user the daemon runs as when the lab is root; None when it runs as us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(DAEMON_USER)
    except KeyError:
        raise PackageProxyError(
            f"running as root, the package proxy runs as the user {DAEMON_USER}, which does not exist:"
            " run scripts/install (Debian's apt-cacher-ng package creates it)"
        ) from None


def _report_page_answers(address: str, port: int, timeout: float) -> bool:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", f"/{REPORT_PAGE}")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)  # the daemon's user reads it; nothing secret here
    tmp.replace(path)

