"""FakeCobbler's fault knobs and matching, through the real CobblerClient: what the provider tests rely on."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ensemble_orchestra.cobbler import CobblerClient, CobblerError, CobblerPowerError
from ensemble_orchestra.cobbler.testing import FakeCobbler, FakeCobblerAgent, cobbler_fault
from ensemble_orchestra.testing import result_of, start


def client_of(fake: FakeCobbler) -> CobblerClient:
    clock = Clock()
    agent = FakeCobblerAgent(fake, clock=clock)
    url = "http://cobbler.test/RPC2"
    return CobblerClient(url, fake.user, fake.password, clock, clock=clock, agent=agent)  # type: ignore[arg-type]


def test_dict_fields_match_like_cobbler_3_3() -> None:
    """find_system on autoinstall_meta takes "k=v k2=v2": every key present with exactly that value
    (cobbler 3.3's Item.__find_compare), so "env=alpha" does not find "env=alpha-2"."""
    fake = FakeCobbler(systems=3)
    fake.systems["node001"]["autoinstall_meta"] = {"env": "alpha", "machine": "1"}
    fake.systems["node002"]["autoinstall_meta"] = {"env": "alpha-2"}
    client = client_of(fake)
    assert result_of(start(client.find_systems({"autoinstall_meta": "env=alpha"}))) == ["node001"]
    assert result_of(start(client.find_systems({"autoinstall_meta": "env=alpha machine=1"}))) == ["node001"]
    assert result_of(start(client.find_systems({"autoinstall_meta": "env=alpha machine=2"}))) == []
    assert result_of(start(client.find_systems({"autoinstall_meta": "env=alpha*"}))) == []  # no globs in dicts


def test_fail_next_fails_that_method_only_then_recovers() -> None:
    fake = FakeCobbler(systems=1)
    client = client_of(fake)
    fake.fail_next("xapi_object_edit", cobbler_fault("fake: disk full"), times=2)
    for _ in range(2):
        with pytest.raises(CobblerError, match="disk full"):
            result_of(start(client.edit_system("node001", {"comment": "x"})))
    result_of(start(client.get_system("node001")))  # another method is not affected
    result_of(start(client.edit_system("node001", {"comment": "x"})))
    assert fake.systems["node001"]["comment"] == "x"


def test_power_faults_and_the_power_log() -> None:
    """never_on: on is accepted but status stays off; failing_power: those operations fail with the fence
    agent's fault; power_requests records every call in order, failed ones included."""
    fake = FakeCobbler(systems=2)
    client = client_of(fake)
    fake.never_on.add("node001")
    fake.failing_power["node002"] = {"off"}
    assert result_of(start(client.power("node001", "on"))) is True
    assert result_of(start(client.power("node001", "status"))) is False
    assert result_of(start(client.power("node002", "on"))) is True
    with pytest.raises(CobblerPowerError, match="node002"):
        result_of(start(client.power("node002", "off")))
    assert result_of(start(client.power("node002", "status"))) is True
    assert fake.power_actions("node001") == ["on"]
    assert fake.power_actions("node001", status=True) == ["on", "status"]
    assert fake.power_requests[-2:] == [("node002", "off"), ("node002", "status")]
