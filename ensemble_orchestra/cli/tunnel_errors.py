"""The SSH tunnel's errors, and the ONE table that reads ssh's stderr into them.

Fatal vs retryable travels with each error (``retryable``): a refused key, a changed host key or a name that does
not resolve need someone to act; a machine 0 still booting (refused, timed out, no route, closed before
authentication) may answer on the next try, and a lost tunnel may be opened again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import EnsembleError

if TYPE_CHECKING:
    from .tunnel import TunnelSpec

__all__ = [
    "ERROR_TABLE",
    "LocalPortTaken",
    "TunnelAuthError",
    "TunnelError",
    "TunnelHostKeyError",
    "TunnelLost",
    "TunnelUnreachable",
    "classify",
]


class TunnelError(EnsembleError):
    """The tunnel could not be opened or kept; ``retryable`` is per cause, ``ssh_line`` is ssh's last word."""

    def __init__(self, message: str, *, retryable: bool | None = None, ssh_line: str = "") -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.ssh_line = ssh_line


class TunnelAuthError(TunnelError):
    """machine 0 refused our key: fatal until the environment's authorized-keys (or the key) changes."""


class TunnelHostKeyError(TunnelError):
    """machine 0's host key is not the one recorded: fatal until someone checks and removes the old line."""


class TunnelUnreachable(TunnelError):
    """No SSH conversation with machine 0 (refused, timed out, no route, closed early, name not resolved)."""

    retryable = True


class TunnelLost(TunnelError):
    """The tunnel was up and ssh exited: open it again."""

    retryable = True


class LocalPortTaken(TunnelError):
    """Another program bound our local port between our pick and ssh's bind: try another port at once."""

    retryable = True


# ssh's stderr -> (our class, retryable, message). The first row matching ANY line ssh wrote wins, so specific
# rows come first. Fields: {user} {host} {port} {key} {known_hosts} {entry} (known_hosts' name for the host),
# {local_port} and {line} (ssh's last line).
ERROR_TABLE: tuple[tuple[str, type[TunnelError], bool, str], ...] = (
    (
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        TunnelHostKeyError,
        False,
        "the host key of {entry} changed since it was recorded in {known_hosts}: if machine 0 was reinstalled,"
        " remove its line (ssh-keygen -f {known_hosts} -R '{entry}') and try again",
    ),
    (
        "Host key verification failed",
        TunnelHostKeyError,
        False,
        "ssh could not verify the host key of {entry} against {known_hosts} ({line}): if machine 0 was"
        " reinstalled, remove its line (ssh-keygen -f {known_hosts} -R '{entry}') and try again",
    ),
    (
        "UNPROTECTED PRIVATE KEY FILE",
        TunnelAuthError,
        False,
        "ssh will not use the key {key}: others can read it; chmod 600 {key}",
    ),
    (
        "Permission denied",
        TunnelAuthError,
        False,
        "ssh to {user}@{host} refused the key {key}: check the environment's authorized-keys",
    ),
    (
        "Could not resolve hostname",
        TunnelUnreachable,
        False,
        "cannot resolve machine 0's address {host} ({line}): check the address the provider reports",
    ),
    ("Address already in use", LocalPortTaken, True, "local port {local_port} was taken ({line})"),
    ("Connection refused", TunnelUnreachable, True, "SSH on {host}:{port} refused the connection ({line})"),
    ("timed out", TunnelUnreachable, True, "SSH on {host}:{port} did not answer ({line})"),
    ("No route to host", TunnelUnreachable, True, "no route to {host} ({line})"),
    ("Network is unreachable", TunnelUnreachable, True, "no route to {host} ({line})"),
    ("Connection closed by", TunnelUnreachable, True, "SSH on {host}:{port} closed the connection ({line})"),
    ("Connection reset by", TunnelUnreachable, True, "SSH on {host}:{port} closed the connection ({line})"),
    ("kex_exchange_identification", TunnelUnreachable, True, "SSH on {host}:{port} closed the connection ({line})"),
)


def classify(
    lines: Sequence[str], spec: TunnelSpec, *, local_port: int = 0, exit_code: int | None = None
) -> TunnelError:
    """Our error for an ssh that exited before the tunnel was up, having written *lines* on stderr."""
    last = lines[-1] if lines else "ssh said nothing"
    fields = {
        "user": spec.user,
        "host": spec.host,
        "port": spec.ssh_port,
        "key": spec.identity_file or "(ssh's default keys and agent)",
        "known_hosts": spec.known_hosts,
        "entry": spec.known_hosts_entry,
        "local_port": local_port,
        "line": last,
    }
    for pattern, error, retryable, message in ERROR_TABLE:
        if any(pattern.lower() in line.lower() for line in lines):
            return error(message.format(**fields), retryable=retryable, ssh_line=last)
    return TunnelError(f"ssh to {spec.target} failed (exit {exit_code}): {last}", retryable=False, ssh_line=last)
