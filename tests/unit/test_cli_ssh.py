"""ensemble ssh: its arguments, ssh's command line, and which machine a machine id leads to (state, provider)
— the error paths on fakes; the way to a real machine is proven in tests/integration/test_agents_cli.py."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from ensemble_orchestra.cli import ensemble
from ensemble_orchestra.cli.machine_reach import (
    MachineNotFound,
    MachineNotLaunched,
    MachineTarget,
    machine_targets,
    ssh_options,
)
from ensemble_orchestra.cli.ssh import remote_command, ssh_argv
from ensemble_orchestra.provider.errors import EnvironmentNotBootstrapped
from ensemble_orchestra.provider.ownership import OrchestraMachine
from ensemble_orchestra.state.errors import StateNotFoundError
from ensemble_orchestra.state.layout import MACHINES, TOPOLOGY, dump_document, machine_path
from ensemble_orchestra.state.topology import Topology
from ensemble_orchestra.testing import result_of

# -- arguments -----------------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return ensemble._parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "machine", "command", "verbose"),
    [
        (["ssh", "0"], 0, [], False),
        (["ssh", "-e", "lab", "12"], 12, [], False),
        (["ssh", "0", "hostname"], 0, ["hostname"], False),
        (["ssh", "0", "ls", "-la", "/var/log"], 0, ["ls", "-la", "/var/log"], False),  # the command's options
        (["ssh", "0", "sudo", "tail", "-e", "x", "-v"], 0, ["sudo", "tail", "-e", "x", "-v"], False),  # its, not ours
        (["-v", "ssh", "0", "uptime"], 0, ["uptime"], True),
        (["ssh", "-v", "0", "uptime"], 0, ["uptime"], True),
        (["ssh", "0", "--", "ls", "-l"], 0, ["ls", "-l"], False),
        (["ssh", "--", "0", "ls"], 0, ["ls"], False),
        (["ssh", "0", "ls", "--", "x"], 0, ["ls", "--", "x"], False),
        (["ssh", "mysql/0", "hostname"], "mysql/0", ["hostname"], False),  # a unit: its machine
    ],
)
def test_arguments(argv: list[str], machine: int, command: list[str], verbose: bool) -> None:
    """Everything after MACHINE is the remote command, options included; ours come before MACHINE."""
    args = parse(*argv)
    assert (args.machine_id, remote_command(args), args.verbose) == (machine, command, verbose)


def test_environment_option() -> None:
    assert parse("ssh", "-e", "lab", "0").environment == "lab"


@pytest.mark.parametrize(
    ("machine", "says"),
    [
        ("node001", "not a machine id or a unit name: 'node001' (machines are numbered 0, 1, ...; units are named"),
        ("-1", "not a machine id or a unit name: '-1'"),
        ("1.5", "not a machine id or a unit name: '1.5'"),
        ("", "not a machine id or a unit name: ''"),
        ("mysql/x", "'mysql/x' is not a unit name (<service>/<number>, like 'mysql/0')"),
        ("My SQL/0", "'My SQL/0' is not a unit name"),
    ],
)
def test_a_machine_is_a_number_or_a_unit(machine: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Anything but a machine id or a unit name is a usage error (exit 2) saying what they look like."""
    with pytest.raises(SystemExit) as exited:
        parse("ssh", "--", machine) if machine.startswith("-") else parse("ssh", machine)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and says in err


def test_a_machine_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("ssh")
    assert exited.value.code == 2 and "MACHINE" in capsys.readouterr().err


# -- ssh's command line --------------------------------------------------------------------------------------

OPTIONS = ["-o", "UserKnownHostsFile=/k"]


@pytest.mark.parametrize(
    ("command", "terminal", "argv"),
    [
        ([], True, ["ssh", *OPTIONS, "debian@10.0.0.2"]),  # a login: ssh gives it a terminal itself
        ([], False, ["ssh", *OPTIONS, "debian@10.0.0.2"]),
        (["top"], True, ["ssh", *OPTIONS, "-t", "debian@10.0.0.2", "top"]),  # interactive: a terminal for it
        (["hostname"], False, ["ssh", *OPTIONS, "debian@10.0.0.2", "hostname"]),  # piped: clean output
    ],
)
def test_ssh_argv(command: list[str], terminal: bool, argv: list[str]) -> None:
    assert ssh_argv(OPTIONS, "debian", "10.0.0.2", command, terminal=terminal) == argv


@dataclass
class Config:
    ssh_user: str = "debian"
    ssh_identity: Path | None = None
    state_connection: str = "ssh"


@dataclass
class FakeProvider:
    machines: list[OrchestraMachine] = field(default_factory=list)
    config: Config = field(default_factory=Config)
    environment_name: str = "lab"
    state: dict[str, Any] = field(default_factory=lambda: {"zookeeper-instances": ["uid-0"]})

    async def load_state(self) -> dict[str, Any]:
        return self.state

    async def get_machines(self, instance_ids: Any = ()) -> list[OrchestraMachine]:
        assert not instance_ids, "one call for all of them"
        return self.machines


def test_ssh_options_use_the_environments_known_hosts_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host keys in the environment's own known_hosts (its directory made 0700); exactly the environment's key."""
    monkeypatch.setenv("ENSEMBLE_HOME", str(tmp_path))
    key = tmp_path / "id_ed25519"
    known_hosts = tmp_path / "environments" / "lab" / "known_hosts"
    assert ssh_options(FakeProvider(config=Config(ssh_identity=key))) == [
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
        "-o", "IdentitiesOnly=yes", "-i", str(key),
    ]  # fmt: skip
    assert known_hosts.parent.is_dir() and known_hosts.parent.stat().st_mode & 0o777 == 0o700
    assert "-i" not in ssh_options(FakeProvider())  # no key: ssh's own keys and agent


# -- from a machine id to a machine --------------------------------------------------------------------------


def machine(machine_id: str, uid: str, address: str = "", state: str = "provisioned") -> OrchestraMachine:
    name = f"node{uid[-1]}"
    return OrchestraMachine(uid, f"{name}.lab", f"{name}.lab", state, name, machine_id, address)


class FakeClient:
    """The state's machine nodes; a missing node is StateNotFoundError, as the real client raises."""

    def __init__(self, nodes: dict[int, dict[str, Any]]) -> None:
        self.nodes = {machine_path(i): dump_document(n) for i, n in nodes.items()}
        topology = Topology()
        for _ in range(4):
            topology = topology.add_machine()
        topology = topology.add_service("mysql", "local:bookworm/mysql-1").add_unit("mysql", 2).add_unit("mysql")
        self.nodes[TOPOLOGY] = topology.to_yaml().encode()  # mysql/0 on machine 2; mysql/1 placed nowhere yet
        self.reads: list[str] = []

    async def get(self, path: str) -> tuple[bytes, Any]:
        self.reads.append(path)
        if path not in self.nodes:
            raise StateNotFoundError(f"{path} does not exist")
        return self.nodes[path], argparse.Namespace(version=0)

    async def get_children(self, path: str) -> list[str]:
        assert path == MACHINES
        return [p.rsplit("/", 1)[1] for p in self.nodes]


@dataclass
class FakeConnection:
    client: FakeClient
    settings: Any = field(default_factory=lambda: argparse.Namespace(identities=None))
    closed: bool = False

    async def close(self) -> None:
        self.closed = True


NODES = {
    0: {"provider-machine-id": "uid-0", "instance-name": "node0"},
    1: {"provider-machine-id": None},  # the provisioning agent has not launched it yet
    2: {"provider-machine-id": "uid-2", "instance-name": "node2"},
    3: {"provider-machine-id": "uid-gone", "instance-name": "node9"},  # its system vanished from the provider
}
MACHINES_OF_PROVIDER = [machine("0", "uid-0", "10.0.0.10"), machine("2", "uid-2")]


def targets(wanted: list[int | str] | None, provider: FakeProvider | None = None) -> tuple[Any, FakeConnection]:
    connection = FakeConnection(FakeClient(NODES))

    async def connect(*args: Any) -> FakeConnection:
        return connection

    provider = provider or FakeProvider(MACHINES_OF_PROVIDER)
    run = Deferred.fromCoroutine(machine_targets(provider, None, lambda *a: None, wanted, connect=connect))
    return run, connection


def test_a_machine_from_the_state_is_reached_at_its_address_else_its_dns_name() -> None:
    run, connection = targets([2, 0, 2])
    assert result_of(run) == (
        [MachineTarget(0, "10.0.0.10", "node0", "provisioned"), MachineTarget(2, "node2.lab", "node2", "provisioned")],
        [],
    )
    assert connection.closed


def test_a_unit_leads_to_its_machine_through_the_topology() -> None:
    run, connection = targets(["mysql/0", 2])
    assert result_of(run) == ([MachineTarget(2, "node2.lab", "node2", "provisioned")], [])
    assert connection.closed and connection.client.reads.count(TOPOLOGY) == 1
    run, connection = targets([0])
    result_of(run)
    assert TOPOLOGY not in connection.client.reads  # machine ids alone: the topology is not read


def test_placed_tells_each_wanted_unit_or_id_its_machine() -> None:
    """(ensemble scp maps each remote path's target to its machine with it.)"""
    connection = FakeConnection(FakeClient(NODES))

    async def connect(*args: Any) -> FakeConnection:
        return connection

    placed: dict[int | str, int] = {}
    wanted: list[int | str] = ["mysql/0", 0, 2]
    provider = FakeProvider(MACHINES_OF_PROVIDER)
    quiet = lambda *a: None  # noqa: E731
    run = Deferred.fromCoroutine(machine_targets(provider, None, quiet, wanted, connect=connect, placed=placed))
    assert [t.machine_id for t in result_of(run)[0]] == [0, 2]
    assert placed == {"mysql/0": 2, 0: 0, 2: 2}


@pytest.mark.parametrize(
    ("unit", "says"),
    [
        ("mysql/7", "no unit mysql/7 in environment 'lab': 'ensemble status -e lab' lists its units"),
        ("wordpress/0", "no unit wordpress/0 in environment 'lab'"),
        ("mysql/1", "unit mysql/1 of environment 'lab' has no machine yet: try again shortly"),
    ],
)
def test_a_unit_without_a_machine_is_one_line_exit_1(unit: str, says: str) -> None:
    run, connection = targets([unit])
    with pytest.raises(MachineNotFound) as raised:
        result_of(run)
    assert says in str(raised.value) and raised.value.exit_code == 1 and connection.closed


def test_all_machines_and_why_some_have_no_system() -> None:
    """None = every machine: those with a system, and one line for each of the others (debug-log warns)."""
    run, connection = targets(None)
    found, missing = result_of(run)
    assert [t.machine_id for t in found] == [0, 2] and connection.closed
    assert [str(m) for m in missing] == [
        "machine 1 of environment 'lab' has no system yet: the provisioning agent is launching one",
        "machine 3 of environment 'lab': its system node9 is gone from the provider; the provisioning agent"
        " launches another",
    ]
    assert all(isinstance(m, MachineNotLaunched) and m.exit_code == 1 for m in missing)


def test_an_unknown_machine_is_one_line_exit_1() -> None:
    run, connection = targets([0, 99])
    with pytest.raises(MachineNotFound) as raised:
        result_of(run)
    assert str(raised.value) == "no machine 99 in environment 'lab': 'ensemble status -e lab' lists its machines"
    assert raised.value.exit_code == 1 and connection.closed


def test_without_agents_the_provider_alone_says_which_system_is_which_machine() -> None:
    """state-connection: none — no state is opened; the provider's machine ids are matched."""
    provider = FakeProvider(MACHINES_OF_PROVIDER + [machine("", "uid-x")], Config(state_connection="none"))
    run, connection = targets([2], provider)
    assert result_of(run) == ([MachineTarget(2, "node2.lab", "node2", "provisioned")], [])
    run, _ = targets(None, provider)
    assert [t.machine_id for t in result_of(run)[0]] == [0, 2]
    run, _ = targets([5], provider)
    with pytest.raises(MachineNotFound):
        result_of(run)
    run, _ = targets(["mysql/0"], provider)
    with pytest.raises(MachineNotFound, match="runs no agents .state-connection: none., so it has no unit mysql/0"):
        result_of(run)
    provider.state = {}
    run, _ = targets([0], provider)
    with pytest.raises(EnvironmentNotBootstrapped):
        result_of(run)
    assert not connection.closed  # never opened


def test_a_missing_openssh_client_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh, scp and debug-log ask for their client the same way."""
    from ensemble_orchestra.cli.ssh import SSHClientMissing, openssh_client

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SSHClientMissing) as missing:
        openssh_client("scp")
    assert str(missing.value) == "scp (OpenSSH's client) is not installed: install openssh-client"
    assert missing.value.exit_code == 1
