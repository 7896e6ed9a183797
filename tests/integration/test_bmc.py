"""The lab BMC: a real ipmi_sim, driven by the real fence_ipmilan exactly as Cobbler drives it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.layout import SystemSpec
from ensemble_orchestra.lab.processes import (
    process_start_time,
    running_pid,
    start_process,
    stop_process,
    wait_until,
)
from ensemble_orchestra.lab.programs import power_hook, process_system, system_files

FENCE_IPMILAN = "/usr/sbin/fence_ipmilan"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _system(port: int) -> SystemSpec:
    return SystemSpec(
        name="node001",
        index=0,
        mac="52:54:00:00:00:01",
        ip="10.0.0.1",
        hostname="node001.lab.ensemble",
        bmc_port=port,
        bmc_user="root",
        bmc_password="s3cret-0123abcd",
    )


@dataclass
class Bmc:
    system: SystemSpec
    system_dir: Path

    def fence(self, action: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run fence_ipmilan as Cobbler's power_manager does: no arguments, option lines on stdin."""
        fields = bmc.cobbler_power_fields(self.system)
        power_input = (
            f"action={action}\n"
            f"ip={fields['power_address']}\n"
            f"username={fields['power_user']}\n"
            f"password={fields['power_pass'] if password is None else password}\n"
            f"{fields['power_options']}\n"
        )
        return subprocess.run(
            [FENCE_IPMILAN],
            input=power_input,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def boots(self) -> list[str]:
        return _boots(self.system_dir)


def _boots(system_dir: Path) -> list[str]:
    try:
        return system_files.boots_log(system_dir).read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture
def lab_bmc(tmp_path: Path) -> Iterator[Bmc]:
    for tool in ("ipmi_sim", "ipmitool", FENCE_IPMILAN):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    system = _system(_free_udp_port())
    system_dir = tmp_path / system.name
    system_dir.mkdir()
    argv = bmc.write_bmc_config(system_dir, system)
    pid_file = tmp_path / "bmc.pid"
    start_process(argv, pid_file, tmp_path / "bmc.log")
    try:
        assert bmc.bmc_ready(system, timeout=5), (tmp_path / "bmc.log").read_text()
        yield Bmc(system, system_dir)
    finally:
        bmc.power_off(system_dir)
        stop_process(pid_file)


@pytest.mark.lab
def test_fence_ipmilan_powers_the_system_on_and_off(lab_bmc: Bmc) -> None:
    """on boots the system's process exactly once; off stops it; status follows, with fence's exit codes."""
    status = lab_bmc.fence("status")
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF"), status.stderr
    assert not bmc.power_is_on(lab_bmc.system_dir)

    on = lab_bmc.fence("on")
    assert on.returncode == 0, on.stdout + on.stderr
    status = lab_bmc.fence("status")
    assert (status.returncode, status.stdout.strip()) == (0, "Status: ON")
    pid = running_pid(system_files.system_pid_file(lab_bmc.system_dir))
    assert pid is not None and bmc.power_is_on(lab_bmc.system_dir)
    assert wait_until(lambda: len(lab_bmc.boots()) == 1, timeout=5)
    assert lab_bmc.boots()[0].startswith("boot 1 ") and lab_bmc.boots()[0].endswith(f" pid={pid} from=disk")
    # Started detached: it holds neither the BMC's UDP socket nor ipmi_sim's pipe, only 0-2.
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]

    again = lab_bmc.fence("on")
    assert again.returncode == 0 and "Already ON" in again.stdout
    assert running_pid(system_files.system_pid_file(lab_bmc.system_dir)) == pid

    off = lab_bmc.fence("off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert process_start_time(pid) is None
    assert not bmc.power_is_on(lab_bmc.system_dir)
    status = lab_bmc.fence("status")
    assert (status.returncode, status.stdout.strip()) == (2, "Status: OFF")
    assert len(lab_bmc.boots()) == 1


@pytest.mark.lab
def test_wrong_password_fails_fast_and_changes_nothing(lab_bmc: Bmc) -> None:
    """A wrong password is fence's generic failure (exit 1) within a second, and power stays off."""
    started = time.monotonic()
    result = lab_bmc.fence("on", password="not-the-password")
    assert result.returncode == 1
    assert time.monotonic() - started < 2
    assert "not-the-password" not in result.stdout + result.stderr
    assert not bmc.power_is_on(lab_bmc.system_dir)
    assert lab_bmc.fence("status").returncode == 2
    assert lab_bmc.boots() == []


@pytest.mark.lab
def test_power_off_without_the_bmc_is_idempotent(lab_bmc: Bmc) -> None:
    """lab reset/down stops a booted system directly, and a second call is a no-op."""
    assert lab_bmc.fence("on").returncode == 0
    assert bmc.power_off(lab_bmc.system_dir) is True
    assert bmc.power_off(lab_bmc.system_dir) is False
    assert lab_bmc.fence("status").returncode == 2


def test_config_files_are_private_and_start_ipmi_sim(tmp_path: Path) -> None:
    """The lan.conf holds the BMC password: mode 0600, and no anonymous or unauthenticated access."""
    system = _system(29999)
    argv = bmc.write_bmc_config(tmp_path, system, python="/opt/py/bin/python")
    lan_conf = tmp_path / "bmc" / "lan.conf"
    assert argv == [
        "ipmi_sim", "-n", "-c", str(lan_conf), "-f", str(tmp_path / "bmc" / "bmc.emu"),
        "-s", str(tmp_path / "bmc" / "state"),
    ]  # fmt: skip
    for name in ("lan.conf", "bmc.emu"):
        assert stat.S_IMODE((tmp_path / "bmc" / name).stat().st_mode) == 0o600
    text = lan_conf.read_text()
    assert "addr 127.0.0.1 29999" in text
    assert f'chassis_control "/opt/py/bin/python -m ensemble_orchestra.lab.programs.power_hook {tmp_path}"' in text
    assert 'user 2 true "root" "s3cret-0123abcd" admin' in text
    assert "user 1 " not in text and " none" not in text
    assert any(line.strip().startswith("guid ") for line in text.splitlines())


def test_bad_credentials_are_refused_without_echoing_them(tmp_path: Path) -> None:
    system = _system(29999)
    bad = SystemSpec(**{**system.__dict__, "bmc_password": 'hunter"2'})
    with pytest.raises(ValueError) as raised:
        bmc.write_bmc_config(tmp_path, bad)
    assert "hunter" not in str(raised.value)
    assert not (tmp_path / "bmc" / "lan.conf").exists()


def test_cobbler_power_options_are_fence_stdin_lines() -> None:
    fields = bmc.cobbler_power_fields(_system(25160))
    assert fields == {
        "power_type": "ipmilan",
        "power_address": "127.0.0.1",
        "power_user": "root",
        "power_pass": "s3cret-0123abcd",
        "power_options": "ipport=25160\nlanplus=1\ncipher=3\npower_wait=0",
    }


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["get"],
        ["get", "volume"],
        ["set", "power"],
        ["set", "power", "2"],
        ["set", "reset", "0"],
        ["set", "identify", "15 0"],
        ["frob", "power"],
    ],
)
def test_hook_rejects_calls_ipmi_sim_never_makes(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments exit 2 with a message and print nothing ipmi_sim could take for an answer."""
    assert power_hook.main([str(tmp_path), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("power_hook: ")


def test_hook_needs_an_existing_system_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert power_hook.main([str(tmp_path / "missing"), "get", "power"]) == 2
    assert "no system directory" in capsys.readouterr().err


def test_hook_answers_gets_in_ipmi_sim_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert power_hook.main([str(tmp_path), "get", "power", "boot"]) == 0
    assert capsys.readouterr().out == "power:0\nboot:default\n"
    assert power_hook.main([str(tmp_path), "set", "boot", "pxe"]) == 0
    assert power_hook.main([str(tmp_path), "get", "boot"]) == 0
    assert capsys.readouterr().out == "boot:pxe\n"


def test_hook_power_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """set power 1 twice boots once; set power 0 twice stops once; reset reboots a running system."""
    pid_file = system_files.system_pid_file(tmp_path)
    try:
        assert power_hook.main([str(tmp_path), "set", "power", "1"]) == 0
        first = running_pid(pid_file)
        assert first is not None
        assert power_hook.main([str(tmp_path), "set", "power", "1"]) == 0
        assert running_pid(pid_file) == first
        assert wait_until(lambda: len(_boots(tmp_path)) == 1, timeout=5)
        assert power_hook.main([str(tmp_path), "set", "reset", "1"]) == 0
        second = running_pid(pid_file)
        assert second not in (None, first) and process_start_time(first) is None
        assert wait_until(lambda: len(_boots(tmp_path)) == 2, timeout=5)
        assert _boots(tmp_path)[1].endswith(f" pid={second} from=disk")
    finally:
        assert power_hook.main([str(tmp_path), "set", "power", "0"]) == 0
    assert running_pid(pid_file) is None
    assert power_hook.main([str(tmp_path), "set", "power", "0"]) == 0
    assert power_hook.main([str(tmp_path), "get", "power"]) == 0
    assert capsys.readouterr().out == "power:0\n"


def test_process_system_records_its_boot_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ensemble_orchestra.lab.programs.process_system", str(tmp_path)])
    try:
        assert wait_until(lambda: _boots(tmp_path) != [], timeout=5, alive=lambda: proc.poll() is None)
        (line,) = _boots(tmp_path)
        assert line.startswith("boot 1 ") and line.endswith(f" pid={proc.pid} from=disk")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_system_refuses_broken_settings(tmp_path: Path) -> None:
    system_files.settings_file(tmp_path).write_text("[1, 2]")
    assert process_system.main([str(tmp_path)]) == 1
    assert not system_files.boots_log(tmp_path).exists()


def test_hook_refuses_an_unknown_system_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A system.json naming a kind this hook cannot boot is one line and exit 1 (a failure for the BMC), not a boot."""
    system_files.settings_file(tmp_path).write_text('{"name": "node001", "system_kind": "abacus"}')
    assert power_hook.main([str(tmp_path), "set", "power", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("power_hook: ") and "abacus" in err and len(err.splitlines()) == 1
    assert not power_hook.is_on(tmp_path)


def test_power_off_also_stops_a_system_recorded_by_an_older_lab(tmp_path: Path) -> None:
    """Labs before the programs/ package recorded the booted system in machine.pid: lab down/reset stops it too."""
    pid = start_process([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "machine.pid", tmp_path / "o")
    assert bmc.power_off(tmp_path) is True
    assert process_start_time(pid) is None and not (tmp_path / "machine.pid").exists()
    assert bmc.power_off(tmp_path) is False
