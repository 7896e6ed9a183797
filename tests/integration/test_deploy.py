"""`ensemble deploy` end to end on the lab's container systems, which run a real Debian: the example mysql
charm, once exposed, answers a query from this host with the configured password; the probe charm
(tests/charms) fails, lingers and records its hooks on demand, for the lifecycle's failure paths. Shares
conftest's bootstrapped environment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _lab_cli import (  # noqa: E402
    ENV,
    EXAMPLES,
    PASSWORD,
    TEST_CHARMS,
    UNIT_TIMEOUT,
    Environment,
    _cli,
    _state_is,
    _status,
    _unit,
    _until,
)

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("agents")]


def _hooks_log(env: Environment, address: str) -> list[str]:
    done = env.ssh("sudo cat /var/lib/probe/hooks.log 2>/dev/null || true", address)
    return done.stdout.splitlines()


def _query(address: str, config: Path, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mariadb", f"--defaults-extra-file={config}", "-h", address, "--connect-timeout=10", "-N", "-e", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def deployed(agents_environment: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """mysql (with a root password from --config) and probe (whose install fails) deployed at once."""
    secrets = tmp_path_factory.mktemp("mysql-secrets")
    settings = secrets / "deploy.yaml"
    settings.write_text(f'mysql:\n  root-password: "{PASSWORD}"\n  database: shop\nprobe:\n  fail-hook: install\n')
    client = secrets / "client.cnf"
    client.write_text(f'[client]\nuser=root\npassword="{PASSWORD}"\n')
    client.chmod(0o600)
    started = time.monotonic()
    mysql = _cli("deploy", "--repository", str(EXAMPLES), "--config", str(settings), "local:bookworm/mysql")
    assert mysql.returncode == 0, mysql.stderr
    probe = _cli("deploy", "--repository", str(TEST_CHARMS), "--config", str(settings), "probe")
    assert probe.returncode == 0, probe.stderr
    _until(_state_is("mysql/0", "started"), UNIT_TIMEOUT, "mysql/0 started")
    _until(_state_is("probe/0", "install-error"), UNIT_TIMEOUT, "probe/0 in install-error")
    yield {"client": client, "settings": settings, "deploy_s": time.monotonic() - started, "deploy": mysql}


def test_mysql_answers_a_query_from_this_host_with_the_configured_password(deployed: dict[str, Any]) -> None:
    assert "deployed mysql (local:bookworm/mysql-1): mysql/0" in deployed["deploy"].stdout
    unit = _unit("mysql/0")
    assert unit["open-ports"] == ["3306/tcp"] and unit["machine"] not in (None, 0)
    # The machine's firewall refuses 3306 from outside the environment until the service is exposed.
    refused = _query(unit["public-address"], deployed["client"], "SELECT 1")
    assert refused.returncode != 0 and "Can't connect" in refused.stderr, refused.stderr
    exposed = _cli("expose", "mysql")
    assert exposed.returncode == 0 and "3306/tcp" in exposed.stdout, exposed.stderr
    answer = _query(unit["public-address"], deployed["client"], "SHOW DATABASES LIKE 'shop'")
    assert answer.returncode == 0 and answer.stdout.split() == ["shop"], answer.stderr
    wrong = deployed["client"].with_name("wrong.cnf")
    wrong.write_text('[client]\nuser=root\npassword="not-it"\n')
    assert _query(unit["public-address"], wrong, "SELECT 1").returncode != 0
    # `ensemble ssh UNIT` reaches the unit's machine, as Ensemble's did.
    on_unit = _cli("ssh", "mysql/0", "systemctl", "is-active", "ensemble-unit-mysql-0")
    assert on_unit.returncode == 0 and on_unit.stdout.strip() == "active", on_unit.stderr
    missing = _cli("ssh", "mysql/9", "true")
    assert missing.returncode == 1 and "no unit mysql/9 in environment" in missing.stderr
    # `ensemble scp` to and from it (UNIT:PATH, MACHINE:PATH).
    sent = deployed["client"].with_name("note.txt")
    sent.write_text("copied by ensemble scp\n")
    copied = _cli("scp", str(sent), "mysql/0:/tmp/note.txt")
    assert copied.returncode == 0, copied.stderr
    back = sent.with_name("back.txt")
    fetched = _cli("scp", f"{unit['machine']}:/tmp/note.txt", str(back))
    assert fetched.returncode == 0 and back.read_text() == "copied by ensemble scp\n", fetched.stderr


def test_set_runs_config_changed_on_the_unit(deployed: dict[str, Any]) -> None:
    done = _cli("set", "mysql", "database=second")
    assert done.returncode == 0, done.stderr
    address = _unit("mysql/0")["public-address"]

    def created() -> bool:
        answer = _query(address, deployed["client"], "SHOW DATABASES LIKE 'second'")
        return answer.stdout.split() == ["second"]

    _until(created, 120, "config-changed created database 'second'")
    got = json.loads(_cli("get", "mysql", "--format", "json").stdout)
    assert got["settings"]["database"]["value"] == "second"
    assert "default" not in got["settings"]["database"] and got["charm"] == "local:bookworm/mysql-1"


def test_a_failing_install_shows_its_output_and_resolved_retry_after_a_fix_starts_the_unit(
    deployed: dict[str, Any], agents_environment: Environment
) -> None:
    unit = _unit("probe/0")
    assert unit["agent-state"] == "install-error" and unit["agent-state-info"] == "hook install failed"
    assert "install refuses: fail-hook is install" in unit["hook-output"]
    not_in_error = _cli("resolved", "mysql/0")
    assert not_in_error.returncode == 2 and "not in an error state" in not_in_error.stderr
    assert _cli("set", "probe", "fail-hook=").returncode == 0  # the fix: back to the default ("")
    retried = _cli("resolved", "--retry", "probe/0")
    assert retried.returncode == 0 and "runs hook install again" in retried.stdout, retried.stderr
    started = _until(_state_is("probe/0", "started"), 120, "probe/0 started after resolved --retry")
    assert started["open-ports"] == ["8000/tcp"]
    log = _hooks_log(agents_environment, started["public-address"])
    assert log == [
        "begin install",  # failed
        "begin install",  # the retry
        "end install",
        "begin config-changed",
        "end config-changed",
        "begin start",
        "end start",
    ]


def test_debug_log_shows_the_units_hook_output(deployed: dict[str, Any]) -> None:
    """The unit agent's log holds every line its hooks printed or logged; debug-log streams it from the machine."""
    machine = _until(_state_is("probe/0", "started"), 120, "probe/0 started")["machine"]
    done = _cli("debug-log", "-r", "-i", "unit-probe-0", "--machine", str(machine), "--timeout", "15", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("probe/0 install| install refuses: fail-hook is install" in line for line in lines), lines[-20:]
    assert any("probe/0 start: probe: start done on" in line for line in lines), lines[-20:]
    assert all(line.startswith(f"machine-{machine} ") for line in lines if line.strip())


def test_a_unit_agent_killed_mid_hook_is_restarted_and_runs_no_completed_hook_again(
    deployed: dict[str, Any], agents_environment: Environment
) -> None:
    env = agents_environment
    address = _until(_state_is("probe/0", "started"), 120, "probe/0 started")["public-address"]
    before = _hooks_log(env, address)
    assert _cli("set", "probe", "slow-hook=config-changed", "slow-seconds=8").returncode == 0

    def lingering() -> bool:
        return _hooks_log(env, address).count("begin config-changed") == before.count("begin config-changed") + 1

    _until(lingering, 60, "config-changed running (sleeping)", every=0.5)
    service = "ensemble-unit-probe-0"
    pid = env.ssh(f"systemctl show -p MainPID --value {service}", address).stdout.strip()
    assert pid.isdigit() and int(pid) > 0
    assert env.ssh(f"sudo kill -9 {pid} && echo ok", address).stdout.strip() == "ok"

    def rerun_done() -> list[str] | None:
        log = _hooks_log(env, address)
        return log if log.count("end config-changed") == before.count("end config-changed") + 1 else None

    log = _until(rerun_done, 120, "config-changed run again to its end by the restarted agent")
    new_pid = env.ssh(f"systemctl show -p MainPID --value {service}", address).stdout.strip()
    assert new_pid != pid
    added = log[len(before) :]
    assert added == ["begin config-changed", "begin config-changed", "end config-changed"], added
    _until(_state_is("probe/0", "started"), 60, "probe/0 started again")


def test_add_unit_then_remove_unit_runs_the_stop_hook_and_releases_the_machine(
    deployed: dict[str, Any], agents_environment: Environment
) -> None:
    env = agents_environment
    added = _cli("add-unit", "probe", "--wait", "--timeout", str(UNIT_TIMEOUT), timeout=UNIT_TIMEOUT + 60)
    assert added.returncode == 0 and "probe/1 started" in added.stdout, added.stderr
    status = _status()
    unit = status["services"]["probe"]["units"]["probe/1"]
    machine = unit["machine"]
    system = status["machines"][str(machine)]["dns-name"].partition(".")[0]
    assert system in env.owned()
    # The stop hook lingers 5 s, so the test can see it run before the machine goes.
    assert _cli("set", "probe", "slow-hook=stop", "slow-seconds=5").returncode == 0
    _until(lambda: _unit("probe/0").get("agent-state") == "started", 60, "probe/0 settled")
    removal = subprocess.Popen(
        [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", "remove-unit", "-e", ENV, "probe/1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(lambda: "begin stop" in _hooks_log(env, unit["public-address"]), 60, "the stop hook began", every=0.5)
        out, err = removal.communicate(timeout=120)
    finally:
        if removal.poll() is None:
            removal.kill()
            removal.communicate()
    assert removal.returncode == 0, err
    assert f"removed probe/1; machine {machine} goes back to the pool" in out
    status = _status()
    assert "probe/1" not in status["services"]["probe"]["units"] and str(machine) not in status["machines"]
    _until(lambda: system not in env.owned(), 120, f"{system} released to the pool")


def test_destroy_service_removes_its_units_nodes_and_machines(
    deployed: dict[str, Any], agents_environment: Environment
) -> None:
    env = agents_environment
    status = _status()
    machine = status["services"]["probe"]["units"]["probe/0"]["machine"]
    system = status["machines"][str(machine)]["dns-name"].partition(".")[0]
    assert _cli("set", "probe", "slow-hook=").returncode == 0
    destroyed = _cli("destroy-service", "probe", timeout=300)
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"destroyed probe; machine {machine} goes back to the pool" in destroyed.stdout
    status = _status()
    assert "probe" not in status["services"] and str(machine) not in status["machines"]
    assert "mysql" in status["services"]
    _until(lambda: system not in env.owned(), 120, f"{system} released to the pool")
    again = _cli("deploy", "--repository", str(EXAMPLES), "local:bookworm/mysql")
    assert again.returncode == 2 and "service mysql exists already" in again.stderr
    errors = [line for line in again.stderr.splitlines() if not line.startswith("waiting for ")]  # progress
    assert errors == ["ensemble: error: deploy: service mysql exists already: name another one (deploy CHARM NAME)"]


def test_a_unit_whose_machine_cannot_be_launched_shows_why_and_can_be_removed(deployed: dict[str, Any]) -> None:
    """No system matches the service's constraints: the machine shows the provisioning agent's launch error,
    the unit stays pending, and remove-unit takes both away at once (nothing was claimed, no agent to stop)."""
    done = _cli(
        "deploy", "--repository", str(TEST_CHARMS), "--constraints", "orchestra-name=no-such-system", "probe", "nowhere"
    )
    assert done.returncode == 0, done.stderr

    def launch_error() -> tuple[int, str] | None:
        status = _status()
        machine = status["services"]["nowhere"]["units"]["nowhere/0"]["machine"]
        error = status["machines"][str(machine)].get("launch-error")
        return (machine, error) if error else None

    machine, error = _until(launch_error, 90, "the launch error on the unit's machine")
    assert "no-such-system" in error or "constraints" in error, error
    assert _unit("nowhere/0")["agent-state"] == "pending"
    removed = _cli("remove-unit", "nowhere/0", timeout=120)
    assert removed.returncode == 0, removed.stderr
    status = _status()
    assert status["services"]["nowhere"]["units"] == {} and str(machine) not in status["machines"]
    assert _cli("destroy-service", "nowhere").returncode == 0
    assert "nowhere" not in _status()["services"]
