"""The power controller: act, then poll on a schedule until confirmed or timed out (Clock, no sleeping)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ensemble_orchestra.cobbler import CobblerPowerError, CobblerTimeout
from ensemble_orchestra.provider.errors import PowerError
from ensemble_orchestra.provider.power import PowerController
from ensemble_orchestra.schedule import Schedule
from ensemble_orchestra.testing import result_of, start


class ScriptedPower:
    """Stands in for CobblerClient.power: statuses follow a script; actions are recorded."""

    def __init__(self, statuses: list[bool], fail_action: bool = False) -> None:
        self.statuses = statuses
        self.actions: list[str] = []
        self.fail_action = fail_action

    async def power(self, name: str, operation: str) -> bool:
        if operation == "status":
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if self.fail_action:
            raise CobblerPowerError(f"Cobbler could not power {operation} {name}: rc=1", systems=(name,))
        self.actions.append(operation)
        return operation != "off"


def test_an_off_system_is_powered_on_and_confirmed_after_polls() -> None:
    clock, cobbler = Clock(), ScriptedPower([False, False, False, True])
    controller = PowerController(cobbler, clock, Schedule((1.0, 2.0), timeout=30))
    d = start(controller.boot_for_install("node001"))
    assert not d.called
    clock.advance(1.0)  # first poll said off; waits 1 s
    assert not d.called
    clock.advance(2.0)  # then 2 s (the last wait repeats)
    assert result_of(d) == "on"
    assert cobbler.actions == ["on"]


def test_a_running_system_is_rebooted_so_it_pxe_boots() -> None:
    clock, cobbler = Clock(), ScriptedPower([True])
    d = start(PowerController(cobbler, clock).boot_for_install("node002"))
    assert result_of(d) == "reboot" and cobbler.actions == ["reboot"]


def test_never_confirmed_is_a_power_error_naming_the_system_at_the_timeout() -> None:
    clock, cobbler = Clock(), ScriptedPower([False])
    d = start(PowerController(cobbler, clock, Schedule((5.0,), timeout=20)).boot_for_install("node003"))
    clock.pump([5.0] * 3)
    assert not d.called  # 15 s: still polling
    clock.advance(5.0)
    with pytest.raises(PowerError) as caught:
        result_of(d)
    assert caught.value.system == "node003" and "within 20 s" in str(caught.value)


def test_a_failed_action_is_a_power_error_without_polling() -> None:
    clock, cobbler = Clock(), ScriptedPower([False], fail_action=True)
    with pytest.raises(PowerError, match="could not power on node004"):
        result_of(start(PowerController(cobbler, clock).boot_for_install("node004")))
    assert clock.getDelayedCalls() == []


def test_power_off_is_confirmed() -> None:
    clock, cobbler = Clock(), ScriptedPower([True, False])
    d = start(PowerController(cobbler, clock, Schedule((0.5,), timeout=10)).power_off("node005"))
    clock.advance(0.5)
    assert result_of(d) is None and cobbler.actions == ["off"]


class SilentBmc(ScriptedPower):
    """Cobbler's power call outlives the client's deadline: the fence agent is still waiting on the BMC."""

    power_timeout = 45.0

    async def power(self, name: str, operation: str) -> bool:
        raise CobblerTimeout("Cobbler at http://orchestra/RPC2 unavailable: timed out", method="power_system")


def test_a_bmc_that_never_answers_is_named_as_the_cause_not_cobbler() -> None:
    with pytest.raises(PowerError) as caught:
        result_of(start(PowerController(SilentBmc([False]), Clock()).boot_for_install("node006")))
    message = str(caught.value)
    assert message.startswith("could not power on node006: no answer from its BMC within 45 s (power-timeout)")
    assert "unavailable" not in message
