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
    commands = [" ".join(c) for c in config["runcmd"]]
    assert any(c.startswith("ensemble-admin initialize --instance-id=abc123") for c in commands)
    assert any("ensemble-agent provision" in c for c in commands)
    assert "the-admin-secret" not in text
    assert admin_identity(Secret("the-admin-secret")) in text


def test_other_machines_join_the_bootstrap_zookeeper() -> None:
    data = MachineUserData(
        machine_id="3",
        provider_type="orchestra",
        authorized_keys=KEYS[:1],
        instance_id="uid3",
        zookeeper_hosts=["node001.lab:2181"],
    )
    config = yaml.safe_load(render_user_data(data))
    assert "zookeeperd" not in config["packages"]
    assert config["machine-data"]["ensemble-zookeeper-hosts"] == "node001.lab:2181"
    assert [c[:2] for c in config["runcmd"]] == [["ensemble-agent", "machine"]]


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
