"""A provider type whose machine 0 is a real ZooKeeper on 127.0.0.1, for the ``ensemble`` commands that work on
the environment's state (deploy, add-unit, set, get, resolved, remove-unit, destroy-service), each run as its own
process the way a user types it; and `StateCli`, which runs them.

The provider is registered as the entry point ``ensemble.providers: statefake`` (a dist-info directory on
PYTHONPATH, as test_cli_reactor.py does for ``fake``). It talks to no Cobbler and no WebDAV: what it does comes
from its environment's keys in environments.yaml:

- ``calls``: a file each provider call is appended to, so a test sees whether the command got past its checks;
- ``zookeeper-port``: where machine 0's ZooKeeper listens (``state-connection: direct``: no SSH tunnel). The CLI
  reaches machine 0 on the fixed port 2181; a test's ZooKeeper has a free port, so this module, loaded in the
  command's process only, points the CLI's connection at it;
- ``bootstrapped``: false makes the environment one that was never bootstrapped (no provider state);
- ``storage``: a directory standing for the environment's file storage (charm bundles land in it);
- ``admin-secret``, ``default-series``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ensemble_orchestra.secret import Secret

CONSTRAINTS = ("arch", "mem", "orchestra-classes")
HERE = Path(__file__).resolve().parent
MODULE = "ensemble_orchestra.cli.ensemble"
COMMAND_BOUND = 60.0  # s for one command: imports and a ZooKeeper session take ~1 s


@dataclass(frozen=True)
class FakeConfig:
    admin_secret: Secret
    default_series: str
    state_connection: str = "direct"


@dataclass(frozen=True)
class FakeMachine:
    instance_id: str
    system_name: str
    reach: str
    state: str = "provisioned"

    @property
    def dns_name(self) -> str:
        return self.reach


class DirectoryStorage:
    """The environment's file storage as a directory (what a bundle's bytes are is tested elsewhere)."""

    def __init__(self, path: Path, record: Any) -> None:
        self.path = path
        self._record = record

    async def put(self, name: str, data: bytes) -> None:
        self._record(f"put {name}")
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    async def get_url(self, name: str) -> str:
        return (self.path / name).as_uri()


class StateFakeProvider:
    def __init__(self, name: str, raw: Mapping[str, Any]) -> None:
        self.environment_name = name
        self.provider_type = "statefake"
        self.config = FakeConfig(Secret(str(raw["admin-secret"])), str(raw.get("default-series", "bookworm")))
        self._calls = Path(raw["calls"])
        self._bootstrapped = bool(raw.get("bootstrapped", True))
        self._storage = DirectoryStorage(Path(raw["storage"]), self._record)
        self.progress: Any = lambda phase, detail="": None

    def _record(self, call: str) -> None:
        with self._calls.open("a", encoding="utf-8") as out:
            out.write(call + "\n")

    async def get_constraint_set(self) -> tuple[str, ...]:
        self._record("get_constraint_set")
        return CONSTRAINTS

    async def load_state(self) -> dict[str, Any]:
        self._record("load_state")
        return {"zookeeper-instances": ["fake-uid-0"]} if self._bootstrapped else {}

    async def get_machines(self, instance_ids: list[str] | None = None) -> list[FakeMachine]:
        self._record(f"get_machines {instance_ids}")
        return [FakeMachine("fake-uid-0", "fake0", "127.0.0.1")]

    def get_serialization_data(self) -> dict[str, Any]:
        return {"type": self.provider_type}

    def get_file_storage(self) -> DirectoryStorage:
        return self._storage

    async def close(self) -> None:
        self._record("close")


def create(name: str, raw: Mapping[str, Any], reactor: Any, source: Path | None = None) -> StateFakeProvider:
    if "zookeeper-port" in raw:
        from ensemble_orchestra.cli import connection

        connection.ZOOKEEPER_PORT = int(raw["zookeeper-port"])  # type: ignore[misc]  # see the module docstring
    return StateFakeProvider(name, raw)


class StateCli:
    """Runs ``ensemble`` with a private ENSEMBLE_HOME, the ``statefake`` provider type installed, and a charm
    repository and storage of its own under *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.calls = root / "calls.log"
        self.storage = root / "storage"
        self.repository = root / "charms"
        for directory in (self.home, self.storage, self.repository):
            directory.mkdir(parents=True, exist_ok=True)
        dist_info = root / "plugins" / "ensemble_statefake_provider-1.0.dist-info"
        dist_info.mkdir(parents=True, exist_ok=True)
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ensemble-statefake-provider\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text("[ensemble.providers]\nstatefake = _cli_state_provider:create\n")
        excluded = ("ENSEMBLE_ENV", "ENSEMBLE_REPOSITORY", "JUJU_REPOSITORY")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in excluded},
            "ENSEMBLE_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join([str(dist_info.parent), str(HERE)]),
            "PYTHONUNBUFFERED": "1",
        }

    def environment(self, admin_secret: str, **keys: object) -> None:
        env = {
            "type": "statefake",
            "calls": str(self.calls),
            "storage": str(self.storage),
            "admin-secret": admin_secret,
            "default-series": "bookworm",
            **keys,
        }
        path = self.home / "environments.yaml"
        path.write_text(yaml.safe_dump({"environments": {"fake": env}}))
        path.chmod(0o600)

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        process = self.popen(*args, env=env)
        try:
            out, err = process.communicate(timeout=COMMAND_BOUND)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return subprocess.CompletedProcess(list(args), process.returncode, out, err)

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """``ensemble ARGS...`` started; *env* adds variables to the command's environment."""
        return subprocess.Popen(
            [sys.executable, "-m", MODULE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**self.env, **(env or {})},
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def forget_calls(self) -> None:
        self.calls.unlink(missing_ok=True)

    def stored(self) -> list[str]:
        """What is in the environment's storage (charm bundles), as names."""
        return sorted(str(p.relative_to(self.storage)) for p in self.storage.rglob("*") if p.is_file())


def error_line(run: subprocess.CompletedProcess[str]) -> str:
    """The one ``ensemble: error:`` line of a failed command (progress lines may come before it), no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ensemble: error")]
    assert len(errors) == 1, run.stderr
    assert run.stderr.rstrip("\n").splitlines()[-1] == errors[0], run.stderr
    return errors[0]
