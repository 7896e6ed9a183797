"""The contracts between Ensemble and a machine provider, declared with zope.interface.

One convention: every method that may wait on a server returns a ``Deferred`` of the
type its annotation names (as in Ensemble's providers), so a caller can ``await`` it,
add callbacks, or ``cancel()`` it; the few that never wait (``get_file_storage``,
``get_serialization_data``) return their value. Implementations write ``async def``
bodies and expose them through ``ensemble_orchestra.deferreds.deferred``.
Implementations carry ``@implementer`` and their tests call ``verifyObject``, so a
fake and the real thing are held to the same contract: the public in-memory
``IFileStorage`` is ``ensemble_orchestra.storage.testing.MemoryStorage``.

The provider-side interfaces (``IMachineProvider``, ``IProviderMachine``) belong
here too, next to ``IFileStorage``, which the provider hands out through
``get_file_storage()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = ["IFileStorage", "IMachineProvider", "IProviderMachine"]


class IFileStorage(Interface):
    """One environment's files on the provider's storage, plus an atomic test-and-set.

    File names are relative, ``/``-separated paths (``provider-state``,
    ``charms/mysql-1.zip``); each storage is scoped to one environment, so two
    environments sharing a server never see or overwrite each other's files.
    Errors are ``ensemble_orchestra.storage.errors.StorageError`` subclasses:
    ``FileNotFound``, ``StorageAuthError`` (fatal), ``StorageUnavailable``
    (retryable).
    """

    def get(name: str) -> Deferred[bytes]:
        """Fire with the file's content as bytes; ``FileNotFound`` if there is none."""

    def put(name: str, data: bytes) -> Deferred[None]:
        """Create or replace the file with *data*; fire with None once stored.

        Parent directories are created as needed. Not atomic against a concurrent
        ``put`` of the same name: the last writer wins. Never use it as a lock.
        """

    def delete(name: str) -> Deferred[None]:
        """Remove the file; fire with None. Idempotent: a missing file is not an error.

        Idempotent so cleanup paths (destroy-environment, rollback) can be retried.
        """

    def list(prefix: str = "") -> Deferred[list[str]]:
        """Fire with the sorted names of every file whose name starts with *prefix*.

        Names are relative to the environment, like the ones ``put`` takes;
        directories themselves are not listed. A prefix with nothing under it
        gives an empty list, not an error.
        """

    def get_url(name: str) -> Deferred[str]:
        """Fire with the file's URL, without credentials (fetching it may need them)."""

    def create_exclusive(name: str) -> Deferred[bool]:
        """Atomically create the marker *name*; fire with True for the single winner.

        This is the test-and-set the provider's claims are built on: among any
        number of concurrent callers, in any process or environment, exactly one
        gets True; the others, and every later caller, get False until
        ``remove_exclusive(name)``. Markers live in a namespace shared by every
        environment on the storage (unlike files), because a claim must exclude
        other environments too; they are not files: ``get`` and ``list`` don't
        see them.

        On WebDAV this is MKCOL of a new collection, the one operation Apache
        mod_dav performs atomically (LOCK and conditional PUT are not): 201 is a
        win; 405 (exists), or 403 from mod_dav's mkdir race, is a loss.
        """

    def exclusive_age(name: str) -> Deferred[float | None]:
        """Fire with the marker's age in seconds, or None if there is no marker *name*.

        Measured on the storage server's clock alone (its ``Date`` against the
        marker's last-modified time), so clock skew between claimers cannot make
        a fresh marker look abandoned. Whole seconds; for reaping markers whose
        creator died, with a lease far longer than that.
        """

    def remove_exclusive(name: str) -> Deferred[None]:
        """Remove the marker *name* so it can be created again; fire with None.

        Idempotent: removing a missing marker is not an error, so a rollback or a
        reaper can run it more than once.
        """

    def check_writable() -> Deferred[None]:
        """Fire with None if this environment's files can be written and removed; else a StorageError.

        Called before a bootstrap touches Cobbler, so a storage that is down or read-only stops it
        while nothing is claimed yet.
        """

    def close() -> Deferred[None]:
        """Close pooled connections (before the reactor stops); the storage is not used afterwards."""


class IProviderMachine(Interface):
    """One machine a provider launched (an EC2 instance, a claimed Cobbler system)."""

    instance_id = Attribute("the provider's id of the machine (Cobbler: the system's uid)")
    dns_name = Attribute("the name other machines and the admin reach it by")
    private_dns_name = Attribute("the name inside the provider's network")
    state = Attribute("'pending' while installing, 'provisioned' once installed (Orchestra); provider-specific")


class IMachineProvider(Interface):
    """Ensemble's machine provider contract; every method that may wait returns a Deferred (see the module).

    bootstrap and start_machine claim capacity and must release it again on any
    failure; shutdown and destroy are idempotent and report every failure at the
    end instead of stopping at the first.
    """

    environment_name = Attribute("the environments.yaml name this provider serves")
    provider_type = Attribute("the `type:` of the environment, e.g. 'orchestra'")
    progress = Attribute("a callable(phase: str, detail: str) told each phase of long work (the CLI shows it)")

    def bootstrap(constraints: Mapping[str, str] | None = None) -> Deferred[list[IProviderMachine]]:
        """Launch the bootstrap (ZooKeeper) machine; fire with a list of one IProviderMachine.

        Refuses (EnvironmentAlreadyBootstrapped) when provider state exists.
        """

    def start_machine(machine_data: Mapping[str, Any], master: bool = False) -> Deferred[list[IProviderMachine]]:
        """Launch one machine for *machine_data* (machine-id, constraints, zookeeper hosts); fire with [machine]."""

    def get_machines(instance_ids: Iterable[str] = ()) -> Deferred[list[IProviderMachine]]:
        """Fire with this environment's machines (all, or those ids; MachinesNotFound for unknown ids)."""

    def get_machine(instance_id: str) -> Deferred[IProviderMachine]:
        """Fire with one of this environment's machines."""

    def shutdown_machines(machines: Iterable[IProviderMachine]) -> Deferred[list[IProviderMachine]]:
        """Release *machines*; fire with the list released."""

    def shutdown_machine(machine: IProviderMachine) -> Deferred[IProviderMachine]:
        """Release one machine."""

    def destroy_environment() -> Deferred[list[IProviderMachine]]:
        """Release every machine of this environment (only this one) and clear its state."""

    def get_file_storage() -> IFileStorage:
        """The environment's IFileStorage."""

    def save_state(state: Mapping[str, Any]) -> Deferred[None]:
        """Store provider state (e.g. the zookeeper instance ids)."""

    def load_state() -> Deferred[dict[str, Any] | bool]:
        """Fire with the saved provider state, or False when there is none."""

    def open_port(machine: IProviderMachine, machine_id: str, port: int, protocol: str = "tcp") -> Deferred[None]:
        """Record that *port* is open on *machine*."""

    def close_port(machine: IProviderMachine, machine_id: str, port: int, protocol: str = "tcp") -> Deferred[None]:
        """Record that *port* is closed on *machine*."""

    def get_opened_ports(machine: IProviderMachine, machine_id: str) -> Deferred[set[tuple[int, str]]]:
        """Fire with the set of (port, protocol) recorded open on *machine*."""

    def get_serialization_data() -> dict[str, Any]:
        """The environment config to hand to machines (secrets the agents need, nothing else)."""

    def get_constraint_set() -> Deferred[tuple[str, ...]]:
        """Fire with the constraint names this provider understands (``--constraints`` is checked against them).

        A name in the vocabulary that the provider cannot check for some machine (e.g. ``mem`` before the
        hardware is known) is never ignored: the launch fails with an error naming the constraint.
        """

    def close() -> Deferred[None]:
        """Close the provider's connections (before the reactor stops)."""
