"""Relations, expose and upgrade-charm end to end on the lab's container systems: wordpress related to mysql
renders a page from MariaDB on another machine; each machine's firewall refuses what is not exposed or related;
a failing relation hook shows in status and is resolved; upgrade-charm runs its hook on every unit.
Runs after test_deploy in the same environment (xdist group "agents"), whose mysql it uses."""

from __future__ import annotations

import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _lab_cli import EXAMPLES, TEST_CHARMS, UNIT_TIMEOUT, Environment, _cli, _status, _unit, _until  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("agents")]

TITLE = "Relations on bare metal"
APPLY_BOUND = 2.0  # s: a firewall change is in force this long after the command returned (issue #14)


def _port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _within(bound: float, check: Any) -> float:
    """Seconds until *check()* holds; fails past *bound*."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, f"not within {bound} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _page(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/", timeout=20) as response:
        assert response.status == 200
        return str(response.read().decode("utf-8", "replace"))


def _hooks(env: Environment, unit: str) -> list[str]:
    """The hooks the unit agent ran, from its log on the machine."""
    address = _unit(unit)["public-address"]
    log = f"/var/log/ensemble/unit-{unit.replace('/', '-')}.log"
    done = env.ssh(f"sudo grep -o 'running hook .*' {log} || true", address)
    return [line.removeprefix("running hook ") for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def related(agents_environment: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """mysql (test_deploy's, or a new one) and wordpress, related."""
    settings = tmp_path_factory.mktemp("wordpress") / "deploy.yaml"
    settings.write_text(f'wordpress:\n  title: "{TITLE}"\n')
    if "mysql" not in _status()["services"]:
        assert _cli("deploy", "--repository", str(EXAMPLES), "local:bookworm/mysql").returncode == 0
    done = _cli("deploy", "--repository", str(EXAMPLES), "--config", str(settings), "local:bookworm/wordpress")
    assert done.returncode == 0, done.stderr
    for unit in ("mysql/0", "wordpress/0"):
        _until(lambda unit=unit: _unit(unit).get("agent-state") == "started", UNIT_TIMEOUT, f"{unit} started")
    assert _cli("unexpose", "mysql").returncode == 0  # test_deploy exposed it to query it from here
    added = _cli("add-relation", "wordpress", "mysql")
    assert added.returncode == 0, added.stderr
    assert "mysql:db wordpress:db (mysql)" in added.stdout
    _until(lambda: "80/tcp" in _unit("wordpress/0").get("open-ports", []), 300, "wordpress configured from db")
    yield {"env": agents_environment}


def test_the_relation_configures_wordpress_and_each_firewall_lets_in_only_what_it_should(
    related: dict[str, Any],
) -> None:
    env = related["env"]
    status = _status()
    assert status["services"]["wordpress"]["relations"] == {"db": ["mysql"]}
    assert status["services"]["mysql"]["relations"] == {"db": ["wordpress"]}
    wordpress, mysql = _unit("wordpress/0")["public-address"], _unit("mysql/0")["public-address"]
    # Not exposed: refused from this host; mysql refused from here too, while wordpress reaches it.
    assert not _port_open(wordpress, 80)
    assert not _port_open(mysql, 3306)
    reach = env.ssh(f"timeout 3 bash -c 'echo > /dev/tcp/{mysql}/3306' && echo reached", wordpress)
    assert "reached" in reach.stdout, reach.stderr
    assert _port_open(wordpress, 22)  # SSH always
    assert not _port_open(env.address, 2181)  # machine 0's ZooKeeper: the environment's machines only
    # On both sides joined came first, directly followed by changed (for the one remote unit).
    for unit in ("wordpress/0", "mysql/0"):
        hooks = _hooks(env, unit)
        joined = hooks.index("db-relation-joined")
        assert hooks[joined + 1] == "db-relation-changed", hooks

    exposed = _cli("expose", "wordpress")
    assert exposed.returncode == 0 and "80/tcp" in exposed.stdout, exposed.stderr
    _within(APPLY_BOUND, lambda: _port_open(wordpress, 80, 0.3))
    page = _page(wordpress)  # WordPress rendered it from the database on mysql's machine
    assert f"<title>{TITLE}</title>" in page.replace("&#039;", "'"), page[:500]
    assert "wp-admin/install.php" not in page
    assert _status()["services"]["wordpress"]["exposed"] is True
    assert _cli("set", "wordpress", "title=Retitled by set").returncode == 0  # config-changed writes the database
    _until(lambda: "<title>Retitled by set</title>" in _page(wordpress), 120, "the new title on the page")

    assert _cli("unexpose", "wordpress").returncode == 0
    _within(APPLY_BOUND, lambda: not _port_open(wordpress, 80, 0.3))


def test_the_firewall_survives_an_agent_restart_and_a_reboot(related: dict[str, Any]) -> None:
    """The rules live in the kernel (a killed agent changes nothing) and in /etc/ensemble/firewall.nft, which
    ensemble-firewall.service loads at boot before the network and the agents."""
    env = related["env"]
    wordpress = _unit("wordpress/0")["public-address"]
    assert _cli("expose", "wordpress").returncode == 0
    _within(APPLY_BOUND, lambda: _port_open(wordpress, 80, 0.3))
    killed = env.ssh("sudo systemctl kill -s KILL ensemble-machine-agent", wordpress)
    assert killed.returncode == 0, killed.stderr
    assert _port_open(wordpress, 80)  # in force while the agent restarts
    _until(
        lambda: env.ssh("systemctl is-active ensemble-machine-agent", wordpress).stdout.strip() == "active",
        60,
        "the machine agent restarted",
    )
    status = _status()
    machine = status["services"]["wordpress"]["units"]["wordpress/0"]["machine"]
    system = status["machines"][str(machine)]["dns-name"].partition(".")[0]
    assert env.ssh("sudo touch /run/before-reboot", wordpress).returncode == 0  # /run is emptied by a boot
    env.lab.cobbler().power_system(f"system::{system}", "reboot", env.lab.token())
    _until(lambda: env.ssh("true", wordpress).returncode == 0, 180, f"{system} back after the reboot")
    assert env.ssh("test -e /run/before-reboot", wordpress).returncode == 1, "the system did not reboot"
    order = env.ssh(
        "systemctl show -p ActiveEnterTimestampMonotonic --value ensemble-firewall ensemble-machine-agent"
        "; systemctl show -p ExecMainStartTimestampMonotonic --value ensemble-machine-agent",
        wordpress,
    ).stdout.split()
    firewall_at, agent_active_at, agent_started_at = (int(x) for x in order)
    assert 0 < firewall_at < agent_started_at, order  # loaded before the agent started
    assert agent_active_at > 0
    world = env.ssh("sudo nft -n list set inet ensemble world", wordpress).stdout
    assert "6 . 80" in world, world  # -n: numeric, tcp is protocol 6
    _until(lambda: _port_open(wordpress, 80, 0.5), 120, "WordPress answering again after the reboot")
    assert not _port_open(_unit("mysql/0")["public-address"], 3306)
    assert _cli("unexpose", "wordpress").returncode == 0
    _within(APPLY_BOUND, lambda: not _port_open(wordpress, 80, 0.3))


def test_a_new_wordpress_unit_joins_the_existing_relation(related: dict[str, Any]) -> None:
    added = _cli("add-unit", "wordpress", "--wait", "--timeout", str(UNIT_TIMEOUT), timeout=UNIT_TIMEOUT + 60)
    assert added.returncode == 0 and "wordpress/1 started" in added.stdout, added.stderr
    _until(lambda: "80/tcp" in _unit("wordpress/1").get("open-ports", []), 300, "wordpress/1 configured from db")
    assert _cli("expose", "wordpress").returncode == 0
    address = _unit("wordpress/1")["public-address"]
    _within(APPLY_BOUND, lambda: _port_open(address, 80, 0.3))
    assert "<title>Retitled by set</title>" in _page(address)  # the same site: one database
    assert _cli("unexpose", "wordpress").returncode == 0


def test_a_failing_relation_hook_shows_in_status_and_resolved_retry_runs_it_again(related: dict[str, Any]) -> None:
    env = related["env"]
    done = _cli("deploy", "--repository", str(TEST_CHARMS), "probe", "relprobe")
    assert done.returncode == 0, done.stderr
    _until(lambda: _unit("relprobe/0").get("agent-state") == "started", UNIT_TIMEOUT, "relprobe/0 started")
    assert _cli("set", "relprobe", "fail-hook=db-relation-changed").returncode == 0
    assert _cli("add-relation", "relprobe", "mysql").returncode == 0

    def relation_error() -> dict[str, Any] | None:
        unit = _unit("relprobe/0")
        return unit if unit.get("relation-errors") else None

    unit = _until(relation_error, 180, "relprobe/0's relation error")
    assert unit["relation-errors"] == {"db": ["mysql"]} and unit["agent-state"] == "started"
    [info] = unit["relation-errors-info"].values()
    assert info["hook"] == "db-relation-changed" and info["remote-unit"] == "mysql/0"
    assert "db-relation-changed refuses: fail-hook is db-relation-changed" in info["hook-output"]
    refused = _cli("resolved", "relprobe/0", "website")
    assert refused.returncode == 2 and "no relation 'website' in error" in refused.stderr
    assert _cli("set", "relprobe", "fail-hook=").returncode == 0
    retried = _cli("resolved", "--retry", "relprobe/0", "db")
    assert retried.returncode == 0 and "runs hook db-relation-changed again" in retried.stdout, retried.stderr
    _until(lambda: not _unit("relprobe/0").get("relation-errors"), 120, "the relation error resolved")
    address = _unit("relprobe/0")["public-address"]

    def saw_database() -> bool:  # mysql made it a database; the retried hook (or the next changed) read it
        log = env.ssh("sudo cat /var/lib/probe/hooks.log", address).stdout
        return "saw database=relprobe members=mysql/0 " in log

    _until(saw_database, 120, "relprobe/0 read mysql's settings")


def test_upgrade_charm_runs_its_hook_then_config_changed(related: dict[str, Any], tmp_path: Any) -> None:
    env = related["env"]
    address = _unit("relprobe/0")["public-address"]
    before = env.ssh("sudo cat /var/lib/probe/hooks.log", address).stdout.splitlines()
    repository = tmp_path / "repo"
    source = TEST_CHARMS / "bookworm" / "probe"
    shutil.copytree(source, repository / "bookworm" / "probe", symlinks=True)
    (repository / "bookworm" / "probe" / "revision").write_text("2\n")
    done = _cli("upgrade-charm", "--repository", str(repository), "relprobe")
    assert done.returncode == 0, done.stderr
    assert "local:bookworm/probe-1 -> local:bookworm/probe-2" in done.stdout

    def upgraded() -> list[str] | None:
        lines = env.ssh("sudo cat /var/lib/probe/hooks.log", address).stdout.splitlines()[len(before) :]
        return lines if "end config-changed" in lines else None

    added = _until(upgraded, 180, "upgrade-charm and config-changed on relprobe/0")
    assert added[:4] == ["begin upgrade-charm", "end upgrade-charm", "begin config-changed", "end config-changed"]
    assert _status()["services"]["relprobe"]["charm"] == "local:bookworm/probe-2"
    again = _cli("upgrade-charm", "--repository", str(repository), "relprobe")
    assert again.returncode == 0 and "runs local:bookworm/probe-2 already" in again.stdout, again.stderr


def test_remove_relation_runs_departed_and_broken_on_both_sides(related: dict[str, Any]) -> None:
    env = related["env"]
    done = _cli("remove-relation", "wordpress", "mysql")
    assert done.returncode == 0, done.stderr
    _until(lambda: "80/tcp" not in _unit("wordpress/0").get("open-ports", []), 120, "wordpress closed port 80")
    for unit in ("wordpress/0", "mysql/0"):
        _until(lambda unit=unit: "db-relation-broken" in _hooks(env, unit), 120, f"{unit}'s broken hook")
        hooks = _hooks(env, unit)
        last_departed = max(i for i, h in enumerate(hooks) if h == "db-relation-departed")
        assert last_departed < max(i for i, h in enumerate(hooks) if h == "db-relation-broken")
    status = _status()
    assert "relations" not in status["services"]["wordpress"]
    assert status["services"]["mysql"]["relations"] == {"db": ["relprobe"]}
