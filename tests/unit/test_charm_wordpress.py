"""The example wordpress charm and mysql's db relation hooks, offline: they load, bundle, pass shellcheck, and
their checks and quoting hold against stand-in tools. What they do to real servers (MariaDB, Apache,
WordPress on two Debian systems) is tests/integration/test_example_charms.py.

A hook runs from a copy of its charm in a temporary directory, with the charm's system paths moved into it
and the hook tools, systemctl, mysql, runuser and chown replaced by scripts that record their arguments (and
what reached their standard input).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ensemble_orchestra.charm import CharmDirectory, CharmURL, LocalRepository, make_bundle, unpack_bundle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORDPRESS = EXAMPLES / "bookworm" / "wordpress"
MYSQL = EXAMPLES / "bookworm" / "mysql"
WORDPRESS_HOOKS = [
    "config-changed",
    "db-relation-broken",
    "db-relation-changed",
    "db-relation-departed",
    "db-relation-joined",
    "install",
    "start",
    "stop",
]


def test_it_loads_from_the_repository_with_executable_hooks() -> None:
    charm = LocalRepository(EXAMPLES).find(CharmURL.parse("wordpress", "bookworm"))
    assert charm.path == WORDPRESS and charm.revision == 1
    assert charm.metadata.requires["db"].interface == "mysql" and not charm.metadata.provides
    assert charm.config.defaults() == {
        "title": "Ensemble WordPress",
        "admin-user": "admin",
        "admin-email": "webmaster@example.com",
    }
    assert charm.hook_names() == WORDPRESS_HOOKS
    for name in charm.hook_names():
        mode = charm.hook_path(name).stat().st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, name
    assert charm.warnings() == []


def test_the_bundle_carries_the_hooks_and_what_they_use(tmp_path: Path) -> None:
    bundle = make_bundle(CharmDirectory.load(WORDPRESS))
    unpack_bundle(bundle.data, tmp_path / "charm", bundle.sha256)
    for name in WORDPRESS_HOOKS:
        assert os.access(tmp_path / "charm" / "hooks" / name, os.X_OK)
    for name in ("lib/wordpress.sh", "lib/install.php", "files/ensemble-wordpress.conf"):
        assert (tmp_path / "charm" / name).read_bytes() == (WORDPRESS / name).read_bytes()


def test_hooks_are_strict_bash() -> None:
    for hook in [*(WORDPRESS / "hooks").iterdir(), *(MYSQL / "hooks").glob("db-relation-*")]:
        text = hook.read_text()
        assert text.startswith("#!/bin/bash\n"), hook
        assert "\nset -eu -o pipefail\n" in text, hook


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
def test_shellcheck() -> None:
    """-x: the hooks source lib/*.sh (their `# shellcheck source=` lines name it)."""
    hooks = sorted(str(p) for charm in (WORDPRESS, MYSQL) for p in (charm / "hooks").iterdir())
    result = subprocess.run(["shellcheck", "-x", "--shell=bash", *hooks], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- stand-ins -----------------------------------------------------------------------------------------------------

# Each records "name args" in $T_ROOT/calls, and what it read from stdin (if it reads it) in $T_ROOT/<name>.stdin.
STUBS = {
    "config-get": 'python3 "$T_ROOT/get.py" "$T_ROOT/config.json" "$1"',
    "relation-get": 'python3 "$T_ROOT/get.py" "$T_ROOT/remote.json" "$1"',
    "relation-set": 'cat >> "$T_ROOT/relation-set.stdin"',
    "unit-get": 'printf "%s\\n" "10.0.0.9"',
    "juju-log": "true",
    "open-port": "true",
    "close-port": "true",
    "systemctl": "true",
    "mysql": 'cat >> "$T_ROOT/mysql.stdin"',
    "runuser": 'cat > /dev/null; echo "WordPress installed (stand-in)"',
    "chown": "true",
}


# KEY's value in a JSON file, nothing if it is not set (as config-get and relation-get print).
GET_PY = (
    "import json, sys\nvalue = json.load(open(sys.argv[1])).get(sys.argv[2])\nif value is not None:\n    print(value)\n"
)


class Charm:
    """A copy of *source* under *root* whose system paths point into root; its hooks run with the stand-ins."""

    def __init__(self, source: Path, root: Path, paths: dict[str, str]) -> None:
        self.root = root
        self.dir = root / "charm"
        shutil.copytree(source, self.dir, symlinks=True)
        self.paths = {path: str(root / name) for path, name in paths.items()}
        for path in [*(self.dir / "hooks").iterdir(), *(self.dir / "lib").iterdir()]:
            text = path.read_text()
            for real, moved in self.paths.items():
                text = text.replace(real, moved)
            path.write_text(text)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, body in STUBS.items():
            stub = bin_dir / name
            stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "{name} $*" >> "$T_ROOT/calls"\n{body}\n')
            stub.chmod(0o755)
        (root / "get.py").write_text(GET_PY)
        self.config: dict[str, str] = {}
        self.remote: dict[str, str] = {}

    def run(self, hook: str, **env: str) -> subprocess.CompletedProcess[str]:
        (self.root / "config.json").write_text(json.dumps(self.config))
        (self.root / "remote.json").write_text(json.dumps(self.remote))
        environment = {
            "PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
            "T_ROOT": str(self.root),
            "CHARM_DIR": str(self.dir),
            "ENSEMBLE_UNIT_NAME": "unit/0",
            **env,
        }
        command = [str(self.dir / "hooks" / hook)]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30, cwd=self.dir)

    def calls(self) -> list[str]:
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def stdin_of(self, name: str) -> str:
        path = self.root / f"{name}.stdin"
        return path.read_text() if path.exists() else ""

    def moved(self, path: str) -> Path:
        return Path(self.paths[path])


RELATION_ENV = {"ENSEMBLE_RELATION": "db", "ENSEMBLE_RELATION_ID": "db:7"}


@pytest.fixture
def mysql(tmp_path: Path) -> Charm:
    return Charm(MYSQL, tmp_path, {"/var/lib/ensemble-mysql": "mysql-state"})


@pytest.fixture
def wordpress(tmp_path: Path) -> Charm:
    paths = {"/etc/wordpress": "etc-wordpress", "/var/lib/ensemble-wordpress": "wordpress-state"}
    charm = Charm(WORDPRESS, tmp_path, paths)
    charm.moved("/etc/wordpress").mkdir()
    charm.config = {"title": "T", "admin-user": "admin", "admin-email": "a@example.com"}
    return charm


# --- mysql ---------------------------------------------------------------------------------------------------------


def _names(service: str) -> tuple[str, str]:
    script = f'. "{MYSQL}/lib/names.sh"; service_database "$1"; echo; service_user "$1"'
    done = subprocess.run(["bash", "-c", script, "names", service], capture_output=True, text=True, check=True)
    database, user = done.stdout.split("\n")
    return database, user


def test_names_made_of_a_service_are_plain_and_short_enough() -> None:
    assert _names("wordpress") == ("wordpress", "wordpress")
    assert _names("my-blog-2") == ("my_blog_2", "my_blog_2")
    database, user = _names("a" * 70)
    assert len(database) == 64 and len(user) == 32
    assert database.startswith("a" * 55 + "_") and user.startswith("a" * 23 + "_")
    other_database, other_user = _names("a" * 69 + "b")  # the same prefix: another name all the same
    assert other_database != database and other_user != user
    assert _names("a" * 32) == ("a" * 32, "a" * 32)  # at the limit: as it is


def test_joined_creates_the_database_and_user_and_publishes_them_on_stdin(mysql: Charm) -> None:
    env = {**RELATION_ENV, "ENSEMBLE_REMOTE_UNIT": "my-blog/0"}
    done = mysql.run("db-relation-joined", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    sql = mysql.stdin_of("mysql")
    password_file = mysql.moved("/var/lib/ensemble-mysql") / "services" / "my-blog.password"
    password = password_file.read_text().strip()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600 and len(password) == 24
    assert "CREATE DATABASE IF NOT EXISTS `my_blog`;" in sql
    assert f"CREATE USER IF NOT EXISTS 'my_blog'@'%' IDENTIFIED BY '{password}';" in sql
    assert "GRANT ALL PRIVILEGES ON `my\\_blog`.* TO 'my_blog'@'%';" in sql  # '_' is a wildcard in GRANT
    published = json.loads(mysql.stdin_of("relation-set"))
    assert published == {"database": "my_blog", "user": "my_blog", "password": password, "host": "10.0.0.9"}
    assert "relation-set --file -" in mysql.calls()
    assert not [call for call in mysql.calls() if password in call]
    assert password not in done.stdout + done.stderr
    record = mysql.moved("/var/lib/ensemble-mysql") / "relations" / "db:7"
    assert record.read_text() == "my-blog\n"

    (mysql.root / "relation-set.stdin").unlink()  # another unit of the service: the same credentials
    assert mysql.run("db-relation-joined", **{**env, "ENSEMBLE_REMOTE_UNIT": "my-blog/1"}).returncode == 0
    assert json.loads(mysql.stdin_of("relation-set")) == published


@pytest.mark.parametrize(
    "env",
    [{"ENSEMBLE_RELATION_ID": "db:7"}, {"ENSEMBLE_REMOTE_UNIT": "wp/0"}, {**RELATION_ENV, "ENSEMBLE_REMOTE_UNIT": ""}],
)
def test_joined_outside_the_agent_fails_before_doing_anything(mysql: Charm, env: dict[str, str]) -> None:
    done = mysql.run("db-relation-joined", **env)
    assert done.returncode == 1
    assert [call.split()[0] for call in mysql.calls()] == ["juju-log"]
    assert not mysql.moved("/var/lib/ensemble-mysql").exists()


def test_a_tampered_password_file_is_refused_not_sent(mysql: Charm) -> None:
    services = mysql.moved("/var/lib/ensemble-mysql") / "services"
    services.mkdir(parents=True)
    (services / "wp.password").write_text("x'; DROP USER root; --\n")
    done = mysql.run("db-relation-joined", **RELATION_ENV, ENSEMBLE_REMOTE_UNIT="wp/0")
    assert done.returncode == 1 and mysql.stdin_of("mysql") == "" and mysql.stdin_of("relation-set") == ""


def test_broken_drops_the_user_only_when_no_other_relation_needs_it(mysql: Charm) -> None:
    relations = mysql.moved("/var/lib/ensemble-mysql") / "relations"
    relations.mkdir(parents=True)
    (relations / "db:7").write_text("my-blog\n")
    (relations / "db:9").write_text("my-blog\n")
    assert mysql.run("db-relation-broken", **RELATION_ENV).returncode == 0
    assert mysql.stdin_of("mysql") == "" and not (relations / "db:7").exists()
    assert mysql.run("db-relation-broken", **{**RELATION_ENV, "ENSEMBLE_RELATION_ID": "db:9"}).returncode == 0
    assert mysql.stdin_of("mysql") == "DROP USER IF EXISTS 'my_blog'@'%';\n"  # and no DROP DATABASE
    assert mysql.run("db-relation-broken", **{**RELATION_ENV, "ENSEMBLE_RELATION_ID": "db:9"}).returncode == 0
    assert mysql.stdin_of("mysql") == "DROP USER IF EXISTS 'my_blog'@'%';\n"  # again: nothing more


# --- wordpress -----------------------------------------------------------------------------------------------------


def test_changed_before_the_database_has_answered_waits(wordpress: Charm) -> None:
    wordpress.remote = {"private-address": "10.0.0.2"}
    done = wordpress.run("db-relation-changed", **RELATION_ENV, ENSEMBLE_REMOTE_UNIT="mysql/0")
    assert done.returncode == 0
    assert not any(wordpress.moved("/etc/wordpress").iterdir())
    assert [call.split()[0] for call in wordpress.calls()] == ["relation-get", "juju-log"]


@pytest.mark.parametrize(
    "key, value",
    [("database", "wp'); system('x"), ("user", "a b"), ("host", "db;rm"), ("password", "")],
)
def test_changed_refuses_settings_it_cannot_write_safely(wordpress: Charm, key: str, value: str) -> None:
    wordpress.remote = {"database": "wordpress", "user": "wordpress", "password": "pw", "host": "10.0.0.2"}
    wordpress.remote[key] = value
    done = wordpress.run("db-relation-changed", **RELATION_ENV, ENSEMBLE_REMOTE_UNIT="mysql/0")
    assert done.returncode == 1
    assert not any(wordpress.moved("/etc/wordpress").iterdir())
    assert not [call for call in wordpress.calls() if call.startswith(("open-port", "runuser", "systemctl"))]


def test_changed_writes_the_password_as_a_php_string_and_never_as_an_argument(wordpress: Charm) -> None:
    password = "it's a \\ Zq9pass"
    wordpress.remote = {"database": "wordpress", "user": "wordpress", "password": password, "private-address": "db1"}
    done = wordpress.run("db-relation-changed", **RELATION_ENV, ENSEMBLE_REMOTE_UNIT="mysql/0")
    assert done.returncode == 0, done.stdout + done.stderr
    config = (wordpress.moved("/etc/wordpress") / "config-ensemble.php").read_text()
    assert "define('DB_PASSWORD', 'it\\'s a \\\\ Zq9pass');" in config
    assert "define('DB_HOST', 'db1');" in config  # no host key: the private address
    assert "define('WP_HOME', 'http://10.0.0.9');" in config
    assert stat.S_IMODE((wordpress.moved("/etc/wordpress") / "config-ensemble.php").stat().st_mode) == 0o640
    assert "chown root:www-data" in " ".join(wordpress.calls())
    assert "open-port 80/tcp" in wordpress.calls()
    assert not [call for call in wordpress.calls() if "Zq9" in call]
    admin = wordpress.moved("/var/lib/ensemble-wordpress") / "admin-password"
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    assert not [call for call in wordpress.calls() if admin.read_text().strip() in call]


def test_a_login_name_wordpress_would_refuse_stops_the_install(wordpress: Charm) -> None:
    wordpress.config["admin-user"] = "no spaces allowed"
    wordpress.remote = {"database": "wordpress", "user": "wordpress", "password": "pw", "host": "10.0.0.2"}
    done = wordpress.run("db-relation-changed", **RELATION_ENV, ENSEMBLE_REMOTE_UNIT="mysql/0")
    assert done.returncode == 1 and "admin-user" in done.stderr + done.stdout + " ".join(wordpress.calls())
    assert not [call for call in wordpress.calls() if call.startswith(("open-port", "runuser"))]


def test_config_changed_before_the_database_does_nothing(wordpress: Charm) -> None:
    done = wordpress.run("config-changed")
    assert done.returncode == 0 and [call.split()[0] for call in wordpress.calls()] == ["juju-log"]


def test_broken_removes_the_configuration_and_closes_the_port(wordpress: Charm) -> None:
    config = wordpress.moved("/etc/wordpress") / "config-ensemble.php"
    config.write_text("<?php // with a password\n")
    for _ in range(2):  # and again: nothing left to do, no failure
        done = wordpress.run("db-relation-broken", **RELATION_ENV)
        assert done.returncode == 0 and not config.exists()
        assert "close-port 80/tcp" in wordpress.calls()
