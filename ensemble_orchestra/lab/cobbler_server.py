"""The lab's real cobblerd: an isolated copy rooted in the lab directory.

Cobbler 3.3 (PyPI) hard-codes absolute paths (/etc/cobbler, /var/lib/cobbler,
/srv/tftpboot, ...). To let several labs run side by side without root-owned
state, each lab gets its own copy of Cobbler's package and data with those
paths rewritten to point below ``<lab>/cobbler``; the copy shadows the
virtualenv's package through PYTHONPATH. Everything else (the fence agents in
/usr/sbin, rsync, Cheetah) is the real, unmodified thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import EnsembleError
from .layout import LAB_HOST, LabLayout, LabSpec
from .programs import cobbler_svc_server
from .programs.qemu_system import GUEST_HOST

__all__ = [
    "CobblerNotInstalled",
    "cobbler_env",
    "cobbler_venv",
    "cobblerd_argv",
    "prepare_cobbler",
    "svc_argv",
]

# Every absolute path Cobbler's code and data use for its own state.
_COBBLER_PATHS = (
    "/etc/cobbler",
    "/var/lib/cobbler",
    "/var/log/cobbler",
    "/var/cache/cobbler",
    "/var/www/cobbler",
    "/srv/www/cobbler",
    "/srv/tftpboot",
    "/var/lib/tftpboot",
)
_PATH_RE = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(p) for p in _COBBLER_PATHS) + r")(?=[/'\"\s]|$)", re.M)
_TEXT_SUFFIXES = {".py", ".yaml", ".conf", ".template", ".json", ".settings", ""}
# Debian releases newer than the distro_signatures.json Cobbler 3.3 ships (its debian breed ends at bullseye, and
# os_version is checked against it): added the way an administrator adds them before importing one, from the
# bullseye entry with the release's own codename and installer arches (trixie has no i386 installer).
DEBIAN_RELEASES = {"bookworm": ("i386", "amd64"), "trixie": ("amd64", "arm64")}


class CobblerNotInstalled(EnsembleError):
    """The lab's Cobbler virtualenv is missing."""


def cobbler_venv() -> Path:
    """The virtualenv holding cobbler 3.3 (installed by scripts/install).

    $ENSEMBLE_LAB_COBBLER_VENV, else ``cobbler`` inside the running virtualenv.
    """
    env = os.environ.get("ENSEMBLE_LAB_COBBLER_VENV")
    venv = Path(env) if env else Path(sys.prefix) / "cobbler"
    if not (venv / "bin" / "cobblerd").exists():
        raise CobblerNotInstalled(
            f"cobblerd is not installed in {venv}: run scripts/install (or set ENSEMBLE_LAB_COBBLER_VENV)"
        )
    return venv


def _site_packages(venv: Path) -> Path:
    matches = sorted(venv.glob("lib/python3*/site-packages/cobbler"))
    if not matches:
        raise CobblerNotInstalled(f"no cobbler package in {venv}: run scripts/install")
    return matches[0].parent


def _rewrite(text: str, root: Path) -> str:
    return _PATH_RE.sub(lambda m: f"{root}{m.group(1)}", text)


def _copy_rewritten(src: Path, dst: Path, root: Path) -> None:
    """Copy a tree, pointing Cobbler's absolute paths below *root* in every text file."""
    for path in src.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in _TEXT_SUFFIXES:
            try:
                target.write_text(_rewrite(path.read_text(), root))
                shutil.copymode(path, target)
                continue
            except UnicodeDecodeError:
                pass
        shutil.copy2(path, target)


def cobbler_password_digest(user: str, password: str) -> str:
    """A users.digest line for Cobbler's configfile authentication (hash_algorithm sha3_512)."""
    return f"{user}:Cobbler:{hashlib.sha3_512(password.encode()).hexdigest()}\n"


def settings_for(spec: LabSpec, base: dict[str, Any], server: str = LAB_HOST) -> dict[str, Any]:
    """Cobbler settings for the lab: loopback ports, nothing managed that needs root or the network."""
    settings = dict(base)
    settings.update(
        {
            "server": server,
            "next_server_v4": server,
            "xmlrpc_port": spec.xmlrpc_port,
            "http_port": spec.http_port,
            "auth_token_expiration": spec.token_lifetime,
            "manage_dhcp": False,
            "manage_dhcp_v4": False,
            "manage_dhcp_v6": False,
            "manage_dns": False,
            "manage_rsync": False,
            "manage_tftpd": True,
            "enable_ipxe": False,
            "anamon_enabled": False,
            "pxe_just_once": True,
            "power_management_default_type": "ipmilan",
            "cache_enabled": True,
            "lazy_start": False,
        }
    )
    return settings


def prepare_cobbler(layout: LabLayout, spec: LabSpec, venv: Path) -> Path:
    """Build the lab's Cobbler root and code copy; returns the settings file. Idempotent."""
    site = _site_packages(venv)
    root = layout.cobbler_root
    if not (layout.cobbler_code / "cobbler").is_dir():
        _copy_rewritten(site / "cobbler", layout.cobbler_code / "cobbler", root)
    for sub in ("etc/cobbler", "var/lib/cobbler", "var/www/cobbler"):
        if not (root / sub).is_dir():
            _copy_rewritten(site / sub, root / sub, root)
    for sub in (
        "var/lib/cobbler/collections/distros",
        "var/lib/cobbler/collections/profiles",
        "var/lib/cobbler/collections/systems",
        "var/lib/cobbler/collections/images",
        "var/lib/cobbler/collections/repos",
        "var/lib/cobbler/collections/mgmtclasses",
        "var/lib/cobbler/collections/packages",
        "var/lib/cobbler/collections/files",
        "var/lib/cobbler/collections/menus",
        "var/lib/cobbler/loaders",
        "var/lib/cobbler/triggers",
        "var/lib/cobbler/grub_config",
        "var/log/cobbler/tasks",
        "var/log/cobbler/anamon",
        "var/cache/cobbler",
        "srv/tftpboot/pxelinux.cfg",
        "srv/tftpboot/grub",
        "srv/tftpboot/images",
        "srv/www/cobbler",
        "var/www/cobbler/misc",
        "var/www/cobbler/links",
        "var/www/cobbler/distro_mirror",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("lock", "web.ss"):
        (root / "var/lib/cobbler" / name).touch()
    add_debian_signatures(root / "var/lib/cobbler/distro_signatures.json")
    mtime = root / "var/lib/cobbler/.mtime"
    if not mtime.exists() or not mtime.read_text().strip():
        mtime.write_text("0")  # Cobbler parses it as a float

    settings_file = root / "etc/cobbler/settings.yaml"
    base = yaml.safe_load(settings_file.read_text())
    # The address written into PXE configs and preseeds: a QEMU guest reaches the host's loopback as 10.0.2.2;
    # container systems reach the lab's servers at the bridge address.
    server = GUEST_HOST if spec.system_kind == "qemu" else spec.server_address(layout.root)
    settings_file.write_text(yaml.safe_dump(settings_for(spec, base, server=server), sort_keys=True))

    digest = root / "etc/cobbler/users.digest"
    fd = os.open(digest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(cobbler_password_digest(spec.cobbler_user, spec.cobbler_password))
    os.chmod(digest, 0o600)
    return settings_file


def add_debian_signatures(path: Path) -> None:
    """Teach the lab's Cobbler the Debian releases in DEBIAN_RELEASES (idempotent; existing entries are kept)."""
    signatures = json.loads(path.read_text())
    debian = signatures["breeds"]["debian"]
    missing = [codename for codename in DEBIAN_RELEASES if codename not in debian]
    if not missing:
        return
    for codename in missing:
        debian[codename] = {
            **debian["bullseye"],
            "version_file_regex": f"Codename: {codename}",
            "supported_arches": list(DEBIAN_RELEASES[codename]),
        }
    path.write_text(json.dumps(signatures, indent=2))


def cobbler_env(layout: LabLayout) -> dict[str, str]:
    """Environment for Cobbler's processes: the lab's code copy first on the path, fence warnings off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(layout.cobbler_code)
    env["PYTHONWARNINGS"] = "ignore"  # fence_ipmilan's DeprecationWarning would end up in power results
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin", "/bin", env.get("PATH", "")])
    return env


def cobblerd_argv(layout: LabLayout, venv: Path) -> list[str]:
    return [
        str(venv / "bin" / "python"),
        str(venv / "bin" / "cobblerd"),
        "-F",
        "-c",
        str(layout.cobbler_root / "etc/cobbler/settings.yaml"),
    ]


def svc_argv(layout: LabLayout, spec: LabSpec, venv: Path) -> list[str]:
    """Cobbler's svc WSGI app (autoinstall rendering, nopxe) and its web dir, served over HTTP.

    Run as a script by the Cobbler virtualenv's Python, which cannot import this project.
    """
    return [
        str(venv / "bin" / "python"),
        str(Path(cobbler_svc_server.__file__).resolve()),
        *(arg for host in dict.fromkeys((LAB_HOST, spec.server_address(layout.root))) for arg in ("--host", host)),
        "--port",
        str(spec.http_port),
        "--svc",
        str(layout.cobbler_root / "var/www/cobbler/svc/services.py"),
        "--webdir",
        str(layout.cobbler_root / "var/www/cobbler"),
        "--xmlrpc-port",
        str(spec.xmlrpc_port),
    ]
