"""`ensemble set/get/resolved/remove-unit/destroy-service/add-unit/deploy/add-relation/remove-relation/expose/
unexpose` on bad input, against a real ZooKeeper (this module's own, initialized as ``initialize`` does): an unknown
service, unit or relation, an unknown key, a wrong type, resolved on a unit not in error, endpoints that match no
relation or more than one. Each: one ``ensemble: error:`` line naming the service, unit or key (no
traceback), exit code 2, no value echoed (a setting may be a password), and the environment's tree unchanged
node for node (data and version). Then what the same commands do right: get's output, set, resolved, removing,
relating, exposing.

Each command runs as its own process, as a user types it, through the ``statefake`` provider type
(tests/unit/_cli_state_provider.py: machine 0 is the ZooKeeper, reached directly, no tunnel).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import yaml
from twisted.internet import defer, reactor, threads

from ensemble_orchestra.charm.testing import write_charm
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.layout import load_document, service_config_path, unit_resolved_path
from ensemble_orchestra.state.relations import RelationsState
from ensemble_orchestra.state.services import ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper, session
from ensemble_orchestra.state.topology import Endpoint
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.units import RelationError, UnitRecord, UnitsState

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _cli_state_provider import COMMAND_BOUND, StateCli, error_line  # noqa: E402

ROLES = Roles.make()
SECRET_VALUE = "hunter2-Pa55word"  # a value typed for an option: never echoed
CHARM = "local:bookworm/sample-1"  # provides website (http), requires db (mysql), peers ring
# Two more charms for the relation commands: mysql provides db (mysql); front requires two http endpoints, so
# add-relation web front has two matches.
MYSQL_METADATA = "name: mysql\nsummary: s\ndescription: d\nprovides:\n  db:\n    interface: mysql\n"
FRONT_METADATA = (
    "name: front\nsummary: s\ndescription: d\nrequires:\n  upstream:\n    interface: http\n"
    "  backup:\n    interface: http\n"
)
WEB_DB = (Endpoint("mysql", "db", "server"), Endpoint("web", "db", "client"))


def _block(coroutine: Any) -> Any:
    return pytest_twisted.blockon(defer.Deferred.fromCoroutine(coroutine))


@dataclass
class Env:
    cli: StateCli
    admin: StateClient
    server: ZooKeeperServer

    async def ensemble(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command run to its end in a thread: the reactor (and the admin session's callbacks) go on."""
        return await threads.deferToThread(self.cli.run, args[0], "-e", "fake", *args[1:])

    def tree(self) -> dict[str, tuple[bytes, int]]:
        """Every node of the environment (ZooKeeper's own /zookeeper aside): its data and version; for fixtures
        (tests run in the reactor's greenlet, where they await ``_tree``)."""
        return _block(_tree(self.admin))

    async def settings(self, service: str) -> Any:
        return yaml.safe_load((await self.admin.get(service_config_path(service)))[0])

    def units(self) -> UnitsState:
        return UnitsState(self.admin, ROLES.identities)


async def _tree(client: StateClient, path: str = "/") -> dict[str, tuple[bytes, int]]:
    nodes: dict[str, tuple[bytes, int]] = {}
    for child in sorted(await client.get_children(path)):
        child_path = f"{path.rstrip('/')}/{child}"
        if child_path == "/zookeeper":
            continue
        data, stat = await client.get(child_path)
        nodes[child_path] = (data, stat.version)
        nodes.update(await _tree(client, child_path))
    return nodes


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """An initialized environment with service web (2 units) and db (1 unit, its secret set), mysql and front (1
    unit each), deployed with the CLI, and web related to mysql (web:db mysql:db); the units stay pending (no
    agents run here)."""
    root = tmp_path_factory.mktemp("state-input")
    with initialized_zookeeper(root / "zookeeper", ROLES) as server:
        cli = StateCli(root / "cli")
        cli.environment(ROLES.admin.secret.reveal(), **{"zookeeper-port": server.port})
        write_charm(cli.repository / "bookworm" / "sample")
        write_charm(cli.repository / "bookworm" / "mysql", {"metadata.yaml": MYSQL_METADATA})
        write_charm(cli.repository / "bookworm" / "front", {"metadata.yaml": FRONT_METADATA})
        config = root / "db.yaml"
        config.write_text(yaml.safe_dump({"db": {"secret": SECRET_VALUE, "port": 3306}}))
        admin = _block(session(reactor, server.hosts, ROLES.admin))
        try:
            for argv in (["sample", "web", "-n", "2"], ["sample", "db", "--config", str(config)], ["mysql"], ["front"]):
                run = cli.run("deploy", "-e", "fake", "--repository", str(cli.repository), *argv)
                assert run.returncode == 0, run.stderr
                assert SECRET_VALUE not in run.stdout + run.stderr
            _block(RelationsState(admin, ROLES.identities).add("mysql", WEB_DB))
            yield Env(cli, admin, server)
        finally:
            _block(admin.close())


# -- bad input: one line, exit 2, nothing changed -------------------------------------------------------------

CASES: dict[str, tuple[tuple[str, ...], str]] = {
    # (argv, what the error line says after "ensemble: error: ")
    "set-unknown-service": (("set", "nosuch", "title=x"), "service nosuch does not exist in the environment"),
    "set-unknown-key": (("set", "web", "colour=red"), "set web: unknown option 'colour'; the charm's options are:"),
    "set-wrong-type-int": (("set", "web", f"port={SECRET_VALUE}"), "set web: option 'port' expects an int"),
    "set-wrong-type-float": (("set", "web", "ratio=nan"), "set web: option 'ratio' expects a float"),
    "set-wrong-type-boolean": (("set", "web", "debug=maybe"), "set web: option 'debug' expects a boolean"),
    "set-one-bad-pair-writes-none": (
        ("set", "web", f"secret={SECRET_VALUE}", "title=New", "port=eighty"),
        "set web: option 'port' expects an int",
    ),
    "set-a-value-without-its-key": (
        ("set", "web", "title=x", SECRET_VALUE),
        "set web: argument 2 after the service is not KEY=VALUE",
    ),
    "set-a-key-without-its-value": (("set", "web", "port"), "set web: 'port' is not KEY=VALUE (KEY= resets it)"),
    "get-unknown-service": (("get", "nosuch"), "service nosuch does not exist in the environment"),
    "resolved-unknown-unit": (("resolved", "nosuch/0"), "resolved: unit nosuch/0 does not exist in the environment"),
    "resolved-unknown-unit-of-a-service": (("resolved", "web/7"), "resolved: unit web/7 does not exist"),
    "resolved-a-pending-unit": (("resolved", "web/0"), "resolved: unit web/0 is pending, not in an error state"),
    "resolved-retry-a-pending-unit": (("resolved", "--retry", "web/1"), "resolved: unit web/1 is pending, not in an"),
    "remove-unknown-unit": (("remove-unit", "nosuch/0"), "remove-unit: unit nosuch/0 does not exist in the"),
    "remove-one-unknown-of-two": (("remove-unit", "web/0", "web/9"), "remove-unit: unit web/9 does not exist"),
    "destroy-unknown-service": (("destroy-service", "nosuch"), "destroy-service: service nosuch does not exist"),
    "add-unit-unknown-service": (("add-unit", "nosuch"), "add-unit: service nosuch does not exist in the environment"),
    "deploy-an-existing-service": (
        ("deploy", "--repository", "{repository}", "sample", "web"),
        "deploy: service web exists already: name another one",
    ),
    "add-relation-unknown-service": (
        ("add-relation", "web", "nosuch"),
        "add-relation: service nosuch does not exist in the environment: see `ensemble status`",
    ),
    "add-relation-unknown-relation-name": (
        ("add-relation", "web:nosuch", "mysql"),
        "add-relation: service web has no relation named 'nosuch': web provides website (http), requires db (mysql)",
    ),
    "add-relation-no-match": (
        ("add-relation", "front", "mysql"),
        "add-relation: no relation between front and mysql: a provides and a requires of one interface are needed"
        " (front requires backup (http), requires upstream (http); mysql provides db (mysql))",
    ),
    "add-relation-no-match-named": (
        ("add-relation", "web:website", "mysql"),
        "add-relation: no relation between web:website and mysql:",
    ),
    "add-relation-ambiguous": (
        ("add-relation", "web", "front"),
        "add-relation: more than one relation between web and front: name one of web:website front:backup (http);"
        " web:website front:upstream (http)",
    ),
    "add-relation-already-related": (
        ("add-relation", "mysql", "web"),
        "add-relation: mysql:db web:db (mysql): related already (relation ",
    ),
    "add-relation-a-service-with-itself": (
        ("add-relation", "web:db", "web"),
        "add-relation: cannot relate web to itself: peer relations are added by deploy from the charm's peers",
    ),
    "remove-relation-not-related": (
        ("remove-relation", "web", "front"),
        "remove-relation: web and front are not related: see `ensemble status`",
    ),
    "remove-relation-other-relation-name": (
        ("remove-relation", "web:website", "mysql"),
        "remove-relation: web:website and mysql are not related",
    ),
    "expose-unknown-service": (("expose", "nosuch"), "expose: service nosuch does not exist in the environment"),
    "unexpose-unknown-service": (("unexpose", "nosuch"), "unexpose: service nosuch does not exist in the environment"),
    "resolved-a-relation-not-in-error": (
        ("resolved", "web/0", "db"),
        "resolved: unit web/0 has no relation 'db' in error (in error: none)",
    ),
}

# Refused by argparse before anything runs: its usage, then one error line naming the argument (exit 2).
ARGUMENT_CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "add-relation-endpoint-without-relation-name": (
        ("add-relation", "web:", "mysql"),
        "ensemble add-relation: error: argument SERVICE[:RELATION]: endpoint 'web:': expected SERVICE or"
        " SERVICE:RELATION, e.g. wordpress:db",
    ),
    "add-relation-endpoint-two-colons": (
        ("add-relation", "web", "mysql:db:x"),
        "ensemble add-relation: error: argument SERVICE[:RELATION]: endpoint 'mysql:db:x': expected",
    ),
    "add-relation-not-a-service-name": (
        ("add-relation", "../web:db", "mysql"),
        "ensemble add-relation: error: argument SERVICE[:RELATION]: '../web:db': '../web' is not a service name",
    ),
    "remove-relation-endpoint-without-service": (
        ("remove-relation", ":db", "mysql"),
        "ensemble remove-relation: error: argument SERVICE[:RELATION]: endpoint ':db': expected",
    ),
    "expose-bad-name": (("expose", "web/0"), "ensemble expose: error: argument SERVICE: 'web/0' is not a service name"),
    "unexpose-bad-name": (
        ("unexpose", "Web"),
        "ensemble unexpose: error: argument SERVICE: 'Web' is not a service name",
    ),
}


@pytest.fixture(scope="module")
def bad_runs(env: Env) -> Iterator[tuple[dict[str, subprocess.CompletedProcess[str]], dict[str, Any], dict[str, Any]]]:
    """Every bad case run at once (a process each); the tree before and after them all."""
    before = env.tree()
    started = {}
    for name, (argv, _) in {**CASES, **ARGUMENT_CASES}.items():
        args = [a.format(repository=env.cli.repository) for a in argv]
        started[name] = (args, env.cli.popen(args[0], "-e", "fake", *args[1:]))
    finished = {}
    try:
        for name, (args, process) in started.items():
            out, err = process.communicate(timeout=COMMAND_BOUND * 2)  # all at once: they share the CPUs
            finished[name] = subprocess.CompletedProcess(args, process.returncode, out, err)
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    yield finished, before, env.tree()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name: str, bad_runs: Any) -> None:
    run = bad_runs[0][name]
    assert run.returncode == 2, run.stderr
    line = error_line(run)
    assert line.startswith(f"ensemble: error: {CASES[name][1]}"), line
    assert SECRET_VALUE not in run.stdout + run.stderr
    assert ROLES.admin.secret.reveal() not in run.stdout + run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("name", list(ARGUMENT_CASES))
def test_bad_arguments_are_refused_by_argparse_exit_2(name: str, bad_runs: Any) -> None:
    run = bad_runs[0][name]
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.splitlines()
    assert lines[0].startswith("usage: ensemble ") and lines[-1].startswith(ARGUMENT_CASES[name][1]), run.stderr
    assert [line for line in lines if "error" in line] == [lines[-1]]


def test_no_bad_input_changed_the_environment(bad_runs: Any) -> None:
    """Not a node created, removed or rewritten by any of them: no unit marked dying, no setting written (not even
    the good pairs before a bad one), no resolved request, no unit or machine added, no charm published again."""
    _, before, after = bad_runs
    assert sorted(after) == sorted(before)
    changed = [path for path in before if after[path] != before[path]]
    assert changed == []


# -- what the same commands do right ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_get_shows_every_option_with_its_type_value_and_whether_it_is_the_default(env: Env) -> None:
    """Ensemble's layout: service, charm, and per option description, type, value (default: true when unset).
    The stored secret is shown: get is how its owner reads the settings back."""
    run = await env.ensemble("get", "db")
    assert run.returncode == 0, run.stderr
    document = yaml.safe_load(run.stdout)
    assert list(document) == ["service", "charm", "settings"]
    assert document["service"] == "db" and document["charm"] == CHARM
    settings = document["settings"]
    assert sorted(settings) == ["debug", "port", "ratio", "secret", "title"]
    assert settings["secret"] == {"description": "no default", "type": "string", "value": SECRET_VALUE}
    assert settings["port"] == {"description": "where to listen", "type": "int", "value": 3306}
    assert settings["title"] == {"description": "the page title", "type": "string", "value": "Hello", "default": True}
    assert settings["debug"] == {"description": "", "type": "boolean", "value": False, "default": True}
    as_json = await env.ensemble("get", "db", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == document


@pytest_twisted.ensureDeferred
async def test_set_writes_typed_values_never_echoes_them_and_key_equals_resets(env: Env) -> None:
    run = await env.ensemble("set", "web", f"secret={SECRET_VALUE}", "port=81", "debug=yes", "ratio=1e-1")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "web: debug, port, ratio, secret set; its units run config-changed\n"
    assert SECRET_VALUE not in run.stdout + run.stderr
    stored = await env.settings("web")
    assert stored == {"secret": SECRET_VALUE, "port": 81, "debug": True, "ratio": 0.1}
    reset = await env.ensemble("set", "web", "port=", "debug=", "ratio=", "secret=")
    assert reset.returncode == 0, reset.stderr
    assert await env.settings("web") == {}
    settings = yaml.safe_load((await env.ensemble("get", "web")).stdout)["settings"]
    assert settings["port"] == {"description": "where to listen", "type": "int", "value": 8080, "default": True}


@pytest_twisted.ensureDeferred
async def test_resolved_asks_once_for_a_unit_in_error(env: Env) -> None:
    """A unit in install-error: resolved leaves a request (retry false) and says what happens; a second request
    while one is pending is refused (exit 2) and leaves the first as it was."""
    units = env.units()
    await units.report(UnitRecord("web/1", "install-error", CHARM, "install", ("E: no such package",)))
    try:
        run = await env.ensemble("resolved", "web/1")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "web/1 (install-error) moves on as if hook install worked\n"
        assert await units.resolved_request("web/1") is False
        again = await env.ensemble("resolved", "--retry", "web/1")
        assert again.returncode == 2
        assert error_line(again) == "ensemble: error: resolved: unit web/1 has a resolved request pending already"
        assert await units.resolved_request("web/1") is False
    finally:
        await env.admin.delete(unit_resolved_path("web/1"))
        await units.report(UnitRecord("web/1", charm=CHARM))


@pytest_twisted.ensureDeferred
async def test_remove_unit_named_twice_removes_it_once_and_releases_its_machine(env: Env) -> None:
    """A unit whose agent never came (pending, no presence) has no stop hook to wait for: removed at once."""
    machine = (await TopologyNode(env.admin).read()).unit("web/1").machine
    run = await env.ensemble("remove-unit", "web/1", "web/1")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"removed web/1; machine {machine} goes back to the pool\n"
    topology = await TopologyNode(env.admin).read()
    assert sorted(topology.service("web").units) == ["web/0"] and machine not in topology.machines
    assert await env.units().read_if_there("web/1") is None


@pytest_twisted.ensureDeferred
async def test_add_unit_then_destroy_service(env: Env) -> None:
    added = await env.ensemble("add-unit", "db", "-n", "2")
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added db/1, db/2, each on a new machine\n"
    topology = await TopologyNode(env.admin).read()
    machines = sorted(unit.machine for unit in topology.service("db").units.values())
    destroyed = await env.ensemble("destroy-service", "db")
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stdout == f"destroyed db; machine {', '.join(map(str, machines))} goes back to the pool\n"
    topology = await TopologyNode(env.admin).read()
    assert "db" not in topology.services and not set(machines) & set(topology.machines)
    assert not [path for path in await _tree(env.admin) if path.startswith(("/services/db", "/units/db-"))]


@pytest_twisted.ensureDeferred
async def test_two_add_units_at_once_each_report_only_their_own_units(env: Env) -> None:
    """Below the CLI: both read the topology, one commits first, the other's change is retried; each returns the
    units it added (the retried one also claimed the other's, which it then printed as its own)."""
    services = ServicesState(env.admin, ROLES.identities)
    before = set((await TopologyNode(env.admin).read()).service("web").units)
    first, second = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(services.add_units("web", 2)) for _ in range(2)]
    )
    after = set((await TopologyNode(env.admin).read()).service("web").units)
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    assert set(first) | set(second) == after - before


# -- relations and expose --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_relation_prints_the_relation_it_added_and_remove_relation_removes_it(env: Env) -> None:
    """Naming front's endpoint leaves one match; the topology holds the relation as printed. With a second
    relation between the two services remove-relation needs a relation named (nothing removed until then), then
    finds the one named (endpoints in the other order) and removes it; the id is not given out again."""
    added = await env.ensemble("add-relation", "web", "front:upstream")
    assert added.returncode == 0, added.stderr
    topology = await TopologyNode(env.admin).read()
    relation = topology.relations[topology.new_relation_id]
    assert relation.endpoints == (Endpoint("front", "upstream", "client"), Endpoint("web", "website", "server"))
    assert relation.interface == "http" and relation.scope == "global"
    assert added.stdout == f"added relation {relation.id}: front:upstream web:website (http)\n"
    relations = RelationsState(env.admin, ROLES.identities)
    backup = await relations.add("http", (Endpoint("front", "backup", "client"), Endpoint("web", "website", "server")))
    try:
        which = await env.ensemble("remove-relation", "web", "front")
        assert which.returncode == 2
        assert error_line(which) == (
            "ensemble: error: remove-relation: web and front have more than one relation: name one of"
            " front:upstream web:website; front:backup web:website"  # by id
        )
        assert set((await TopologyNode(env.admin).read()).relations) >= {relation.id, backup.id}
        removed = await env.ensemble("remove-relation", "front:upstream", "web")
    finally:
        await relations.remove(backup.id)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == (
        f"removed relation {relation.id}: front:upstream web:website (http) (its units run departed, then broken)\n"
    )
    after = await TopologyNode(env.admin).read()
    assert relation.id not in after.relations and after.relation_sequence == backup.id + 1
    assert [r.endpoints for r in after.relations_of("web")] == [
        r.endpoints for r in topology.relations_of("web") if r.id != relation.id
    ]


@pytest_twisted.ensureDeferred
async def test_expose_sets_the_flag_and_status_shows_it_with_the_relations(env: Env) -> None:
    """expose names the ports the units opened; status shows exposed and each service's relations (Ensemble's
    layout: relation name -> the services on the other side, a peer relation naming the service itself);
    exposing again writes nothing (no agent is woken); unexpose clears the flag."""
    units = env.units()
    await units.report(UnitRecord("web/0", "started", CHARM, open_ports=("80/tcp", "443/tcp")))
    node = TopologyNode(env.admin)
    try:
        exposed = await env.ensemble("expose", "web")
        assert exposed.returncode == 0, exposed.stderr
        assert exposed.stdout == "web is exposed: its open ports (80/tcp, 443/tcp) accept connections from anywhere\n"
        topology, version = await node.read_versioned()
        assert topology.service("web").exposed and not topology.service("mysql").exposed

        status = await env.ensemble("status")
        assert status.returncode == 0, status.stderr
        services = yaml.safe_load(status.stdout)["services"]
        assert services["web"]["exposed"] is True and services["mysql"]["exposed"] is False
        assert services["web"]["relations"] == {"db": ["mysql"], "ring": ["web"]}
        assert services["mysql"]["relations"] == {"db": ["web"]}
        assert "relations" not in services["front"]

        again = await env.ensemble("expose", "web")
        assert again.returncode == 0, again.stderr
        assert (await node.read_versioned())[1] == version

        unexposed = await env.ensemble("unexpose", "web")
        assert unexposed.returncode == 0, unexposed.stderr
        assert unexposed.stdout == (
            "web is not exposed: its open ports (80/tcp, 443/tcp) accept only the environment's related machines\n"
        )
        assert not (await node.read()).service("web").exposed
    finally:
        await node.change(lambda t: t.set_exposed("web", False))
        await units.report(UnitRecord("web/0", charm=CHARM))


@pytest_twisted.ensureDeferred
async def test_resolved_names_a_relation_in_error_by_its_name(env: Env) -> None:
    """web/0's db relation in error: status shows it; resolved web/0 db asks for that relation only (its key in
    the request), and says which hook is taken as done."""
    relation = next(r for r in (await TopologyNode(env.admin).read()).relations_of("web") if r.services != ("web",))
    key = relation.key("web")
    error = RelationError("db", "mysql", "db-relation-changed", "mysql/0", ("E: refused",))
    units = env.units()
    await units.report(UnitRecord("web/0", "started", CHARM, relation_errors={key: error}))
    try:
        status = await env.ensemble("status")
        assert status.returncode == 0, status.stderr
        unit = yaml.safe_load(status.stdout)["services"]["web"]["units"]["web/0"]
        assert unit["relation-errors"] == {"db": ["mysql"]}
        assert unit["relation-errors-info"] == {
            key: {"hook": "db-relation-changed", "remote-unit": "mysql/0", "hook-output": ["E: refused"]}
        }
        run = await env.ensemble("resolved", "web/0", "db")
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"web/0 relation {key} moves on as if hook db-relation-changed worked\n"
        request = load_document((await env.admin.get(unit_resolved_path("web/0")))[0], "resolved")
        assert request == {"retry": False, "relation": key}
    finally:
        if await env.admin.exists(unit_resolved_path("web/0")) is not None:
            await env.admin.delete(unit_resolved_path("web/0"))
        await units.report(UnitRecord("web/0", charm=CHARM))


@pytest_twisted.ensureDeferred
async def test_destroy_service_of_a_related_service_removes_its_relations(env: Env) -> None:
    """front related to web: destroy-service front removes the relation with it; web's others stay."""
    relations = RelationsState(env.admin, ROLES.identities)
    await relations.add("http", (Endpoint("front", "backup", "client"), Endpoint("web", "website", "server")))
    before = [r for r in (await TopologyNode(env.admin).read()).relations_of("web") if "front" not in r.services]
    destroyed = await env.ensemble("destroy-service", "front")
    assert destroyed.returncode == 0, destroyed.stderr
    topology = await TopologyNode(env.admin).read()
    assert "front" not in topology.services
    assert not [r for r in topology.relations.values() if "front" in r.services]
    assert topology.relations_of("web") == before
