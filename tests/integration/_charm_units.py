"""Run a charm's hooks for real inside a lab's container system, as the unit agent would, without the agent.

The hooks run in the system (``nsenter`` into its namespaces) as root, in the unpacked charm, with the
agent's environment (both name sets) and stand-ins for the hook tools on PATH (``_stub_hook_tools.py``:
files instead of the agent's socket). What the agent does between hooks is done here: a hook's relation
writes and port changes are kept only if it exits 0, and a unit's committed relation settings are copied to
the other units of the relation. The order of hooks is the test's to choose (Ensemble's order is documented
in docs/charms.md); ``Relation`` offers its usual steps.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble_orchestra.charm import CharmDirectory

STUB_TOOLS = Path(__file__).resolve().parent / "_stub_hook_tools.py"
TOOL_NAMES = (
    "config-get",
    "unit-get",
    "juju-log",
    "ensemble-log",
    "open-port",
    "close-port",
    "relation-get",
    "relation-set",
    "relation-list",
    "relation-ids",
)
STUB_DIR = "/var/lib/stub-agent"
UNITS_DIR = "/var/lib/ensemble/units"
HOOK_TIMEOUT = 900.0  # an install hook's apt-get, through the lab's proxy


class System:
    """A running container system, reached by entering the namespaces of its PID 1."""

    def __init__(self, name: str, pid1: int, address: str) -> None:
        self.name, self.pid1, self.address = name, pid1, address

    def run(
        self, argv: list[str], *, stdin: bytes = b"", timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        command = ["nsenter", "-t", str(self.pid1), "-a", "--", *argv]
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{self.name}: {shlex.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
        return done

    def sh(self, script: str, *, stdin: bytes = b"", timeout: float = 120.0) -> str:
        return self.run(["sh", "-c", script], stdin=stdin, timeout=timeout).stdout.decode()

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout.decode()

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        quoted = shlex.quote(path)
        self.sh(
            f"umask 077; cat > {quoted}.tmp && chmod {mode:o} {quoted}.tmp && mv {quoted}.tmp {quoted}",
            stdin=text.encode(),
        )

    def put_tree(self, source: Path, target: str) -> None:
        """*source*'s files into *target* (replaced), modes kept: a tar stream unpacked inside the system."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(source, arcname=".")
        quoted = shlex.quote(target)
        self.sh(
            f"rm -rf {quoted} && mkdir -p {quoted} && tar -C {quoted} -xf - --no-same-owner", stdin=buffer.getvalue()
        )


@dataclass
class HookRun:
    hook: str
    returncode: int
    output: str  # stdout and stderr (juju-log's lines are on stderr too)
    seconds: float


class CharmUnit:
    """A unit of *charm* on *system*: the charm unpacked as the machine agent would, the stand-in tools."""

    def __init__(self, system: System, unit_name: str, charm: Path, config: dict[str, Any] | None = None) -> None:
        self.system, self.name = system, unit_name
        self.charm = CharmDirectory.load(charm)
        service, number = unit_name.split("/")
        self.unit_dir = f"{UNITS_DIR}/{service}-{number}"
        self.charm_dir = f"{self.unit_dir}/charm"
        # The unit's directory is root-only, as the machine agent makes it (www-data cannot read the charm).
        system.sh(f"mkdir -p {UNITS_DIR} && mkdir -p -m 700 {self.unit_dir}")
        system.sh(f"rm -rf {STUB_DIR} && mkdir -p -m 700 {STUB_DIR}/bin {STUB_DIR}/relations")
        system.put_tree(charm, self.charm_dir)
        system.write(f"{STUB_DIR}/bin/hook-tool", STUB_TOOLS.read_text(), mode=0o755)
        links = " && ".join(f"ln -sf hook-tool {STUB_DIR}/bin/{name}" for name in TOOL_NAMES)
        system.sh(links)
        address = system.address
        self._save("unit.json", {"name": unit_name, "private-address": address, "public-address": address})
        self._overrides: dict[str, Any] = {}
        self.configure(config or {})
        self.hooks_run: list[HookRun] = []

    def configure(self, changes: dict[str, Any]) -> None:
        """The service's settings: the charm's defaults with *changes* (what `ensemble set` leaves)."""
        self._overrides = {**self._overrides, **changes}
        self._save("config.json", {**self.charm.config.defaults(), **self._overrides})

    def _save(self, name: str, value: Any) -> None:
        self.system.write(f"{STUB_DIR}/{name}", json.dumps(value, indent=1, sort_keys=True), mode=0o600)

    def _load(self, name: str, default: Any) -> Any:
        found = self.system.run(["cat", f"{STUB_DIR}/{name}"], check=False)
        return json.loads(found.stdout) if found.returncode == 0 else default

    def hook(self, name: str, relation: Relation | None = None, remote: str | None = None) -> HookRun | None:
        """Run hooks/*name* as the agent would; None if the charm has no such hook (nothing to run)."""
        if name not in self.charm.hook_names():
            return None
        env = {
            "PATH": f"{STUB_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "STUB_AGENT_DIR": STUB_DIR,
            "CHARM_DIR": self.charm_dir,
            "JUJU_CHARM_DIR": self.charm_dir,
            "ENSEMBLE_UNIT_NAME": self.name,
            "JUJU_UNIT_NAME": self.name,
            "JUJU_HOOK_NAME": name,
            "DEBIAN_FRONTEND": "noninteractive",
            "LANG": "C.UTF-8",
            "HOME": "/root",
        }
        if relation is not None:
            env |= {"ENSEMBLE_RELATION": relation.name, "JUJU_RELATION": relation.name}
            env |= {"ENSEMBLE_RELATION_ID": relation.rid, "JUJU_RELATION_ID": relation.rid}
            if remote is not None:
                env |= {"ENSEMBLE_REMOTE_UNIT": remote, "JUJU_REMOTE_UNIT": remote}
        argv = [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            "sh",
            "-c",
            f'cd "$CHARM_DIR" && exec hooks/{name} </dev/null 2>&1',
        ]
        self.system.run(["rm", "-f", f"{STUB_DIR}/pending.json"])
        started = time.monotonic()
        done = self.system.run(argv, timeout=HOOK_TIMEOUT, check=False)
        output = (done.stdout + done.stderr).decode(errors="replace")
        run = HookRun(name, done.returncode, output, time.monotonic() - started)
        self.hooks_run.append(run)
        if run.returncode == 0:
            self._commit()
        return run

    def _commit(self) -> None:
        """A successful hook's writes: relation settings into its own view (then carried by Relation), ports."""
        pending = self._load("pending.json", {})
        for rid, values in pending.get("relations", {}).items():
            view = self._load(f"relations/{rid}.json", None)
            own = view["settings"].setdefault(self.name, {})
            for key, value in values.items():
                if value == "":
                    own.pop(key, None)
                else:
                    own[key] = value
            self._save(f"relations/{rid}.json", view)
        ports = self._load("ports.json", [])
        for tool, port in pending.get("ports", []):
            if tool == "open-port" and port not in ports:
                ports.append(port)
            elif tool == "close-port" and port in ports:
                ports.remove(port)
        self._save("ports.json", sorted(ports))

    def ports(self) -> list[str]:
        return list(self._load("ports.json", []))

    def settings(self, rid: str) -> dict[str, str]:
        """This unit's committed settings in relation *rid*."""
        return dict(self._load(f"relations/{rid}.json", {"settings": {}})["settings"].get(self.name, {}))

    def calls(self) -> str:
        """Every hook tool call's arguments so far (to check no secret was ever an argument)."""
        return self.system.run(["cat", f"{STUB_DIR}/calls.log"], check=False).stdout.decode()


class Relation:
    """Relation *rid* (e.g. ``db:0``) named *name* on every unit; settings start with private-address."""

    def __init__(self, rid: str, name: str) -> None:
        self.rid, self.name = rid, name
        self.units: list[CharmUnit] = []

    def add(self, unit: CharmUnit) -> None:
        """*unit* enters: its view holds the others' settings and its own private-address, theirs its own."""
        settings = {other.name: other.settings(self.rid) for other in self.units}
        settings[unit.name] = {"private-address": unit.system.address}
        unit._save(f"relations/{self.rid}.json", {"name": self.name, "settings": settings})
        self.units.append(unit)
        self.publish(unit)

    def remove(self, unit: CharmUnit) -> None:
        """*unit* leaves: it no longer appears in the others' views (its own view is dropped)."""
        self.units.remove(unit)
        for other in self.units:
            view = other._load(f"relations/{self.rid}.json", None)
            view["settings"].pop(unit.name, None)
            other._save(f"relations/{self.rid}.json", view)
        unit.system.run(["rm", "-f", f"{STUB_DIR}/relations/{self.rid}.json"])

    def publish(self, unit: CharmUnit) -> None:
        """*unit*'s committed settings into every other unit's view (what the agent's watch delivers)."""
        settings = unit.settings(self.rid)
        for other in self.units:
            if other is not unit:
                view = other._load(f"relations/{self.rid}.json", None)
                view["settings"][unit.name] = settings
                other._save(f"relations/{self.rid}.json", view)

    def run(self, unit: CharmUnit, event: str, remote: CharmUnit | None = None) -> HookRun | None:
        """``<name>-relation-<event>`` on *unit* (remote unit *remote*); its settings published if it succeeds."""
        run = unit.hook(f"{self.name}-relation-{event}", self, remote.name if remote else None)
        if run is not None and run.returncode == 0:
            self.publish(unit)
        return run
