"""The machine agent's units: each unit placed on this machine gets its charm and a unit agent; each unit that
left gets its agent stopped and its files removed.

Deploying: the charm's node (``/charms/<id>``) names the bundle's URL and sha256; the bundle is fetched (anonymous
GET: the server kit serves ``ensemble-charms/`` like the tools), checked and unpacked into the unit's directory,
then the unit agent is installed as a systemd service and started. The directory is complete before its
``unit.yaml`` appears (written last, atomically): a unit with a ``unit.yaml`` is deployed; a directory without
one is the remains of an interrupted deploy and is made again.

A unit that cannot be deployed (its bundle unreachable or damaged, its charm node gone...) does not hold up the
others on the machine: the reason goes on its node (``deploy-error``, which ``status`` shows) and the machine
agent tries again at its next reconcile; the reason is cleared before the unit's agent starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import treq
import yaml
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..charm.bundle import unpack_bundle
from ..errors import EnsembleError
from ..http import make_agent, read_body
from ..http.deadline import within
from ..state.charms import CharmRecord, read_charm
from ..state.client import StateClient
from ..state.errors import StateError
from ..state.topology import Topology
from ..state.units import UnitsState
from .config import CONFIG_DIR
from .services import UNIT_DIR, unit_agent_service, unit_agent_text
from .system import run
from .unit_paths import UNITS_DIR, UnitPaths, unit_name_of_dir

__all__ = ["BundleFetchError", "UnitDeployer", "fetch_bundle"]

log = Logger()

FETCH_TIMEOUT = 300.0


class BundleFetchError(EnsembleError):
    """A charm bundle could not be fetched from the environment's storage (retried at the next reconcile)."""

    retryable = True


async def fetch_bundle(reactor: Any, url: str, timeout: float = FETCH_TIMEOUT) -> bytes:
    """The bundle at *url* (anonymous GET), within *timeout*."""
    agent, pool = make_agent(reactor, persistent=False)
    try:

        async def get() -> bytes:
            response = await treq.request("GET", url, agent=agent)
            body = await read_body(response)
            if response.code != 200:
                raise BundleFetchError(f"GET {url} answered {response.code}: is the bundle still in the storage?")
            return body

        return await within(reactor, timeout, Deferred.fromCoroutine(get()))
    except BundleFetchError:
        raise
    except Exception as exc:
        raise BundleFetchError(f"GET {url} failed: {exc}") from None
    finally:
        await pool.closeCachedConnections()


Fetch = Callable[[str], Awaitable[bytes]]
Systemctl = Callable[[list[str]], Awaitable[object]]


class UnitDeployer:
    def __init__(
        self,
        reactor: Any,
        client: StateClient,
        units: UnitsState,
        machine_id: int,
        config_path: Path = CONFIG_DIR / "machine-agent.yaml",
        units_dir: Path = UNITS_DIR,
        unit_dir: Path = UNIT_DIR,
        fetch: Fetch | None = None,
        systemctl: Systemctl | None = None,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.units = units
        self.machine_id = machine_id
        self.config_path = config_path
        self.units_dir = units_dir
        self.unit_dir = unit_dir
        self.fetch = fetch or (lambda url: fetch_bundle(reactor, url))
        self.systemctl = systemctl or (lambda args: run(reactor, ["systemctl", *args]))

    def deployed(self) -> set[str]:
        """The units with a complete directory here."""
        if not self.units_dir.is_dir():
            return set()
        found = set()
        for path in self.units_dir.iterdir():
            name = unit_name_of_dir(path.name)
            if name is not None and (path / "unit.yaml").is_file():
                found.add(name)
        return found

    async def reconcile(self, topology: Topology) -> None:
        wanted = {unit.name for unit in topology.units_on(self.machine_id)}
        present = self.deployed()
        for name in sorted(wanted - present):
            try:
                await self.deploy(name)
            except Exception as error:
                reason = str(error) if isinstance(error, EnsembleError) else repr(error)
                log.error("unit {unit}: could not deploy it (tried again later): {error}", unit=name, error=reason)
                await self._record_error(name, reason)
        for name in sorted(present - wanted):
            await self.remove(name)

    async def _record_error(self, unit_name: str, reason: str | None) -> None:
        """Put *reason* on the unit's node for ``status`` (None clears it); a failure to do so is only logged."""
        try:
            await self.units.record_deploy_error(unit_name, reason)
        except StateError as error:
            log.warn("unit {unit}: could not record its deploy error: {error}", unit=unit_name, error=str(error))

    async def deploy(self, unit_name: str) -> None:
        record = await self.units.read(unit_name)
        if record.charm is None:
            raise EnsembleError(f"unit {unit_name}: its node names no charm; remove the unit and add another")
        charm = await read_charm(self.client, record.charm)
        paths = UnitPaths.of(unit_name, self.units_dir)
        log.info("unit {unit}: deploying {charm}", unit=unit_name, charm=charm.id)
        data = await self.fetch(charm.url)
        if paths.root.exists():  # an interrupted deploy's remains
            shutil.rmtree(paths.root)
        paths.root.mkdir(parents=True, mode=0o700)
        unpack_bundle(data, paths.charm, charm.sha256)
        service = unit_agent_service(unit_name)
        (self.unit_dir / service).write_text(unit_agent_text(unit_name, self.config_path))
        await self.systemctl(["daemon-reload"])
        _write_record(paths, unit_name, charm)
        try:
            if record.deploy_error is not None:  # before its agent starts: it writes the node from then on
                await self._record_error(unit_name, None)
            await self.systemctl(["enable", "--now", service])
        except BaseException:
            paths.record.unlink(missing_ok=True)  # not deployed: the next reconcile tries again
            raise
        log.info("unit {unit}: unit agent started ({service})", unit=unit_name, service=service)

    async def remove(self, unit_name: str) -> None:
        paths = UnitPaths.of(unit_name, self.units_dir)
        service = unit_agent_service(unit_name)
        log.info("unit {unit}: left the machine: stopping its agent and removing its files", unit=unit_name)
        unit_file = self.unit_dir / service
        if unit_file.exists():
            await self.systemctl(["disable", "--now", service])
            unit_file.unlink()
            await self.systemctl(["daemon-reload"])
        paths.record.unlink(missing_ok=True)  # first: a half-removed unit is no longer "deployed"
        shutil.rmtree(paths.root, ignore_errors=True)


def _write_record(paths: UnitPaths, unit_name: str, charm: CharmRecord) -> None:
    temporary = paths.record.with_name("unit.yaml.tmp")
    temporary.write_text(yaml.safe_dump({"unit": unit_name, "charm": charm.id, "sha256": charm.sha256}))
    temporary.replace(paths.record)
