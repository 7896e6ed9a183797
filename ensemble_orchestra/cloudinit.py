"""cloud-init user data for the machines Ensemble launches: pure rendering; validation runs `cloud-init schema`.

One generator serves the bootstrap node (which runs ZooKeeper and the
provisioning agent) and every other machine (which joins the bootstrap node's
ZooKeeper). The result is a `#cloud-config` document; Cobbler carries it in the
system's autoinstall metadata and the Ensemble preseed writes it to the
installed system as a NoCloud seed.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import EnsembleError
from .secret import Secret, reveal

__all__ = [
    "CloudInitError",
    "MachineUserData",
    "admin_identity",
    "render_user_data",
    "validate_user_data",
]

ZOOKEEPER_PORT = 2181
BASE_PACKAGES = ("python3", "python3-twisted", "python3-yaml", "python3-zope.interface", "python3-kazoo")
BOOTSTRAP_PACKAGES = ("zookeeper", "zookeeperd", "default-jre-headless")


class CloudInitError(EnsembleError):
    """Generated user data failed validation (a bug on our side, never the user's input)."""


def admin_identity(admin_secret: Secret | str) -> str:
    """ZooKeeper's digest ACL identity of the admin user: ``admin:base64(sha1("admin:<secret>"))``.

    This is what the bootstrap node's ZooKeeper stores; the secret itself never
    goes into user data.
    """
    credentials = f"admin:{reveal(admin_secret)}"
    return "admin:" + base64.b64encode(hashlib.sha1(credentials.encode()).digest()).decode()


@dataclass(frozen=True)
class MachineUserData:
    """What one machine's user data says."""

    machine_id: str
    provider_type: str
    authorized_keys: Sequence[str]
    instance_id: str
    zookeeper_hosts: Sequence[str] = ()  # empty for the bootstrap node: it runs ZooKeeper itself
    admin_secret: Secret | None = None  # bootstrap only
    apt_proxy: str | None = None
    extra_packages: Sequence[str] = field(default_factory=tuple)

    @property
    def is_bootstrap(self) -> bool:
        return not self.zookeeper_hosts


def _config(data: MachineUserData) -> dict[str, Any]:
    keys = [k.strip() for key in data.authorized_keys for k in key.splitlines() if k.strip()]
    if not keys:
        raise CloudInitError("user data needs at least one SSH authorized key")
    if data.is_bootstrap and not data.admin_secret:
        raise CloudInitError("the bootstrap node's user data needs the admin secret")
    zookeeper = list(data.zookeeper_hosts) or [f"localhost:{ZOOKEEPER_PORT}"]
    packages = list(BASE_PACKAGES) + (list(BOOTSTRAP_PACKAGES) if data.is_bootstrap else [])
    packages += [p for p in data.extra_packages if p not in packages]
    runcmd: list[Any] = []
    if data.is_bootstrap:
        runcmd.append(
            [
                "ensemble-admin",
                "initialize",
                f"--instance-id={data.instance_id}",
                f"--admin-identity={admin_identity(data.admin_secret or '')}",
                f"--provider-type={data.provider_type}",
            ]
        )
    runcmd.append(
        ["ensemble-agent", "machine", f"--machine-id={data.machine_id}", f"--zookeeper-servers={','.join(zookeeper)}"]
    )
    if data.is_bootstrap:
        runcmd.append(["ensemble-agent", "provision", f"--zookeeper-servers={','.join(zookeeper)}"])
    config: dict[str, Any] = {
        "ssh_authorized_keys": keys,
        "package_update": True,
        "package_upgrade": False,
        "packages": packages,
        "output": {"all": "| tee -a /var/log/cloud-init-output.log"},
        "runcmd": runcmd,
        "machine-data": {
            "machine-id": data.machine_id,
            "ensemble-provider-type": data.provider_type,
            "ensemble-zookeeper-hosts": ",".join(zookeeper),
            "instance-id": data.instance_id,
        },
    }
    if data.apt_proxy:
        config["apt"] = {"proxy": data.apt_proxy}
    return config


def render_user_data(data: MachineUserData) -> str:
    """The `#cloud-config` document for one machine (deterministic: same input, same bytes)."""
    body = yaml.safe_dump(_config(data), default_flow_style=False, sort_keys=True, width=1000)
    text = "#cloud-config\n" + body
    # A parse round trip catches anything safe_dump could emit that a reader would misread.
    if yaml.safe_load(text) != _config(data):
        raise CloudInitError("user data does not survive a YAML round trip")
    return text


def validate_user_data(text: str, *, timeout: float = 30.0) -> str | None:
    """Check *text* with Debian's `cloud-init schema` where it is installed.

    Returns None when valid or when cloud-init is not installed (the caller can
    tell by ``shutil.which("cloud-init")``); raises CloudInitError with the
    tool's complaint otherwise.
    """
    tool = shutil.which("cloud-init")
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        result = subprocess.run(
            [tool, "schema", "--config-file", handle.name],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if result.returncode != 0:
        raise CloudInitError(f"cloud-init schema rejected the user data: {result.stdout}{result.stderr}".strip())
    return result.stdout.strip()
