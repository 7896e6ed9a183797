"""Shared fixtures: one real lab per test session (per xdist worker), reset where a test needs it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.lab.envfile import lab_environment
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, ZooKeeperServerError, free_port


@pytest.fixture(scope="session")
def ensemble_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ENSEMBLE_HOME so no test touches the user's ~/.ensemble."""
    home = tmp_path_factory.mktemp("ensemble-home")
    old = os.environ.get("ENSEMBLE_HOME")
    os.environ["ENSEMBLE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ENSEMBLE_HOME", None)
    else:
        os.environ["ENSEMBLE_HOME"] = old


@pytest.fixture(scope="session")
def lab_parent() -> Iterator[Path]:
    """A directory for labs that Apache's www-data workers can traverse when tests run as root.

    pytest's own tmp dirs are 0700 as root; a lab below them could not serve WebDAV.
    """
    parent = Path(tempfile.mkdtemp(prefix="ensemble-test-labs-"))
    parent.chmod(0o711)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def session_lab(ensemble_home: Path, lab_parent: Path) -> Iterator[RunningLab]:
    """The real lab (cobblerd, fence_ipmilan + ipmi_sim BMCs, Apache mod_dav), started once."""
    running = start_lab(lab_parent / "session-lab", systems=8, env_name="lab")
    try:
        yield running
    finally:
        running.lab.down()


STATE_SECRET = "zk-admin-secret-test"  # the admin secret `connect` opens StateClients with unless told


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A real ZooKeeper (Debian's 3.8) on a free loopback port, started once per session (per xdist worker).

    The port is free when picked; another process may take it before the JVM binds it, so try three ports.
    """
    directory = tmp_path_factory.mktemp("zookeeper")
    for attempt in range(3):
        server = ZooKeeperServer(directory, free_port())
        try:
            server.start()
            break
        except ZooKeeperServerError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(session_lab: RunningLab) -> RunningLab:
    """The session's lab, reset to its seeded state before the test."""
    session_lab.lab.reset()
    return session_lab


@pytest.fixture
def make_provider(lab: RunningLab) -> Iterator[Callable[..., Any]]:
    """Builds orchestra providers for environments on *lab* (a test module may override ``lab``).

    Power confirmation polls fast (0.1, 0.2, 0.5 s); keys of environments.yaml are passed as overrides.
    """
    import pytest_twisted
    from twisted.internet import defer, reactor

    from ensemble_orchestra.provider import create_orchestra_provider
    from ensemble_orchestra.schedule import Schedule

    made = []

    def make(env: str = "alpha", **overrides: Any):  # type: ignore[no-untyped-def]
        raw = dict(lab_environment(lab.spec, lab.layout))
        raw.update({"power-timeout": 20, **overrides})
        provider = create_orchestra_provider(env, raw, reactor)
        provider.power.schedule = Schedule((0.1, 0.2, 0.5), timeout=float(raw["power-timeout"]))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        pytest_twisted.blockon(defer.Deferred.fromCoroutine(provider.client.close()))
        pytest_twisted.blockon(provider.storage.close())


@pytest.fixture
def connect(zookeeper: ZooKeeperServer) -> Iterator[Callable[..., Any]]:
    """Opens StateClients to the session's ZooKeeper (as admin with STATE_SECRET unless told); closes them after."""
    import pytest_twisted
    from twisted.internet import defer, reactor

    from ensemble_orchestra.state import StateClient

    opened: list[StateClient] = []

    async def open_client(secret: str = STATE_SECRET, hosts: str | None = None, **options: float) -> StateClient:
        client = await StateClient.connect(reactor, hosts or zookeeper.hosts, secret, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        pytest_twisted.blockon(defer.Deferred.fromCoroutine(client.close()))


@pytest.fixture
def node_path() -> str:
    """A topology path of the test's own, so tests sharing the session's ZooKeeper never meet."""
    import uuid

    return f"/topology-{uuid.uuid4().hex[:12]}"
