"""Bad input and half-started labs: one clear line, nothing left running, down is idempotent."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from ensemble_orchestra.cli.orchestra import main
from ensemble_orchestra.lab import cobbler_server, prerequisites, processes
from ensemble_orchestra.lab.lab import Lab, LabError
from ensemble_orchestra.lab.layout import LabSpec
from ensemble_orchestra.lab.testing import free_base_port

pytestmark = pytest.mark.lab


def _recorded_alive(lab: Lab) -> list[str]:
    return [p.stem for p in lab.layout.run_dir.glob("*.pid") if processes.running_pid(p)]


def test_port_in_use_is_one_line_and_starts_nothing(lab_parent: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A busy XML-RPC port: exit 1, one line naming the port and what to do, no process left."""
    base = free_base_port(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", base + 1))
    holder.listen(1)
    root = lab_parent / "busy-port"
    try:
        code = main(["lab", "up", "--dir", str(root), "--base-port", str(base), "--systems", "2", "--no-env"])
    finally:
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert f"port {base + 1} (Cobbler XML-RPC)" in err[0] and "--base-port" in err[0]
    assert "Traceback" not in err[0]
    assert not Lab(root).is_running()


def test_a_server_that_dies_at_start_stops_the_rest(
    lab_parent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cobblerd exiting at start: LabError naming it and its log; every other server is stopped."""
    broken = tmp_path / "broken-cobbler"
    (broken / "bin").mkdir(parents=True)
    for name in ("python", "cobblerd"):
        script = broken / "bin" / name
        script.write_text("#!/bin/sh\necho 'simulated crash' >&2\nexit 3\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    site = broken / "lib" / "python3.11" / "site-packages"
    real = Path(cobbler_server.cobbler_venv())
    real_site = next(real.glob("lib/python3*/site-packages"))
    site.parent.mkdir(parents=True)
    site.symlink_to(real_site)
    monkeypatch.setenv("ENSEMBLE_LAB_COBBLER_VENV", str(broken))

    lab = Lab(lab_parent / "half-started")
    with pytest.raises(LabError) as failure:
        lab.up(LabSpec(base_port=free_base_port(2), systems=2), env_name=None)
    message = str(failure.value)
    assert message.startswith("cobblerd exited")
    assert str(lab.layout.log_file("cobblerd")) in message
    assert "simulated crash" in lab.layout.log_file("cobblerd").read_text()
    assert _recorded_alive(lab) == []
    assert not lab.is_running()


def test_missing_debian_package_names_it(lab_parent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(prerequisites.REQUIRED_PROGRAMS, "no-such-program-xyz", "no-such-package")
    lab = Lab(lab_parent / "missing-package")
    with pytest.raises(LabError, match=r"missing Debian package\(s\) no-such-package: run scripts/install"):
        lab.up(LabSpec(base_port=free_base_port(2), systems=2), env_name=None)
    assert not lab.is_running()


def test_two_labs_side_by_side_and_down_twice(session_lab, lab_parent: Path) -> None:
    """A second lab runs beside the session's; down stops exactly its own processes, twice safely."""
    second = Lab(lab_parent / "second")
    spec = second.up(LabSpec(base_port=free_base_port(2), systems=2), env_name=None)
    try:
        assert spec.base_port != session_lab.spec.base_port
        status = second.status()
        assert status.running and [s.name for s in status.systems] == ["node001", "node002"]
        assert all(s.cobbler is not None for s in status.systems)
        pids = {s.pid for s in status.servers}
    finally:
        stopped = second.down()
    assert len(stopped) == 5  # cobblerd, svc, webdav, 2 BMCs
    assert all(processes.process_start_time(pid) is None for pid in pids)
    assert second.down() == []
    # The session's lab was not touched.
    assert session_lab.lab.status().running


def test_a_lab_saved_before_the_system_kind_rename_comes_up(lab_parent: Path) -> None:
    """An older lab's lab.json says "machines": lab up reads it and keeps the lab (credentials, seeded state)."""
    lab = Lab(lab_parent / "old-settings")
    spec = lab.up(LabSpec(base_port=free_base_port(2), systems=2), env_name=None)
    lab.down()
    saved = json.loads(lab.layout.spec_file.read_text())
    saved["machines"] = saved.pop("system_kind")
    lab.layout.spec_file.write_text(json.dumps(saved))
    seeded = (lab.layout.root / "seeded").read_text()
    try:
        again = lab.up(LabSpec(base_port=spec.base_port, systems=2), env_name=None)
        assert again.system_kind == "process" and again.cobbler_password == spec.cobbler_password
        assert (lab.layout.root / "seeded").read_text() == seeded  # not wiped and seeded afresh
        assert lab.status().running
    finally:
        lab.down()
    assert "machines" not in json.loads(lab.layout.spec_file.read_text())


def test_up_while_running_is_refused(session_lab) -> None:
    with pytest.raises(LabError, match="already running"):
        session_lab.lab.up(session_lab.spec, env_name=None)


def test_status_of_a_lab_that_never_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "--dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "no lab in" in err and "lab up" in err and "Traceback" not in err


def test_down_of_a_lab_that_never_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "down", "--dir", str(tmp_path / "nothing")]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_bad_systems_count_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "up", "--dir", str(tmp_path), "--systems", "0"]) == 2
    assert "--systems must be between 1 and 1000" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "lab.json")


def test_an_unknown_system_kind_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lab", "up", "--dir", str(tmp_path), "--system-kind", "vm"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--system-kind" in err and "'process', 'qemu'" in err
    assert not os.path.exists(tmp_path / "lab.json")
