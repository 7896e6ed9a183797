"""User data: one generator, deterministic, valid YAML (and valid for cloud-init where it is installed)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from ensemble_orchestra.cloudinit import (
    CloudInitError,
    MachineUserData,
    admin_identity,
    render_user_data,
    validate_user_data,
)
from ensemble_orchestra.secret import Secret

KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@ws", "ssh-rsa AAAAB3Nza other@ws"]


def bootstrap() -> MachineUserData:
    return MachineUserData(
        machine_id="0",
        provider_type="orchestra",
        authorized_keys=KEYS,
        instance_id="abc123",
        admin_secret=Secret("the-admin-secret"),
        instance_name="node001",
        tools_url="http://10.9.0.1/webdav/environments/e/ensemble-tools/eo.tar.gz",
        tools_sha256="ab" * 32,
    )


def test_bootstrap_node_runs_zookeeper_and_the_provisioning_agent() -> None:
    text = render_user_data(bootstrap())
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert config["ssh_authorized_keys"] == KEYS
    assert "zookeeperd" in config["packages"]
    assert config["machine-data"] == {
        "machine-id": "0",
        "ensemble-provider-type": "orchestra",
        "ensemble-zookeeper-hosts": "localhost:2181",
        "instance-id": "abc123",
    }
    fetch, initialize = config["runcmd"]
    assert fetch[:2] == ["sh", "-ec"] and "ensemble-tools/eo.tar.gz" in fetch[2] and "ab" * 32 in fetch[2]
    assert "sha256sum -c" in fetch[2] and "/usr/lib/ensemble-orchestra" in fetch[2]
    assert initialize[:3] == ["ensemble-admin", "initialize", "--instance-id=abc123"]
    assert "--instance-name=node001" in initialize and f"--tools-sha256={'ab' * 32}" in initialize
    commands = {"/usr/local/bin/ensemble-admin", "/usr/local/bin/ensemble-agent"}
    assert {f["path"] for f in config["write_files"]} == commands
    assert "the-admin-secret" not in text
    assert admin_identity(Secret("the-admin-secret")) in text


def test_other_machines_join_the_bootstrap_zookeeper() -> None:
    data = MachineUserData(
        machine_id="3",
        provider_type="orchestra",
        authorized_keys=KEYS[:1],
        instance_id="uid3",
        zookeeper_hosts=["node001.lab:2181"],
        tools_url="http://10.9.0.1/t.tar.gz",
        tools_sha256="cd" * 32,
        agent_credentials=[{"user": "machine-3", "secret": "own"}, {"user": "machine-agents", "secret": "shared"}],
    )
    config = yaml.safe_load(render_user_data(data))
    assert "zookeeperd" not in config["packages"]
    assert config["machine-data"]["ensemble-zookeeper-hosts"] == "node001.lab:2181"
    assert [c[:3] for c in config["runcmd"]][1:] == [["ensemble-admin", "install-agent", "machine-agent"]]
    [agent_config] = [f for f in config["write_files"] if f["path"] == "/etc/ensemble/machine-agent.yaml"]
    assert agent_config["permissions"] == "0600"
    assert yaml.safe_load(agent_config["content"]) == {
        "zookeeper-servers": "node001.lab:2181",
        "machine-id": 3,
        "credentials": [{"user": "machine-3", "secret": "own"}, {"user": "machine-agents", "secret": "shared"}],
    }
    with pytest.raises(CloudInitError, match="agent's credentials"):
        render_user_data(MachineUserData("3", "orchestra", KEYS, "i", ["z:2181"], tools_url="u", tools_sha256="x"))


def test_deterministic_and_checked() -> None:
    assert render_user_data(bootstrap()) == render_user_data(bootstrap())
    with pytest.raises(CloudInitError, match="SSH authorized key"):
        render_user_data(MachineUserData("1", "orchestra", [" "], "i", zookeeper_hosts=["z:2181"]))
    with pytest.raises(CloudInitError, match="admin secret"):
        render_user_data(MachineUserData("0", "orchestra", KEYS, "i"))


def test_admin_identity_is_zookeepers_digest_form() -> None:
    # sha1("admin:secret") base64, as ZooKeeper's DigestAuthenticationProvider computes it.
    assert admin_identity("secret") == "admin:fvr2cB/fjGeAiX8g1aGhUm3ZICk="


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="Debian's cloud-init is not installed")
def test_cloud_init_accepts_it() -> None:
    validate_user_data(render_user_data(bootstrap()))
    with pytest.raises(CloudInitError):
        validate_user_data("#cloud-config\npackages: 3\n")
