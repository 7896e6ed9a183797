"""The lab's WebDAV storage: a private Apache mod_dav including the server kit's site config.

Orchestra's storage is Apache mod_dav, whose concurrency behaviour differs from
other WebDAV servers (only MKCOL of a new collection is atomic: see
providers/orchestra/webdav/README.md and "Claiming" in docs/provider.md), so the lab
runs Debian's apache2 from its own ServerRoot with the very ``ensemble-webdav.conf``
an admin installs, only with lab paths passed as Defines.

Run as root, Apache refuses to serve as root: its workers become www-data, which
must then own the data and lock directories and reach them through every parent.
"""

from __future__ import annotations

import grp
import hashlib
import http.client
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from ensemble_orchestra.kit import kit_dir
from ensemble_orchestra.lab.layout import LAB_HOST, LabLayout, LabSpec
from ensemble_orchestra.lab.processes import ProcessStartError

__all__ = [
    "APACHE_BIN",
    "WEBDAV_PATH",
    "WEBDAV_REALM",
    "WORKER_USER",
    "WebDAVConfigError",
    "clear_webdav_data",
    "kit_webdav_conf",
    "webdav_ready",
    "webdav_url",
    "write_webdav_config",
]

APACHE_BIN = Path("/usr/sbin/apache2")
MODULES_DIR = Path("/usr/lib/apache2/modules")
WEBDAV_PATH = "/webdav"
WEBDAV_REALM = "ensemble"
# Debian's Apache user: the workers' identity when the lab runs as root.
WORKER_USER = "www-data"

# Just what ensemble-webdav.conf and the lab's httpd.conf use; ForceType and SetHandler are core.
# Loaded unless built in (Debian builds in unixd and log_config).
_MODULES = (
    "mpm_event",
    "unixd",
    "log_config",
    "alias",
    "authn_core",
    "authn_file",
    "authz_core",
    "authz_user",
    "auth_digest",
    "dav",
    "dav_fs",
)


class WebDAVConfigError(ProcessStartError):
    """The lab's Apache cannot be configured to start; the message says how to fix it."""


def kit_webdav_conf() -> Path:
    """The kit's site config, the file a real Orchestra server includes too."""
    return kit_dir() / "webdav" / "ensemble-webdav.conf"


def webdav_url(spec: LabSpec, host: str = LAB_HOST) -> str:
    """Base URL of the lab's storage at *host* (loopback, or a container lab's bridge address), with the
    trailing slash collections need."""
    return f"http://{host}:{spec.webdav_port}{WEBDAV_PATH}/"


def webdav_ready(spec: LabSpec, timeout: float = 1.0) -> bool:
    """True once Apache answers an anonymous OPTIONS on the storage with 401.

    401 rather than a bare TCP connect: it proves the kit's config (auth included) is served.
    """
    conn = http.client.HTTPConnection(LAB_HOST, spec.webdav_port, timeout=timeout)
    try:
        conn.request("OPTIONS", f"{WEBDAV_PATH}/")
        return conn.getresponse().status == 401
    except OSError:
        return False
    finally:
        conn.close()


def write_webdav_config(layout: LabLayout, spec: LabSpec) -> list[str]:
    """Write the private ServerRoot, digest file and data dir; return Apache's foreground argv."""
    conf = kit_webdav_conf()
    if not conf.is_file():
        raise WebDAVConfigError(f"the server kit has no WebDAV site config at {conf}")
    worker = _worker_ids()
    server_root = layout.webdav_dir.resolve()
    run_dir, lock_dir, docroot = server_root / "run", server_root / "lock", server_root / "htdocs"
    digest_file = server_root / "ensemble.htdigest"
    commissioning_digest = server_root / "commissioning.htdigest"
    data = layout.webdav_data.resolve()
    log_dir = layout.log_dir.resolve()

    if worker is not None:
        _check_worker_reach([data, lock_dir, digest_file, commissioning_digest], worker)
    for path in (server_root, run_dir, docroot, log_dir):
        path.mkdir(parents=True, exist_ok=True)
    _owned_dir(lock_dir, worker, 0o700)
    _owned_dir(data, worker, 0o750)
    _commissioning_area(data, worker)
    _write_digest(digest_file, spec.storage_user, spec.storage_password, worker)
    _write_digest(commissioning_digest, spec.commissioning_user, spec.commissioning_password, worker)

    defines = {
        "ENSEMBLE_WEBDAV_ROOT": data,
        "ENSEMBLE_WEBDAV_PATH": WEBDAV_PATH,
        "ENSEMBLE_WEBDAV_DIGEST_FILE": digest_file,
        "ENSEMBLE_WEBDAV_REALM": WEBDAV_REALM,
        "ENSEMBLE_WEBDAV_LOCKDB": lock_dir / "DAVLock",
        "ENSEMBLE_COMMISSIONING_DIGEST_FILE": commissioning_digest,
        "ENSEMBLE_COMMISSIONING_USER": spec.commissioning_user,
    }
    text = _httpd_conf(
        server_root=server_root,
        run_dir=run_dir,
        docroot=docroot,
        log_dir=log_dir,
        port=spec.webdav_port,
        # A container lab's systems reach the storage at the bridge address, the host at loopback.
        addresses=tuple(dict.fromkeys((LAB_HOST, spec.server_address(layout.root)))),
        run_as_worker=worker is not None,
        defines=defines,
        include=conf.resolve(),
    )
    httpd_conf = server_root / "httpd.conf"
    tmp = httpd_conf.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(httpd_conf)
    return [str(APACHE_BIN), "-d", str(server_root), "-f", str(httpd_conf), "-DFOREGROUND"]


def clear_webdav_data(layout: LabLayout) -> None:
    """Empty the served directory and the lock DB, in place, for ``lab reset``.

    The directory itself stays (Apache may be serving it, and it keeps its owner).
    The lock DB goes too: mod_dav_fs keys locks by inode, and a new file reusing a
    deleted one's inode would otherwise come back locked.
    """
    data = layout.webdav_data
    if not data.is_dir():
        _owned_dir(data.resolve(), _worker_ids(), 0o750)
        return
    for parent in (data, layout.webdav_dir / "lock"):
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.is_dir() and not child.is_symlink():
                # A concurrent request may add or remove entries meanwhile: those races are benign.
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    _commissioning_area(data.resolve(), _worker_ids())


def _commissioning_area(data: Path, worker: tuple[int, int] | None) -> None:
    """The report area must exist before an image PUTs into it: Apache applies a <Directory> only to a directory
    that exists, so in a missing one the commissioning user is unknown (401). An admin creates it at install."""
    _owned_dir(data / "commissioning", worker, 0o750)
    _owned_dir(data / "commissioning" / "incoming", worker, 0o750)


def _worker_ids() -> tuple[int, int] | None:
    """(uid, gid) Apache's workers switch to, or None when the lab is not root and Apache runs as us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(WORKER_USER).pw_uid, grp.getgrnam(WORKER_USER).gr_gid
    except KeyError:
        raise WebDAVConfigError(
            f"running as root, Apache's workers must run as {WORKER_USER}, which does not exist"
        ) from None


def _owned_dir(path: Path, worker: tuple[int, int] | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if worker is not None:
        os.chown(path, *worker)
    path.chmod(mode)


def _write_digest(path: Path, user: str, password: str, worker: tuple[int, int] | None) -> None:
    """An htdigest file: only the HA1 hash is stored, never the password."""
    for field, value in (("user", user), ("realm", WEBDAV_REALM)):
        if ":" in value or "\n" in value:
            raise WebDAVConfigError(f"the storage {field} {value!r} may not contain ':' or a newline")
    ha1 = hashlib.md5(f"{user}:{WEBDAV_REALM}:{password}".encode()).hexdigest()
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        if worker is not None:
            # Root keeps ownership; the workers read it through the group.
            os.fchown(out.fileno(), 0, worker[1])
            os.fchmod(out.fileno(), 0o640)
        out.write(f"{user}:{WEBDAV_REALM}:{ha1}\n")
    tmp.replace(path)


def _check_worker_reach(paths: list[Path], worker: tuple[int, int]) -> None:
    """Fail early, naming the directory, if a worker could not reach *paths* (else: 403s and 500s)."""
    uid, gid = worker
    groups = {gid, *os.getgrouplist(WORKER_USER, gid)}
    for path in paths:
        for parent in reversed(path.parents):
            if not parent.exists():
                break  # created below with the default mode, searchable by all
            st = parent.stat()
            if st.st_mode & stat.S_IXOTH:
                continue
            if st.st_gid in groups and st.st_mode & stat.S_IXGRP:
                continue
            if st.st_uid == uid and st.st_mode & stat.S_IXUSR:
                continue
            if _worker_can_search(parent, uid, gid):  # an ACL may grant what the mode bits do not
                continue
            raise WebDAVConfigError(
                f"Apache's workers run as {WORKER_USER} when the lab runs as root, and {WORKER_USER}"
                f" cannot enter {parent} (mode {stat.S_IMODE(st.st_mode):o}) to reach {path}."
                " Put the lab under a directory it can traverse (e.g. ENSEMBLE_LAB_DIR=/var/lib/ensemble-lab)"
                f" or grant it search access: setfacl -m u:{WORKER_USER}:x {parent}"
            )


def _worker_can_search(path: Path, uid: int, gid: int) -> bool:
    result = subprocess.run(["test", "-x", str(path)], user=uid, group=gid, extra_groups=[], check=False, timeout=10)
    return result.returncode == 0


def _quote(value: object) -> str:
    text = str(value)
    if any(c in text for c in '"\n\\$'):
        raise WebDAVConfigError(f"cannot put {text!r} in an Apache config: it holds a quote, '$' or newline")
    return f'"{text}"'


def _httpd_conf(
    *,
    server_root: Path,
    run_dir: Path,
    docroot: Path,
    log_dir: Path,
    port: int,
    addresses: tuple[str, ...],
    run_as_worker: bool,
    defines: dict[str, object],
    include: Path,
) -> str:
    lines = [
        "# Written by ensemble_orchestra.lab.webdav: the lab's private Apache serving WebDAV storage.",
        "# Self-contained: no Debian envvars, nothing from /etc/apache2.",
        f"ServerRoot {_quote(server_root)}",
        f"DefaultRuntimeDir {_quote(run_dir)}",
        f"PidFile {_quote(run_dir / 'apache2.pid')}",
        *(f"Listen {address}:{port}" for address in addresses),
        f"ServerName {LAB_HOST}",
        "",
        *(
            f"<IfModule !{name}_module>\n"
            f"    LoadModule {name}_module {_quote(MODULES_DIR / f'mod_{name}.so')}\n"
            "</IfModule>"
            for name in _MODULES
        ),
        "",
    ]
    if run_as_worker:
        lines += [f"User {WORKER_USER}", f"Group {WORKER_USER}", ""]
    lines += [
        "# One small child is plenty for a lab; 25 threads serve the tests' 20 concurrent clients.",
        "StartServers 1",
        "ServerLimit 2",
        "ThreadsPerChild 25",
        "ThreadLimit 25",
        "MaxRequestWorkers 50",
        "MinSpareThreads 1",
        "MaxSpareThreads 50",
        "Timeout 30",
        "KeepAlive On",
        "KeepAliveTimeout 5",
        "",
        f"ErrorLog {_quote(log_dir / 'webdav-error.log')}",
        "LogLevel warn",
        # No headers logged: Authorization never reaches the log.
        'LogFormat "%h %u %t \\"%r\\" %>s %b %D" lab',
        f"CustomLog {_quote(log_dir / 'webdav-access.log')} lab",
        "ServerTokens Prod",
        "ServerSignature Off",
        "TraceEnable Off",
        "",
        "# Nothing outside the storage is served.",
        f"DocumentRoot {_quote(docroot)}",
        "<Directory />",
        "    AllowOverride None",
        "    Options None",
        "    Require all denied",
        "</Directory>",
        "",
        *(f"Define {name} {_quote(value)}" for name, value in defines.items()),
        f"Include {_quote(include)}",
        "",
    ]
    return "\n".join(lines)
