"""The topology model (pure values, YAML round trip) and the state layer's kazoo error table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kazoo import exceptions as zk

from ensemble_orchestra.errors import EnsembleError
from ensemble_orchestra.state import (
    StateAuthError,
    StateConflictError,
    StateConnectionError,
    StateCorruptError,
    StateError,
    StateNotFoundError,
    Topology,
    TopologyError,
    digest_identity,
)
from ensemble_orchestra.state.errors import ERROR_TABLE, state_error


def sample() -> Topology:
    return (
        Topology()
        .add_machine()
        .add_machine()
        .add_service("mysql", "local:bookworm/mysql-11")
        .add_service("wordpress", "local:bookworm/wordpress-3")
        .add_unit("mysql", machine=1)
        .add_unit("wordpress")
    )


def test_empty_topology_round_trips() -> None:
    """An empty node and an empty topology's YAML both read as the empty topology."""
    assert Topology.from_yaml(b"") == Topology()
    assert Topology.from_yaml(Topology().to_yaml()) == Topology()


def test_populated_topology_round_trips() -> None:
    """Machines, services, units with their machines and the sequences survive YAML, byte for byte."""
    topology = sample()
    text = topology.to_yaml()
    again = Topology.from_yaml(text.encode())
    assert again == topology
    assert again.to_yaml() == text
    assert again.services["mysql"].units["mysql/0"].machine == 1
    assert again.services["wordpress"].units["wordpress/0"].machine is None
    assert again.machine_sequence == 2 and dict(again.unit_sequence) == {"mysql": 1, "wordpress": 1}


@given(st.lists(st.sampled_from(["machine", "unit-a", "unit-b", "remove-unit"]), max_size=30))
def test_any_sequence_of_changes_round_trips(steps: list[str]) -> None:
    """Whatever changes were made, the YAML reads back as the same topology."""
    topology = Topology().add_machine().add_service("a", "local:bookworm/a-1").add_service("b", "local:bookworm/b-1")
    for step in steps:
        if step == "machine":
            topology = topology.add_machine()
        elif step.startswith("unit-"):
            topology = topology.add_unit(step[-1], machine=topology.new_machine_id)
        elif topology.services["a"].units:
            topology = topology.remove_unit(sorted(topology.services["a"].units)[0])
    assert Topology.from_yaml(topology.to_yaml()) == topology


def test_changes_leave_the_original_alone_and_never_reuse_ids() -> None:
    """A change is a new value; a removed machine's id and a removed unit's number are not given again."""
    before = Topology().add_machine().add_machine()
    after = before.remove_machine(1).add_machine()
    assert sorted(before.machines) == [0, 1]
    assert sorted(after.machines) == [0, 2] and after.new_machine_id == 2
    units = after.add_service("s", "local:bookworm/s-1").add_unit("s").remove_unit("s/0").add_unit("s")
    assert list(units.services["s"].units) == ["s/1"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.remove_machine(0), "machine 0"),
        (lambda t: t.remove_machine(1), "units (mysql/0)"),
        (lambda t: t.remove_machine(7), "machine 7 does not exist"),
        (lambda t: t.add_service("mysql", "local:bookworm/mysql-12"), "service mysql exists already"),
        (lambda t: t.add_unit("nosuch"), "service nosuch does not exist"),
        (lambda t: t.add_unit("mysql", machine=9), "machine 9 does not exist"),
        (lambda t: t.assign_unit("mysql/5", 0), "unit mysql/5 does not exist"),
        (lambda t: t.remove_service("mysql"), "service mysql has units"),
    ],
)
def test_nonsense_changes_are_refused(change, words: str) -> None:  # type: ignore[no-untyped-def]
    """Each refused change is a fatal TopologyError saying what is wrong."""
    with pytest.raises(TopologyError) as raised:
        change(sample())
    assert words in str(raised.value)
    assert not raised.value.retryable


@pytest.mark.parametrize(
    "text",
    [b"- a list\n", b"version: 99\n", b"version: 1\nmachines: {}\n", b"version: 1\nmachine-sequence: [\n", b"\x00"],
)
def test_unreadable_node_is_one_line_naming_it(text: bytes) -> None:
    """Anything but what to_yaml writes is StateCorruptError naming the node, in one line."""
    with pytest.raises(StateCorruptError) as raised:
        Topology.from_yaml(text, "/topology")
    assert str(raised.value).startswith("/topology does not hold a topology")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("raised", "ours", "message"), ERROR_TABLE)
def test_error_table(raised: type[Exception], ours: type[StateError], message: str) -> None:
    """Every kazoo failure in the table becomes its class, with the node in the one-line message."""
    error = state_error(raised(), "/topology")
    assert type(error) is ours
    assert isinstance(error, EnsembleError)
    assert "/topology" in str(error) and "\n" not in str(error)


def test_fatal_and_retryable_classes() -> None:
    """Connection trouble and lost races may heal; auth and missing nodes need someone to act."""
    assert StateConnectionError.retryable and StateConflictError.retryable
    assert not StateAuthError.retryable and not StateNotFoundError.retryable
    assert type(state_error(zk.ConnectionLoss(), "/x")) is StateConnectionError
    unknown = state_error(zk.MarshallingError(), "/x")
    assert type(unknown) is StateError and not unknown.retryable


def test_digest_identity_is_zookeepers() -> None:
    """admin:base64(sha1("admin:secret")): the value ZooKeeper's own tool printed
    (java -cp zookeeper.jar org.apache.zookeeper.server.auth.DigestAuthenticationProvider admin:secret)."""
    assert digest_identity("admin", "secret") == "admin:fvr2cB/fjGeAiX8g1aGhUm3ZICk="
