"""The example charms deployed by the real agents (#14): `ensemble deploy` mysql and wordpress, `add-relation`,
`expose`: WordPress on one machine serves a page from MariaDB on another, to this host, through the machines'
firewalls; `remove-relation` closes it again.

Its own lab of three container systems and its own environment (machine 0, mysql/0, wordpress/0), every step
a command as a user types it. test_example_charms.py proves the hooks' details with stand-in tools; this
proves that the unit agent's relation hooks and tools (relation-set --file among them) drive them the same.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.home import environments_file
from ensemble_orchestra.lab.envfile import lab_environment, merge_environment
from ensemble_orchestra.lab.testing import start_lab

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("example_charms_deploy")]

ENV = "charms"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UNITS_TIMEOUT = 900.0  # two machines launch and boot, agents start, MariaDB and WordPress install
TITLE = "Deployed by Ensemble"


def _cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", args[0], "-e", ENV, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _ok(*args: str, timeout: float = 400) -> str:
    done = _cli(*args, timeout=timeout)
    assert done.returncode == 0, f"ensemble {' '.join(args)}: {done.stderr}"
    return done.stdout


def _units() -> dict[str, dict[str, Any]]:
    status = json.loads(_ok("status", "--format", "json", timeout=120))
    return {name: unit for service in status["services"].values() for name, unit in service["units"].items()}


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(3)
    return value


def _title(url: str) -> str | None:
    """The page's <title>, or None while the site cannot be reached or answers an error."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            found = re.search(r"<title>(.*?)</title>", answer.read().decode(), re.S)
    except (urllib.error.URLError, OSError):
        return None
    return html.unescape(found.group(1)) if found else None


@pytest.fixture(scope="module")
def environment(lab_parent: Path, ensemble_home: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    running = start_lab(lab_parent / "charms-deploy-lab", systems=3, env_name=None, system_kind="container")
    try:
        raw = dict(lab_environment(running.spec, running.layout))
        raw["power-timeout"] = 30
        merge_environment(environments_file(), ENV, raw)
        started = time.monotonic()
        _ok("bootstrap", "--wait", "--wait-timeout", "400", timeout=500)
        print(f"bootstrap --wait: {time.monotonic() - started:.0f} s")
        yield
        _ok("destroy-environment", "-y")
    finally:
        running.lab.down()


def test_wordpress_related_to_mysql_serves_its_site_to_this_host(environment: None, tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"wordpress:\n  title: {TITLE}\n")
    started = time.monotonic()
    _ok("deploy", "--repository", str(EXAMPLES), "local:bookworm/mysql")
    _ok("deploy", "--repository", str(EXAMPLES), "--config", str(settings), "local:bookworm/wordpress")
    _ok("add-relation", "wordpress", "mysql")
    _ok("expose", "wordpress")

    def serving() -> dict[str, dict[str, Any]] | None:
        units = _units()
        wordpress = units.get("wordpress/0", {})
        assert not wordpress.get("relation-errors") and not units.get("mysql/0", {}).get("relation-errors")
        assert "error" not in str(wordpress.get("agent-state")), wordpress
        return units if wordpress.get("open-ports") == ["80/tcp"] else None

    units = _until(serving, UNITS_TIMEOUT, "wordpress/0 open on port 80")
    print(f"deploy, add-relation, expose → wordpress/0 serving: {time.monotonic() - started:.0f} s")
    assert units["mysql/0"]["agent-state"] == "started" and units["mysql/0"]["open-ports"] == ["3306/tcp"]
    assert units["mysql/0"]["machine"] != units["wordpress/0"]["machine"]
    url = f"http://{units['wordpress/0']['public-address']}/"
    assert _until(lambda: _title(url), 30, "the site answers") == TITLE

    _ok("set", "wordpress", "title=Retitled")
    assert _until(lambda: _title(url) == "Retitled", 60, "config-changed retitles the site")

    _ok("remove-relation", "wordpress", "mysql")
    _until(lambda: not _units()["wordpress/0"].get("open-ports"), 120, "broken closes port 80")
    assert _title(url) is None  # 404 without a configuration, then nothing once the firewall closes port 80

    _ok("add-relation", "wordpress", "mysql")  # the site is still in mysql's database
    assert _until(lambda: _title(url) == "Retitled", 120, "related again, the site is back")
