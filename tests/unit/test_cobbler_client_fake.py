"""CobblerClient against the in-memory FakeCobbler: token refresh, version detection, 2.x fallbacks, call costs."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.task import Clock
from twisted.web.server import Site

from ensemble_orchestra.cobbler import (
    CobblerAuthError,
    CobblerClient,
    CobblerInvalidRequest,
    CobblerNotFound,
    CobblerPowerError,
    CobblerTaskTimeout,
    CobblerVersion,
)
from ensemble_orchestra.cobbler.testing import FakeCobbler, FakeCobblerAgent, FakeCobblerResource
from ensemble_orchestra.schedule import Schedule
from ensemble_orchestra.testing import result_of, start

URL = "http://cobbler.test/RPC2"


def make(fake: FakeCobbler | None = None, *, latency: float = 0.0, **options: Any):  # type: ignore[no-untyped-def]
    clock = Clock()
    fake = fake or FakeCobbler()
    agent = FakeCobblerAgent(fake, clock=clock, latency=latency)
    client = CobblerClient(URL, fake.user, fake.password, clock, clock=clock, agent=agent, **options)
    return clock, fake, agent, client


def run(clock: Clock, coroutine: Coroutine[Any, Any, Any], step: float = 0.1, limit: int = 1000) -> Any:
    """Advance the clock until the coroutine finishes."""
    d = start(coroutine)
    for _ in range(limit):
        if d.called:
            break
        clock.advance(step)
    return result_of(d)


# -- authentication ------------------------------------------------------------------------------


def test_wrong_password_is_an_auth_error_without_the_password() -> None:
    fake = FakeCobbler(password="right-password")
    clock = Clock()
    client = CobblerClient(URL, fake.user, "wrong-Pa55word", clock, clock=clock, agent=FakeCobblerAgent(fake))
    with pytest.raises(CobblerAuthError) as caught:
        result_of(start(client.login()))
    for text in (str(caught.value), repr(caught.value), repr(caught.value.args), repr(client)):
        assert "wrong-Pa55word" not in text
    assert fake.user in str(caught.value)
    assert fake.calls["login"] == 1  # an auth error is fatal: not retried


def test_token_is_cached() -> None:
    _, fake, _, client = make()
    for _ in range(3):
        result_of(start(client.sync()))
    assert fake.calls["login"] == 1
    assert fake.calls["sync"] == 3


def test_expired_token_many_calls_in_flight_share_one_relogin() -> None:
    """20 edits in flight when the token expires: every one fails once, ONE login follows, all succeed."""
    clock, fake, agent, client = make(latency=0.1, max_concurrency=8)
    run(clock, client.login())
    run(clock, client.server_version())
    fake.expire_tokens()
    edits = [start(client.edit_system(f"node00{1 + i % 3}", {"comment": f"c{i}"})) for i in range(20)]
    for _ in range(100):
        clock.advance(0.1)
    assert all(d.called for d in edits)
    [result_of(d) for d in edits]
    assert fake.calls["login"] == 2  # the first login and exactly one re-login
    assert agent.max_in_flight <= 8


def test_a_fresh_token_rejected_again_is_an_auth_error() -> None:
    """One re-login per failure, not a loop: a server that rejects every token gives CobblerAuthError."""
    _, fake, _, client = make()
    fake.xmlrpc_login = lambda user, password: "x" * 36  # type: ignore[method-assign]  # tokens it never accepts
    with pytest.raises(CobblerAuthError, match="fresh session token"):
        result_of(start(client.sync()))
    assert fake.calls["login"] == 2
    assert fake.calls["sync"] == 2


def test_garbage_cached_token_is_replaced() -> None:
    """Cobbler 3.3 calls a malformed token a ValueError, not 'invalid token': still one re-login."""
    _, fake, _, client = make()
    client._token = "garbage"
    result_of(start(client.sync()))
    assert fake.calls["login"] == 1
    assert fake.calls["sync"] == 2


@pytest_twisted.ensureDeferred
async def test_shared_relogin_over_a_real_socket() -> None:
    """The same guarantee through twisted.web on 127.0.0.1, with the real Agent and connection pool."""
    from twisted.internet import reactor

    fake = FakeCobbler()
    port = reactor.listenTCP(0, Site(FakeCobblerResource(fake, clock=reactor, delay=0.02)), interface="127.0.0.1")
    client = CobblerClient(f"http://127.0.0.1:{port.getHost().port}/RPC2", fake.user, fake.password, reactor)
    try:
        await client.login()
        fake.expire_tokens()
        results = await DeferredList(
            [start(client.edit_system("node001", {"comment": str(i)})) for i in range(12)], consumeErrors=True
        )
        assert all(ok for ok, _ in results), results
        assert fake.calls["login"] == 2
    finally:
        await client.close()
        await port.stopListening()


# -- version and field names ---------------------------------------------------------------------


def test_version_is_detected_once_even_when_asked_concurrently() -> None:
    clock, fake, _, client = make(latency=0.1)
    calls = [start(client.server_version()) for _ in range(5)]
    clock.advance(0.1)
    assert {result_of(d) for d in calls} == {CobblerVersion(3, 3, 10)}
    assert fake.calls["extended_version"] == 1


def test_cobbler2_version_fallback_and_ks_meta() -> None:
    """A 2.x server without extended_version or xapi: version() is used, ks_meta written, field by field."""
    fake = FakeCobbler(generation=2, missing_methods={"extended_version", "xapi_object_edit"})
    _, fake, _, client = make(fake)
    assert result_of(start(client.server_version())) == CobblerVersion(2, 2)
    result_of(start(client.edit_system("node001", {"autoinstall_meta": {"a": "1"}, "comment": "x"})))
    assert fake.systems["node001"]["ks_meta"] == {"a": "1"}
    assert fake.calls["get_system_handle"] == 1
    assert fake.calls["modify_system"] == 2
    assert fake.calls["save_system"] == 1
    # The fallback is remembered: the next edit does not try xapi again.
    result_of(start(client.edit_system("node002", {"netmask": "255.0.0.0"}, interface="eth0")))
    assert fake.calls["xapi_object_edit"] == 1
    assert fake.systems["node002"]["interfaces"]["eth0"]["subnet"] == "255.0.0.0"
    assert result_of(start(client.get_system("node001"))).autoinstall_meta == {"a": "1"}


def test_cobbler2_with_xapi_gets_ks_meta_in_one_call() -> None:
    _, fake, _, client = make(FakeCobbler(generation=2))
    result_of(start(client.server_version()))
    before = sum(fake.calls.values())
    result_of(start(client.edit_system("node001", {"autoinstall_meta": {"a": "1"}})))
    assert fake.systems["node001"]["ks_meta"] == {"a": "1"}
    assert sum(fake.calls.values()) - before == 2  # login + one xapi_object_edit


def test_cobbler3_edit_is_one_call_and_translates_2x_names() -> None:
    """ks_meta from an old caller lands in autoinstall_meta on Cobbler 3 (the server would ignore ks_meta)."""
    _, fake, _, client = make()
    result_of(start(client.login()))
    result_of(start(client.server_version()))
    client.calls.clear()
    result_of(
        start(
            client.edit_system("node001", {"ks_meta": {"a": "1"}, "mac_address": "52:54:00:aa:00:01"}, interface="eth0")
        )
    )
    assert client.calls == {"xapi_object_edit": 1}
    assert fake.systems["node001"]["autoinstall_meta"] == {"a": "1"}
    assert fake.systems["node001"]["interfaces"]["eth0"]["mac_address"] == "52:54:00:aa:00:01"


def test_interface_fields_need_an_interface() -> None:
    _, _, _, client = make()
    with pytest.raises(CobblerInvalidRequest):
        result_of(start(client.edit_system("node001", {"ip_address": "10.1.1.1"})))


# -- reading -------------------------------------------------------------------------------------


def test_get_system_and_not_found() -> None:
    _, _, _, client = make()
    record = result_of(start(client.get_system("node002")))
    assert record.name == "node002" and record.mac_address == "52:54:00:00:00:02"
    assert "bmc-secret" not in repr(record)
    with pytest.raises(CobblerNotFound):
        result_of(start(client.get_system("nosuch")))


def test_get_systems_costs_one_call_whatever_the_count() -> None:
    _, fake, _, client = make(FakeCobbler(systems=40))
    result_of(start(client.server_version()))
    client.calls.clear()
    records = result_of(start(client.get_systems([f"node{n:03d}" for n in range(1, 31)] + ["missing"])))
    assert sorted(records) == [f"node{n:03d}" for n in range(1, 31)]
    assert sum(client.calls.values()) == 1


def test_get_systems_without_common_prefix_reads_all_once() -> None:
    _, fake, _, client = make()
    fake.add_system("alpha", mac="52:54:00:00:01:01", ip="10.0.1.1")
    result_of(start(client.server_version()))
    client.calls.clear()
    assert sorted(result_of(start(client.get_systems(["alpha", "node001"])))) == ["alpha", "node001"]
    assert client.calls == {"get_systems": 1}


def test_resolve_arch_follows_profile_to_distro() -> None:
    _, _, _, client = make()
    assert result_of(start(client.get_system("node001", resolve_arch=True))).arch == "x86_64"


def test_find_systems_stringifies_bools() -> None:
    _, fake, _, client = make()
    fake.systems["node002"]["netboot_enabled"] = True
    assert result_of(start(client.find_systems({"netboot_enabled": True}))) == ["node002"]
    assert result_of(start(client.find_systems({}))) == ["node001", "node002", "node003"]


# -- power ---------------------------------------------------------------------------------------


def test_power_returns_the_real_state_and_names_the_failing_system() -> None:
    _, fake, _, client = make()
    assert result_of(start(client.power("node001", "status"))) is False
    assert result_of(start(client.power("node001", "on"))) is True
    assert fake.power_state["node001"] is True
    assert result_of(start(client.power("node001", "status"))) is True
    fake.failing_bmcs.add("node002")
    with pytest.raises(CobblerPowerError) as caught:
        result_of(start(client.power("node002", "on")))
    assert caught.value.systems == ("node002",)
    assert "node002" in str(caught.value)
    assert fake.calls["power_system"] == 4  # the failure was not retried
    with pytest.raises(CobblerInvalidRequest):
        result_of(start(client.power("node001", "frob")))


def test_background_power_reads_failures_from_a_complete_task_log() -> None:
    """Cobbler 3.3 marks the task complete even when a system failed; the client still raises, redacted."""
    clock, fake, _, client = make()
    task = run(clock, client.background_power(["node001", "node002"], "on"))
    assert task.state == "complete" and fake.power_state["node001"] and fake.power_state["node002"]
    assert "bmc-secret" not in task.log
    fake.failing_bmcs.add("node003")
    with pytest.raises(CobblerPowerError) as caught:
        run(clock, client.background_power(["node001", "node003", "nosuch"], "off"))
    assert set(caught.value.systems) == {"node003", "nosuch"}
    assert caught.value.log is not None and "bmc-secret" not in caught.value.log
    assert "password=<redacted>" in caught.value.log


def test_background_power_wait_is_bounded_on_the_clock() -> None:
    """A task that never finishes ends in CobblerTaskTimeout after the polling timeout, not later."""
    clock, fake, _, client = make(task_polling=Schedule((1.0,), timeout=10.0))
    original = fake.xmlrpc_background_power_system

    def stuck(options: dict[str, Any], token: str) -> str:
        task_id = original(options, token)
        fake.tasks[task_id] = ("running", "")
        return task_id

    fake.xmlrpc_background_power_system = stuck  # type: ignore[method-assign]
    d = start(client.background_power(["node001"], "on"))
    clock.pump([1.0] * 9)
    assert not d.called
    clock.advance(1.0)
    with pytest.raises(CobblerTaskTimeout):
        result_of(d)
    assert fake.calls["get_task_status"] == 10


def test_secrets_are_accepted_and_never_shown() -> None:
    """The config's Secret type works for the Cobbler password and for a BMC password being written."""
    from ensemble_orchestra.secret import Secret

    fake = FakeCobbler()
    clock = Clock()
    client = CobblerClient(URL, fake.user, Secret(fake.password), clock, clock=clock, agent=FakeCobblerAgent(fake))
    result_of(start(client.edit_system("node001", {"power_pass": Secret("new-bmc-pass"), "comment": "x"})))
    assert fake.systems["node001"]["power_pass"] == "new-bmc-pass"
    assert fake.password not in repr(client) and fake.password not in repr(vars(client))
    with pytest.raises(CobblerNotFound) as caught:
        result_of(start(client.edit_system("missing", {"power_pass": Secret("new-bmc-pass")})))
    assert "new-bmc-pass" not in str(caught.value)
