"""Fault drills against the lab's real servers: the token expires, cobblerd restarts, a BMC is unreachable
or refuses its password, the storage goes away. Each ends in success or a clear error within a bounded
time; afterwards every system is either available or recorded as owned by an environment; and no
secret appears in any log line or error of any drill (an observer sees every log event of the module).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.provider.errors import PowerError, RollbackFailed
from ensemble_orchestra.provider.orchestra import ENV_KEY
from ensemble_orchestra.storage import StorageUnavailable

pytestmark = pytest.mark.lab

TOKEN_LIFETIME = 2  # seconds of inactivity after which cobblerd forgets a session token
WRONG_BMC_PASSWORD = "wrong-bmc-pass-7f3a"


def _reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


def _data(machine_id: str, **constraints: str) -> dict:
    return {"machine-id": machine_id, "zookeeper-hosts": ["node001.lab.ensemble:2181"], "constraints": constraints}


@pytest.fixture(scope="module")
def fault_lab(lab_parent: Path, ensemble_home: Path) -> Iterator[RunningLab]:
    """A lab of its own (servers get stopped here), whose cobblerd forgets idle tokens after 2 s."""
    running = start_lab(lab_parent / "fault-lab", systems=6, env_name=None, token_lifetime=TOKEN_LIFETIME)
    try:
        yield running
    finally:
        running.lab.down()


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log event of a drill, as text (message, values, failure tracebacks); errors are added too."""
    texts: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event) + " " + " ".join(repr(v) for k, v in event.items() if k != "log_logger")
        failure = event.get("log_failure")
        if failure is not None:
            text += failure.getTraceback()
        texts.append(text)

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def lab(fault_lab: RunningLab, logged: list[str]) -> Iterator[RunningLab]:
    for server in ("cobblerd", "webdav"):  # a drill that failed half-way may have left one stopped
        fault_lab.lab.start_server(server)
    fault_lab.lab.reset()
    yield fault_lab
    for server in ("cobblerd", "webdav"):
        fault_lab.lab.start_server(server)
    assert_every_system_available_or_owned(fault_lab)
    assert_no_secret_in(logged, fault_lab)


def assert_no_secret_in(logged: list[str], lab: RunningLab) -> None:
    assert logged, "the drill logged nothing: is the observer attached?"
    text = "\n".join(logged)
    for secret in [*lab.secrets(), WRONG_BMC_PASSWORD]:
        assert secret not in text


def assert_every_system_available_or_owned(lab: RunningLab) -> None:
    """The invariant of every drill: no system is claimed (acquired) without an owner recorded on it."""
    for row in lab.cobbler().get_systems():
        meta = row["autoinstall_meta"] if isinstance(row["autoinstall_meta"], dict) else {}
        classes, owner = row["mgmt_classes"], meta.get(ENV_KEY)
        available = AVAILABLE_CLASS in classes and ACQUIRED_CLASS not in classes and not owner
        owned = ACQUIRED_CLASS in classes and AVAILABLE_CLASS not in classes and bool(owner)
        assert available or owned, f"{row['name']}: classes {classes}, owner {owner!r}"


async def _raises(expected: type[BaseException], work) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        await work
    except expected as error:
        return error
    raise AssertionError(f"{expected.__name__} not raised")


def _owned_by(lab: RunningLab, env: str) -> list[str]:
    metas = {r["name"]: r["autoinstall_meta"] for r in lab.cobbler().get_systems()}
    return sorted(name for name, meta in metas.items() if isinstance(meta, dict) and meta.get(ENV_KEY) == env)


@pytest_twisted.ensureDeferred
async def test_a_token_that_expires_during_a_launch_is_renewed(make_provider, lab: RunningLab) -> None:
    """The session idles past cobblerd's token lifetime between the edit and the power-on: one re-login.

    Cobbler 3.3 drops expired tokens lazily, in the sweep its ``token_check`` runs (the web UI calls
    it); any other session's check expires ours. The drill idles, then has the admin's session check.
    """
    provider = make_provider()
    swept: list[bool] = []

    async def idle(record: Any) -> None:
        await deferLater(_reactor(), TOKEN_LIFETIME + 1.5)
        if not swept:
            swept.append(False)
            swept[0] = await deferToThread(lambda: lab.cobbler().token_check(lab.token()))

    machines = await provider.start_machines([_data("1"), _data("2")], before_power=idle)
    assert swept == [True]
    assert provider.client.calls["login"] == 2  # the first login, and one shared re-login for both launches
    assert _owned_by(lab, "alpha") == sorted(m.system_name for m in machines)
    assert all(bmc.power_is_on(lab.system_dir(m.system_name)) for m in machines)


@pytest_twisted.ensureDeferred
async def test_cobblerd_restarted_mid_launch(make_provider, lab: RunningLab) -> None:
    """cobblerd stops after three systems were written and starts again ~1 s later: the power calls are
    retried on the backoff schedule, the lost session is renewed, and all three launches succeed."""
    provider = make_provider()
    arrived: list[defer.Deferred[None]] = []
    restarted: list[defer.Deferred[None]] = []

    async def restart_once_all_written(record: Any) -> None:
        gate: defer.Deferred[None] = defer.Deferred()
        arrived.append(gate)
        if len(arrived) == 3:
            assert await deferToThread(lab.lab.stop_server, "cobblerd")
            for waiting in arrived:
                waiting.callback(None)
            restarted.append(
                deferLater(_reactor(), 1.0, lambda: None).addCallback(
                    lambda _: deferToThread(lab.lab.start_server, "cobblerd")
                )
            )
        await gate

    started = time.monotonic()
    machines = await provider.start_machines([_data(str(i)) for i in range(3)], before_power=restart_once_all_written)
    await restarted[0]
    assert time.monotonic() - started < 60
    assert provider.client.calls["login"] >= 2  # the restarted cobblerd no longer knew the token
    assert _owned_by(lab, "alpha") == sorted(m.system_name for m in machines)
    assert all(bmc.power_is_on(lab.system_dir(m.system_name)) for m in machines)


@pytest_twisted.ensureDeferred
async def test_an_unreachable_bmc_fails_within_the_power_timeout(make_provider, lab: RunningLab) -> None:
    """A BMC that never answers (nothing on its port): PowerError naming the system after power-timeout;
    that system is back in the pool, the other machine of the batch is launched and stays recorded."""
    victim, healthy = lab.spec.system(1), lab.spec.system(2)
    lab.make_bmc_unreachable(victim.name)
    provider = make_provider(**{"power-timeout": 4})
    started = time.monotonic()
    error = await _raises(
        PowerError,
        provider.start_machines(
            [_data("1", **{"orchestra-name": victim.name}), _data("2", **{"orchestra-name": healthy.name})]
        ),
    )
    elapsed = time.monotonic() - started
    assert error.system == victim.name
    assert str(error).startswith(f"could not power on {victim.name}: no answer from its BMC within 4 s")
    assert elapsed < 4 + 10, elapsed
    record = lab.cobbler().get_system(victim.name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]
    assert [m.system_name for m in await provider.get_machines()] == [healthy.name]


@pytest_twisted.ensureDeferred
async def test_a_wrong_bmc_password_rolls_the_launch_back(make_provider, lab: RunningLab, logged: list[str]) -> None:
    """The BMC rejects the password: PowerError naming the system; it is available again and unclaimed."""
    victim = lab.spec.system(3)
    lab.cobbler().xapi_object_edit("system", victim.name, "edit", {"power_pass": WRONG_BMC_PASSWORD}, lab.token())
    provider = make_provider()
    error = await _raises(PowerError, provider.start_machines([_data("5", **{"orchestra-name": victim.name})]))
    logged.append(repr(error) + str(error))
    assert error.system == victim.name and victim.name in str(error)
    record = lab.cobbler().get_system(victim.name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]
    assert await provider.get_machines() == []
    assert await provider.claims.try_claim(record["uid"])  # the marker was removed too


@pytest_twisted.ensureDeferred
async def test_a_bootstrap_whose_power_on_fails_leaves_no_state(make_provider, lab: RunningLab) -> None:
    """State is saved before power-on; when power-on then fails, the rollback clears it with the system."""
    victim = lab.spec.system(4)
    lab.cobbler().xapi_object_edit("system", victim.name, "edit", {"power_pass": WRONG_BMC_PASSWORD}, lab.token())
    provider = make_provider()
    await _raises(PowerError, provider.bootstrap({"orchestra-name": victim.name}))
    assert await provider.load_state() is False
    healthy = lab.spec.system(5).name  # (unconstrained, the random pick could be the victim again)
    [machine] = await provider.bootstrap({"orchestra-name": healthy})  # not "already bootstrapped"
    assert machine.system_name == healthy


@pytest_twisted.ensureDeferred
async def test_storage_down_before_bootstrap_touches_nothing(make_provider, lab: RunningLab, logged: list[str]) -> None:
    provider = make_provider()
    assert await deferToThread(lab.lab.stop_server, "webdav")
    started = time.monotonic()
    error = await _raises(StorageUnavailable, provider.bootstrap({}))
    logged.append(repr(error) + str(error))
    assert time.monotonic() - started < 35
    assert _owned_by(lab, "alpha") == []
    assert provider.client.calls["xapi_object_edit"] == 0


@pytest_twisted.ensureDeferred
async def test_storage_lost_during_bootstrap_releases_the_system(
    make_provider, lab: RunningLab, logged: list[str]
) -> None:
    """The storage dies after the system was written in Cobbler, before provider-state is saved: the
    bootstrap fails with the storage error, the system goes back to the pool (its claim marker stays
    on the dead storage until the lease reaps it), and a later bootstrap succeeds on another system."""
    provider = make_provider()
    write = provider.client.edit_system
    lost: list[str] = []

    async def edit_then_lose_storage(name: str, fields: Any, **kw: Any) -> None:
        await write(name, fields, **kw)
        if not lost:
            lost.append(name)
            await deferToThread(lab.lab.stop_server, "webdav")

    provider.client.edit_system = edit_then_lose_storage  # type: ignore[method-assign]
    error = await _raises(StorageUnavailable, provider.bootstrap({}))
    logged.append(repr(error) + str(error))
    [victim] = lost
    record = lab.cobbler().get_system(victim)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]
    assert not bmc.power_is_on(lab.system_dir(victim))  # never powered: state comes first

    await deferToThread(lab.lab.start_server, "webdav")
    [machine] = await provider.bootstrap({})
    assert machine.system_name != victim
    assert await provider.load_state() == {"zookeeper-instances": [machine.instance_id]}


@pytest_twisted.ensureDeferred
async def test_cancelling_a_batch_launch_releases_every_system(make_provider, lab: RunningLab) -> None:
    """Ctrl-C while one launch waits before power-on and two more are queued (launch-concurrency 1):
    the running launch rolls back, the queued ones drop their claim markers; nothing stays claimed."""
    provider = make_provider(**{"launch-concurrency": 1})
    reached: defer.Deferred[None] = defer.Deferred()

    async def hang(record: Any) -> None:
        _reactor().callLater(0, reached.callback, None)  # Ctrl-C comes from the reactor, never re-entrantly
        await defer.Deferred()  # never fires: only cancellation gets out

    batch = defer.ensureDeferred(provider.start_machines([_data(str(i)) for i in range(3)], before_power=hang))
    await reached
    batch.cancel()
    with pytest.raises(defer.CancelledError):
        await batch
    uids = [r["uid"] for r in lab.cobbler().get_systems()]
    assert _owned_by(lab, "alpha") == []
    for uid in uids:  # no marker left behind: every system can be claimed at once
        assert await provider.claims.try_claim(uid), uid



def _never_reports_on(provider: Any) -> None:
    """Until an off goes out, every power status the provider reads says off: a BMC whose status lies.

    Why not a lab BMC that lies: fence_ipmilan reads the status before an "off" and sends nothing when it
    says off, so a server behind a lying BMC cannot be powered off through Cobbler at all (measured on the
    lab). These drills therefore let the real BMC, fence_ipmilan and Cobbler do every power action and
    rewrite only what the provider is told of the status; ``test_a_bmc_that_ignores_power_on_…`` below is
    the drill with a real misbehaving BMC.
    """
    real, off_sent = provider.client.power, set()

    async def power(name: str, operation: str) -> bool:
        if operation == "off":
            off_sent.add(name)
        answer = await real(name, operation)
        return False if operation == "status" and name not in off_sent else answer

    provider.client.power = power


def _running(lab: RunningLab, name: str) -> bool:
    """Whether the system really runs (its booted system process), whatever any status says."""
    return bmc.power_is_on(lab.system_dir(name))


async def _until_running(lab: RunningLab, name: str, launch: defer.Deferred, within: float = 30.0) -> None:
    """Wait (bounded) until the real server runs: the power-on went out and the BMC acted on it."""
    deadline = time.monotonic() + within
    while not _running(lab, name):
        assert not launch.called, "the launch ended before the system was powered on"
        assert time.monotonic() < deadline, f"{name} did not start within {within:g} s"
        await deferLater(_reactor(), 0.1, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_bmc_that_never_reports_on_gets_its_system_powered_off_before_release(
    make_provider, lab: RunningLab
) -> None:
    """Defect 4: the BMC accepts "on" (the system boots and runs its installer) but never reports on. The
    launch fails after power-timeout, and its rollback powers the system off (confirmed) before it goes
    back to the pool: no installer keeps running with a rolled-back environment's user data."""
    victim = lab.spec.system(4)
    provider = make_provider(**{"power-timeout": 4})
    _never_reports_on(provider)
    error = await _raises(PowerError, provider.start_machines([_data("7", **{"orchestra-name": victim.name})]))
    assert error.system == victim.name and "not confirmed powered on within 4 s" in str(error)
    assert error.retryable
    assert not _running(lab, victim.name)  # powered off by the rollback
    record = lab.cobbler().get_system(victim.name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]
    assert await provider.get_machines() == []


@pytest_twisted.ensureDeferred
async def test_ctrl_c_during_power_confirmation_powers_the_system_off(make_provider, lab: RunningLab) -> None:
    """Defect 4, interrupted: cancelled (Ctrl-C) while confirming the power-on, the running system is
    powered off before it returns to the pool."""
    victim = lab.spec.system(5)
    provider = make_provider(**{"power-timeout": 30})
    _never_reports_on(provider)
    launch = provider.start_machines([_data("8", **{"orchestra-name": victim.name})])
    await _until_running(lab, victim.name, launch)
    launch.cancel()
    await _raises(defer.CancelledError, launch)
    assert not _running(lab, victim.name)
    record = lab.cobbler().get_system(victim.name)
    assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]


@pytest_twisted.ensureDeferred
async def test_a_system_that_cannot_be_powered_off_stays_owned_and_the_error_says_so(
    make_provider, lab: RunningLab
) -> None:
    """Defect 4, worst case: the on went out, was never confirmed, and the BMC stops answering before the
    rollback's power-off. The system stays recorded as owned (never handed to another environment while it
    may run), the error says so in one line, and destroy-environment releases it once the BMC answers."""
    victim = lab.spec.system(0)
    saved_options = lab.cobbler().get_system(victim.name)["power_options"]
    provider = make_provider(**{"power-timeout": 4})
    _never_reports_on(provider)
    launch = provider.start_machines([_data("9", **{"orchestra-name": victim.name})])
    try:
        await _until_running(lab, victim.name, launch)
        await deferToThread(lab.make_bmc_unreachable, victim.name)
        error = await _raises(RollbackFailed, launch)
        message = str(error)
        assert error.system == victim.name and "\n" not in message
        assert "stays recorded as owned by environment 'alpha'" in message and "destroy-environment" in message
        assert _owned_by(lab, "alpha") == [victim.name]
        assert [m.system_name for m in await provider.get_machines()] == [victim.name]
    finally:
        lab.cobbler().xapi_object_edit("system", victim.name, "edit", {"power_options": saved_options}, lab.token())
    released = await provider.destroy_environment()
    assert [m.system_name for m in released] == [victim.name] and not _running(lab, victim.name)


@pytest_twisted.ensureDeferred
async def test_a_bmc_that_ignores_power_on_gets_an_off_before_the_system_returns(
    make_provider, lab: RunningLab
) -> None:
    """Defect 4 with a real misbehaving BMC: it accepts "on", the server never comes up (fence_ipmilan waits
    for it in vain). Power was touched, so the rollback sends "off" and confirms it before the system goes
    back to the pool (the server might still come up late); with the old rollback no "off" was ever sent."""
    victim = lab.spec.system(2)
    lab.make_bmc_ignore_power_on(victim.name)
    try:
        provider = make_provider(**{"power-timeout": 4})
        asked: list[str] = []
        real = provider.client.power

        async def recorded(name: str, operation: str) -> bool:  # observes, changes nothing
            asked.append(operation)
            return await real(name, operation)

        provider.client.power = recorded
        error = await _raises(PowerError, provider.start_machines([_data("6", **{"orchestra-name": victim.name})]))
        assert error.system == victim.name
        assert "on" in asked and "off" in asked[asked.index("on") :]  # the off came after the on
        assert asked[-1] == "status"  # ...and was confirmed
        assert not _running(lab, victim.name)
        record = lab.cobbler().get_system(victim.name)
        assert record["mgmt_classes"] == [AVAILABLE_CLASS] and ENV_KEY not in record["autoinstall_meta"]
    finally:
        lab.make_bmc_ignore_power_on(victim.name, False)
