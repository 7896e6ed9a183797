"""Defect 4 (issue 10): a launch that fails after the power-on was sent must power the system off before
returning it to the pool.

Otherwise the server may keep running the installer with a rolled-back environment's user data while
another environment claims it. Rollback powers the system off and confirms it whenever power was touched,
as shutdown_machine does, and only then returns it to the pool; if it cannot be powered off, the system
stays recorded as owned (acquired class + owner metadata in Cobbler, claim marker kept) and the error says
so. On FakeCobbler + MemoryStorage + task.Clock; the lab's fault drill proves it on real BMCs.

Every test but (d) failed against the provider before the fix (commit 9fb1c12's provider: the rollback
returned the system to the pool with no power call at all); (d) passed before it and pins that the fix
powers off only when power was touched.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError

from ensemble_orchestra.cobbler import CobblerError
from ensemble_orchestra.provider.errors import PowerError, RollbackFailed


def _never_confirmed(world) -> None:  # type: ignore[no-untyped-def]
    """The BMC accepts on, the server never comes up: power-timeout passes while confirming."""
    world.cobbler.never_on.add("node001")


def _agent_gave_up(world) -> None:  # type: ignore[no-untyped-def]
    """fence_ipmilan sent the on, then timed out waiting for the BMC to report it: Cobbler reports rc=1."""
    world.cobbler.failing_power["node001"] = {"on", "reboot"}


def _assert_powered_off_then_returned(world) -> None:  # type: ignore[no-untyped-def]
    calls = world.cobbler.power_actions("node001", status=True)
    actions = [op for op in calls if op != "status"]
    assert actions and actions[0] in ("on", "reboot")
    assert actions[-1] == "off", f"the rollback never powered node001 off: {calls}"
    assert "status" in calls[len(calls) - 1 - calls[::-1].index("off") :], "the power-off was not confirmed"
    assert world.cobbler.power_state["node001"] is False
    assert world.in_pool("node001") and world.claims() == [] and world.owned_by("alpha") == []


@pytest.mark.parametrize("fault", [_never_confirmed, _agent_gave_up], ids=["never confirmed", "agent gave up"])
def test_a_power_on_that_fails_after_being_sent_is_powered_off_before_release(make_world, fault) -> None:
    """(a) The BMC took the on, the launch fails with PowerError: Cobbler saw an off (confirmed by a status
    query) after the on, and only then is the system back in the pool with its marker dropped."""
    world = make_world(systems=1)
    fault(world)
    alpha = world.provider(**{"power-timeout": 30})
    with pytest.raises(PowerError, match="node001"):
        world.run(alpha.start_machine(world.machine("1")))
    _assert_powered_off_then_returned(world)


def test_a_launch_cancelled_during_power_confirmation_is_powered_off_before_release(make_world) -> None:
    """(b) Ctrl-C while the power-on is being confirmed: CancelledError, and the same power-off before release."""
    world = make_world(systems=1)
    _never_confirmed(world)
    alpha = world.provider(**{"power-timeout": 30})
    launch = world.start(alpha.start_machine(world.machine("1")))
    world.wait(5)
    assert world.cobbler.power_actions("node001") == ["on"] and not launch.called
    launch.cancel()
    with pytest.raises(CancelledError):
        world.run(launch)
    _assert_powered_off_then_returned(world)


def test_a_failed_bootstrap_powers_machine_zero_off_and_clears_state(make_world) -> None:
    """Bootstrap's launch fails after the on: machine 0 is powered off before release and no state is left."""
    world = make_world(systems=1)
    _never_confirmed(world)
    alpha = world.provider(**{"power-timeout": 30})
    with pytest.raises(PowerError):
        world.run(alpha.bootstrap({}))
    _assert_powered_off_then_returned(world)
    assert world.run(alpha.load_state()) is False


@pytest.mark.parametrize("fault", [_never_confirmed, _agent_gave_up], ids=["never confirmed", "agent gave up"])
def test_a_system_that_cannot_be_powered_off_stays_owned_and_the_error_says_so(make_world, fault) -> None:
    """(c) The power-on fails and the BMC refuses the rollback's off too: the system stays owned by the
    environment (acquired class + owner in Cobbler, found by get_machines), its marker stays, and the
    error names it, says it stays owned and that destroy-environment retries."""
    world = make_world(systems=1)
    fault(world)
    world.cobbler.failing_power["node001"].add("off")
    alpha = world.provider(**{"power-timeout": 30})
    with pytest.raises(RollbackFailed) as caught:
        world.run(alpha.start_machine(world.machine("1")))
    message = str(caught.value)
    assert "node001" in message and "owned" in message and "destroy-environment" in message, message
    assert "off" in world.cobbler.power_actions("node001")  # the rollback tried
    assert world.owned_by("alpha") == ["node001"] and world.has_claim("node001")
    assert [m.system_name for m in world.run(alpha.get_machines())] == ["node001"]
    world.cobbler.failing_power.clear()  # the BMC answers again: destroy-environment does what it said
    [released] = world.run(alpha.destroy_environment())
    assert released.system_name == "node001" and world.cobbler.power_actions("node001")[-1] == "off"
    assert world.in_pool("node001") and world.claims() == []


def test_a_bootstrap_whose_machine_cannot_be_powered_off_keeps_its_state(make_world) -> None:
    """Bootstrap's rollback cannot power machine 0 off: provider-state still names it (so the environment
    is known to be bootstrapped, not silently half-gone), and destroy-environment later releases it."""
    world = make_world(systems=1)
    _never_confirmed(world)
    world.cobbler.failing_power["node001"] = {"off"}
    alpha = world.provider(**{"power-timeout": 30})
    with pytest.raises(RollbackFailed, match="owned.*destroy-environment"):
        world.run(alpha.bootstrap({}))
    uid = world.cobbler.systems["node001"]["uid"]
    assert world.run(alpha.load_state()) == {"zookeeper-instances": [uid]}
    assert world.owned_by("alpha") == ["node001"] and world.has_claim("node001")
    world.cobbler.failing_power.clear()
    world.run(alpha.destroy_environment())
    assert world.run(alpha.load_state()) is False
    assert world.in_pool("node001") and world.claims() == [] and world.cobbler.power_state["node001"] is False


def test_a_launch_that_fails_before_power_was_touched_powers_nothing(make_world) -> None:
    """(d) The ownership edit fails, so no power call was made: the rollback makes none either (not even a
    status query) and the system goes straight back to the pool."""
    world = make_world(systems=1)
    world.cobbler.fail_next("xapi_object_edit")
    alpha = world.provider()
    with pytest.raises(CobblerError):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.cobbler.power_requests == []
    assert world.in_pool("node001") and world.claims() == [] and world.owned_by("alpha") == []
