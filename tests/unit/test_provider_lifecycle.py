"""Bootstrap, release, destroy, state and ports of OrchestraProvider, on FakeCobbler + MemoryStorage + task.Clock.

The lab tests (tests/integration/test_provider*.py) prove these against real servers; here the failure
points are chosen exactly (one storage write, one Cobbler edit, one BMC operation) and time is the clock's.
"""

from __future__ import annotations

import pytest
import yaml
from twisted.internet.defer import CancelledError
from zope.interface.verify import verifyObject

from ensemble_orchestra.cobbler import CobblerError
from ensemble_orchestra.interfaces import IMachineProvider, IProviderMachine
from ensemble_orchestra.provider.errors import (
    EnvironmentAlreadyBootstrapped,
    MachinesNotFound,
    PowerError,
    ReleaseFailed,
)
from ensemble_orchestra.storage import StorageUnavailable

STATE = "provider-state"


def test_bootstrap_saves_state_naming_machine_zero_before_powering_it_on(make_world) -> None:
    """While machine 0's power-on is being confirmed, provider-state already names it, so a crash from
    then on leaves an environment destroy-environment can find; the launch then completes."""
    world = make_world(systems=2)
    world.cobbler.never_on.add("node001")
    world.cobbler.never_on.add("node002")
    alpha = world.provider()
    assert verifyObject(IMachineProvider, alpha)
    bootstrap = world.start(alpha.bootstrap({}))
    world.wait(1)
    [system] = world.owned_by("alpha")
    assert world.cobbler.power_actions(system) == ["on"] and not bootstrap.called
    state = yaml.safe_load(world.storage_server.files[f"environments/alpha/{STATE}"])
    assert state == {"zookeeper-instances": [world.cobbler.systems[system]["uid"]]}
    world.cobbler.never_on.clear()
    world.cobbler.power_state[system] = True  # the server comes up at last
    [machine] = world.run(bootstrap)
    assert verifyObject(IProviderMachine, machine)
    assert machine.system_name == system and machine.machine_id == "0" and machine.state == "pending"
    assert world.run(alpha.load_state()) == state


def test_bootstrap_refuses_when_state_exists(make_world) -> None:
    """An environment with provider-state is bootstrapped: refused, naming it, before any Cobbler write."""
    world = make_world()
    alpha = world.provider()
    world.run(alpha.save_state({"zookeeper-instances": ["uid-0"]}))
    with pytest.raises(EnvironmentAlreadyBootstrapped, match="'alpha' is already bootstrapped.*uid-0"):
        world.run(alpha.bootstrap({}))
    assert world.cobbler.calls["xapi_object_edit"] == 0 and world.cobbler.power_requests == []
    assert world.claims() == [] and world.run(alpha.load_state()) == {"zookeeper-instances": ["uid-0"]}


def test_a_storage_that_is_down_stops_bootstrap_before_cobbler(make_world) -> None:
    """check_writable comes first: a storage that is down fails bootstrap without one call to Cobbler."""
    world = make_world()
    world.storage_server.down = True
    alpha = world.provider()
    with pytest.raises(StorageUnavailable):
        world.run(alpha.bootstrap({}))
    assert sum(world.cobbler.calls.values()) == 0


def _power_refused(world) -> None:  # type: ignore[no-untyped-def]
    for name in world.cobbler.systems:
        world.cobbler.failing_power[name] = {"on", "reboot"}


def _state_not_saved(world) -> None:  # type: ignore[no-untyped-def]
    world.storage_server.fail_next("put", name=STATE)


def _edit_refused(world) -> None:  # type: ignore[no-untyped-def]
    world.cobbler.fail_next("xapi_object_edit")


@pytest.mark.parametrize(
    ("break_it", "error"),
    [(_power_refused, PowerError), (_state_not_saved, StorageUnavailable), (_edit_refused, CobblerError)],
    ids=["power-on refused", "state not saved", "edit refused"],
)
def test_a_failed_bootstrap_leaves_no_state_and_nothing_claimed(make_world, break_it, error) -> None:
    """Whichever step fails, bootstrap raises it and leaves no provider-state, no claim, no owned system,
    so the next bootstrap is not refused as 'already bootstrapped'."""
    world = make_world(systems=1)
    break_it(world)
    alpha = world.provider()
    with pytest.raises(error):
        world.run(alpha.bootstrap({}))
    assert world.run(alpha.load_state()) is False
    assert world.claims() == [] and world.owned_by("alpha") == [] and world.in_pool("node001")
    world.cobbler.failing_power.clear()
    [machine] = world.run(alpha.bootstrap({}))
    assert machine.system_name == "node001"


def test_a_bootstrap_cancelled_during_power_confirmation_leaves_no_state(make_world) -> None:
    """Ctrl-C while machine 0's power-on is being confirmed: CancelledError, no provider-state, no claim."""
    world = make_world(systems=1)
    world.cobbler.never_on.add("node001")
    alpha = world.provider()
    bootstrap = world.start(alpha.bootstrap({}))
    world.wait(2)
    assert world.run(alpha.load_state())  # saved before power-on
    bootstrap.cancel()
    with pytest.raises(CancelledError):
        world.run(bootstrap)
    assert world.run(alpha.load_state()) is False
    assert world.claims() == [] and world.owned_by("alpha") == []


def test_get_machines_sees_only_this_environment(make_world) -> None:
    """Owners are matched exactly: 'alpha' does not see 'alpha-2''s machine, nor ask for it by id."""
    world = make_world(systems=2)
    alpha, alpha2 = world.provider("alpha"), world.provider("alpha-2")
    [mine] = world.run(alpha.start_machine(world.machine("1")))
    [theirs] = world.run(alpha2.start_machine(world.machine("1")))
    assert [m.instance_id for m in world.run(alpha.get_machines())] == [mine.instance_id]
    assert world.run(alpha.get_machine(mine.instance_id)).system_name == mine.system_name
    with pytest.raises(MachinesNotFound, match=theirs.instance_id):
        world.run(alpha.get_machines([mine.instance_id, theirs.instance_id]))


def test_shutdown_powers_off_confirms_and_returns_the_system(make_world) -> None:
    """shutdown_machine: power off, confirmed by a status query, then back to the pool and the marker dropped."""
    world = make_world(systems=1)
    alpha = world.provider()
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert world.cobbler.power_state["node001"] is True
    world.run(alpha.shutdown_machine(machine))
    assert world.cobbler.power_actions("node001", status=True)[-2:] == ["off", "status"]
    assert world.cobbler.power_state["node001"] is False
    assert world.in_pool("node001") and world.claims() == []
    assert world.cobbler.systems["node001"]["netboot_enabled"] is False


def test_a_machine_that_cannot_be_powered_off_stays_owned(make_world) -> None:
    """Its BMC refuses off: shutdown_machines reports it (ReleaseFailed naming it, after releasing the
    others); it stays owned and claimed, so get_machines and destroy-environment still find it."""
    world = make_world(systems=2)
    alpha = world.provider()
    machines = world.run(alpha.start_machines([world.machine("1"), world.machine("2")]))
    world.cobbler.failing_power["node001"] = {"off"}
    with pytest.raises(ReleaseFailed, match="1 machine.*node001") as caught:
        world.run(alpha.shutdown_machines(machines))
    assert list(caught.value.failures) == ["node001"]
    assert world.owned_by("alpha") == ["node001"] and world.claims() == ["node001"]
    assert [m.system_name for m in world.run(alpha.get_machines())] == ["node001"]
    assert world.in_pool("node002")


def test_destroy_environment_releases_only_its_own(make_world) -> None:
    """alpha and beta share the pool: destroying alpha powers off and releases alpha's two machines and
    clears alpha's state, ports, tools and charm bundles; beta's machine, marker and state are untouched.
    A second destroy is a no-op."""
    world = make_world(systems=4)
    alpha, beta = world.provider("alpha"), world.provider("beta")
    [zero] = world.run(alpha.bootstrap({}))
    world.run(alpha.start_machine(world.machine("1")))
    world.run(alpha.open_port(zero, "0", 2181))
    world.run(alpha.get_file_storage().put("ensemble-charms/local_bookworm_mysql-1-ab.zip", b"PK"))
    [theirs] = world.run(beta.bootstrap({}))
    world.run(beta.open_port(theirs, "0", 80))
    mine = world.owned_by("alpha")
    released = world.run(alpha.destroy_environment())
    assert sorted(m.system_name for m in released) == mine
    for name in mine:
        assert world.cobbler.power_actions(name)[-1] == "off" and world.cobbler.power_state[name] is False
        assert world.in_pool(name) and not world.has_claim(name)
    assert world.owned_by("beta") == [theirs.system_name] and world.claims() == [theirs.system_name]
    assert world.cobbler.power_state[theirs.system_name] is True
    assert world.run(alpha.load_state()) is False and world.run(alpha.get_file_storage().list()) == []
    assert world.run(beta.load_state()) == {"zookeeper-instances": [theirs.instance_id]}
    assert world.run(beta.get_opened_ports(theirs, "0")) == {(80, "tcp")}
    assert world.run(alpha.destroy_environment()) == []


def test_state_and_ports_round_trip(make_world) -> None:
    """No state reads as False; saved state reads back; ports are a set per machine, opened and closed."""
    world = make_world(systems=1)
    alpha = world.provider()
    assert world.run(alpha.load_state()) is False
    world.run(alpha.save_state({"zookeeper-instances": ["a"], "other": 1}))
    assert world.run(alpha.load_state()) == {"zookeeper-instances": ["a"], "other": 1}
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert world.run(alpha.get_opened_ports(machine, "1")) == set()
    for port, protocol in ((80, "tcp"), (80, "tcp"), (53, "udp")):
        world.run(alpha.open_port(machine, "1", port, protocol))
    assert world.run(alpha.get_opened_ports(machine, "1")) == {(80, "tcp"), (53, "udp")}
    world.run(alpha.close_port(machine, "1", 80))
    assert world.run(alpha.get_opened_ports(machine, "1")) == {(53, "udp")}
    assert world.run(alpha.get_opened_ports(machine, "2")) == set()


def test_close_closes_the_storage(make_world) -> None:
    """close() (before the reactor stops) closes the storage: any later use of it fails loudly."""
    world = make_world(systems=1)
    alpha = world.provider()
    world.run(alpha.save_state({"zookeeper-instances": []}))
    world.run(alpha.close())
    assert alpha.get_file_storage().closed
    with pytest.raises(RuntimeError, match="after close"):
        world.run(alpha.load_state())


def test_resume_launch_powers_on_a_system_whose_launcher_died_before_the_power_on(make_world) -> None:
    """Owned, set to install, powered off (the launcher died after the ownership edit): powered on once;
    a system that runs, or one installed, is left alone."""
    world = make_world(systems=2)
    alpha = world.provider()
    world.cobbler.failing_power["node001"].add("on")  # the launch dies at its power-on...
    world.cobbler.failing_power["node001"].add("reboot")
    world.cobbler.failing_power["node001"].add("off")  # ...and its rollback too: the system stays owned
    failed = world.start(alpha.start_machine(world.machine("1")))
    world.settle(failed)
    [name] = world.owned_by("alpha")
    world.cobbler.failing_power.clear()
    world.cobbler.power_state[name] = False
    [machine] = world.run(alpha.get_machines())
    assert machine.state == "pending"
    assert world.run(alpha.resume_launch(machine)) is True
    assert world.cobbler.power_state[name] is True and world.cobbler.power_actions(name)[-1] == "on"
    assert world.run(alpha.resume_launch(machine)) is False  # it runs now: nothing to do


def test_forget_user_data_drops_only_an_installed_machines_user_data_and_keeps_its_owner(make_world) -> None:
    """The user data (the agent's secrets) leaves the record of an installed machine; one still set to install
    keeps it (its installer needs it), as does a system another environment owns now."""
    world = make_world(systems=2)
    alpha, beta = world.provider("alpha"), world.provider("beta")
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    meta = world.cobbler.systems[machine.system_name]["autoinstall_meta"]
    assert "ensemble_user_data" in meta and machine.holds_user_data
    # The launched machine says where it is (the firewalls need it before its agent can tell).
    ip = world.cobbler.systems[machine.system_name]["interfaces"]["eth0"]["ip_address"]
    assert ip and machine.address == ip and machine.state == "pending"
    assert world.run(alpha.forget_user_data(machine)) is False  # netboot on: not installed yet
    assert "ensemble_user_data" in world.cobbler.systems[machine.system_name]["autoinstall_meta"]

    world.cobbler.systems[machine.system_name]["netboot_enabled"] = False  # the installer's nopxe
    assert world.run(alpha.forget_user_data(machine)) is True
    after = world.cobbler.systems[machine.system_name]["autoinstall_meta"]
    assert after == {k: v for k, v in meta.items() if k != "ensemble_user_data"}
    assert world.owned_by("alpha") == [machine.system_name]  # still owned, with its machine id
    [again] = world.run(alpha.get_machines())
    assert not again.holds_user_data and again.machine_id == "1"
    assert world.run(alpha.forget_user_data(again)) is False  # nothing left to drop: no edit

    # A machine of another environment (or a record reused since) is never edited.
    [other] = world.run(beta.start_machine(world.machine("1")))
    world.cobbler.systems[other.system_name]["netboot_enabled"] = False
    assert world.run(alpha.forget_user_data(other)) is False
    assert "ensemble_user_data" in world.cobbler.systems[other.system_name]["autoinstall_meta"]
