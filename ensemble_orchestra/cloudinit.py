"""cloud-init user data for the machines Ensemble launches: pure rendering; validation runs `cloud-init schema`.

One generator serves the bootstrap node (which runs ZooKeeper and the
provisioning agent) and every other machine (which joins the bootstrap node's
ZooKeeper). The result is a `#cloud-config` document; Cobbler carries it in the
system's autoinstall metadata and the Ensemble preseed writes it to the
installed system as a NoCloud seed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import EnsembleError
from .origin import INSTALL_DIR
from .secret import Secret
from .state.acl import ADMIN_USER, digest_identity

__all__ = [
    "CloudInitError",
    "MachineUserData",
    "admin_identity",
    "render_user_data",
    "validate_user_data",
]

ZOOKEEPER_PORT = 2181
# What the agents import and run, from Debian (the agents themselves come from the environment's storage:
# origin.py); nftables: the machine agent's firewall (agents/firewall.py).
BASE_PACKAGES = (
    "python3",
    "python3-twisted",
    "python3-treq",
    "python3-yaml",
    "python3-zope.interface",
    "python3-kazoo",
    "python3-openssl",
    "python3-service-identity",
    "curl",
    "nftables",
)
TOOLS_ARCHIVE = "/var/lib/ensemble/tools.tar.gz"
AGENT_CONFIG = "/etc/ensemble/machine-agent.yaml"
BOOTSTRAP_PACKAGES = ("zookeeper", "zookeeperd", "default-jre-headless")


class CloudInitError(EnsembleError):
    """Generated user data failed validation (a bug on our side, never the user's input)."""


def admin_identity(admin_secret: Secret | str) -> str:
    """ZooKeeper's digest ACL identity of the admin user: ``admin:base64(sha1("admin:<secret>"))``.

    This is what the bootstrap node's ZooKeeper stores; the secret itself never
    goes into user data.
    """
    return digest_identity(ADMIN_USER, admin_secret)


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
    instance_name: str = ""
    tools_url: str = ""  # ensemble-orchestra for the machine (origin.py); without it no agent is installed
    tools_sha256: str = ""
    # Other machines: their agent's own credential and the machine agents' shared one (user, secret) — what
    # the agent needs, nothing more (never the admin secret, never the provider's credentials).
    agent_credentials: Sequence[Mapping[str, str]] = field(default_factory=tuple)

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
    write_files: list[dict[str, Any]] = []
    if data.tools_url:
        if not data.tools_sha256:
            raise CloudInitError("user data names the tools' URL without their sha256")
        runcmd.append(["sh", "-ec", _fetch_tools(data.tools_url, data.tools_sha256)])
        write_files += [_command("ensemble-admin"), _command("ensemble-agent")]
        if data.is_bootstrap:
            runcmd.append(
                [
                    "ensemble-admin",
                    "initialize",
                    f"--instance-id={data.instance_id}",
                    f"--instance-name={data.instance_name}",
                    f"--admin-identity={admin_identity(data.admin_secret or '')}",
                    f"--provider-type={data.provider_type}",
                    f"--tools-url={data.tools_url}",
                    f"--tools-sha256={data.tools_sha256}",
                ]
            )
        else:
            if not data.agent_credentials:
                raise CloudInitError(f"machine {data.machine_id}'s user data needs its agent's credentials")
            agent_config = {
                "zookeeper-servers": ",".join(zookeeper),
                "machine-id": int(data.machine_id),
                "credentials": [dict(c) for c in data.agent_credentials],
            }
            write_files.append(
                {
                    "path": AGENT_CONFIG,
                    "permissions": "0600",
                    "owner": "root:root",
                    "content": yaml.safe_dump(agent_config, default_flow_style=False, sort_keys=True),
                }
            )
            runcmd.append(["ensemble-admin", "install-agent", "machine-agent", f"--config={AGENT_CONFIG}"])
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
    if write_files:
        config["write_files"] = write_files
    if data.apt_proxy:
        config["apt"] = {"proxy": data.apt_proxy}
    return config


def _fetch_tools(url: str, sha256: str) -> str:
    """Shell: fetch the tools (retrying while the storage is out of reach), check them, unpack them."""
    archive = shlex.quote(TOOLS_ARCHIVE)
    return (
        f"mkdir -p {shlex.quote(INSTALL_DIR)} $(dirname {archive}); "
        f"curl -fsS --retry 10 --retry-connrefused --retry-delay 3 --max-time 300 -o {archive} {shlex.quote(url)}; "
        f"echo {shlex.quote(sha256 + '  ' + TOOLS_ARCHIVE)} | sha256sum -c --quiet -; "
        f"tar -xzf {archive} -C {shlex.quote(INSTALL_DIR)}"
    )


def _command(name: str) -> dict[str, Any]:
    """/usr/local/bin/<name>: the agents' entry point, run from the unpacked tools with Debian's python3."""
    return {
        "path": f"/usr/local/bin/{name}",
        "permissions": "0755",
        "owner": "root:root",
        "content": (
            f"#!/bin/sh\nPYTHONPATH={INSTALL_DIR} exec /usr/bin/python3 -m ensemble_orchestra.agents.main \"$@\"\n"
        ),
    }


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
