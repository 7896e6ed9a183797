"""``ensemble-orchestra setup-server`` against the lab's real cobblerd and svc app, run as a user runs it."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS, LAB_PROFILES, LabCobbler
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.server_kit import PRESEED_NAME, load_kit

pytestmark = pytest.mark.lab

KIT = load_kit()
SNIPPETS = sorted(KIT.snippets)


def setup_server(
    lab: RunningLab, *extra: str, password: str | None = None, verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    """The command in its own process, password in the environment as an administrator's script gives it."""
    argv = [sys.executable, "-m", "ensemble_orchestra.cli.orchestra", "setup-server"]
    argv += ["--cobbler", lab.cobbler_url, "--user", lab.spec.cobbler_user, *extra]
    if verbose:
        argv.append("-v")
    env = {**os.environ, "ENSEMBLE_ORCHESTRA_PASSWORD": password or lab.spec.cobbler_password}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def rows(stdout: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> action, from the report's ACTION/KIND/NAME table."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("created", "updated", "unchanged"):
            found[(parts[1], parts[2])] = parts[0]
    return found


def cobbler_state(lab: RunningLab) -> dict[str, Any]:
    """What setup-server may write, with Cobbler's modification times and the kit files' mtimes on disk."""
    server, token = lab.cobbler(), lab.token()
    files = lab.layout.cobbler_root / "var/lib/cobbler"
    return {
        "profiles": {p["name"]: (p["distro"], p["autoinstall"], p["mtime"]) for p in server.get_profiles()},
        "mgmtclasses": {m["name"]: m["mtime"] for m in server.get_mgmtclasses()},
        "template": server.read_autoinstall_template(PRESEED_NAME, token),
        "snippets": {name: server.read_autoinstall_snippet(name, token) for name in SNIPPETS},
        "mtimes": [
            (files / "templates" / PRESEED_NAME).stat().st_mtime_ns,
            *((files / "snippets" / name).stat().st_mtime_ns for name in SNIPPETS),
        ],
    }


@pytest.fixture
def fresh_lab(lab_parent: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningLab]:
    """A lab seeded like a server straight after `cobbler import` and adding systems: setup-server never ran."""
    with monkeypatch.context() as patch:
        patch.setattr(LabCobbler, "run_setup_server", lambda self, layout: None)
        running = start_lab(Path(os.path.join(lab_parent, f"fresh-{os.getpid()}-{id(patch)}")), systems=3)
    try:
        yield running
    finally:
        running.lab.down()


def test_first_run_sets_up_a_fresh_server_and_a_second_run_changes_nothing(fresh_lab: RunningLab) -> None:
    """Classes, profiles, preseed and snippets appear; run two reports and changes nothing; no password shows."""
    server = fresh_lab.cobbler()
    assert server.get_item_names("mgmtclass") == []
    assert not set(SNIPPETS) & set(server.get_autoinstall_snippets())
    assert {p["autoinstall"] for p in server.get_profiles()} == {"sample.seed"}

    first = setup_server(fresh_lab)
    assert first.returncode == 0, first.stderr
    profiles = sorted(f"{s}-{a}" for s, a in LAB_PROFILES)
    assert rows(first.stdout) == {
        **{("snippet", name): "created" for name in SNIPPETS},
        ("template", PRESEED_NAME): "created",
        ("mgmtclass", AVAILABLE_CLASS): "created",
        ("mgmtclass", ACQUIRED_CLASS): "created",
        **{("profile", name): "updated" for name in profiles},
    }
    assert "autoinstall sample.seed -> ensemble.preseed" in first.stdout
    assert first.stdout.rstrip().endswith("setup-server: 5 created, 3 updated, 0 unchanged")
    state = cobbler_state(fresh_lab)
    assert sorted(state["mgmtclasses"]) == sorted([AVAILABLE_CLASS, ACQUIRED_CLASS])
    assert {name: p[:2] for name, p in state["profiles"].items()} == {n: (n, PRESEED_NAME) for n in profiles}
    assert state["template"] == KIT.preseed
    assert state["snippets"] == dict(KIT.snippets)

    second = setup_server(fresh_lab, verbose=True)
    assert second.returncode == 0, second.stderr
    assert set(rows(second.stdout).values()) == {"unchanged"} and len(rows(second.stdout)) == 8
    assert second.stdout.rstrip().endswith("setup-server: nothing to change (8 unchanged)")
    assert cobbler_state(fresh_lab) == state

    for run in (first, second):
        assert fresh_lab.spec.cobbler_password not in run.stdout + run.stderr


def test_distros_get_series_arch_profiles_skipping_and_reporting_the_odd_ones(fresh_lab: RunningLab) -> None:
    """A new distro gets its profile; one without os_version is skipped; a duplicate is named, the profile kept."""
    server, token = fresh_lab.cobbler(), fresh_lab.token()
    base = server.get_distro("bookworm-x86_64")
    for name, series, arch in (("trixie-i386", "trixie", "i386"), ("custom", "", "x86_64"),
                               ("bookworm-mini", "bookworm", "x86_64")):  # fmt: skip
        # Cobbler applies fields in order and checks os_version against the breed: breed first, or it is dropped.
        fields = {"name": name, "kernel": base["kernel"], "initrd": base["initrd"], "arch": arch, "breed": "debian"}
        server.xapi_object_edit("distro", name, "add", {**fields, "os_version": series}, token)

    done = setup_server(fresh_lab)
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)[("profile", "trixie-i386")] == "created"
    assert "note: distro custom skipped: it has no os_version" in done.stdout
    assert "note: profile bookworm-x86_64: distros bookworm-mini have the same series and arch" in done.stdout
    assert server.get_profile("trixie-i386")["autoinstall"] == PRESEED_NAME
    assert server.get_profile("bookworm-x86_64")["distro"] == "bookworm-x86_64"
    assert "custom" not in server.get_item_names("profile")


def test_systems_without_power_settings_are_listed_in_a_table(fresh_lab: RunningLab) -> None:
    """The power check reads every system and names the missing fields, never a password."""
    server, token = fresh_lab.cobbler(), fresh_lab.token()
    server.xapi_object_edit("system", "node002", "edit", {"power_pass": ""}, token)
    server.xapi_object_edit("system", "node003", "edit", {"power_type": "", "power_user": ""}, token)
    done = setup_server(fresh_lab)
    assert done.returncode == 0, done.stderr
    table = done.stdout[done.stdout.index("power:") :].splitlines()
    assert table[0].startswith("power: 2 of 3 systems lack power settings")
    assert re.split(r"\s{2,}", table[1]) == ["SYSTEM", "POWER TYPE", "ADDRESS", "MISSING"]
    assert re.split(r"\s{2,}", table[2]) == ["node002", "ipmilan", "127.0.0.1", "power_pass"]
    assert re.split(r"\s{2,}", table[3]) == ["node003", "-", "127.0.0.1", "power_type, power_user"]
    bmc_password = fresh_lab.spec.system(0).bmc_password
    assert bmc_password not in done.stdout + done.stderr


def test_rendered_preseed_late_command_writes_the_seed_and_turns_netboot_off(lab: RunningLab, tmp_path: Path) -> None:
    """The preseed rendered by Cobbler's svc has ONE late_command line; run with /target = a directory, it
    writes the exact user data and meta-data (instance-id, local-hostname) and calls nopxe."""
    server, token = lab.cobbler(), lab.token()
    system = lab.spec.system(1)
    uid = server.get_system(system.name)["uid"]
    user_data = "#cloud-config\nruncmd: [\"echo 'it''s' \\\\ $HOME `x` ünï\"]\nfinal_message: no newline".encode()
    meta = {"ensemble_user_data": base64.b64encode(user_data).decode(), "ensemble_instance_id": uid}
    server.xapi_object_edit("system", system.name, "edit", {"autoinstall_meta": meta, "netboot_enabled": True}, token)
    assert server.get_system(system.name)["netboot_enabled"] is True

    url = f"http://127.0.0.1:{lab.spec.http_port}/cblr/svc/op/autoinstall/system/{system.name}"
    rendered = requests.get(url, timeout=10)
    assert rendered.status_code == 200
    late = [line for line in rendered.text.splitlines() if line.startswith("d-i preseed/late_command string ")]
    assert len(late) == 1
    assert "Error" not in late[0] and "$SNIPPET" not in late[0]
    command = late[0].removeprefix("d-i preseed/late_command string ").replace("/target", str(tmp_path))
    done = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr

    seed = tmp_path / "var/lib/cloud/seed/nocloud-net"
    assert (seed / "user-data").read_bytes() == user_data
    assert (seed / "meta-data").read_text() == f"instance-id: {uid}\nlocal-hostname: {system.hostname}\n"
    assert server.get_system(system.name)["netboot_enabled"] is False


def test_wrong_password_is_one_line_and_exit_1(lab: RunningLab) -> None:
    done = setup_server(lab, password="not-the-password")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "rejected the credentials" in done.stderr
    assert "not-the-password" not in done.stderr


def test_missing_cobbler_url_exits_2(lab: RunningLab) -> None:
    argv = [sys.executable, "-m", "ensemble_orchestra.cli.orchestra", "setup-server", "--user", "ensemble"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--cobbler" in done.stderr
