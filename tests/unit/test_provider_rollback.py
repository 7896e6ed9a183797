"""Failed and cancelled launches, on FakeCobbler + MemoryStorage + task.Clock: nothing stays claimed.

The invariant of every test: a system is either owned (acquired class + owner metadata in Cobbler, claim
marker on the storage) or back in the available pool with no marker. The lab's fault drills
(tests/integration/test_provider_faults.py) prove the same against real servers. What rollback does after
power was touched (defect 4) is in test_provider_rollback_power.py.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError

from ensemble_orchestra.cobbler import CobblerError
from ensemble_orchestra.provider.errors import NoMatchingSystems, PowerError, RollbackFailed
from ensemble_orchestra.storage import StorageUnavailable

LEASE = 600.0  # claims.DEFAULT_LEASE


def test_a_failed_edit_leaves_the_system_in_the_pool(make_world) -> None:
    """Cobbler refuses the ownership edit: the error is raised, the marker dropped, nothing owned."""
    world = make_world(systems=1)
    world.cobbler.fail_next("xapi_object_edit")
    alpha = world.provider()
    with pytest.raises(CobblerError, match="scripted failure"):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.in_pool("node001") and world.claims() == [] and world.owned_by("alpha") == []
    assert world.run(alpha.get_machines()) == []


def test_a_refused_power_on_returns_the_system_to_the_pool(make_world) -> None:
    """The BMC refuses on and reboot: PowerError naming the system; it is back in the pool, unclaimed."""
    world = make_world(systems=1)
    world.cobbler.failing_power["node001"] = {"on", "reboot"}
    alpha = world.provider()
    with pytest.raises(PowerError, match="node001") as caught:
        world.run(alpha.start_machine(world.machine("1")))
    assert caught.value.system == "node001"
    assert world.in_pool("node001") and world.claims() == [] and world.owned_by("alpha") == []


def test_a_dead_bmc_fails_before_any_power_action_and_returns_the_system(make_world) -> None:
    """Every call to the BMC fails, so the status query before power-on does: no action was ever sent,
    nothing needs powering off, and the system goes straight back to the pool."""
    world = make_world(systems=1)
    world.cobbler.failing_bmcs.add("node001")
    alpha = world.provider()
    with pytest.raises(PowerError, match="node001"):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.cobbler.power_actions("node001") == []
    assert world.in_pool("node001") and world.claims() == [] and world.owned_by("alpha") == []


def test_one_failed_launch_in_a_batch_keeps_the_others(make_world) -> None:
    """Three machines on three systems, one BMC refusing: that launch is rolled back and its error raised;
    the two launched meanwhile stay owned and recorded (get_machines finds them)."""
    world = make_world(systems=3)
    world.cobbler.failing_power["node002"] = {"on", "reboot"}
    alpha = world.provider()
    with pytest.raises(PowerError, match="node002"):
        world.run(alpha.start_machines([world.machine(str(i)) for i in range(3)]))
    assert world.owned_by("alpha") == ["node001", "node003"]
    assert sorted(m.system_name for m in world.run(alpha.get_machines())) == ["node001", "node003"]
    assert world.claims() == ["node001", "node003"] and world.in_pool("node002")


def test_a_rollback_that_cannot_drop_the_marker_still_raises_the_launch_error(make_world) -> None:
    """The storage fails the marker's removal during rollback: the launch's own error is raised (not the
    storage's), the system is back in the pool, and its leftover marker is reaped once the lease passes."""
    world = make_world(systems=1)
    world.cobbler.failing_power["node001"] = {"on", "reboot"}
    world.storage_server.fail_next("remove_exclusive")
    alpha = world.provider()
    with pytest.raises(PowerError):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.in_pool("node001") and world.has_claim("node001")
    world.cobbler.failing_power.clear()
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("1")))
    world.clock.advance(LEASE)
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert machine.system_name == "node001" and world.owned_by("alpha") == ["node001"]


def _batch_waiting_on_its_first_power_on(world, seconds: float = 20, **settings):  # type: ignore[no-untyped-def]
    """Three launches at launch-concurrency 1 whose systems never come on: after *seconds*, the first waits
    in power confirmation, two are queued holding claim markers. Returns (provider, batch, running system)."""
    world.cobbler.never_on.update(world.cobbler.systems)
    alpha = world.provider(**{"launch-concurrency": 1, "power-timeout": 300, **settings})
    batch = world.start(alpha.start_machines([world.machine(str(i)) for i in range(3)]))
    world.wait(seconds)
    assert world.claims() == ["node001", "node002", "node003"]
    [running] = [name for name in world.cobbler.systems if world.owner(name) == "alpha"]
    assert world.cobbler.power_actions(running) == ["on"]  # the only launch that began
    return alpha, batch, running


def test_cancelling_a_batch_with_queued_launches_leaves_nothing_claimed(make_world) -> None:
    """Ctrl-C (cancel) while one launch confirms its power-on and two are queued: CancelledError once the
    cleanup is done; the queued launches never began (no edit, no power), their markers are dropped,
    the running one is rolled back; nothing stays claimed or owned, and no timer is left running."""
    world = make_world(systems=3, latency=0.01)
    _, batch, running = _batch_waiting_on_its_first_power_on(world)
    edits = world.cobbler.calls["xapi_object_edit"]
    batch.cancel()
    with pytest.raises(CancelledError):
        world.run(batch, step=0.01)
    queued = [name for name in world.cobbler.systems if name != running]
    assert all(world.cobbler.power_actions(name) == [] for name in queued)
    assert world.cobbler.calls["xapi_object_edit"] == edits + 1  # only the running launch's rollback
    assert world.claims() == [] and world.owned_by("alpha") == []
    assert all(world.in_pool(name) for name in world.cobbler.systems)
    assert world.clock.getDelayedCalls() == []


def test_cancelling_drops_the_queued_launches_markers_at_once(make_world) -> None:
    """The queued launches hold only claim markers, so cancelling drops them at once (one storage round
    trip), without waiting for the running launch's rollback in slow Cobbler (5 s an answer here): a
    second Ctrl-C or a crash during that rollback must not leave them claimed until the lease."""
    world = make_world(systems=3, latency=5.0, storage_latency=0.01)
    _, batch, running = _batch_waiting_on_its_first_power_on(world, seconds=60)
    batch.cancel()
    world.wait(0.1)
    assert world.claims() == [running]  # the running launch's rollback is still busy with Cobbler


def test_a_launch_queued_when_the_batch_is_cancelled_never_begins(make_world) -> None:
    """When the running launch's rollback completes at once (every answer without delay), its freed slot
    must not start a queued launch of the cancelled batch: no queued system is ever written or powered."""
    world = make_world(systems=3)
    _, batch, running = _batch_waiting_on_its_first_power_on(world)
    batch.cancel()
    with pytest.raises(CancelledError):
        world.run(batch)
    assert world.claims() == [] and world.owned_by("alpha") == []
    assert [name for name in world.cobbler.systems if world.cobbler.power_actions(name)] == [running]


def test_a_queued_launch_never_begins_after_cancel_even_when_the_rollback_fails(make_world) -> None:
    """As above, but the running launch's rollback cannot power its system off (RollbackFailed, not
    CancelledError): the batch was still cancelled, so no queued launch may begin; only the running
    system stays owned (as its error says) and no other system is written or powered."""
    world = make_world(systems=3)
    for name in world.cobbler.systems:
        world.cobbler.failing_power[name] = {"off"}
    _, batch, running = _batch_waiting_on_its_first_power_on(world)
    batch.cancel()
    with pytest.raises(RollbackFailed, match="stays recorded as owned"):
        world.run(batch)
    assert [name for name in world.cobbler.systems if world.cobbler.power_actions(name)] == [running]
    assert world.owned_by("alpha") == [running] and world.claims() == [running]


def test_a_claim_failing_in_a_batch_drops_the_markers_already_won(make_world) -> None:
    """Two machines: the storage fails the first claim's marker, the second claim wins its system. The
    batch fails with the storage error, and the marker already won must be dropped too: nothing is
    launched, so nothing may stay claimed (until the lease, the system is lost to every environment)."""
    world = make_world(systems=2)
    world.storage_server.fail_next("create_exclusive")
    alpha = world.provider()
    with pytest.raises(StorageUnavailable):
        world.run(alpha.start_machines([world.machine("1"), world.machine("2")]))
    assert world.owned_by("alpha") == []
    assert world.claims() == []


def test_cancelling_while_claiming_drops_the_markers_already_won(make_world) -> None:
    """Ctrl-C while one claim waits on the storage and the other has already won its marker: the batch
    is cancelled and neither system stays claimed."""
    world = make_world(systems=2)
    world.storage_server.hang_next("create_exclusive")
    alpha = world.provider()
    batch = world.start(alpha.start_machines([world.machine("1"), world.machine("2")]))
    assert len(world.claims()) == 1 and not batch.called  # one marker won, one claim waiting
    batch.cancel()
    with pytest.raises(CancelledError):
        world.run(batch)
    assert world.claims() == []


def test_cancelling_while_the_ownership_edit_is_in_flight_returns_the_system_to_the_pool(make_world) -> None:
    """Ctrl-C while Cobbler is applying the ownership edit (it answers 1 s later): the edit may have been
    applied, so the rollback writes the system back to the pool; nothing stays owned without a marker."""
    world = make_world(systems=1, latency=1.0)
    alpha = world.provider()
    batch = world.start(alpha.start_machines([world.machine("1")]))
    for _ in range(1000):  # bounded: 10 s of fake time
        if world.cobbler.calls["xapi_object_edit"]:
            break
        world.wait(0.01)
    assert world.cobbler.calls["xapi_object_edit"] == 1 and not batch.called  # the edit is in flight
    batch.cancel()
    with pytest.raises(CancelledError):
        world.run(batch)
    [name] = world.cobbler.systems
    assert world.owned_by("alpha") == [] and world.claims() == [] and world.in_pool(name)
