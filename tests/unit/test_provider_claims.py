"""Claiming systems, on FakeCobbler + MemoryStorage + task.Clock: one owner per system, constraints, reaping.

The same protocol is proven on the lab's real servers (tests/integration/test_claims*.py,
test_provider.py); here contention, leases and odd pools are cheap to set up and time is the clock's.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import DeferredList

from ensemble_orchestra.provider.errors import NoMatchingSystems

LEASE = 600.0  # claims.DEFAULT_LEASE: a claim marker older than this, on an available system, is abandoned


@pytest.mark.parametrize("seed", ["same-order", "alpha"])
def test_two_environments_claiming_at_once_never_share_a_system(make_world, seed: str) -> None:
    """Two environments launch two machines each at the same moment from a pool of four (answers take
    10 ms, so their claims interleave); with *seed* "same-order" both try the systems in the same order,
    the worst contention. Every system ends owned by exactly one environment, and holds its marker."""
    world = make_world(systems=4, latency=0.01)
    alpha = world.provider("alpha", seed=seed)
    beta = world.provider("beta", seed="same-order")
    results = world.run(
        DeferredList(
            [
                world.start(alpha.start_machines([world.machine("1"), world.machine("2")])),
                world.start(beta.start_machines([world.machine("1"), world.machine("2")])),
            ],
            consumeErrors=True,
        )
    )
    assert all(ok for ok, _ in results), results
    alpha_systems = sorted(m.system_name for m in results[0][1])
    beta_systems = sorted(m.system_name for m in results[1][1])
    assert not set(alpha_systems) & set(beta_systems)
    assert world.owned_by("alpha") == alpha_systems and world.owned_by("beta") == beta_systems
    assert world.claims() == sorted(world.cobbler.systems)
    assert world.storage_server.calls["create_exclusive"] > 4  # the claims did collide: some were lost


def test_a_pool_too_small_for_both_gives_each_system_one_owner(make_world) -> None:
    """Four machines wanted, three systems: one launch fails with NoMatchingSystems, the three systems
    are owned once each, and no marker is left on anything unowned."""
    world = make_world(systems=3, latency=0.01)
    alpha, beta = world.provider("alpha", seed="x"), world.provider("beta", seed="x")
    results = world.run(
        DeferredList(
            [
                world.start(alpha.start_machines([world.machine("1"), world.machine("2")])),
                world.start(beta.start_machines([world.machine("1"), world.machine("2")])),
            ],
            consumeErrors=True,
        )
    )
    failures = [failure for ok, failure in results if not ok]
    assert len(failures) == 1 and failures[0].check(NoMatchingSystems)
    owned = world.owned_by("alpha") + world.owned_by("beta")
    assert sorted(owned) == sorted(world.cobbler.systems)  # each once: the lists are disjoint
    assert world.claims() == sorted(owned)


def test_orchestra_classes_choose_systems_with_every_class(make_world) -> None:
    """orchestra-classes=a,b picks only a system carrying both Cobbler mgmt classes, and keeps them on it."""
    world = make_world(systems=3)
    world.cobbler.systems["node001"]["mgmt_classes"].append("gpu")
    world.cobbler.systems["node002"]["mgmt_classes"] += ["gpu", "ssd"]
    alpha = world.provider()
    [machine] = world.run(alpha.start_machine(world.machine("1", {"orchestra-classes": "gpu, ssd"})))
    assert machine.system_name == "node002"
    assert {"gpu", "ssd", "orchestra-ensemble-acquired"} <= set(world.cobbler.systems["node002"]["mgmt_classes"])
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("2", {"orchestra-classes": "ssd"})))  # node002 is taken


def test_orchestra_name_is_a_glob_over_system_names(make_world) -> None:
    """orchestra-name picks among the systems whose Cobbler name matches the glob, and no other."""
    world = make_world(systems=5)
    alpha = world.provider()
    machines = world.run(
        alpha.start_machines([world.machine(str(i), {"orchestra-name": "node00[24]"}) for i in (1, 2)])
    )
    assert sorted(m.system_name for m in machines) == ["node002", "node004"]
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("3", {"orchestra-name": "node00[24]"})))
    assert world.owned_by("alpha") == ["node002", "node004"]


def test_arch_filters_by_the_profile_and_installs_that_arch(make_world) -> None:
    """arch=i386 picks the system whose profile is <series>-i386 and installs bookworm-i386; arch=amd64
    (an alias of x86_64) never picks it."""
    world = make_world(systems=3)
    world.cobbler.objects["distro"]["bookworm-i386"] = {"name": "bookworm-i386", "arch": "i386", "breed": "debian"}
    world.cobbler.objects["profile"]["bookworm-i386"] = {"name": "bookworm-i386", "distro": "bookworm-i386"}
    world.cobbler.systems["node002"]["profile"] = "bookworm-i386"
    alpha = world.provider()
    amd64 = world.run(alpha.start_machines([world.machine(str(i), {"arch": "amd64"}) for i in (1, 2)]))
    assert sorted(m.system_name for m in amd64) == ["node001", "node003"]
    assert {world.cobbler.systems[n]["profile"] for n in ("node001", "node003")} == {"bookworm-x86_64"}
    [i386] = world.run(alpha.start_machine(world.machine("3", {"arch": "i386"})))
    assert i386.system_name == "node002" and world.cobbler.systems["node002"]["profile"] == "bookworm-i386"


def test_no_matching_system_claims_and_writes_nothing(make_world) -> None:
    """Constraints nothing matches: NoMatchingSystems naming the class, no marker, no Cobbler edit, no power."""
    world = make_world(systems=3)
    alpha = world.provider()
    with pytest.raises(NoMatchingSystems, match="orchestra-ensemble-available"):
        world.run(alpha.start_machine(world.machine("1", {"orchestra-name": "web*"})))
    assert world.claims() == [] and world.owned_by("alpha") == []
    assert world.cobbler.calls["xapi_object_edit"] == 0 and world.cobbler.power_requests == []


def test_a_system_without_power_management_is_never_claimed(make_world) -> None:
    """A claimed system that cannot be booted would be stranded: no power address, no candidate."""
    world = make_world(systems=2)
    world.cobbler.systems["node001"]["power_address"] = ""
    alpha = world.provider()
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert machine.system_name == "node002"
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("2")))
    assert world.in_pool("node001") and not world.has_claim("node001")


def test_an_abandoned_marker_is_reaped_once_the_lease_passes(make_world) -> None:
    """A claimer died holding the marker of the only available system: launches fail until the marker
    is older than the lease (on the storage's clock), then one reaps it and claims the system."""
    world = make_world(systems=1)
    uid = world.cobbler.systems["node001"]["uid"]
    dead = world.storage_server.storage("environments/dead")
    assert world.run(dead.create_exclusive(f"claims/{uid}")) is True
    alpha = world.provider()
    world.clock.advance(LEASE - 1)
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.in_pool("node001") and world.has_claim("node001")  # a fresh marker is never stolen
    world.clock.advance(1)
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert machine.system_name == "node001" and world.owned_by("alpha") == ["node001"]
    assert world.has_claim("node001")  # now alpha's
    assert not world.storage_server.has_marker(f"claims/{uid}.reap")  # the reaper's own marker is gone


def test_an_old_marker_on_an_owned_system_is_never_reaped(make_world) -> None:
    """Age alone never frees a system: beta's machine, owned for hours, stays beta's."""
    world = make_world(systems=1)
    beta, alpha = world.provider("beta"), world.provider("alpha")
    world.run(beta.start_machine(world.machine("1")))
    world.clock.advance(10 * LEASE)
    with pytest.raises(NoMatchingSystems):
        world.run(alpha.start_machine(world.machine("1")))
    assert world.owned_by("beta") == ["node001"] and world.has_claim("node001")


def test_a_reaper_that_died_is_itself_reaped(make_world) -> None:
    """A reaper died holding <marker>.reap: past the lease its marker is cleared, and a later launch reaps
    the abandoned claim and gets the system; before that, nothing is stolen."""
    world = make_world(systems=1)
    uid = world.cobbler.systems["node001"]["uid"]
    dead = world.storage_server.storage("environments/dead")
    world.run(dead.create_exclusive(f"claims/{uid}"))
    world.run(dead.create_exclusive(f"claims/{uid}.reap"))
    alpha = world.provider()
    world.clock.advance(LEASE)
    with pytest.raises(NoMatchingSystems):  # this attempt only clears the dead reaper's marker
        world.run(alpha.start_machine(world.machine("1")))
    assert not world.storage_server.has_marker(f"claims/{uid}.reap") and world.in_pool("node001")
    [machine] = world.run(alpha.start_machine(world.machine("1")))
    assert machine.system_name == "node001" and world.owned_by("alpha") == ["node001"]
