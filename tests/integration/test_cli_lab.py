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
