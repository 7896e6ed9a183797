"""The environment's state and agents on a lab of container systems that run a real Debian (issue 12).

One environment for the module (its tests run in order, on one xdist worker): `ensemble bootstrap --wait`
(a process, as a user types it) ends with ZooKeeper initialized on machine 0 and its agents running under
systemd; then access control, a machine added through the state API and launched by the provisioning agent,
terminate-machine, and the fault drills: kill -9 of the provisioning agent in the middle of a launch, and a
ZooKeeper restart.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
import yaml
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from twisted.internet import reactor, task

from ensemble_orchestra.lab import bmc
from ensemble_orchestra.lab.seed import AVAILABLE_CLASS
from ensemble_orchestra.origin import pack_tools
from ensemble_orchestra.provider.ownership import MACHINE_KEY, USER_DATA_KEY
from ensemble_orchestra.state.acl import Credential
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.environment import read_settings
from ensemble_orchestra.state.errors import StateAuthError
from ensemble_orchestra.state.layout import ENVIRONMENT, PROVISIONING_LOCK, SETTINGS
from ensemble_orchestra.state.machines import MachinesState

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("agents")]

ENV = "agents"  # the environment of conftest's agents_environment
MACHINE_UP_TIMEOUT = 240.0  # topology → launched → installed → cloud-init (python3 packages) → agent registered
RELEASE_TIMEOUT = 90.0
USER_DATA_DROP_TIMEOUT = 15.0  # agent registered → user data gone from Cobbler (a presence watch; measured ~1 s)


def _ensemble(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


Environment = Any  # conftest's Environment: the bootstrapped environment, its lab, machine 0's address


@pytest.fixture
def environment(agents_environment: Environment) -> Environment:
    return agents_environment


async def _wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """Until *predicate* (a function, or one returning an awaitable) gives something true; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        await task.deferLater(reactor, every, lambda: None)


@pytest_twisted.ensureDeferred
async def test_bootstrap_wait_ends_with_zookeeper_initialized_and_the_agents_running(environment: Environment) -> None:
    env = environment
    assert env.bootstrap is not None
    print(f"bootstrap --wait (to agents running): {env.bootstrap_s:.1f} s")
    for phase in ("uploading ensemble-orchestra", "waiting for SSH", "waiting for ZooKeeper", "waiting for initialize"):
        assert phase in env.bootstrap.stderr
    assert "is initialized: ZooKeeper, the machine agent and the provisioning agent run on machine 0" in (
        env.bootstrap.stdout
    )

    status = _ensemble("status", "-e", ENV, "--format", "json")
    assert status.returncode == 0, status.stderr
    [(machine_id, machine)] = json.loads(status.stdout)["machines"].items()
    assert machine_id == "0" and machine["agent-state"] == "running" and machine["instance-state"] == "provisioned"

    services = env.ssh(
        "systemctl is-active zookeeper ensemble-machine-agent ensemble-provisioning-agent;"
        " systemctl show -p Restart --value ensemble-provisioning-agent; sudo ls /var/log/ensemble"
    )
    lines = services.stdout.split()
    assert lines[:4] == ["active", "active", "active", "always"], services
    assert {"ensemble-admin.log", "machine-agent.log", "provisioning-agent.log"} <= set(lines[4:])
    # The agents run the very package the CLI runs: the archive machine 0 fetched is the CLI's own.
    # (The bootstrap packed the package as it was then: compare with what it uploaded and recorded.)
    fetched = env.ssh("sudo sha256sum /var/lib/ensemble/tools.tar.gz").stdout.split()[:1]

    admin = await env.admin()
    try:
        sha256 = (await read_settings(admin)).tools_sha256
    finally:
        await admin.close()
    [uploaded] = env.lab.layout.webdav_data.rglob(f"ensemble-orchestra-*-{sha256[:16]}.tar.gz")
    assert fetched == [sha256] == [hashlib.sha256(uploaded.read_bytes()).hexdigest()]
    assert len(pack_tools().data) > 100_000  # the package itself, not a stub

    # The admin secret is nowhere in Cobbler's records (only its digest identity), nor in any output.
    for record in env.owned().values():
        assert env.raw["admin-secret"] not in json.dumps(record)
    for secret in env.lab.secrets():
        assert secret not in env.bootstrap.stdout + env.bootstrap.stderr + status.stdout + status.stderr


@pytest_twisted.ensureDeferred
async def test_an_anonymous_client_is_refused_and_a_machine_agent_cannot_read_the_provider_credentials(
    environment: Environment,
) -> None:
    env = environment
    anonymous = KazooClient(hosts=env.zookeeper, timeout=5)
    anonymous.start(timeout=20)
    try:
        for read in (lambda: anonymous.get_children("/"), lambda: anonymous.get(ENVIRONMENT)):
            with pytest.raises(NoAuthError):
                read()
    finally:
        anonymous.stop()
        anonymous.close()

    # Machine 0's machine agent, with its own credentials (read from its root-only config file).
    shown = env.ssh("sudo cat /etc/ensemble/machine-agent.yaml")
    assert shown.returncode == 0, shown.stderr
    credentials = [Credential.from_dict(c) for c in yaml.safe_load(shown.stdout)["credentials"]]
    files = "/etc/ensemble /etc/ensemble/machine-agent.yaml /etc/ensemble/provisioning-agent.yaml"
    mode = env.ssh(f"sudo stat -c %a {files}")
    assert mode.stdout.split() == ["700", "600", "600"]

    agent = await StateClient.connect(reactor, env.zookeeper, credentials=credentials, timeout=20)
    try:
        with pytest.raises(StateAuthError):
            await agent.get(ENVIRONMENT)
        await agent.get(SETTINGS)  # what agents share it may read
    finally:
        await agent.close()


async def _machine_node(env: Environment, machine_id: int) -> Any:
    """Machine *machine_id*'s record and its agent's presence (None while not registered)."""
    admin = await env.admin()
    try:
        machines = MachinesState(admin, (await read_settings(admin)).identities)
        return await machines.read(machine_id), await machines.presence(machine_id)
    finally:
        await admin.close()


async def _registered(env: Environment, machine_id: int) -> Any:
    record, presence = await _machine_node(env, machine_id)
    return (record, presence) if presence else None


async def _add_machine(env: Environment) -> int:
    admin = await env.admin()
    try:
        return await MachinesState(admin, (await read_settings(admin)).identities).add_machine()
    finally:
        await admin.close()


def _released(env: Environment, name: str) -> bool:
    record = env.lab.cobbler().get_system(name)
    return record["mgmt_classes"] == [AVAILABLE_CLASS] and not bmc.power_is_on(env.lab.system_dir(name))


@pytest_twisted.ensureDeferred
async def test_a_machine_added_to_the_topology_is_launched_and_terminate_machine_returns_it(
    environment: Environment,
) -> None:
    env = environment
    started = time.monotonic()
    machine_id = await _add_machine(env)

    def launched() -> dict[str, Any] | None:
        found = [r for r in env.owned().values() if r["autoinstall_meta"].get(MACHINE_KEY) == str(machine_id)]
        return found[0] if found else None

    system = await _wait(launched, MACHINE_UP_TIMEOUT, f"machine {machine_id} launched", every=1.0)
    name = system["name"]
    # Its user data carries its agent's credentials, never the admin secret or the provider's passwords.
    user_data = base64.b64decode(system["autoinstall_meta"][USER_DATA_KEY]).decode()
    assert "/etc/ensemble/machine-agent.yaml" in user_data  # what the drop below takes out of Cobbler's view
    for secret in (env.raw["admin-secret"], env.raw["orchestra-pass"], env.raw["storage-pass"]):
        assert secret not in user_data
    record, presence = await _wait(
        lambda: _registered(env, machine_id),
        MACHINE_UP_TIMEOUT,
        f"machine {machine_id}'s agent registered",
        every=1.0,
    )
    registered = time.monotonic()
    print(f"machine added → its agent registered: {registered - started:.1f} s")
    assert record.provider_machine_id == system["uid"] and record.instance_name == name
    # The provider's address was recorded at launch (machine 0's firewall lets it reach ZooKeeper by it).
    assert record.address == system["interfaces"]["eth0"]["ip_address"] and record.address
    # Once its agent registered, the secrets have arrived: the user data leaves the Cobbler record, which every
    # Cobbler user can read (the owner keys stay). Machine 0's went when its agent first registered.
    await _wait(
        lambda: USER_DATA_KEY not in env.owned()[name]["autoinstall_meta"],
        USER_DATA_DROP_TIMEOUT,
        f"{name}'s user data dropped from its Cobbler record",
        every=0.5,
    )
    print(f"agent registered → user data dropped from Cobbler: {time.monotonic() - registered:.1f} s")
    assert env.owned()[name]["autoinstall_meta"].get(MACHINE_KEY) == str(machine_id)
    [machine0] = [r for r in env.owned().values() if r["autoinstall_meta"].get(MACHINE_KEY) == "0"]
    assert USER_DATA_KEY not in machine0["autoinstall_meta"]
    status = json.loads(_ensemble("status", "-e", ENV, "--format", "json").stdout)
    assert status["machines"][str(machine_id)]["agent-state"] == "running"
    assert status["machines"][str(machine_id)]["private-address"] == presence.addresses[0]

    refused = _ensemble("terminate-machine", "-e", ENV, "0")
    assert refused.returncode == 2 and "machine 0 runs the environment's ZooKeeper" in refused.stderr
    terminated = _ensemble("terminate-machine", "-e", ENV, str(machine_id))
    assert terminated.returncode == 0, terminated.stderr
    await _wait(lambda: _released(env, name), RELEASE_TIMEOUT, f"{name} released")
    status = json.loads(_ensemble("status", "-e", ENV, "--format", "json").stdout)
    assert list(status["machines"]) == ["0"]


@pytest_twisted.ensureDeferred
async def test_provisioning_agent_killed_in_the_middle_of_a_launch_neither_duplicates_nor_strands(
    environment: Environment,
) -> None:
    """kill -9 right after the agent said it launches: systemd restarts it; the machine is launched once."""
    env = environment
    log = "/var/log/ensemble/provisioning-agent.log"
    before = int(env.ssh(f"sudo wc -l < {log}").stdout)
    machine_id = await _add_machine(env)
    # Poll the log from machine 0 itself (tight loop there), then kill the service's main process.
    killer = (
        f"for i in $(seq 1 400); do sudo tail -n +{before + 1} {log} | grep -q 'machine {machine_id}: launching'"
        " && break; sleep 0.05; done; pid=$(systemctl show -p MainPID --value ensemble-provisioning-agent);"
        " sudo kill -9 $pid; echo killed $pid"
    )
    killed = env.ssh(killer)
    assert killed.stdout.startswith("killed "), killed
    old_pid = killed.stdout.split()[1]
    await _wait(
        lambda: (lambda p: p not in ("", "0", old_pid))(
            env.ssh("systemctl show -p MainPID --value ensemble-provisioning-agent").stdout.strip()
        ),
        30,
        "systemd restarted the provisioning agent",
    )
    await _wait(lambda: _registered(env, machine_id), MACHINE_UP_TIMEOUT, f"machine {machine_id} up", every=3.0)
    launched = [n for n, r in env.owned().items() if r["autoinstall_meta"].get(MACHINE_KEY) == str(machine_id)]
    assert len(launched) == 1, launched  # launched once
    # Nothing stranded: every claim marker belongs to a system the environment owns.
    owned_uids = {r["uid"] for r in env.owned().values()}
    assert set(env.claims()) <= owned_uids, (env.claims(), owned_uids)
    shown = env.ssh(f"sudo tail -n +{before + 1} {log}").stdout
    print("\n".join(line for line in shown.splitlines() if "factory" not in line)[-3000:])

    assert _ensemble("terminate-machine", "-e", ENV, str(machine_id)).returncode == 0
    await _wait(lambda: _released(env, launched[0]), RELEASE_TIMEOUT, f"{launched[0]} released")


@pytest_twisted.ensureDeferred
async def test_agents_reconnect_after_a_zookeeper_restart(environment: Environment) -> None:
    env = environment
    restarted = env.ssh("sudo systemctl restart zookeeper && echo ok")
    assert restarted.stdout.strip() == "ok", restarted

    def running() -> bool:
        status = _ensemble("status", "-e", ENV, "--format", "json", "--timeout", "20", timeout=60)
        return status.returncode == 0 and json.loads(status.stdout)["machines"]["0"]["agent-state"] == "running"

    started = time.monotonic()
    await _wait(running, 90, "machine 0's agent running again after the restart", every=2.0)
    print(f"ZooKeeper restart → status shows the agent running: {time.monotonic() - started:.1f} s")
    active = env.ssh("systemctl is-active ensemble-machine-agent ensemble-provisioning-agent").stdout.split()
    assert active == ["active", "active"]


@pytest_twisted.ensureDeferred
async def test_agents_come_back_after_their_sessions_expired(environment: Environment) -> None:
    """Both agents frozen (SIGSTOP) for longer than the session timeout (10 s): ZooKeeper expires their sessions
    and drops the presence and the lock. Thawed, the machine agent registers again in a new session; the
    provisioning agent (its lock went with its session) exits, systemd starts it again, and it takes the lock.
    (A ZooKeeper stopped for a while expires nobody: it restores sessions from its log and restarts their timers.)"""
    env = environment

    def main_pid(unit: str) -> str:
        return env.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()

    machine_pid, provisioning_pid = main_pid("ensemble-machine-agent"), main_pid("ensemble-provisioning-agent")
    frozen = env.ssh(f"sudo kill -STOP {machine_pid} {provisioning_pid} && sleep 16 && echo ok")
    assert frozen.stdout.strip() == "ok", frozen

    async def expired() -> bool:
        admin = await env.admin()
        try:
            machines = MachinesState(admin, (await read_settings(admin)).identities)
            return await machines.presence(0) is None and await admin.exists(PROVISIONING_LOCK) is None
        finally:
            await admin.close()

    await _wait(expired, 20, "ZooKeeper dropped the frozen agents' presence and lock")
    assert env.ssh(f"sudo kill -CONT {machine_pid} {provisioning_pid} && echo ok").stdout.strip() == "ok"

    async def back() -> bool:
        admin = await env.admin()
        try:
            machines = MachinesState(admin, (await read_settings(admin)).identities)
            return await machines.presence(0) is not None and await admin.exists(PROVISIONING_LOCK) is not None
        finally:
            await admin.close()

    started = time.monotonic()
    await _wait(back, 60, "machine 0's agent registered and the provisioning lock held again", every=1.0)
    print(f"sessions expired → both agents back: {time.monotonic() - started:.1f} s")
    assert main_pid("ensemble-machine-agent") == machine_pid  # the same process, in a new session
    assert main_pid("ensemble-provisioning-agent") not in ("", "0", provisioning_pid)  # started over
    registered = env.ssh(
        "sudo grep -c 'registered /machines/machine-0000000000/agent' /var/log/ensemble/machine-agent.log"
    )
    assert int(registered.stdout) >= 2
