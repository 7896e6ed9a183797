"""The example charms for real (#14): mysql and wordpress hooks on two Debian 12 systems of a container lab.

mysql/0 runs on node001, wordpress/0 on node002; their hooks run as the unit agent runs them (in the
unpacked charm, as root, the agent's environment), with stand-ins for the hook tools that keep settings in
files (``_charm_units``), and the relation's settings carried between the systems as the agent would. What
the hooks do is real: Debian's packages through the lab's proxy, MariaDB, Apache, PHP, WordPress. The proof
is a page fetched from the host over HTTP that shows the site title, read by WordPress on node002 from
MariaDB on node001. The tests share the systems and run in file order (one xdist group).
"""

from __future__ import annotations

import base64
import html
import http.cookiejar
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.programs import container_system
from ensemble_orchestra.lab.testing import RunningLab, start_lab

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _charm_units import CharmUnit, HookRun, Relation, System  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("example_charms")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "bookworm"
BOOT_TIMEOUT = 120.0
TITLE = "Ensemble's lab blog"
NEW_TITLE = 'Retitled <by> config-changed & "quotes"'


def _esc_html(text: str) -> str:
    """What WordPress keeps of a title (its esc_html, as the setup wizard's form does too)."""
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#039;")):
        text = text.replace(raw, entity)
    return text


def _boot(lab: RunningLab) -> list[System]:
    """Every system of *lab* installed and booted through Cobbler and IPMI, as the provider's launch does."""
    cobbler, token = lab.cobbler(), lab.token()
    user_data = "#cloud-config\n{}\n"
    names = [lab.spec.system(i).name for i in range(lab.spec.systems)]
    since = time.time()
    for name in names:
        meta = {
            "ensemble_user_data": base64.b64encode(user_data.encode()).decode(),
            "ensemble_instance_id": f"i-charms-{name}",
        }
        cobbler.xapi_object_edit("system", name, "edit", {"netboot_enabled": True, "autoinstall_meta": meta}, token)
        cobbler.power_system(f"system::{name}", "on", token)
    systems = []
    for name in names:
        system_dir = lab.system_dir(name)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while (word := container_system.describe(system_dir, bmc.power_is_on(system_dir))) != "cloud-init done":
            assert word not in ("cloud-init failed", "crashed") and time.monotonic() < deadline, f"{name}: {word}"
            time.sleep(0.2)
        state = json.loads(container_system.state_file(system_dir).read_text())
        record: Any = cobbler.get_system(name)
        address = str(record["interfaces"]["eth0"]["ip_address"])
        systems.append(System(name, int(state["pid1"]), address))
    print(f"two systems installed and booted: {time.time() - since:.1f} s")
    return systems


class Charms:
    """The two units and their relation, shared by the tests in file order."""

    def __init__(self, db: System, web: System) -> None:
        self.db, self.web = db, web
        self.mysql = CharmUnit(db, "mysql/0", EXAMPLES / "mysql")
        self.wordpress = CharmUnit(web, "wordpress/0", EXAMPLES / "wordpress", {"title": TITLE})
        self.relation = Relation("db:0", "db")
        self.url = f"http://{web.address}/"
        self.first_password = ""  # what mysql published in the first relation

    def outputs(self) -> str:
        return "".join(run.output for run in self.mysql.hooks_run + self.wordpress.hooks_run)

    def sql(self, query: str) -> str:
        """*query* run by MariaDB's root on node001 (socket authentication), tab-separated rows."""
        return self.db.run(["mysql", "--batch", "--skip-column-names"], stdin=query.encode()).stdout.decode()

    def blogname(self) -> str:
        """The site title as WordPress keeps it, in MariaDB on node001."""
        return self.sql("SELECT option_value FROM wordpress.wp_options WHERE option_name = 'blogname'").rstrip("\n")


@pytest.fixture(scope="module")
def charms(lab_parent: Path) -> Iterator[Charms]:
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    lab = start_lab(lab_parent / "charms-lab", systems=2, env_name=None, system_kind="container")
    try:
        db, web = _boot(lab)
        yield Charms(db, web)
    finally:
        lab.lab.down()


def _title(page: str) -> str:
    """A page's <title> as text (WordPress turns straight quotes into typographic ones: back to straight)."""
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    assert found, "the page has no <title>"
    text = html.unescape(found.group(1))
    return text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'").replace("\u2018", "'")


def _ok(run: HookRun | None) -> HookRun:
    assert run is not None, "the charm has no such hook"
    assert run.returncode == 0, f"{run.hook} exited {run.returncode}:\n{run.output}"
    return run


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_install_config_changed_and_start_on_debian(charms: Charms) -> None:
    """Both units get their packages and start; WordPress without a database: 404, port 80 not open."""
    runs: dict[str, list[HookRun | None]] = {}

    def lifecycle(unit: CharmUnit) -> None:
        runs[unit.name] = [unit.hook(name) for name in ("install", "config-changed", "start")]

    threads = [threading.Thread(target=lifecycle, args=(unit,)) for unit in (charms.mysql, charms.wordpress)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for unit_name, unit_runs in sorted(runs.items()):
        for run in unit_runs:
            done = _ok(run)
            print(f"{unit_name} {done.hook}: {done.seconds:.1f} s")
    assert charms.mysql.ports() == ["3306/tcp"] and charms.wordpress.ports() == []
    status, body = _get(charms.url)
    assert status == 404 and "config-ensemble.php" in body  # Debian's wp-config.php: no configuration yet
    modules = charms.web.sh("apache2ctl -M 2>/dev/null")
    assert "php_module" in modules and "mpm_prefork_module" in modules and "rewrite_module" in modules
    installed = charms.web.sh("dpkg-query -W -f '${Package}\\n' | wc -l").strip()
    print(f"node002 has {installed} packages with WordPress")


def test_wordpress_waits_until_mysql_has_published(charms: Charms) -> None:
    """joined, then changed before mysql has answered: both exit 0 and nothing is configured yet."""
    relation = charms.relation
    relation.add(charms.mysql)
    relation.add(charms.wordpress)
    _ok(relation.run(charms.wordpress, "joined", charms.mysql))
    run = _ok(relation.run(charms.wordpress, "changed", charms.mysql))
    assert "not published its settings yet" in run.output
    assert charms.web.run(["test", "-e", "/etc/wordpress/config-ensemble.php"], check=False).returncode == 1
    assert charms.wordpress.ports() == []


def test_the_site_renders_from_mariadb_on_the_other_system(charms: Charms) -> None:
    """mysql's joined publishes the credentials; wordpress's changed installs: GET / shows the title."""
    relation, mysql, wordpress = charms.relation, charms.mysql, charms.wordpress
    run = _ok(relation.run(mysql, "joined", wordpress))
    print(f"mysql db-relation-joined: {run.seconds:.2f} s")
    assert relation.run(mysql, "changed", wordpress) is None  # mysql has no changed hook: nothing to run
    settings = mysql.settings("db:0")
    assert settings["database"] == "wordpress" and settings["user"] == "wordpress"
    assert settings["host"] == charms.db.address == settings["private-address"]
    assert len(settings["password"]) == 24
    charms.first_password = settings["password"]

    run = _ok(relation.run(wordpress, "changed", mysql))
    print(f"wordpress db-relation-changed (configuration, wp_install): {run.seconds:.2f} s")
    assert "WordPress installed" in run.output and wordpress.ports() == ["80/tcp"]
    status, body = _get(charms.url)
    assert status == 200 and _title(body) == TITLE
    times = []
    for _ in range(5):
        started = time.monotonic()
        _get(charms.url)
        times.append(time.monotonic() - started)
    print(f"GET / from the host: median {sorted(times)[2] * 1000:.0f} ms of 5")
    assert "wp-admin/install.php" not in body  # a rendered site, not the install wizard
    assert charms.blogname() == _esc_html(TITLE)
    # Any Host header gets the same site (the workstation uses the address; WordPress does not redirect).
    assert _get(charms.url, host="blog.example.org")[0] == 200
    # The theme's files come through the /wp-content alias; pretty permalinks work.
    assert _get(f"{charms.url}wp-content/themes/twentytwentythree/style.css")[0] == 200
    assert _get(f"{charms.url}sample-page/")[0] == 200

    mode = charms.web.sh(
        "stat -c '%a %U %G' /etc/wordpress/config-ensemble.php /var/lib/ensemble-wordpress/admin-password"
    )
    assert mode.splitlines() == ["640 root www-data", "600 root root"]
    mode = charms.db.sh("stat -c '%a %U' /var/lib/ensemble-mysql/services/wordpress.password")
    assert mode.strip() == "600 root"


def test_the_administrator_logs_in_with_the_password_kept_on_the_unit(charms: Charms) -> None:
    password = charms.web.read("/var/lib/ensemble-wordpress/admin-password").strip()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{charms.url}wp-login.php", timeout=30).read()  # sets WordPress's test cookie
    form = urllib.parse.urlencode({"log": "admin", "pwd": password, "testcookie": "1"}).encode()
    with opener.open(f"{charms.url}wp-login.php", data=form, timeout=30) as answer:
        assert answer.geturl().startswith(f"{charms.url}wp-admin/") and "Dashboard" in answer.read().decode()


def test_hooks_run_again_and_a_second_unit_get_the_same_credentials(charms: Charms) -> None:
    relation, mysql, wordpress = charms.relation, charms.mysql, charms.wordpress
    before = mysql.settings("db:0")
    _ok(relation.run(mysql, "joined", wordpress))
    _ok(mysql.hook("db-relation-joined", relation, "wordpress/1"))  # another unit of the same service
    assert mysql.settings("db:0") == before
    run = _ok(relation.run(wordpress, "changed", mysql))
    assert "installed already" in run.output
    assert _get(charms.url)[0] == 200
    assert charms.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'wordpress'") == "1\n"


def test_config_changed_retitles_the_site(charms: Charms) -> None:
    charms.wordpress.configure({"title": NEW_TITLE})
    _ok(charms.wordpress.hook("config-changed"))
    status, body = _get(charms.url)
    assert status == 200 and _title(body) == NEW_TITLE
    assert charms.blogname() == _esc_html(NEW_TITLE)


def test_no_password_reaches_an_argument_or_a_log(charms: Charms) -> None:
    passwords = [
        charms.mysql.settings("db:0")["password"],
        charms.db.read("/var/lib/ensemble-mysql/root-password").strip(),
        charms.web.read("/var/lib/ensemble-wordpress/admin-password").strip(),
    ]
    seen = charms.outputs() + charms.mysql.calls() + charms.wordpress.calls()
    seen += charms.web.sh("cat /var/log/apache2/*.log")
    for password in passwords:
        assert password not in seen


def test_broken_closes_the_site_drops_the_user_and_keeps_the_data(charms: Charms) -> None:
    relation, mysql, wordpress = charms.relation, charms.mysql, charms.wordpress
    _ok(relation.run(wordpress, "departed", mysql))
    _ok(relation.run(mysql, "departed", wordpress))
    assert charms.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'wordpress'") == "1\n"  # departed: kept
    relation.remove(wordpress)
    relation.remove(mysql)
    _ok(wordpress.hook("db-relation-broken", relation))
    _ok(mysql.hook("db-relation-broken", relation))
    assert wordpress.ports() == [] and _get(charms.url)[0] == 404
    assert charms.web.run(["test", "-e", "/etc/wordpress/config-ensemble.php"], check=False).returncode == 1
    assert charms.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'wordpress'") == "0\n"
    assert charms.blogname() == _esc_html(NEW_TITLE)
    # Again (a restarted agent runs a hook again): nothing left to do, no failure.
    _ok(wordpress.hook("db-relation-broken", relation))
    _ok(mysql.hook("db-relation-broken", relation))


def test_a_new_relation_finds_the_site_in_the_kept_database(charms: Charms) -> None:
    """Related again: a new user and password for the same database, and the site WordPress had is back."""
    relation = Relation("db:1", "db")
    relation.add(charms.mysql)
    relation.add(charms.wordpress)
    _ok(relation.run(charms.mysql, "joined", charms.wordpress))
    _ok(relation.run(charms.wordpress, "joined", charms.mysql))
    run = _ok(relation.run(charms.wordpress, "changed", charms.mysql))
    assert "installed already" in run.output
    assert charms.mysql.settings("db:1")["password"] not in ("", charms.first_password)
    status, body = _get(charms.url)
    assert status == 200 and "Retitled" in body


def test_stop_and_start(charms: Charms) -> None:
    _ok(charms.wordpress.hook("stop"))
    assert charms.wordpress.ports() == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(charms.url, timeout=10)
    _ok(charms.wordpress.hook("start"))
    assert charms.wordpress.ports() == ["80/tcp"] and _get(charms.url)[0] == 200
    _ok(charms.mysql.hook("stop"))
    assert charms.mysql.ports() == []
    assert _get(charms.url)[0] >= 500  # WordPress without its database: "Error establishing a database connection"
    _ok(charms.mysql.hook("start"))
    assert _get(charms.url)[0] == 200
