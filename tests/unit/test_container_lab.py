"""Container systems, the parts that need no root: refusals, the nspawn command, and what `lab status` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ensemble_orchestra.lab import container_lab
from ensemble_orchestra.lab.errors import LabError
from ensemble_orchestra.lab.layout import LabLayout, LabSpec
from ensemble_orchestra.lab.programs import container_system
from ensemble_orchestra.lab.programs.system_files import disk_dir


def test_a_container_lab_without_root_is_one_line_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(container_lab.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="need root .*--system-kind process"):
        container_lab.plan(LabLayout(tmp_path), LabSpec(system_kind="container"))


def test_nspawn_boots_the_image_with_the_systems_layer_on_the_lab_bridge(tmp_path: Path) -> None:
    settings = {"name": "node003", "image": "/img/rootfs", "bridge": "eol1234abcd", "lab_id": "eol1234abcd"}
    machine = container_system.machine_name(tmp_path, settings)
    argv = container_system.nspawn_argv(settings, tmp_path / "disk", machine)
    assert argv[:4] == ["systemd-nspawn", "--boot", "--register=no", "--keep-unit"]  # both needed here (LAB-NOTES)
    assert f"--overlay=/img/rootfs:{tmp_path / 'disk'}:/" in argv and "--network-bridge=eol1234abcd" in argv
    assert "--hostname=node003" in argv and machine == "eo-eol1234abcd-node003"
    alone = container_system.nspawn_argv({**settings, "bridge": None}, tmp_path / "disk", machine)
    assert "--private-network" in alone and not any(a.startswith("--network-bridge") for a in alone)


@pytest.mark.parametrize(
    ("power_on", "state", "files", "expected"),
    [
        (False, "running", {}, "off"),
        (True, None, {}, "starting"),
        (True, "installing", {}, "installing"),
        (True, "crashed", {}, "crashed"),
        (True, "running", {}, "booting"),
        (True, "running", {"var/lib/cloud/instances/i-1/boot-finished": ""}, "cloud-init done"),
        (
            True,
            "running",
            {
                "var/lib/cloud/instances/i-1/boot-finished": "",
                "var/lib/cloud/data/result.json": json.dumps({"v1": {"errors": ["runcmd failed"]}}),
            },
            "cloud-init failed",
        ),
    ],
)
def test_lab_status_reads_the_state_and_cloud_init_from_the_layer(
    tmp_path: Path, power_on: bool, state: str | None, files: dict[str, str], expected: str
) -> None:
    if state is not None:
        container_system.state_file(tmp_path).write_text(json.dumps({"state": state}))
    for name, text in files.items():
        path = disk_dir(tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert container_system.describe(tmp_path, power_on) == expected
