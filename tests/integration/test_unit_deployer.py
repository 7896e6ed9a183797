"""The machine agent's unit deployer against a real ZooKeeper: what it writes for a unit placed on its machine,
what it removes when the unit leaves, and that a failed or interrupted deploy never counts as deployed (a failed
one is shown on the unit's node and holds up no other unit).
(systemctl and the bundle's HTTP fetch are injected here; the lab's tests run the real ones.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from ensemble_orchestra.agents.deployer import BundleFetchError, UnitDeployer
from ensemble_orchestra.charm import CharmDirectory, make_bundle
from ensemble_orchestra.errors import EnsembleError
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.state.charms import CharmRecord
from ensemble_orchestra.state.layout import charm_path
from ensemble_orchestra.state.machines import MachinesState
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.status import environment_status
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper, session
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.units import UnitsState

ROLES = Roles.make()
PROBE = Path(__file__).resolve().parents[1] / "charms" / "bookworm" / "probe"


@pytest.fixture(scope="module")
def deployer_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    with initialized_zookeeper(Path(tmp_path_factory.mktemp("deployer-zookeeper")), ROLES) as server:
        yield server


@pytest_twisted.ensureDeferred
async def test_a_unit_is_deployed_once_removed_when_it_leaves_and_a_bad_bundle_is_never_deployed(
    deployer_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    admin = await session(reactor, deployer_zookeeper.hosts, ROLES.admin)
    try:
        bundle = make_bundle(CharmDirectory.load(PROBE))
        good = CharmRecord("local:bookworm/probe-1", bundle.sha256, "b", "http://storage/good.zip")
        bad = CharmRecord("local:bookworm/probe-9", "0" * 64, "b", "http://storage/bad.zip")
        for record in (good, bad):
            await admin.create(charm_path(record.id), record.encode(), acl=ROLES.identities.shared())
        services = ServicesState(admin, ROLES.identities)
        [unit] = await services.deploy(ServiceRecord("probe", good.id), {}, 1)
        [broken] = await services.deploy(ServiceRecord("broken", bad.id), {}, 1)
        topology = await TopologyNode(admin).read()
        machine = topology.unit(unit).machine
        assert machine is not None
        fetched: list[str] = []
        calls: list[list[str]] = []

        async def fetch(url: str) -> bytes:
            fetched.append(url)
            if url.endswith("missing.zip"):
                raise BundleFetchError(f"GET {url} answered 404")
            return bundle.data

        enable_fails: set[str] = set()  # services whose next "enable --now" fails
        error_at_enable: dict[str, str | None] = {}  # each service's unit's deploy-error when its agent starts

        async def systemctl(args: list[str]) -> None:
            calls.append(args)
            if args[:2] == ["enable", "--now"] and args[2] == "ensemble-unit-broken-0.service":
                error_at_enable[args[2]] = (await UnitsState(admin, ROLES.identities).read(broken)).deploy_error
                if args[2] in enable_fails:
                    enable_fails.discard(args[2])
                    raise EnsembleError("systemctl enable --now ensemble-unit-broken-0.service failed (test)")

        units_dir, unit_dir = tmp_path / "units", tmp_path / "systemd"
        unit_dir.mkdir()
        deployer = UnitDeployer(
            reactor,
            admin,
            UnitsState(admin, ROLES.identities),
            machine,
            Path("/etc/ensemble/m.yaml"),
            units_dir,
            unit_dir,
            fetch,
            systemctl,
        )
        (units_dir / "probe-0" / "charm").mkdir(parents=True)  # an interrupted deploy's remains
        await deployer.reconcile(topology)
        assert deployer.deployed() == {unit} and fetched == [good.url]
        assert (units_dir / "probe-0" / "charm" / "hooks" / "install").stat().st_mode & 0o111
        service = unit_dir / "ensemble-unit-probe-0.service"
        assert "unit-agent --unit probe/0 --config /etc/ensemble/m.yaml" in service.read_text()
        assert calls == [["daemon-reload"], ["enable", "--now", "ensemble-unit-probe-0.service"]]

        await deployer.reconcile(topology)  # deployed: nothing to do
        assert fetched == [good.url] and len(calls) == 2

        # A unit whose bundle is damaged, placed on the same machine as a good one: never deployed, the reason
        # on its node for status, and it holds up nothing else (the good one, placed after it, is deployed).
        units = UnitsState(admin, ROLES.identities)
        [second] = await services.add_units("probe", 1)
        other_machine = topology.unit(broken).machine
        assert other_machine is not None
        topology = await TopologyNode(admin).change(lambda t: t.assign_unit(second, other_machine))
        other = deployer.__class__(
            reactor,
            admin,
            units,
            other_machine,
            Path("/etc/ensemble/m.yaml"),
            tmp_path / "other",
            unit_dir,
            fetch,
            systemctl,
        )
        await other.reconcile(topology)
        assert other.deployed() == {second} and not (unit_dir / "ensemble-unit-broken-0.service").exists()
        failed = await units.read(broken)
        assert failed.agent_state == "pending" and failed.deploy_error is not None and "sha256" in failed.deploy_error
        assert (await units.read(second)).deploy_error is None

        async def shown() -> dict:
            status = await environment_status(admin, MachinesState(admin, ROLES.identities), [])
            return status["services"]["broken"]["units"][broken]

        entry = await shown()
        assert entry["agent-state"] == "pending" and "sha256" in entry["agent-state-info"]

        # The bundle is right now, but its agent's service will not start: not deployed, the reason shown.
        fixed = CharmRecord(bad.id, bundle.sha256, "b", "http://storage/fixed.zip")
        await admin.set(charm_path(bad.id), fixed.encode())
        enable_fails.add("ensemble-unit-broken-0.service")
        await other.reconcile(topology)
        assert other.deployed() == {second} and "enable --now" in ((await units.read(broken)).deploy_error or "")
        assert "enable --now" in (await shown())["agent-state-info"]

        # The next reconcile deploys it, clearing the reason before its agent starts.
        await other.reconcile(topology)
        assert other.deployed() == {second, broken} and (await units.read(broken)).deploy_error is None
        assert error_at_enable == {"ensemble-unit-broken-0.service": None}
        assert "agent-state-info" not in await shown()

        await services.remove_units([unit])
        before = len(calls)
        await deployer.reconcile(await TopologyNode(admin).read())
        assert deployer.deployed() == set() and not (units_dir / "probe-0").exists() and not service.exists()
        assert calls[before:] == [["disable", "--now", "ensemble-unit-probe-0.service"], ["daemon-reload"]]
    finally:
        await admin.close()
