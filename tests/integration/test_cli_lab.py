"""The `ensemble` command end to end on the lab: real cobblerd, fence_ipmilan + ipmi_sim BMCs, Apache mod_dav,
and lab systems that "install" from Cobbler's PXE config and rendered preseed. Each command is a process.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.programs import system_files
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.provider.orchestra import ENV_KEY, USER_DATA_KEY

pytestmark = pytest.mark.lab


def ensemble(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_no_secrets(lab: RunningLab, *runs: subprocess.CompletedProcess[str]) -> None:
    for run in runs:
        for secret in lab.secrets():
            assert secret not in run.stdout and secret not in run.stderr


def test_bootstrap_wait_status_destroy(lab: RunningLab) -> None:
    boot = ensemble("bootstrap", "-e", "lab", "--wait")
    assert boot.returncode == 0, boot.stderr
    assert "bootstrapped environment 'lab': machine 0 is node" in boot.stdout
    assert "finished installing: netboot is off" in boot.stdout
    for phase in ("checking storage", "claiming", "writing user data", "powering on", "power confirmed"):
        assert phase in boot.stderr  # progress, as plain lines when not on a terminal

    server = lab.cobbler()
    [owned] = [r for r in server.get_systems() if r["autoinstall_meta"] and ENV_KEY in r["autoinstall_meta"]]
    name, uid = owned["name"], owned["uid"]
    assert owned["mgmt_classes"] == [ACQUIRED_CLASS] and owned["netboot_enabled"] is False
    system_dir = lab.system_dir(name)
    assert bmc.power_is_on(system_dir)
    # The installer (Cobbler's rendered preseed) wrote exactly the user data the provider generated.
    seed = system_files.nocloud_seed(system_dir)
    assert (seed / "user-data").read_bytes() == base64.b64decode(owned["autoinstall_meta"][USER_DATA_KEY])
    meta = yaml.safe_load((seed / "meta-data").read_text())
    assert meta["instance-id"] == uid and meta["local-hostname"] == owned["hostname"]
    boots = system_files.boots_log(system_dir).read_text().splitlines()
    assert boots[-1].endswith("from=install")

    status = ensemble("status", "-e", "lab")
    assert status.returncode == 0, status.stderr
    assert yaml.safe_load(status.stdout) == {
        "machines": {0: {"dns-name": owned["hostname"], "instance-id": uid, "instance-state": "provisioned"}},
        "services": {},
    }
    as_json = json.loads(ensemble("status", "-e", "lab", "--format", "json").stdout)
    assert as_json["machines"]["0"]["instance-id"] == uid

    again = ensemble("bootstrap", "-e", "lab")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        f"ensemble: error: environment 'lab' is already bootstrapped (machine {uid}); destroy-environment first"
    )

    refused = ensemble("destroy-environment", "-e", "lab", stdin="n\n")
    assert refused.returncode == 1 and "Continue [y/N]?" in refused.stderr
    assert server.get_system(name)["mgmt_classes"] == [ACQUIRED_CLASS]

    destroy = ensemble("destroy-environment", "-e", "lab", "-y")
    assert destroy.returncode == 0, destroy.stderr
    assert f"released machine 0: {name} powered off and returned to the pool" in destroy.stdout
    record = server.get_system(name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in (record["autoinstall_meta"] or {})
    assert not bmc.power_is_on(system_dir)

    gone = ensemble("status", "-e", "lab")
    assert gone.returncode == 1
    assert "environment 'lab' is not bootstrapped: run 'ensemble bootstrap -e lab'" in gone.stderr
    assert_no_secrets(lab, boot, status, again, refused, destroy, gone)


def test_ctrl_c_during_bootstrap_rolls_back(lab: RunningLab, tmp_path: Path) -> None:
    """Ctrl-C while the power-on waits on a BMC that never answers: the system is released, no state is left."""
    victim = lab.spec.system(3)
    lab.make_bmc_unreachable(victim.name)
    log_file = tmp_path / "bootstrap.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", "bootstrap", "-e", "lab", "--log-file", str(log_file)]
        + ["--constraints", f"orchestra-name={victim.name}"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "powering on" not in seen and time.monotonic() < deadline:
        seen += process.stderr.readline()
    assert "powering on" in seen
    time.sleep(0.5)  # inside the power call
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, seen + err
    assert err.strip().splitlines()[-1] == (
        "ensemble: interrupted: bootstrap of 'lab' rolled back: no system was left claimed"
    )
    record = lab.cobbler().get_system(victim.name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in (record["autoinstall_meta"] or {})
    status = ensemble("status", "-e", "lab")
    assert status.returncode == 1 and "not bootstrapped" in status.stderr
    logged = log_file.read_text()
    assert f"launch on {victim.name} failed (interrupted); releasing it" in logged
    for secret in lab.secrets():
        assert secret not in seen + err + out + logged


def test_global_options_before_the_command_as_ensemble_users_type_them(lab: RunningLab, tmp_path: Path) -> None:
    """`ensemble -v -l LOG COMMAND` (and after the command too): -v shows the log events, LOG keeps them."""
    logs = [tmp_path / "bootstrap.log", tmp_path / "destroy.log", tmp_path / "status.log"]
    boot = ensemble("-v", "--log-file", str(logs[0]), "bootstrap", "-e", "lab")
    assert boot.returncode == 0, boot.stderr
    assert "ensemble: info: Logged in to Cobbler at" in boot.stderr
    assert "Logged in to Cobbler at" in logs[0].read_text() and "Cobbler call" in logs[0].read_text()

    destroy = ensemble("destroy-environment", "-e", "lab", "-y", "-l", str(logs[1]))
    assert destroy.returncode == 0, destroy.stderr
    assert "Logged in to Cobbler at" not in destroy.stderr  # no -v: info events only in the log file
    assert "released node" in logs[1].read_text()

    gone = ensemble("-l", str(logs[2]), "status", "-e", "lab", "-v")
    assert gone.returncode == 1
    assert gone.stderr.strip().splitlines()[-1] == (
        "ensemble: error: environment 'lab' is not bootstrapped: run 'ensemble bootstrap -e lab'"
    )
    assert "Traceback" in gone.stderr  # -v after the command
    assert logs[2].exists()
    logged = "".join(log.read_text() for log in logs)
    for secret in lab.secrets():
        assert secret not in logged
    assert_no_secrets(lab, boot, destroy, gone)


@pytest.mark.parametrize(
    ("constraints", "error"),
    [
        ("arch=amd64 colour=red", "unknown constraint 'colour' (known: "),  # the CLI's check, on the reactor
        ("arch=amd64 cpu=-2", "constraint cpu=-2: expected a number of at least 0"),  # the provider's refusal
    ],
    ids=["unknown", "uncheckable"],
)
def test_a_bad_constraint_is_exit_2_before_anything_is_touched(lab: RunningLab, constraints: str, error: str) -> None:
    """A constraint the provider does not know, or cannot check, stops bootstrap before storage or Cobbler."""
    server = lab.cobbler()
    before = {r["name"]: (r["mgmt_classes"], r["autoinstall_meta"], r["mtime"]) for r in server.get_systems()}
    boot = ensemble("bootstrap", "-e", "lab", "--constraints", constraints)
    assert boot.returncode == 2
    [line] = boot.stderr.strip().splitlines()  # no progress: nothing was checked or claimed
    assert line.startswith(f"ensemble: error: {error}") and boot.stdout == ""
    after = {r["name"]: (r["mgmt_classes"], r["autoinstall_meta"], r["mtime"]) for r in server.get_systems()}
    assert after == before
    status = ensemble("status", "-e", "lab")
    assert status.returncode == 1 and "not bootstrapped" in status.stderr


def test_ensemble_orchestra_log_file_before_and_after_the_command(lab: RunningLab, tmp_path: Path) -> None:
    """setup-server's Cobbler calls land in --log-file, given before or after the command (defect 2)."""
    base = [sys.executable, "-m", "ensemble_orchestra.cli.orchestra"]
    command = ["setup-server", "--cobbler", lab.cobbler_url, "--user", lab.spec.cobbler_user]
    env = {**os.environ, "ENSEMBLE_ORCHESTRA_PASSWORD": lab.spec.cobbler_password}
    before, after = tmp_path / "before.log", tmp_path / "after.log"
    for argv, log in ((["-v", "-l", str(before), *command], before), ([*command, "--log-file", str(after)], after)):
        run = subprocess.run(base + argv, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert ("ensemble-orchestra: info: Logged in to Cobbler at" in run.stderr) is (log is before)
        logged = log.read_text()
        assert "Logged in to Cobbler at" in logged and "Cobbler call" in logged
        assert lab.spec.cobbler_password not in logged + run.stdout + run.stderr
