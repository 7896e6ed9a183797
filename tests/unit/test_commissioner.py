"""The commission command's rules on FakeCobbler + MemoryStorage + task.Clock: what it writes, and that every
way it can fail (no report in time, Ctrl-C) puts the system back as it was, powered off, marker dropped.
The same path against the real servers and real boots is tests/integration/test_commissioning.py; here time is
the clock's and the image is the test, PUTting (or not) its report."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred

from ensemble_orchestra.cobbler import ProfileRecord
from ensemble_orchestra.commissioning import HARDWARE_KEY
from ensemble_orchestra.commissioning.commissioner import FROM_KEY, Commissioner, Outcome
from ensemble_orchestra.commissioning.enlistment import accept, enlist
from ensemble_orchestra.commissioning.setup import ENLISTED_CLASS, CommissioningSetup, profile_changes
from ensemble_orchestra.errors import UsageError
from ensemble_orchestra.secret import Secret
from ensemble_orchestra.testing import result_of

ACQUIRED = "orchestra-ensemble-acquired"


def setup_world(make_world: Any) -> tuple[Any, Any, Commissioner, Any]:
    world = make_world(systems=3)
    for system in world.cobbler.systems.values():
        system["kernel_options"] = "<<inherit>>"  # what Cobbler 3 gives a system that never set any
    provider = world.provider()
    area = world.storage_server.storage("commissioning")
    commissioner = Commissioner(
        provider.client, provider.claims, area, world.clock, acquired_class=ACQUIRED, timeout=60, off_timeout=20
    )
    return world, provider, commissioner, area


def token_of(world: Any, name: str) -> str | None:
    options = world.cobbler.systems[name]["kernel_options"]
    return options.get("ensemble.token") if isinstance(options, dict) else None


def report(world: Any, name: str, token: str) -> bytes:
    mac = world.cobbler.systems[name]["interfaces"]["eth0"]["mac_address"]
    document = {
        "format": 1,
        "token": token,
        "arch": "x86_64",
        "cpus": 4,
        "cpu_model": "Fake CPU",
        "memory_mb": 2048,
        "disks": [{"name": "sda", "size_bytes": 10 << 30}],
        "interfaces": [{"name": "eth0", "mac": mac}],
    }
    return json.dumps(document).encode()


def assert_restored(world: Any, name: str) -> None:
    system = world.cobbler.systems[name]
    assert system["profile"] == "bookworm-x86_64" and system["netboot_enabled"] is False
    assert system["kernel_options"] == "<<inherit>>"  # as it was, not {}
    meta = system["autoinstall_meta"]
    assert not isinstance(meta, dict) or FROM_KEY not in meta
    assert world.claims() == [] and world.cobbler.power_state[name] is False


def test_a_report_is_recorded_and_the_system_put_back(make_world: Any) -> None:
    """The run sets the commissioning profile, netboot and a token, powers on; the report that carries the token
    is recorded; the profile, netboot and kernel options are restored; the system ends off, the report deleted."""
    world, _, commissioner, area = setup_world(make_world)
    run = Deferred.fromCoroutine(commissioner.commission(["node002"]))
    world.wait(2)
    token = token_of(world, "node002")
    assert token and world.cobbler.systems["node002"]["profile"] == "ensemble-commissioning"
    assert world.cobbler.systems["node002"]["netboot_enabled"] is True
    assert world.cobbler.systems["node002"]["autoinstall_meta"][FROM_KEY] == "bookworm-x86_64"
    assert world.claims() == ["node002"]  # no environment can claim it meanwhile
    world.run(area.put(f"incoming/{token}.json", report(world, "node002", token)))
    world.settle(run)
    [outcome] = result_of(run)
    assert outcome.ok and outcome.hardware.memory_mb == 2048 and outcome.hardware.cpus == 4
    recorded = json.loads(world.cobbler.systems["node002"]["autoinstall_meta"][HARDWARE_KEY])
    assert (recorded["memory_mb"], recorded["cpus"], recorded["disks"][0]["size_bytes"]) == (2048, 4, 10 << 30)
    assert_restored(world, "node002")  # the fake never powers itself off: the command did, after off_timeout
    assert world.cobbler.power_actions("node002") == ["on", "off"]
    assert world.run(area.list("incoming/")) == ["incoming/README"]


def test_no_report_in_time_fails_that_system_only_and_restores_it(make_world: Any) -> None:
    """A system that never reports fails at --timeout with one line naming it; the other one of the run is
    commissioned; the silent one is back as it was, off, its marker dropped."""
    world, _, commissioner, area = setup_world(make_world)
    run = Deferred.fromCoroutine(commissioner.commission(["node001", "node003"]))
    world.wait(2)
    token = token_of(world, "node003")
    assert token is not None
    world.run(area.put(f"incoming/{token}.json", report(world, "node003", token)))
    world.settle(run)
    silent, good = result_of(run)
    assert not silent.ok and silent.error.startswith("node001 sent no report within 60 s: check that it PXE-boots")
    assert good.ok
    assert_restored(world, "node001")
    assert HARDWARE_KEY not in (world.cobbler.systems["node001"]["autoinstall_meta"] or {})


def test_ctrl_c_puts_every_system_back(make_world: Any) -> None:
    """Cancelling the run (Ctrl-C) while it waits for reports restores every system and powers it off."""
    world, _, commissioner, _ = setup_world(make_world)
    run = Deferred.fromCoroutine(commissioner.commission(["node001", "node002"]))
    world.wait(3)
    assert token_of(world, "node001") and token_of(world, "node002")
    run.cancel()
    world.wait(1)
    failures: list[Any] = []
    run.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)
    for name in ("node001", "node002"):
        assert_restored(world, name)


def test_an_owned_system_is_refused_untouched(make_world: Any) -> None:
    """A system an environment owns is refused before any marker, edit or power call."""
    world, provider, commissioner, _ = setup_world(make_world)
    [owned] = world.run(provider.start_machine(world.machine("1")))
    edits, power = world.cobbler.calls["xapi_object_edit"], list(world.cobbler.power_requests)
    [outcome] = world.run(commissioner.commission([owned.system_name]))
    assert outcome == Outcome(
        owned.system_name,
        error=f"{owned.system_name} is claimed by environment 'alpha': release it before commissioning it",
        seconds=0.0,
    )
    assert world.cobbler.calls["xapi_object_edit"] == edits and world.cobbler.power_requests == power


SETUP = CommissioningSetup(
    "/srv/c/vmlinuz",
    "/srv/c/initrd.gz",
    "http://orchestra/webdav/commissioning/incoming/",
    "ensemble-commissioning",
    Secret("s3cret-Pw"),
)


def test_setup_server_changes_only_what_differs_and_keeps_other_kernel_options() -> None:
    """The profile keeps options an admin added; a changed password is one change, named by key only."""
    current = ProfileRecord(
        "ensemble-commissioning",
        distro="ensemble-commissioning",
        kernel_options={"console": "ttyS0", **SETUP.kernel_options()},
        enable_menu=False,
    )
    assert profile_changes(current, SETUP) == {}
    stale = ProfileRecord(current.name, distro=current.distro, kernel_options={"console": "ttyS0"}, enable_menu=True)
    changes = profile_changes(stale, SETUP)
    assert changes["kernel_options"] == {"console": "ttyS0", **SETUP.kernel_options()}
    assert changes["enable_menu"] is False and "distro" not in changes


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kernel": "vmlinuz"}, "--commissioning-kernel must be an absolute path"),
        ({"report_url": "https://orchestra/webdav/commissioning/incoming/"}, "http://HOST"),
        ({"report_url": "http://orchestra/webdav/commissioning/incoming"}, "ending in /"),
        ({"report_url": "http://u:p@orchestra/x/"}, "http://HOST"),
        ({"password": Secret("two words")}, "the commissioning password must be one word"),
    ],
)
def test_setup_server_refuses_what_cannot_go_on_a_kernel_command_line(fields: dict[str, Any], error: str) -> None:
    """Usage errors (exit 2) that name the option, never echoing the password."""
    values = {
        "kernel": SETUP.kernel,
        "initrd": SETUP.initrd,
        "report_url": SETUP.report_url,
        "user": SETUP.user,
        "password": SETUP.password,
        **fields,
    }
    with pytest.raises(UsageError, match=error) as caught:
        CommissioningSetup(**values)
    assert "two words" not in str(caught.value)


def test_enlistment_refuses_known_macs_and_malformed_reports(make_world: Any) -> None:
    """A report filed for a MAC Cobbler already records is no new server; a malformed one is refused; both are
    deleted, and nothing is added to Cobbler (a new one is proven on the lab: tests/integration/test_commissioning)."""
    world, provider, _, area = setup_world(make_world)
    mac = world.cobbler.systems["node001"]["interfaces"]["eth0"]["mac_address"].lower()
    compact = mac.replace(":", "")
    known = json.loads(report(world, "node001", f"enlist-{compact}"))
    world.run(area.put(f"incoming/enlist-{compact}.json", json.dumps(known).encode()))
    world.run(area.put("incoming/enlist-525400abcdef.json", b"{not json"))
    world.run(area.put("incoming/0123456789abcdefghij.json", b"a commissioning report: not enlistment's"))
    results = world.run(enlist(provider.client, area, world.clock))
    assert [(r.report, r.system, r.error) for r in results] == [  # in name order
        (f"incoming/enlist-{compact}.json", "", "its MACs are already Cobbler's, on node001: not a new server"),
        (
            "incoming/enlist-525400abcdef.json",
            "",
            "the report is not JSON (Expecting property name enclosed in double quotes)",
        ),
    ]
    assert world.run(area.list("incoming/")) == ["incoming/0123456789abcdefghij.json"]
    assert sorted(world.cobbler.systems) == ["node001", "node002", "node003"]


def test_accept_moves_only_enlisted_systems_with_power(make_world: Any) -> None:
    """accept: an enlisted system with power settings goes to the available class; one without power, one not
    enlisted and an unknown name are refused, each with one line saying why."""
    world, provider, _, _ = setup_world(make_world)
    for name in ("node001", "node002"):
        world.cobbler.systems[name]["mgmt_classes"] = [ENLISTED_CLASS, "rack7"]
    world.cobbler.systems["node002"]["power_type"] = ""
    results = world.run(accept(provider.client, ["node001", "node002", "node003", "nodeX"], "avail"))
    assert results["node001"] == "" and world.cobbler.systems["node001"]["mgmt_classes"] == ["avail", "rack7"]
    assert results["node002"].startswith("node002 has no power management: set its power_type")
    assert results["node003"] == f"node003 is not in {ENLISTED_CLASS}: only enlisted systems are accepted"
    assert results["nodeX"] == "nodeX: no such system in Cobbler"
    assert world.cobbler.systems["node002"]["mgmt_classes"] == [ENLISTED_CLASS, "rack7"]
