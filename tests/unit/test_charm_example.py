"""The example mysql charm (examples/bookworm/mysql): it loads, bundles, passes shellcheck, and its
config-changed hook does the right thing against stand-in tools (real MariaDB runs only on the lab).

The hooks are run with their state and configuration paths moved into a temporary directory and the
hook tools, systemctl, getent and mysql replaced by scripts that record how they were called.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ensemble_orchestra.charm import CharmDirectory, CharmURL, LocalRepository, make_bundle, unpack_bundle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MYSQL = EXAMPLES / "bookworm" / "mysql"
STATE_DIR = "/var/lib/ensemble-mysql"
CONF_DIR = "/etc/mysql/mariadb.conf.d"


def test_it_loads_from_the_repository_with_executable_hooks() -> None:
    charm = LocalRepository(EXAMPLES).find(CharmURL.parse("mysql", "bookworm"))
    assert charm.path == MYSQL and charm.revision == 1
    assert charm.metadata.name == "mysql"
    assert charm.metadata.provides["db"].interface == "mysql"
    assert charm.config.defaults() == {"root-password": "", "database": "ensemble"}
    assert charm.hook_names() == [
        "config-changed",
        "db-relation-broken",
        "db-relation-departed",
        "db-relation-joined",
        "install",
        "start",
        "stop",
    ]
    for name in charm.hook_names():
        mode = charm.hook_path(name).stat().st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, name
    assert charm.warnings() == []


def test_hooks_are_strict_bash_without_passwords_in_arguments() -> None:
    for hook in (MYSQL / "hooks").iterdir():
        text = hook.read_text()
        assert text.startswith("#!/bin/bash\n"), hook.name
        assert "\nset -eu -o pipefail\n" in text, hook.name
        assert "--password" not in text and "-p$" not in text and "IDENTIFIED BY '$password'" not in text


def test_bundle_round_trip_keeps_the_hooks_executable(tmp_path: Path) -> None:
    bundle = make_bundle(CharmDirectory.load(MYSQL))
    unpack_bundle(bundle.data, tmp_path / "charm", bundle.sha256)
    for name in ("install", "config-changed", "start", "stop"):
        assert os.access(tmp_path / "charm" / "hooks" / name, os.X_OK)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
def test_shellcheck() -> None:
    hooks = sorted(str(p) for p in (MYSQL / "hooks").iterdir())
    result = subprocess.run(["shellcheck", "-x", "--shell=bash", *hooks], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- config-changed against stand-in tools -------------------------------------------------------------------------

STUBS = {
    "config-get": 'case "$1" in database) printf "%s\\n" "$T_DATABASE";; root-password) printf "%s\\n" "$T_PASSWORD";; '
    "*) exit 2;; esac",
    "unit-get": 'printf "%s\\n" "$T_ADDRESS"',
    "getent": 'printf "127.0.1.1       STREAM %s\\n10.1.2.3        STREAM\\n" "$2"',
    "juju-log": "true",
    "systemctl": "true",
    "mysql": 'cat >> "$T_ROOT/sql"',
}


class Unit:
    """config-changed with its paths under *root* and every tool it calls recorded in root/calls."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, body in STUBS.items():
            stub = bin_dir / name
            stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "{name} $*" >> "$T_ROOT/calls"\n{body}\n')
            stub.chmod(0o755)
        hook = (MYSQL / "hooks" / "config-changed").read_text()
        assert STATE_DIR in hook and CONF_DIR in hook
        self.state = root / "state"
        self.conf_dir = root / "conf.d"
        self.conf_dir.mkdir()
        self.hook = root / "config-changed"
        self.hook.write_text(hook.replace(STATE_DIR, str(self.state)).replace(CONF_DIR, str(self.conf_dir)))
        self.hook.chmod(0o755)

    def run(self, *, database: str = "ensemble", password: str = "", address: str = "10.0.0.5") -> int:
        (self.root / "calls").write_text("")
        (self.root / "sql").write_text("")
        env = {
            "PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
            "T_ROOT": str(self.root),
            "T_DATABASE": database,
            "T_PASSWORD": password,
            "T_ADDRESS": address,
        }
        return subprocess.run([str(self.hook)], env=env, capture_output=True, timeout=30).returncode

    def calls(self) -> list[str]:
        return (self.root / "calls").read_text().splitlines()

    def sql(self) -> str:
        return (self.root / "sql").read_text()

    def conf(self) -> str:
        return (self.conf_dir / "60-ensemble.cnf").read_text()


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    return Unit(tmp_path)


def test_binds_to_the_private_address_and_restarts_only_on_change(unit: Unit) -> None:
    assert unit.run(password="s3cret") == 0
    assert "bind-address = 10.0.0.5\nskip-name-resolve\n" in unit.conf()
    assert "systemctl restart mariadb" in unit.calls()
    assert unit.run(password="s3cret") == 0  # again, nothing changed: no restart, the server just runs
    assert "systemctl restart mariadb" not in unit.calls() and "systemctl start mariadb" in unit.calls()
    assert unit.run(password="s3cret", address="10.0.0.6") == 0
    assert "bind-address = 10.0.0.6" in unit.conf() and "systemctl restart mariadb" in unit.calls()


def test_a_host_name_binds_to_its_reachable_address(unit: Unit) -> None:
    """Debian maps the machine's own name to 127.0.1.1; the hook binds to the other address."""
    assert unit.run(address="node1.lab") == 0
    assert "bind-address = 10.1.2.3\n" in unit.conf()


def test_password_reaches_mysql_on_stdin_only_and_quoted(unit: Unit) -> None:
    password = "it's a \\ Zq9pass"
    assert unit.run(password=password, database="shop-1") == 0
    sql = unit.sql()
    assert "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY 'it''s a \\\\ Zq9pass';" in sql
    assert "ALTER USER 'root'@'%' IDENTIFIED BY 'it''s a \\\\ Zq9pass';" in sql
    assert "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;" in sql
    assert "CREATE DATABASE IF NOT EXISTS `shop-1`;" in sql
    assert not [call for call in unit.calls() if "Zq9" in call]  # no argument carried it
    assert "mysql --protocol=socket --user=root" in unit.calls()


def test_an_empty_password_is_generated_once_and_kept(unit: Unit) -> None:
    assert unit.run() == 0
    kept = unit.state / "root-password"
    password = kept.read_text().strip()
    assert len(password) == 24 and password.replace("-", "").replace("_", "").isalnum()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(unit.state.stat().st_mode) == 0o700
    assert f"IDENTIFIED BY '{password}'" in unit.sql()
    assert unit.run() == 0
    assert kept.read_text().strip() == password and f"IDENTIFIED BY '{password}'" in unit.sql()
    assert not [call for call in unit.calls() if password in call]


@pytest.mark.parametrize("database", ["x; DROP DATABASE mysql", "a`b", "", "d" * 65])
def test_a_database_name_that_is_not_plain_fails_before_any_sql(unit: Unit, database: str) -> None:
    assert unit.run(database=database) == 1
    assert unit.sql() == "" and not [call for call in unit.calls() if call.startswith(("mysql", "systemctl"))]
    assert any(call.startswith("juju-log -l ERROR database") for call in unit.calls())
