"""The lab is real: cobblerd, Cobbler's svc app, fence_ipmilan against ipmi_sim BMCs, Apache mod_dav."""

from __future__ import annotations

import base64
import json
import time
import xmlrpc.client
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.seed import AVAILABLE_CLASS, LAB_PROFILES
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.lab.webdav import webdav_url

pytestmark = pytest.mark.lab


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _boot_count(system_dir: Path) -> int:
    boots = system_dir / "boots.log"
    return boots.read_text().count("boot ") if boots.exists() else 0


def test_login_and_cobblers_own_error_for_a_wrong_password(lab: RunningLab) -> None:
    """Configfile authentication (users.digest) accepts the lab user and rejects a wrong password."""
    server = lab.cobbler()
    token = server.login(lab.spec.cobbler_user, lab.spec.cobbler_password)
    assert server.token_check(token)
    assert server.version() == pytest.approx(3.31)
    with pytest.raises(xmlrpc.client.Fault) as failure:
        server.login(lab.spec.cobbler_user, "not-the-password")
    assert f"login failed ({lab.spec.cobbler_user})" in failure.value.faultString
    assert "not-the-password" not in failure.value.faultString


def test_seeded_pool_is_found_by_mgmt_class(lab: RunningLab) -> None:
    """Every seeded system is in the available class, with its MAC, profile and IPMI power settings."""
    server = lab.cobbler()
    names = server.find_system({"mgmt_classes": AVAILABLE_CLASS})
    assert sorted(names) == [s.name for s in lab.spec.all_systems()]
    profiles = sorted([*(f"{s}-{a}" for s, a in LAB_PROFILES), "ensemble-commissioning"])  # + the image's
    assert sorted(server.get_item_names("profile")) == profiles
    first = lab.spec.system(0)
    record = server.get_system(first.name)
    assert record["interfaces"]["eth0"]["mac_address"] == first.mac
    assert record["power_type"] == "ipmilan"
    assert f"ipport={first.bmc_port}" in record["power_options"]
    assert record["netboot_enabled"] is False


def test_power_on_and_off_through_cobbler_runs_fence_ipmilan_against_the_bmc(lab: RunningLab) -> None:
    """Cobbler's power_system → fence_ipmilan → ipmi_sim: the BMC's state and the boot process follow."""
    server, token = lab.cobbler(), lab.token()
    system = lab.spec.system(1)
    system_dir = lab.system_dir(system.name)
    handle = server.get_system_handle(system.name, token)

    # The lab is shared by the worker's tests: another may have booted this system before.
    boots_before = _boot_count(system_dir)
    assert server.power_system(handle, "status", token) is False
    assert server.power_system(handle, "on", token) is True
    assert bmc.power_is_on(system_dir)
    assert server.power_system(handle, "status", token) is True
    assert _wait_for(lambda: _boot_count(system_dir) > boots_before)
    assert _boot_count(system_dir) == boots_before + 1

    assert server.power_system(handle, "off", token) is True
    assert not bmc.power_is_on(system_dir)
    assert server.power_system(handle, "status", token) is False
    # Another system's BMC was never touched.
    assert not bmc.power_is_on(lab.system_dir(lab.spec.system(0).name))


def test_background_power_reports_a_complete_task(lab: RunningLab) -> None:
    """background_power_system + get_task_status: the task completes and both systems are on."""
    server, token = lab.cobbler(), lab.token()
    names = [lab.spec.system(2).name, lab.spec.system(3).name]
    task = server.background_power_system({"systems": names, "power": "on"}, token)
    assert _wait_for(lambda: server.get_task_status(task)[2] in ("complete", "failed"), timeout=30)
    assert server.get_task_status(task)[2] == "complete"
    assert all(bmc.power_is_on(lab.system_dir(n)) for n in names)
    assert "fence_ipmilan" in server.get_event_log(task)


def test_sync_writes_the_per_mac_pxe_config(lab: RunningLab) -> None:
    """With netboot on, sync writes pxelinux.cfg/01-<mac> that boots the profile's kernel with the autoinstall URL."""
    server, token = lab.cobbler(), lab.token()
    system = lab.spec.system(4)
    assert server.xapi_object_edit("system", system.name, "edit", {"netboot_enabled": True}, token)
    assert server.sync(token)
    pxe = lab.layout.tftpboot / "pxelinux.cfg" / ("01-" + system.mac.replace(":", "-"))
    text = pxe.read_text()
    assert "kernel /images/bookworm-x86_64/vmlinuz" in text
    assert f"url=http://127.0.0.1:{lab.spec.http_port}/cblr/svc/op/autoinstall/system/{system.name}" in text

    assert server.xapi_object_edit("system", system.name, "edit", {"netboot_enabled": False}, token)
    assert "localboot" in pxe.read_text().lower()


def test_svc_renders_the_ensemble_preseed_with_the_systems_metadata(lab: RunningLab) -> None:
    """Cobbler's svc app renders the kit's preseed with autoinstall_meta; unknown systems get 404; nopxe works."""
    server, token = lab.cobbler(), lab.token()
    system = lab.spec.system(5)
    user_data = base64.b64encode(b"#cloud-config\nruncmd: [echo hello]\n").decode()
    meta = {"ensemble_user_data": user_data, "ensemble_instance_id": "i-lab-5"}
    fields = {"autoinstall_meta": meta, "netboot_enabled": True}
    assert server.xapi_object_edit("system", system.name, "edit", fields, token)
    base = f"http://127.0.0.1:{lab.spec.http_port}/cblr/svc/op"

    rendered = requests.get(f"{base}/autoinstall/system/{system.name}", timeout=10)
    assert rendered.status_code == 200
    assert f"echo '{user_data}' | base64 -d" in rendered.text
    assert "'i-lab-5'" in rendered.text
    assert f"/cblr/svc/op/nopxe/system/{system.name}" in rendered.text

    assert requests.get(f"{base}/autoinstall/system/no-such-system", timeout=10).status_code == 404

    assert requests.get(f"{base}/nopxe/system/{system.name}", timeout=10).status_code == 200
    assert server.get_system(system.name)["netboot_enabled"] is False


def test_webdav_requires_digest_auth(lab: RunningLab) -> None:
    """The lab's storage is Apache mod_dav behind digest authentication, as the kit configures it."""
    url = webdav_url(lab.spec) + "probe.txt"
    auth = HTTPDigestAuth(lab.spec.storage_user, lab.spec.storage_password)
    assert requests.put(url, data=b"nothing yet", timeout=10).status_code == 401
    assert requests.put(url, data=b"state", auth=auth, timeout=10).status_code in (201, 204)
    assert requests.get(url, auth=auth, timeout=10).content == b"state"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = HTTPDigestAuth(lab.spec.storage_user, "wrong")
    assert requests.get(url, auth=wrong, timeout=10).status_code == 401
    assert requests.delete(url, auth=auth, timeout=10).status_code == 204
    assert requests.get(url, auth=auth, timeout=10).status_code == 404


def test_reset_returns_cobbler_bmcs_and_storage_to_the_seeded_state(lab: RunningLab) -> None:
    """After claims, power and files, reset gives back the seeded pool, powered off, with empty storage."""
    server, token = lab.cobbler(), lab.token()
    first, second = lab.spec.system(0), lab.spec.system(1)
    server.xapi_object_edit("system", first.name, "edit", {"mgmt_classes": ["somebody-else"]}, token)
    server.xapi_object_edit("system", "intruder", "add", {"name": "intruder", "profile": "trixie-x86_64"}, token)
    server.power_system(server.get_system_handle(second.name, token), "on", token)
    auth = HTTPDigestAuth(lab.spec.storage_user, lab.spec.storage_password)
    assert requests.put(webdav_url(lab.spec) + "left-behind", data=b"x", auth=auth, timeout=10).ok

    lab.lab.reset()

    server = lab.cobbler()
    assert sorted(server.get_item_names("system")) == [s.name for s in lab.spec.all_systems()]
    assert server.get_system(first.name)["mgmt_classes"] == [AVAILABLE_CLASS]
    assert not bmc.power_is_on(lab.system_dir(second.name))
    assert requests.get(webdav_url(lab.spec) + "left-behind", auth=auth, timeout=10).status_code == 404


def test_status_shows_servers_systems_power_and_logs(lab: RunningLab) -> None:
    """`lab status` reports every server with pid and log, and each system's Cobbler state and power."""

    server, token = lab.cobbler(), lab.token()
    system = lab.spec.system(6)
    server.power_system(server.get_system_handle(system.name, token), "on", token)
    status = lab.lab.status()
    assert status.running
    assert {s.name for s in status.servers} >= {"cobblerd", "cobbler-svc", "webdav", f"bmc-{system.name}"}
    assert all(s.log.exists() for s in status.servers)
    by_name = {s.name: s for s in status.systems}
    assert by_name[system.name].power_on and not by_name[lab.spec.system(0).name].power_on
    assert by_name[system.name].cobbler is not None
    assert by_name[system.name].cobbler.mgmt_classes == (AVAILABLE_CLASS,)


def test_status_command_prints_a_table_and_json(lab: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    from ensemble_orchestra.cli.orchestra import main

    assert main(["lab", "status", "--dir", str(lab.layout.root)]) == 0
    table = capsys.readouterr().out
    for system in lab.spec.all_systems():
        assert system.name in table
    assert str(lab.layout.log_file("cobblerd")) in table
    assert main(["lab", "status", "--dir", str(lab.layout.root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is True
    assert [s["name"] for s in data["systems"]] == [s.name for s in lab.spec.all_systems()]
    assert {s["power"] for s in data["systems"]} == {"off"}
    # The status never prints the lab's secrets.
    assert lab.spec.cobbler_password not in table and lab.spec.storage_password not in table


def test_lab_up_wrote_the_lab_environment(session_lab: RunningLab, ensemble_home) -> None:
    """`lab up` writes an orchestra environment named lab pointing at these servers."""
    import yaml

    data = yaml.safe_load((ensemble_home / "environments.yaml").read_text())
    env = data["environments"]["lab"]
    assert env["type"] == "orchestra"
    assert env["cobbler-api-url"] == session_lab.cobbler_url
    assert env["orchestra-pass"] == session_lab.spec.cobbler_password
    assert env["available-mgmt-class"] == AVAILABLE_CLASS
    assert (ensemble_home / "environments.yaml").stat().st_mode & 0o077 == 0
    # It works without a user key: the lab made its own key pair, private key unreadable by others.
    public = Path(env["authorized-keys-path"])
    assert public.read_text().startswith("ssh-ed25519 ")
    assert (public.parent / "id_ed25519").stat().st_mode & 0o077 == 0
