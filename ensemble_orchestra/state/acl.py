"""Who may do what in the environment's ZooKeeper: the identities, and each node's ACL.

Ensemble 2011 left the tree world-open "till we have roles"; here every node names its readers and writers
and an anonymous client gets nothing. ZooKeeper's digest scheme names an identity by
``user:base64(sha1("user:secret"))``: ACLs and user data carry that, never a secret.

The roles:
- ``admin`` — the workstation CLI, with the environment's admin-secret: everything, everywhere.
- ``provisioning`` — the provisioning agent on machine 0 (its secret is made there by ``initialize`` and never
  leaves it): reads ``/environment`` (the provider's credentials, readable by nobody else), manages
  ``/machines``, holds its lock under ``/agents``.
- ``machine-agents`` — every machine agent: reads the shared nodes (topology, settings, services...). Its
  secret reaches each machine in that machine's user data.
- ``machine-N`` — machine N's own agent: may create and delete its presence under ``/machines/machine-N``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kazoo.security import ACL, Id, Permissions

from ..secret import Secret, reveal

__all__ = [
    "ADMIN_USER",
    "MACHINE_AGENTS_USER",
    "PROVISIONING_USER",
    "Credential",
    "Identities",
    "digest_identity",
    "machine_user",
    "new_credential",
]

ADMIN_USER = "admin"
PROVISIONING_USER = "provisioning"
MACHINE_AGENTS_USER = "machine-agents"


def machine_user(machine_id: int | str) -> str:
    return f"machine-{machine_id}"


def digest_identity(user: str, secret: str | Secret) -> str:
    """ZooKeeper's digest identity ``user:base64(sha1("user:secret"))``: what an ACL names, never the secret."""
    digest = hashlib.sha1(f"{user}:{reveal(secret)}".encode()).digest()
    return f"{user}:{base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class Credential:
    """A user and its secret: what a ZooKeeper session authenticates with (``addauth digest user:secret``)."""

    user: str
    secret: Secret

    @property
    def identity(self) -> str:
        return digest_identity(self.user, self.secret)

    def auth_data(self) -> tuple[str, str]:
        return ("digest", f"{self.user}:{self.secret.reveal()}")

    def to_dict(self) -> dict[str, str]:
        """For an agent's 0600 config file (the only place a secret is written down)."""
        return {"user": self.user, "secret": self.secret.reveal()}

    @classmethod
    def from_dict(cls, entry: Mapping[str, object]) -> Credential:
        return cls(str(entry["user"]), Secret(str(entry["secret"])))


def new_credential(user: str) -> Credential:
    """A fresh credential with a 256-bit random secret (so its digest identity cannot be guessed back)."""
    return Credential(user, Secret(secrets.token_urlsafe(32)))


def _digest(identity: str, perms: int) -> ACL:
    return ACL(perms, Id("digest", identity))


READ = Permissions.READ
ALL = Permissions.ALL
MEMBERSHIP = Permissions.READ | Permissions.CREATE | Permissions.DELETE


@dataclass(frozen=True)
class Identities:
    """The digest identities of the environment's roles (stored in ``/settings``; no secret among them)."""

    admin: str
    provisioning: str
    machine_agents: str

    def to_dict(self) -> dict[str, str]:
        return {ADMIN_USER: self.admin, PROVISIONING_USER: self.provisioning, MACHINE_AGENTS_USER: self.machine_agents}

    @classmethod
    def from_dict(cls, entry: Mapping[str, object]) -> Identities:
        return cls(str(entry[ADMIN_USER]), str(entry[PROVISIONING_USER]), str(entry[MACHINE_AGENTS_USER]))

    # -- the ACL of each kind of node --------------------------------------------------------------------

    def admin_only(self) -> list[ACL]:
        return [_digest(self.admin, ALL)]

    def shared(self) -> list[ACL]:
        """Nodes every agent reads and only the admin writes: topology, settings, services, charms..."""
        return [
            _digest(self.admin, ALL),
            _digest(self.provisioning, READ),
            _digest(self.machine_agents, READ),
        ]

    def secret_config(self) -> list[ACL]:
        """``/environment``: the provider's credentials, for the admin and the provisioning agent only."""
        return [_digest(self.admin, ALL), _digest(self.provisioning, READ)]

    def provisioning_owned(self) -> list[ACL]:
        """Nodes the provisioning agent manages (``/machines``, ``/agents``); machine agents may read them."""
        return [
            _digest(self.admin, ALL),
            _digest(self.provisioning, ALL),
            _digest(self.machine_agents, READ),
        ]

    def root(self) -> list[ACL]:
        """``/`` itself: the admin, and the provisioning agent creating the tree at ``initialize``."""
        return [_digest(self.admin, ALL), _digest(self.provisioning, READ | Permissions.CREATE)]

    def machine(self, machine_identities: Sequence[str] = ()) -> list[ACL]:
        """``/machines/machine-N``: as ``provisioning_owned``, and machine N's own agent registers under it."""
        return self.provisioning_owned() + [_digest(identity, MEMBERSHIP) for identity in machine_identities]

    def presence(self, owner: str) -> list[ACL]:
        """An agent's ephemeral presence node: its owner writes it, everyone of the environment reads it."""
        entries = [_digest(self.admin, ALL), _digest(owner, ALL)]
        entries += [_digest(i, READ) for i in (self.provisioning, self.machine_agents) if i not in (owner, self.admin)]
        return entries
