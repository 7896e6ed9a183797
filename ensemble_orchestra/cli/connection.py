"""The CLI's way into the environment's state: machine 0 from the provider, an SSH tunnel to its ZooKeeper
(or a direct connection where ``state-connection: direct``), the admin's session, ``/initialized``, and the
environment's config stored in ``/environment`` for the provisioning agent.

Every wait is bounded by one deadline and shown as progress; each failure is one line naming machine 0 and
what to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..home import ensemble_home
from ..provider.errors import EnvironmentNotBootstrapped, MachinesNotFound, ProviderError
from ..schedule import Schedule
from ..state.client import StateClient
from ..state.environment import EnvironmentSettings, read_settings, store_environment, wait_initialized
from ..state.errors import StateConnectionError
from .tunnel import SSHTunnel, TunnelSpec, open_tunnel

__all__ = ["StateConnection", "connect_environment", "known_hosts_file"]

ZOOKEEPER_PORT = 2181
SESSION_RETRIES = (1.0, 2.0, 5.0)


def known_hosts_file(environment: str) -> Any:
    """The environment's own known_hosts (machine 0's host key changes with every bootstrap: cleared then)."""
    return ensemble_home() / "environments" / environment / "known_hosts"


@dataclass
class StateConnection:
    client: StateClient
    settings: EnvironmentSettings
    machine: Any  # machine 0, as the provider sees it
    tunnel: SSHTunnel | None = None

    async def close(self) -> None:
        try:
            await self.client.close()
        finally:
            if self.tunnel is not None:
                await self.tunnel.close()


async def zookeeper_instance(provider: Any) -> str:
    """Machine 0's instance id, from the provider state bootstrap saved; EnvironmentNotBootstrapped without it."""
    name = provider.environment_name
    state = await provider.load_state()
    instances = state.get("zookeeper-instances") if isinstance(state, dict) else None
    if not instances:
        raise EnvironmentNotBootstrapped(
            f"environment '{name}' is not bootstrapped: run 'ensemble bootstrap -e {name}'"
        )
    return str(instances[0])


async def machine_zero(provider: Any, machines: Sequence[Any] | None = None) -> Any:
    """Machine 0 as the provider sees it: found among *machines* (a ``get_machines()`` the caller made
    anyway), else asked for."""
    instance = await zookeeper_instance(provider)
    if machines is None:
        [machine] = await provider.get_machines([instance])
        return machine
    for machine in machines:
        if machine.instance_id == instance:
            return machine
    raise MachinesNotFound([instance])


async def connect_environment(
    provider: Any, reactor: Any, progress: Callable[[str, str], None], timeout: float, machine: Any = None
) -> StateConnection:
    """An admin session on the environment's ZooKeeper, once it is initialized; within *timeout* seconds.

    *machine*: machine 0, when the caller has it already (else it is asked of the provider).
    """
    config = provider.config
    deadline = reactor.seconds() + timeout

    def left() -> float:
        remaining = deadline - reactor.seconds()
        if remaining <= 0:
            raise StateConnectionError(f"could not reach the environment's ZooKeeper within {timeout:g} s")
        return remaining

    machine = machine or await machine_zero(provider)
    if machine.state != "provisioned":
        raise ProviderError(
            f"machine 0 ({machine.system_name}) is still installing: wait for it ('ensemble bootstrap --wait', or"
            " 'ensemble status'); on the lab, 'ensemble-orchestra lab status' shows its console"
        )
    address = machine.reach
    tunnel = None
    hosts = f"{address}:{ZOOKEEPER_PORT}"
    if config.state_connection == "ssh":
        progress("waiting for SSH", f"machine 0 {machine.system_name} ({address})")
        spec = TunnelSpec(
            host=address,
            remote_host=address,
            remote_port=ZOOKEEPER_PORT,
            user=config.ssh_user,
            identity_file=config.ssh_identity,
            known_hosts=known_hosts_file(provider.environment_name),
        )
        tunnel = await open_tunnel(reactor, spec, timeout=left(), progress=lambda text: progress(text, ""))
        hosts = f"127.0.0.1:{tunnel.local_port}"
    try:
        # ZooKeeper restarts once while initialize configures it: a dropped session is tried again, in bound.
        retries = Schedule(SESSION_RETRIES, timeout=left()).start(reactor)
        while True:
            try:
                connection = await _admin_session(provider, reactor, progress, machine, hosts, left)
                connection.tunnel = tunnel
                return connection
            except StateConnectionError:
                if not await retries.wait():
                    raise
    except BaseException as error:
        if tunnel is not None:
            await tunnel.close()
        if isinstance(error, StateConnectionError):
            raise StateConnectionError(
                f"machine 0 ({machine.system_name}, {address}): {error}; its cloud-init log says why"
                f" ('ensemble ssh -e {provider.environment_name} 0 sudo tail /var/log/cloud-init-output.log')"
            ) from None
        raise


async def _admin_session(
    provider: Any,
    reactor: Any,
    progress: Callable[[str, str], None],
    machine: Any,
    hosts: str,
    left: Callable[[], float],
) -> StateConnection:
    config = provider.config
    progress("waiting for ZooKeeper", f"on {machine.system_name}")
    client = await StateClient.connect(reactor, hosts, config.admin_secret, timeout=left())
    try:
        progress("waiting for initialize", f"on {machine.system_name}")
        await wait_initialized(client, left())
        settings = await read_settings(client)
        document = {"name": provider.environment_name, "config": provider.get_serialization_data()}
        await store_environment(client, settings.identities, document)
    except BaseException:
        await client.close()
        raise
    return StateConnection(client, settings, machine)
