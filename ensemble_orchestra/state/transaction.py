"""Operations of a ZooKeeper multi-transaction, as values: a change that spans nodes is built, then committed whole.

``StateClient.commit`` applies a list of them all or none; each names its node, so a failure says which one.
"""

from __future__ import annotations

from dataclasses import dataclass

from kazoo.client import TransactionRequest
from kazoo.security import ACL

__all__ = ["Check", "Create", "Delete", "Operation", "SetData"]


class Operation:
    path: str

    def add_to(self, transaction: TransactionRequest, default_acl: list[ACL]) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Create(Operation):
    path: str
    data: bytes = b""
    acl: tuple[ACL, ...] = ()

    def add_to(self, transaction: TransactionRequest, default_acl: list[ACL]) -> None:
        transaction.create(self.path, self.data, acl=list(self.acl) or default_acl)


@dataclass(frozen=True)
class SetData(Operation):
    path: str
    data: bytes
    version: int = -1

    def add_to(self, transaction: TransactionRequest, default_acl: list[ACL]) -> None:
        transaction.set_data(self.path, self.data, self.version)


@dataclass(frozen=True)
class Delete(Operation):
    path: str
    version: int = -1

    def add_to(self, transaction: TransactionRequest, default_acl: list[ACL]) -> None:
        transaction.delete(self.path, self.version)


@dataclass(frozen=True)
class Check(Operation):
    """Fails the transaction unless *path* is at *version* (guards a change computed from a read)."""

    path: str
    version: int

    def add_to(self, transaction: TransactionRequest, default_acl: list[ACL]) -> None:
        transaction.check(self.path, self.version)
