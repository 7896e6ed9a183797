"""Fixtures of the integration tests that share one bootstrapped environment of container systems."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from twisted.internet import reactor

from ensemble_orchestra.home import environments_file
from ensemble_orchestra.lab.envfile import lab_environment, merge_environment
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.provider.ownership import ENV_KEY
from ensemble_orchestra.state.client import StateClient

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _lab_cli import ENV as AGENTS_ENV  # noqa: E402
from _lab_cli import ensemble_cli  # noqa: E402


class Environment:
    """The bootstrapped environment: its lab, machine 0's address, and ways in."""

    def __init__(self, lab: RunningLab, raw: dict[str, Any]) -> None:
        self.lab = lab
        self.raw = raw
        self.address = ""
        self.bootstrap: subprocess.CompletedProcess[str] | None = None
        self.bootstrap_s = 0.0
        self.tunnel: subprocess.Popen[bytes] | None = None
        self.tunnel_port = 0

    def _ssh_options(self) -> list[str]:
        key = self.lab.layout.ssh_dir / "id_ed25519"
        options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
        return options + ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", str(key)]

    def ssh(self, command: str, address: str | None = None) -> subprocess.CompletedProcess[str]:
        target = f"debian@{address or self.address}"
        return subprocess.run(
            ["ssh", *self._ssh_options(), target, command], capture_output=True, text=True, timeout=60
        )

    def open_tunnel(self) -> None:
        """An SSH tunnel to machine 0's ZooKeeper, as the CLI's: its firewall refuses 2181 from this host."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.tunnel_port = probe.getsockname()[1]
        forward = f"127.0.0.1:{self.tunnel_port}:{self.address}:2181"  # where ZooKeeper listens, as the CLI
        self.tunnel = subprocess.Popen(
            [
                "ssh",
                *self._ssh_options(),
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                forward,
                f"debian@{self.address}",
            ]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.tunnel_port), timeout=1).close()
                return
            except OSError:
                assert self.tunnel.poll() is None, "the SSH tunnel to machine 0 ended"
                assert time.monotonic() < deadline, "the SSH tunnel to machine 0 did not open in 30 s"
                time.sleep(0.1)

    def close_tunnel(self) -> None:
        if self.tunnel is not None and self.tunnel.poll() is None:
            self.tunnel.terminate()  # our own ssh, by its Popen
            self.tunnel.wait(timeout=10)

    @property
    def zookeeper(self) -> str:
        """Machine 0's ZooKeeper through the tunnel (``direct_zookeeper`` is what the firewall refuses)."""
        return f"127.0.0.1:{self.tunnel_port}"

    @property
    def direct_zookeeper(self) -> str:
        return f"{self.address}:2181"

    async def admin(self) -> StateClient:
        return await StateClient.connect(reactor, self.zookeeper, self.raw["admin-secret"], timeout=20)

    def owned(self) -> dict[str, dict[str, Any]]:
        """Cobbler's systems this environment owns, by name."""
        found = {}
        for record in self.lab.cobbler().get_systems():
            meta = record.get("autoinstall_meta") or {}
            if isinstance(meta, dict) and meta.get(ENV_KEY) == AGENTS_ENV:
                found[record["name"]] = record
        return found

    def claims(self) -> list[str]:
        """Claim markers in the storage (a claim not matched by an owned system is a stranded one)."""
        claims = self.lab.layout.webdav_data / "exclusive" / "claims"
        return sorted(p.name for p in claims.iterdir() if not p.name.endswith(".reap")) if claims.exists() else []


@pytest.fixture(scope="session")
def agents_environment(lab_parent: Path, ensemble_home: Path) -> Iterator[Environment]:
    """One environment bootstrapped with --wait on a lab of container systems, for the tests of the xdist
    group "agents" (they run on one worker, in file order)."""
    if os.geteuid() != 0:
        pytest.skip("container systems need root (bridges, systemd-nspawn)")
    lab = start_lab(lab_parent / "agents-lab", systems=5, env_name=None, system_kind="container")
    raw = dict(lab_environment(lab.spec, lab.layout))
    raw["power-timeout"] = 30
    env = Environment(lab, raw)
    try:
        merge_environment(environments_file(), AGENTS_ENV, raw)
        started = time.monotonic()
        env.bootstrap = ensemble_cli("bootstrap", "-e", AGENTS_ENV, "--wait", "--wait-timeout", "300")
        env.bootstrap_s = time.monotonic() - started
        assert env.bootstrap.returncode == 0, env.bootstrap.stderr
        status = yaml.safe_load(ensemble_cli("status", "-e", AGENTS_ENV).stdout)
        env.address = status["machines"][0]["private-address"]
        env.open_tunnel()
        yield env
        env.close_tunnel()
        destroyed = ensemble_cli("destroy-environment", "-e", AGENTS_ENV, "-y")
        assert destroyed.returncode == 0, destroyed.stderr
    finally:
        env.close_tunnel()
        lab.lab.down()
