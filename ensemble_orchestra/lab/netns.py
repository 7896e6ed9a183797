"""Bare network namespaces on a lab's bridge: a veth into the bridge, one address, no default route.

The lab's container systems get their namespace and veth from ``systemd-nspawn --network-bridge=``; these
are for what needs a plain namespace on the lab's subnet — the network's own tests prove reachability
with them. A namespace is named ``<bridge>-<name>`` and its veth carries the lab's alias, so the lab's
``down`` and ``cleanup_leftovers`` (``network.py``) find and remove them even after a crash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from .iproute import (
    IpCommand,
    NetworkError,
    already_gone,
    network_lock,
    note_netns_dir_before_add,
    remove_netns_dir_if_ours,
)
from .network import LabNetwork

__all__ = ["LabNamespace", "add_namespace", "remove_namespace", "veth_name"]

INSIDE_NAME = "eth0"  # the namespace's end of the veth
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class LabNamespace:
    """A namespace on the lab's bridge: its name, the host end of its veth and its address."""

    name: str
    veth: str
    address: IPv4Interface

    def argv(self, command: Sequence[str]) -> list[str]:
        """The argv that runs *command* inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]


def veth_name(namespace: str) -> str:
    """The host end of a namespace's veth: ``eov`` + 10 hex digits (interface names hold 15 characters)."""
    return "eov" + hashlib.sha256(namespace.encode()).hexdigest()[:10]


def add_namespace(
    network: LabNetwork, name: str, address: IPv4Address | str, *, ip: IpCommand | None = None
) -> LabNamespace:
    """Create namespace ``<bridge>-<name>`` with a veth into the (up) bridge and *address* on the lab's subnet.

    A namespace of that name left behind is replaced. On any failure what was made is removed again.
    """
    ip = ip or IpCommand()
    if not _NAME.fullmatch(name):
        raise NetworkError(f"namespace name {name!r}: use up to 32 lowercase letters, digits and '-'")
    try:
        wanted = IPv4Address(str(address))
    except ValueError:
        raise NetworkError(f"{address!r} is not an IPv4 address of the lab subnet {network.subnet}") from None
    if wanted not in network.subnet or wanted in (
        network.subnet.network_address,
        network.subnet.broadcast_address,
        network.bridge_address,
    ):
        raise NetworkError(f"{wanted} is not a system address of the lab subnet {network.subnet}")
    namespace = LabNamespace(
        network.namespace_prefix + name,
        veth_name(network.namespace_prefix + name),
        IPv4Interface(f"{wanted}/{network.subnet.prefixlen}"),
    )
    with network_lock():
        _remove(namespace, ip)
        note_netns_dir_before_add()
        try:
            ip("netns", "add", namespace.name)
            ip("link", "add", namespace.veth, "type", "veth", "peer", "name", INSIDE_NAME, "netns", namespace.name)
            ip("link", "set", "dev", namespace.veth, "alias", network.alias, "master", network.bridge, "up")
            ip("-n", namespace.name, "addr", "add", str(namespace.address), "dev", INSIDE_NAME)
            ip("-n", namespace.name, "link", "set", "dev", "lo", "up")
            ip("-n", namespace.name, "link", "set", "dev", INSIDE_NAME, "up")
        except BaseException:
            _remove(namespace, ip)
            remove_netns_dir_if_ours(ip.timeout)
            raise
    return namespace


def remove_namespace(namespace: LabNamespace, *, ip: IpCommand | None = None) -> bool:
    """Remove the namespace and its veth; False if neither existed. Idempotent."""
    ip = ip or IpCommand()
    with network_lock():
        removed = _remove(namespace, ip)
        remove_netns_dir_if_ours(ip.timeout)
    return removed


def _remove(namespace: LabNamespace, ip: IpCommand) -> bool:
    """The namespace, then the veth in case a process inside still holds the namespace (and so the pair)."""
    removed = False
    for args in (("netns", "del", namespace.name), ("link", "del", "dev", namespace.veth)):
        done = ip(*args, check=False)
        if done.returncode == 0:
            removed = True
        elif not already_gone(done):
            ip(*args)  # raises with the reason
    return removed
