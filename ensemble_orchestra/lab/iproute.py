"""Running ``ip`` and the host-wide bits every lab shares: the network lock and ``/run/netns``.

Plumbing for ``network.py`` (the lab's bridge) and ``netns.py`` (namespaces on it). Every command is a
``subprocess.run`` bounded by a timeout, like the lab's other programs; a failure is one NetworkError line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import LabError
from .flock import flock_within

__all__ = [
    "IpCommand",
    "NetworkError",
    "already_gone",
    "network_lock",
    "note_netns_dir_before_add",
    "remove_netns_dir_if_ours",
]

IP_TIMEOUT = 10.0
LOCK_TIMEOUT = 10.0
LOCK_PATH = Path("/run/lock/ensemble-lab-network.lock")


class NetworkError(LabError):
    """The lab network could not be set up or removed; one line naming the command or setting."""


# -- running ip ----------------------------------------------------------------------------------


class IpCommand:
    """Runs ``ip`` (or another *executable*), each call bounded by *timeout*; a failure is a NetworkError line."""

    def __init__(self, executable: str = "ip", timeout: float = IP_TIMEOUT, package: str = "iproute2") -> None:
        self.executable = executable
        self.timeout = timeout
        self.package = package

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        shown = " ".join([Path(self.executable).name, *args])
        try:
            done = subprocess.run(
                [self.executable, *args], capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise NetworkError(f"{self.executable} is not installed: apt-get install {self.package}") from None
        except subprocess.TimeoutExpired:
            raise NetworkError(f"'{shown}' did not finish within {self.timeout:g} s") from None
        if check and done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[0]
            raise NetworkError(f"'{shown}' failed: {reason}")
        return done

    def json(self, *args: str) -> list[dict[str, Any]]:
        output = self("-j", *args).stdout.strip()
        return json.loads(output) if output else []


def already_gone(done: subprocess.CompletedProcess[str]) -> bool:
    """True if a failed ``ip`` call failed only because its device or namespace is already gone."""
    text = done.stderr.lower()
    return any(m in text for m in ("cannot find device", "does not exist", "no such file", "not found"))


@contextmanager
def network_lock(path: Path = LOCK_PATH, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Serialise checking and claiming subnets between labs (and test workers) on this host."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise NetworkError(f"cannot open the lab network lock {path} ({exc.strerror}): run the lab as root") from None
    try:
        if not flock_within(fd, timeout):
            raise NetworkError(f"another lab held {path} for {timeout:g} s: try again")
        yield
    finally:
        os.close(fd)


# -- the /run/netns mount ------------------------------------------------------------------------

NETNS_DIR = Path("/run/netns")
NETNS_MARKER = Path("/run/lock/ensemble-lab-netns-dir")  # exists while /run/netns is a mount a lab made


def is_mount_point(path: Path) -> bool:
    """From /proc/self/mountinfo: ``ip netns add`` bind-mounts /run/netns onto itself, which os.path.ismount misses."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in lines if len(line.split()) > 4)


def note_netns_dir_before_add() -> None:
    """Before a lab's first ``ip netns add``: if /run/netns is no mount yet, ip will make one that we must undo."""
    if not NETNS_MARKER.exists() and not is_mount_point(NETNS_DIR):
        NETNS_MARKER.write_text("dir\n" if not NETNS_DIR.exists() else "mount\n")


def remove_netns_dir_if_ours(timeout: float = IP_TIMEOUT) -> None:
    """Undo /run/netns's mount (and directory) if a lab's namespace made them and no namespace is left in it."""
    try:
        made = NETNS_MARKER.read_text().strip()
    except FileNotFoundError:
        return
    if NETNS_DIR.is_dir() and any(NETNS_DIR.iterdir()):
        return  # namespaces of other labs (or of anyone) still live there
    if is_mount_point(NETNS_DIR):
        done = IpCommand("umount", timeout, "mount")(str(NETNS_DIR), check=False)
        if done.returncode != 0:
            return  # busy: someone else is using it now; the next cleanup tries again
    if made == "dir":
        try:
            NETNS_DIR.rmdir()
        except OSError:
            pass  # gone already, or someone put something in it
    NETNS_MARKER.unlink(missing_ok=True)
