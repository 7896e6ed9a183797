"""For tests: an environment's roles and its initialized tree on a real ZooKeeper (the tests start the server).

The tree is made the way ``ensemble-admin initialize`` makes it, by the provisioning role; sessions authenticate
with the credentials given, as the CLI and the agents do.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..secret import Secret
from .acl import ADMIN_USER, MACHINE_AGENTS_USER, PROVISIONING_USER, Credential, Identities, new_credential
from .client import StateClient
from .environment import EnvironmentSettings, initialize_tree
from .machines import MachineRecord

__all__ = ["Roles", "initialized_zookeeper", "session"]


@dataclass(frozen=True)
class Roles:
    """The credentials of an environment's three roles, and the identities ACLs name."""

    admin: Credential
    provisioning: Credential
    machine_agents: Credential

    @classmethod
    def make(cls) -> Roles:
        return cls(
            Credential(ADMIN_USER, Secret(secrets.token_urlsafe(16))),
            new_credential(PROVISIONING_USER),
            new_credential(MACHINE_AGENTS_USER),
        )

    @property
    def identities(self) -> Identities:
        return Identities(self.admin.identity, self.provisioning.identity, self.machine_agents.identity)


async def session(reactor: Any, hosts: str, *credentials: Credential) -> StateClient:
    return await StateClient.connect(reactor, hosts, credentials=credentials, timeout=10)


async def initialize(reactor: Any, hosts: str, roles: Roles, machine0: MachineRecord | None = None) -> None:
    """The environment's tree, as initialize makes it (machine 0 recorded as *machine0*)."""
    client = await session(reactor, hosts, roles.provisioning)
    try:
        settings = EnvironmentSettings("orchestra", "0-test", roles.identities, hosts, "http://tools/t", "00")
        await initialize_tree(client, settings, machine0 or MachineRecord(0, "uid-0", "node001", None))
    finally:
        await client.close()


@contextmanager
def initialized_zookeeper(directory: Path, roles: Roles) -> Iterator[Any]:
    """A ZooKeeper of its own (a test module's: initialize narrows the root's ACL) with the tree initialized;
    for a pytest fixture running under pytest-twisted (it blocks on the reactor's greenlet)."""
    import pytest_twisted
    from twisted.internet import defer, reactor

    from ..lab.zookeeper_server import ZooKeeperServer, free_port

    server = ZooKeeperServer(directory, free_port())
    server.start()
    try:
        pytest_twisted.blockon(defer.Deferred.fromCoroutine(initialize(reactor, server.hosts, roles)))
        yield server
    finally:
        server.stop()
