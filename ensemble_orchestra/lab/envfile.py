"""Write the lab's entry into the user's environments.yaml without disturbing anything else.

ruamel.yaml round-trips the file, so the user's other environments, their
comments and their order stay exactly as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ..errors import EnsembleError
from .layout import LAB_HOST, LabLayout, LabSpec
from .seed import ACQUIRED_CLASS, AVAILABLE_CLASS, LAB_PROFILES
from .webdav import webdav_url

__all__ = ["EnvironmentsFileError", "lab_environment", "merge_environment"]


class EnvironmentsFileError(EnsembleError):
    """environments.yaml could not be read or updated; the message names the file."""


def lab_environment(spec: LabSpec, layout: LabLayout) -> dict[str, Any]:
    """The `type: orchestra` environment that points at a lab's servers.

    In a container lab the servers' address is the bridge's (they listen there and on loopback): the
    provisioning agent on machine 0 reaches them by the same URLs as the CLI.
    """
    host = spec.server_address(layout.root)
    return {
        "type": "orchestra",
        "orchestra-server": f"{host}:{spec.http_port}",
        # cobblerd's XML-RPC listens on loopback: machines of a container lab reach it through the svc
        # server's /cobbler_api, as they would through Orchestra's Apache.
        "cobbler-api-url": (
            f"http://{LAB_HOST}:{spec.xmlrpc_port}/RPC2"
            if host == LAB_HOST
            else f"http://{host}:{spec.http_port}/cobbler_api"
        ),
        "orchestra-user": spec.cobbler_user,
        "orchestra-pass": spec.cobbler_password,
        "admin-secret": spec.admin_secret,
        "acquired-mgmt-class": ACQUIRED_CLASS,
        "available-mgmt-class": AVAILABLE_CLASS,
        "default-series": LAB_PROFILES[0][0],
        "storage-url": webdav_url(spec, host).rstrip("/"),
        "storage-user": spec.storage_user,
        "storage-pass": spec.storage_password,
        "authorized-keys-path": str(layout.ssh_dir / "id_ed25519.pub"),
        "lab-dir": str(layout.root),
        # Process and QEMU stand-ins run no agents: only container systems run a real Debian with ZooKeeper.
        **({} if spec.system_kind == "container" else {"state-connection": "none"}),
    }


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    return yaml


def _load(path: Path) -> CommentedMap:
    if not path.exists():
        return CommentedMap()
    try:
        data = _yaml().load(path.read_text())
    except Exception as exc:  # ruamel raises many parser error types
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise EnvironmentsFileError(
            f"{path}: not valid YAML{where}; fix it or move it aside, then run lab up again"
        ) from None
    if data is None:
        return CommentedMap()
    # The round-trip loader gives a CommentedMap for every mapping (and keeps the comments in it).
    if not isinstance(data, CommentedMap) or not isinstance(data.get("environments", {}), dict):
        raise EnvironmentsFileError(f"{path}: expected a mapping with an 'environments' mapping")
    return data


def _write(path: Path, data: CommentedMap) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # The file holds passwords: never world-readable.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        _yaml().dump(data, out)
    tmp.replace(path)


def merge_environment(path: Path, name: str, environment: dict[str, Any]) -> None:
    """Set environments.<name> in *path*, leaving every other environment untouched."""
    data = _load(path)
    environments = data.get("environments")
    if environments is None:
        environments = data["environments"] = CommentedMap()
    environments[name] = CommentedMap(environment)
    if "default" not in data and len(environments) == 1:
        data.insert(0, "default", name)
    _write(path, data)
