"""CobblerClient against the lab's real cobblerd 3.3.10, real fence_ipmilan and ipmi_sim BMCs."""

from __future__ import annotations

import socket
import xmlrpc.client
from typing import Any

import pytest
import pytest_twisted

from ensemble_orchestra.cobbler import (
    CobblerAuthError,
    CobblerClient,
    CobblerError,
    CobblerInvalidRequest,
    CobblerMethodMissing,
    CobblerNotFound,
    CobblerPowerError,
    CobblerTokenExpired,
    CobblerUnavailable,
    CobblerVersion,
)
from ensemble_orchestra.cobbler.errors import error_from_fault
from ensemble_orchestra.commissioning.setup import COMMISSIONING_NAME
from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.seed import AVAILABLE_CLASS, LAB_PROFILES
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.schedule import Schedule

pytestmark = pytest.mark.lab


def client_for(lab: RunningLab, password: str | None = None, **options: Any) -> CobblerClient:
    from twisted.internet import reactor

    password = lab.spec.cobbler_password if password is None else password
    return CobblerClient(lab.cobbler_url, lab.spec.cobbler_user, password, reactor, **options)


def _live_fault(call: Any) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        call()
    return caught.value


def test_the_fault_table_matches_the_live_servers_texts(lab: RunningLab) -> None:
    """The unit-tested table was captured here; re-provoking each Fault catches a Cobbler upgrade changing one."""
    server, token = lab.cobbler(), lab.token()
    logged_out = server.login(lab.spec.cobbler_user, lab.spec.cobbler_password)
    server.logout(logged_out)
    cases = [
        (lambda: server.login(lab.spec.cobbler_user, "not-it"), CobblerAuthError),
        (lambda: server.sync("garbage"), CobblerTokenExpired),
        (
            lambda: server.xapi_object_edit("system", "node001", "edit", {"comment": "x"}, logged_out),
            CobblerTokenExpired,
        ),
        (lambda: server.xapi_object_edit("system", "nosuch", "edit", {"comment": "x"}, token), CobblerNotFound),
        (lambda: server.get_system_handle("nosuch", token), CobblerNotFound),
        (lambda: server.get_task_status("nosuch"), CobblerNotFound),
        (lambda: server.no_such_method(), CobblerMethodMissing),
        (
            lambda: server.xapi_object_edit("system", "node001", "edit", {"profile": "nope"}, token),
            CobblerInvalidRequest,
        ),
        (
            lambda: server.xapi_object_edit(
                "system", "node001", "edit", {"interface": "eth0", "mac_address": "zz"}, token
            ),
            CobblerInvalidRequest,
        ),
        (lambda: server.find_system({}), CobblerInvalidRequest),
    ]
    for call, expected in cases:
        fault = _live_fault(call)
        error = error_from_fault(fault, "live")
        assert type(error) is expected, fault.faultString
    # Cobbler echoes a rejected token; the error never does.
    fault = _live_fault(lambda: server.sync(logged_out))
    assert logged_out in fault.faultString
    assert logged_out not in str(error_from_fault(fault, "sync"))


@pytest_twisted.ensureDeferred
async def test_login_and_a_wrong_password(lab: RunningLab) -> None:
    """Right credentials log in (one call); wrong ones are a CobblerAuthError that never contains the password."""
    client = client_for(lab)
    await client.login()
    assert client.calls["login"] == 1
    assert await client.server_version() == CobblerVersion(3, 3, 10)
    wrong = "Wr0ng-" + lab.spec.cobbler_password
    bad = client_for(lab, password=wrong)
    with pytest.raises(CobblerAuthError) as caught:
        await bad.login()
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.args) and wrong not in repr(bad)
    assert lab.spec.cobbler_user in str(caught.value)
    assert bad.calls["login"] == 1
    await client.close()
    await bad.close()


@pytest_twisted.ensureDeferred
async def test_find_by_management_class(lab: RunningLab) -> None:
    """The seeded pool is found by mgmt class, as names (1 call) and as full records (1 call)."""
    client = client_for(lab)
    await client.server_version()
    client.calls.clear()
    names = await client.find_systems({"mgmt_classes": AVAILABLE_CLASS})
    assert sorted(names) == [s.name for s in lab.spec.all_systems()]
    records = await client.find_systems_expanded({"mgmt_classes": AVAILABLE_CLASS})
    assert sorted(r.name for r in records) == sorted(names)
    assert client.calls == {"find_system": 2}
    assert await client.find_systems({"mgmt_classes": "nobody-has-this"}) == []
    await client.close()


@pytest_twisted.ensureDeferred
async def test_get_system_fields_and_a_metadata_round_trip_in_one_edit_call(lab: RunningLab) -> None:
    """Every field the provider reads, then metadata + netboot + comment written in ONE xapi call and read back."""
    client = client_for(lab)
    seeded = lab.spec.system(0)
    record = await client.get_system(seeded.name, resolve_arch=True)
    assert record.name == seeded.name and len(record.uid) == 32
    assert record.hostname == seeded.hostname
    assert record.mac_address == seeded.mac
    assert record.interface("eth0") is not None and record.interface("eth0").ip_address == seeded.ip
    assert record.profile == f"{LAB_PROFILES[0][0]}-{seeded.arch}"
    assert record.arch == seeded.arch
    assert record.mgmt_classes == (AVAILABLE_CLASS,)
    assert record.netboot_enabled is False
    assert record.autoinstall_meta == {} and "autoinstall_meta" in record.inherited
    assert (record.power_type, record.power_address) == ("ipmilan", "127.0.0.1")
    assert seeded.bmc_password not in repr(record)

    await client.login()
    client.calls.clear()
    meta = {"ensemble_instance_id": "i-42", "ensemble_user_data": "I2Nsb3VkLWNvbmZpZw==", "spaced": "a b"}
    await client.edit_system(seeded.name, {"autoinstall_meta": meta, "netboot_enabled": True, "comment": "claimed"})
    assert client.calls == {"xapi_object_edit": 1}
    after = await client.get_system(seeded.name)
    assert after.autoinstall_meta == meta
    assert after.netboot_enabled is True and after.comment == "claimed"
    assert "autoinstall_meta" not in after.inherited
    await client.close()


@pytest_twisted.ensureDeferred
async def test_get_systems_reads_all_eight_in_at_most_two_calls(lab: RunningLab) -> None:
    """A fresh client: version detection + one expanded find, never one call per system."""
    client = client_for(lab)
    names = [s.name for s in lab.spec.all_systems()]
    records = await client.get_systems(names)
    assert sorted(records) == names
    assert sum(client.calls.values()) <= 2, client.calls
    assert {r.mac_address for r in records.values()} == {s.mac for s in lab.spec.all_systems()}
    await client.close()


@pytest_twisted.ensureDeferred
async def test_autoinstall_meta_really_changes_the_record_where_ks_meta_would_not(lab: RunningLab) -> None:
    """Why the client translates field names by version.

    On Cobbler 3, xapi_object_edit calls modify_item per field, and modify_item sets only attributes
    the System object has (``hasattr``); ``ks_meta`` was renamed ``autoinstall_meta`` in 3.0, so the
    server skips it, modify_item returns False, xapi ignores that and answers True. A 2.x-era client
    writing ``ks_meta`` gets True back and a machine that installs without its user data.
    """
    server, token = lab.cobbler(), lab.token()
    name = lab.spec.system(1).name
    assert server.xapi_object_edit("system", name, "edit", {"ks_meta": {"lost": "yes"}}, token) is True
    assert server.get_system(name)["autoinstall_meta"] == "<<inherit>>"  # silently unchanged

    client = client_for(lab)
    await client.edit_system(name, {"autoinstall_meta": {"kept": "yes"}})
    assert (await client.get_system(name)).autoinstall_meta == {"kept": "yes"}
    await client.edit_system(name, {"ks_meta": {"translated": "yes"}})  # the old name, translated for 3.x
    assert (await client.get_system(name)).autoinstall_meta == {"translated": "yes"}
    await client.close()


@pytest_twisted.ensureDeferred
async def test_power_on_status_off_return_real_outcomes_and_the_bmc_follows(lab: RunningLab) -> None:
    client = client_for(lab)
    system = lab.spec.system(2)
    system_dir = lab.system_dir(system.name)
    assert await client.power(system.name, "status") is False
    assert await client.power(system.name, "on") is True
    assert bmc.power_is_on(system_dir)
    assert await client.power(system.name, "status") is True
    assert await client.power(system.name, "off") is False
    assert not bmc.power_is_on(system_dir)
    assert await client.power(system.name, "status") is False
    with pytest.raises(CobblerNotFound):
        await client.power("no-such-system", "status")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_failing_bmc_is_a_power_error_naming_the_system(lab: RunningLab) -> None:
    """A wrong BMC password: Cobbler's fence_ipmilan fails (3 tries, ~6 s) and the client says which system."""
    client = client_for(lab)
    system = lab.spec.system(3)
    await client.edit_system(system.name, {"power_pass": "not-the-bmc-password"})
    with pytest.raises(CobblerPowerError) as caught:
        await client.power(system.name, "on")
    assert caught.value.systems == (system.name,)
    assert system.name in str(caught.value)
    assert "not-the-bmc-password" not in str(caught.value)
    assert not bmc.power_is_on(lab.system_dir(system.name))
    assert client.calls["power_system"] == 1
    await client.close()


@pytest_twisted.ensureDeferred
async def test_background_power_task_completes_and_its_log_is_redacted(lab: RunningLab) -> None:
    client = client_for(lab)
    systems = [lab.spec.system(4), lab.spec.system(5)]
    task = await client.background_power([s.name for s in systems], "on")
    assert task.state == "complete"
    assert all(bmc.power_is_on(lab.system_dir(s.name)) for s in systems)
    assert "fence_ipmilan" in task.log
    assert all(s.bmc_password not in task.log for s in systems)
    assert "password=<redacted>" in task.log
    with pytest.raises(CobblerPowerError) as caught:
        await client.background_power([systems[0].name, "no-such-system"], "off")
    assert caught.value.systems == ("no-such-system",)
    assert not bmc.power_is_on(lab.system_dir(systems[0].name))  # the good one was still powered off
    await client.close()


@pytest_twisted.ensureDeferred
async def test_token_invalidated_on_the_server_is_refreshed_once(lab: RunningLab) -> None:
    """logout() on the server kills the client's token; the next call logs in once more and succeeds."""
    client = client_for(lab)
    await client.login()
    lab.cobbler().logout(client._token)
    await client.edit_system(lab.spec.system(6).name, {"comment": "after logout"})
    assert client.calls["login"] == 2
    assert client.calls["xapi_object_edit"] == 2
    client._token = "garbage"  # a malformed token: Cobbler 3.3 raises ValueError, still one re-login
    await client.sync()
    assert client.calls["login"] == 3
    assert (await client.get_system(lab.spec.system(6).name)).comment == "after logout"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_calls_share_one_relogin_on_the_real_server(lab: RunningLab) -> None:
    client = client_for(lab, max_concurrency=4)
    await client.login()
    lab.cobbler().logout(client._token)
    from twisted.internet.defer import Deferred, gatherResults

    names = [s.name for s in lab.spec.all_systems()]
    await gatherResults([Deferred.fromCoroutine(client.edit_system(n, {"comment": "x"})) for n in names])
    assert client.calls["login"] == 2
    await client.close()


@pytest_twisted.ensureDeferred
async def test_sync_profiles_and_distros(lab: RunningLab) -> None:
    client = client_for(lab)
    await client.sync()
    profiles = {p.name: p for p in await client.list_profiles()}
    # The lab's install profiles, and the commissioning image's (setup-server registers it).
    assert sorted(profiles) == sorted([*(f"{s}-{a}" for s, a in LAB_PROFILES), COMMISSIONING_NAME])
    assert profiles["bookworm-i386"].distro == "bookworm-i386"
    distros = {d.name: d for d in await client.list_distros()}
    assert distros[COMMISSIONING_NAME].name == profiles[COMMISSIONING_NAME].distro
    assert distros["bookworm-i386"].arch == "i386"
    assert (await client.profile_arches())["trixie-x86_64"] == "x86_64"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_unreachable_cobbler_is_unavailable_after_bounded_retries() -> None:
    """A closed port: connection refused, retried on the schedule, then CobblerUnavailable."""
    from twisted.internet import reactor

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CobblerClient(
        f"http://127.0.0.1:{port}/RPC2", "u", "p", reactor, retry=Schedule.exponential(initial=0.05, retries=3)
    )
    with pytest.raises(CobblerUnavailable) as caught:
        await client.login()
    assert caught.value.retryable and caught.value.request_sent is False
    assert client.calls["login"] == 4
    assert isinstance(caught.value, CobblerError)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_power_costs_one_call_on_cobbler3_and_names_a_missing_system(lab: RunningLab) -> None:
    """Cobbler 3 handles are 'system::NAME' strings, so a power operation is one power_system call."""
    client = client_for(lab)
    await client.login()
    await client.server_version()
    before = sum(client.calls.values())
    assert await client.power(lab.spec.system(0).name, "status") is False
    assert sum(client.calls.values()) - before == 1
    with pytest.raises(CobblerNotFound):
        await client.power("no-such-system", "status")
    await client.close()
