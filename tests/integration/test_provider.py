"""The orchestra provider against the lab's real cobblerd, fence_ipmilan/ipmi_sim BMCs and Apache mod_dav."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
import yaml
from zope.interface.verify import verifyObject

from ensemble_orchestra.interfaces import IMachineProvider, IProviderMachine
from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.provider.errors import EnvironmentAlreadyBootstrapped, MissingProfile, NoMatchingSystems
from ensemble_orchestra.provider.orchestra import ENV_KEY, USER_DATA_KEY

pytestmark = pytest.mark.lab


def _data(machine_id: str, **constraints: str) -> dict:
    return {"machine-id": machine_id, "zookeeper-hosts": ["node001.lab.ensemble:2181"], "constraints": constraints}


def _reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred
async def test_bootstrap_claims_records_and_powers_on_one_system(make_provider, lab: RunningLab) -> None:
    provider = make_provider()
    assert verifyObject(IMachineProvider, provider)
    [machine] = await provider.bootstrap({})
    assert verifyObject(IProviderMachine, machine)
    assert machine.state == "pending" and machine.machine_id == "0"

    server = lab.cobbler()
    record = server.get_system(machine.system_name)
    assert record["uid"] == machine.instance_id
    assert record["mgmt_classes"] == [ACQUIRED_CLASS]
    # netboot was on for the install; the lab system's installer (the preseed's late command) turns it off.
    assert machine.state == "pending"
    assert record["profile"] == "bookworm-x86_64"
    meta = record["autoinstall_meta"]
    assert meta[ENV_KEY] == "alpha" and meta["ensemble_machine_id"] == "0"
    user_data = base64.b64decode(meta[USER_DATA_KEY]).decode()
    assert user_data.startswith("#cloud-config\n")
    assert yaml.safe_load(user_data)["machine-data"]["instance-id"] == machine.instance_id
    assert provider.config.authorized_keys in user_data and lab.spec.admin_secret not in user_data
    # Power went the real way: fence_ipmilan turned the BMC on and the system booted.
    assert bmc.power_is_on(lab.system_dir(machine.system_name))
    # Provider state was saved (before power-on) and a second bootstrap is refused.
    assert await provider.load_state() == {"zookeeper-instances": [machine.instance_id]}
    with pytest.raises(EnvironmentAlreadyBootstrapped, match="already bootstrapped"):
        await provider.bootstrap({})
    assert [m.instance_id for m in await provider.get_machines()] == [machine.instance_id]


@pytest_twisted.ensureDeferred
async def test_get_machines_is_one_call_and_scoped_to_the_environment(make_provider, lab: RunningLab) -> None:
    alpha, alpha2 = make_provider("alpha"), make_provider("alpha2")
    mine = await alpha.start_machines([_data(str(i)) for i in range(1, 4)])
    other = await alpha2.start_machines([_data("1")])
    before = sum(alpha.client.calls.values())
    found = await alpha.get_machines()
    assert sum(alpha.client.calls.values()) - before == 1
    assert sorted(m.instance_id for m in found) == sorted(m.instance_id for m in mine)
    assert other[0].instance_id not in {m.instance_id for m in found}  # "alpha" is a prefix of "alpha2"
    assert len({m.system_name for m in mine + other}) == 4


@pytest_twisted.ensureDeferred
async def test_destroy_releases_only_its_own_environment(make_provider, lab: RunningLab) -> None:
    alpha, beta = make_provider("alpha"), make_provider("beta")
    [a0] = await alpha.bootstrap({})
    a_more = await alpha.start_machines([_data("1"), _data("2")])
    [b0] = await beta.bootstrap({})
    await alpha.open_port(a0, "0", 80)

    released = await alpha.destroy_environment()
    assert sorted(m.instance_id for m in released) == sorted(m.instance_id for m in [a0, *a_more])

    server = lab.cobbler()
    for machine in [a0, *a_more]:
        record = server.get_system(machine.system_name)
        assert record["mgmt_classes"] == [AVAILABLE_CLASS]
        assert record["netboot_enabled"] is False
        assert not set(record["autoinstall_meta"]) & {ENV_KEY, USER_DATA_KEY}
        assert not bmc.power_is_on(lab.system_dir(machine.system_name))
    assert await alpha.load_state() is False
    assert await alpha.get_opened_ports(a0, "0") == set()
    # beta is untouched: still owned, powered, with its state.
    assert server.get_system(b0.system_name)["mgmt_classes"] == [ACQUIRED_CLASS]
    assert bmc.power_is_on(lab.system_dir(b0.system_name))
    assert await beta.load_state() == {"zookeeper-instances": [b0.instance_id]}
    # Released systems can be claimed again (their claim markers are gone).
    again = await alpha.start_machines([_data(str(i)) for i in range(7)])
    assert len(again) == 7


@pytest_twisted.ensureDeferred
async def test_ports_are_recorded(make_provider) -> None:
    provider = make_provider()
    await provider.open_port(None, "3", 3306)
    await provider.open_port(None, "3", 53, "udp")
    await provider.close_port(None, "3", 53, "udp")
    assert await provider.get_opened_ports(None, "3") == {(3306, "tcp")}


@pytest_twisted.ensureDeferred
async def test_an_abandoned_claim_marker_is_reaped_and_the_system_launched(make_provider, lab: RunningLab) -> None:
    """A claimer died after winning the marker: past the lease, the next launch reaps it and claims the system."""
    import os
    import time

    target = lab.spec.system(6)
    uid = lab.cobbler().get_system(target.name)["uid"]
    provider = make_provider()
    assert await provider.claims.try_claim(uid)  # the dead claimer's marker
    only_target = _data("9", **{"orchestra-name": target.name})
    with pytest.raises(NoMatchingSystems):  # fresh: never reaped
        await provider.start_machines([only_target])
    marker = lab.layout.webdav_data / "exclusive" / "claims" / uid
    then = time.time() - 2 * provider.claims.lease
    os.utime(marker, (then, then))
    [machine] = await provider.start_machines([only_target])
    assert machine.system_name == target.name and machine.instance_id == uid


@pytest_twisted.ensureDeferred
async def test_launch_costs_at_most_four_calls_per_machine_in_a_batch(make_provider) -> None:
    """One find and one re-read per batch; per machine one edit and two power calls (polls excluded)."""
    provider = make_provider()
    await provider.client.login()
    await provider.client.server_version()
    before = sum(provider.client.calls.values())
    await provider.start_machines([_data(str(i)) for i in range(4)])
    calls = sum(provider.client.calls.values()) - before - provider.power.polls
    assert calls == 2 + 4 * 3


@pytest_twisted.ensureDeferred
async def test_a_series_without_a_profile_is_named_and_rolled_back(make_provider, lab: RunningLab) -> None:
    """default-series with no <series>-<arch> profile in Cobbler: a clear error; nothing claimed, no state."""
    provider = make_provider(**{"default-series": "bullseye"})  # a Debian series the lab has not imported
    with pytest.raises(MissingProfile, match="Cobbler has no profile 'bullseye-x86_64'.*setup-server"):
        await provider.bootstrap({})
    assert await provider.get_machines() == [] and await provider.load_state() is False
    assert {tuple(r["mgmt_classes"]) for r in lab.cobbler().get_systems()} == {(AVAILABLE_CLASS,)}
