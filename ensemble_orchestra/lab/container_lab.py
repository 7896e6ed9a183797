"""What a lab of container systems adds: its bridge, the base image, and each system's container settings.

A container lab's systems boot a real Debian (``programs/container_system``) on the lab's own bridge, so the
lab plans a subnet that overlaps nothing on the host (kept in lab.json), puts the bridge up before any system
can boot and takes it down last, removing what a crashed lab left behind first.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from . import network, system_image
from .errors import LabError
from .layout import LAB_HOST, LabLayout, LabSpec, SystemSpec
from .package_proxy import PackageProxy

__all__ = ["base_image", "package_proxy", "plan", "start_network", "stop_network", "system_settings"]


def plan(layout: LabLayout, spec: LabSpec) -> LabSpec:
    """*spec* with its subnet: the saved one (checked again) or a free one chosen now."""
    if os.geteuid() != 0:
        raise LabError(
            "container systems need root (bridges, systemd-nspawn): run the lab as root, or --system-kind process"
        )
    planned = network.plan_network(layout.root, spec.subnet)
    return dataclasses.replace(spec, subnet=str(planned.subnet))


def start_network(layout: LabLayout, spec: LabSpec) -> network.LabNetwork:
    """The lab's bridge up, after removing whatever a crashed lab of this directory left behind."""
    planned = spec.network(layout.root)
    if planned is None:
        raise LabError("a container lab needs a subnet: 'lab up' chooses one")
    network.cleanup_leftovers(planned.bridge)
    network.up(planned)
    return planned


def stop_network(layout: LabLayout, spec: LabSpec) -> list[str]:
    """Remove the lab's bridge and everything left on it; what was removed (safe to call twice)."""
    planned = spec.network(layout.root)
    return network.down(planned) if planned is not None else []


def base_image() -> Path:
    """The cached Debian base image (scripts/install builds it; built now if it is missing)."""
    try:
        return system_image.ensure_image()
    except system_image.SystemImageError as error:
        raise LabError(f"the container systems' base image: {error}") from None


def package_proxy(layout: LabLayout, spec: LabSpec) -> PackageProxy:
    """The lab's apt-cacher-ng, on the bridge address (for the systems) and loopback (for the host's tests)."""
    planned = spec.network(layout.root)
    assert planned is not None
    return PackageProxy(
        directory=layout.root / "package-proxy",
        log_dir=layout.log_dir / "package-proxy",
        addresses=(str(planned.bridge_address), LAB_HOST),
        port=spec.package_proxy_port,
    )


def system_settings(
    layout: LabLayout, spec: LabSpec, system: SystemSpec, image: Path
) -> dict[str, Any]:
    """A container system's own settings in its system.json (read by the power hook and container_system)."""
    planned = spec.network(layout.root)
    assert planned is not None  # plan() ran before any system is written
    return {
        "image": str(image),
        "bridge": planned.bridge,
        "address": str(planned.system_interface(system.index)),
        "apt_proxy": f"{planned.bridge_address}:{spec.package_proxy_port}",
        "lab_id": planned.bridge,  # machine names must be unique on the host: two labs both have node001
    }
