"""Unit-test fixtures: orchestra providers on fakes (FakeCobbler, MemoryStorage) driven by one task.Clock.

`FakeWorld.provider` is the ONE place the unit tests build an ``OrchestraProvider``: a change of its
constructor is one edit here. Several providers of a world share the Cobbler server and the storage
server (as environments on one Orchestra server do), each with its own client and environment storage.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from ensemble_orchestra.cobbler import CobblerClient
from ensemble_orchestra.cobbler.testing import FakeCobbler, FakeCobblerAgent
from ensemble_orchestra.config import parse_orchestra
from ensemble_orchestra.provider.orchestra import OrchestraProvider
from ensemble_orchestra.storage.testing import MemoryStorageServer
from ensemble_orchestra.testing import result_of

COBBLER_URL = "http://orchestra.test/cobbler_api"
AVAILABLE = "orchestra-ensemble-available"  # FakeCobbler's systems start in this class
ACQUIRED = "orchestra-ensemble-acquired"
ENV_KEY = "ensemble_environment"  # the owner written into a system's autoinstall metadata

SETTINGS: dict[str, Any] = {
    "orchestra-server": "orchestra.test",
    "orchestra-user": "cobbler",
    "orchestra-pass": "cobbler-password",
    "admin-secret": "admin-secret-xyzzy",
    "acquired-mgmt-class": ACQUIRED,
    "available-mgmt-class": AVAILABLE,
    "default-series": "bookworm",
    "authorized-keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnitTestKey unit@test",
    "power-timeout": 30,
}


@dataclass
class FakeWorld:
    """One Cobbler server, one storage server and the clock that drives both (and every provider)."""

    clock: Clock
    cobbler: FakeCobbler
    agent: FakeCobblerAgent
    storage_server: MemoryStorageServer
    providers: list[OrchestraProvider] = field(default_factory=list)

    def provider(self, env: str = "alpha", *, seed: int | str | None = None, **settings: Any) -> OrchestraProvider:
        """The provider of environment *env*; *settings* are environments.yaml keys (``power-timeout``...).

        *seed* makes its shuffles of candidate systems repeatable (default: the environment's name).
        """
        config = parse_orchestra(env, {**SETTINGS, **settings})
        client = CobblerClient(
            COBBLER_URL,
            config.orchestra_user,
            config.orchestra_pass,
            self.clock,  # type: ignore[arg-type]  # never connects: the agent serves the fake
            clock=self.clock,
            agent=self.agent,
            power_timeout=config.power_timeout,
        )
        storage = self.storage_server.storage(f"environments/{env}")
        provider = OrchestraProvider(config, self.clock, client, storage, rng=random.Random(seed or env))
        self.providers.append(provider)
        return provider

    @staticmethod
    def machine(machine_id: str, constraints: dict[str, str] | None = None) -> dict[str, Any]:
        """Machine data as Ensemble hands it to start_machine(s)."""
        return {"machine-id": machine_id, "zookeeper-hosts": ["zk.test:2181"], "constraints": dict(constraints or {})}

    def start(self, work: Deferred[Any] | Coroutine[Any, Any, Any]) -> Deferred[Any]:
        """A provider call as a Deferred (provider methods return Deferreds or coroutines)."""
        return ensureDeferred(work)

    def run(self, work: Deferred[Any] | Coroutine[Any, Any, Any], *, step: float = 0.5, limit: float = 3600) -> Any:
        """The result of *work*, advancing the clock by *step* until it is done (at most *limit* seconds)."""
        d = self.start(work)
        self.settle(d, step=step, limit=limit)
        return result_of(d)

    def wait(self, seconds: float, *, step: float = 0.01) -> None:
        """Let *seconds* pass on the clock in steps of *step*, so chains of answers make progress."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def settle(self, d: Deferred[Any], *, step: float = 0.5, limit: float = 3600) -> None:
        """Advance the clock until *d* has fired; fail the test if it has not within *limit* seconds."""
        done: list[bool] = []

        def finished(result: Any) -> Any:
            done.append(True)
            return result

        d.addBoth(finished)  # not d.called: a cancelled coroutine's Deferred is "called" while it cleans up
        waited = 0.0
        while not done and waited < limit:
            self.clock.advance(step)
            waited += step
        assert done, f"still running after {limit:g} s on the clock"

    # -- what Cobbler and the storage hold ------------------------------------------------------

    def owner(self, name: str) -> str | None:
        """The environment written on system *name* (its autoinstall metadata), or None."""
        meta = self.cobbler.systems[name]["autoinstall_meta"]
        return meta.get(ENV_KEY) if isinstance(meta, dict) else None

    def owned_by(self, env: str) -> list[str]:
        """Names of the systems Cobbler records as owned by *env*: acquired class AND owner metadata."""
        return sorted(
            name
            for name, system in self.cobbler.systems.items()
            if self.owner(name) == env and ACQUIRED in system["mgmt_classes"]
        )

    def in_pool(self, name: str) -> bool:
        """Whether *name* is back in the available pool: available class, not acquired, no owner."""
        classes = self.cobbler.systems[name]["mgmt_classes"]
        return AVAILABLE in classes and ACQUIRED not in classes and self.owner(name) is None

    def has_claim(self, name: str) -> bool:
        """Whether system *name*'s claim marker exists on the storage."""
        return self.storage_server.has_marker(f"claims/{self.cobbler.systems[name]['uid']}")

    def claims(self) -> list[str]:
        """Names of the systems whose claim marker exists."""
        return sorted(name for name in self.cobbler.systems if self.has_claim(name))


@pytest.fixture
def make_world():  # type: ignore[no-untyped-def]
    """Builds a FakeWorld: *systems* Cobbler systems; *latency* seconds per Cobbler (and storage) answer."""

    def make(*, systems: int = 3, latency: float = 0.0, storage_latency: float | None = None) -> FakeWorld:
        clock = Clock()
        cobbler = FakeCobbler(systems=systems)
        return FakeWorld(
            clock=clock,
            cobbler=cobbler,
            agent=FakeCobblerAgent(cobbler, clock=clock, latency=latency),
            storage_server=MemoryStorageServer(clock, latency=latency if storage_latency is None else storage_latency),
        )

    return make


@pytest.fixture
def hook_server(tmp_path: Any) -> Any:
    """A started HookToolServer on a socket in the test's directory (stopped, its socket removed, after it)."""
    import pytest_twisted
    from twisted.internet import reactor

    from ensemble_orchestra.agents.hooks.server import HookToolServer

    running = HookToolServer(reactor, tmp_path / "run" / "agent.sock")
    running.start()
    yield running
    pytest_twisted.blockon(Deferred.fromCoroutine(running.stop()))
