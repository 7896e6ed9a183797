"""Whether a lab port is free or answering, on the lab's loopback address."""

from __future__ import annotations

import errno
import socket

from .layout import LAB_HOST

__all__ = ["port_free", "tcp_listening"]


def port_free(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether *port* (TCP or UDP) can be bound on the lab's address right now.

    Checked before anything starts: two ``ipmi_sim`` can bind one UDP port without an error.
    """
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LAB_HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def tcp_listening(port: int) -> bool:
    """Whether something accepts TCP connections on *port* (a server's readiness check)."""
    try:
        with socket.create_connection((LAB_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
