"""Files written into a container system's writable layer (its overlay upper directory) before it boots.

The base image (``lab/system_image.py``) is shared read-only by every system, so what differs per system —
its static address on the lab bridge, the address of the lab's package proxy, its NoCloud seed — goes into
the system's own layer, which *is* its disk. Written only while the system is off: a running system's tree
is never touched from the host (absolute symlinks inside it would resolve on the host).

The layer is the system's: a previous boot may have left a symlink anywhere in it, pointing at the host's
``/etc``. So every path is walked a component at a time with ``O_NOFOLLOW`` and files are created beside
their target and renamed over it: a symlink in the way is an error or gets replaced, never followed.
Standard library only (the container runtime in this package uses it).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path, PurePosixPath

__all__ = [
    "APT_PROXY_FILE",
    "HOST0_NETWORK_FILE",
    "apt_proxy_config",
    "host0_network_config",
    "write_apt_proxy",
    "write_host0_network",
    "write_layer_file",
]

# apt.conf.d is read in order: 01 comes before anything a package or the user data adds.
APT_PROXY_FILE = "/etc/apt/apt.conf.d/01lab-proxy"
# Debian ships /usr/lib/systemd/network/80-container-host0.network (DHCP on host0); the first match wins.
HOST0_NETWORK_FILE = "/etc/systemd/network/10-lab-host0.network"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(path: str) -> list[str]:
    """The components of an absolute in-system path; refuses ``..`` and relative paths."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts or len(pure.parts) < 2:
        raise ValueError(f"layer path must be an absolute file path inside the system, not {path!r}")
    return list(pure.parts[1:])


def _dir_owner_mode(lower: Path | None, relative: list[str]) -> tuple[int, int, int]:
    """(uid, gid, mode) for a directory created in the layer: the image's own, else root 0755.

    A directory made in the upper layer masks the image's attributes, so it must carry them.
    """
    if lower is not None:
        try:
            found = os.lstat(lower.joinpath(*relative))
        except OSError:
            pass
        else:
            if stat.S_ISDIR(found.st_mode):
                return found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)
    return 0, 0, 0o755


def _open_parent(upper: Path, dirs: list[str], lower: Path | None) -> int:
    """An fd of ``upper/dirs...``, made as needed, never following a symlink; the caller closes it."""
    fd = os.open(upper, _DIR_FLAGS)
    try:
        for depth, name in enumerate(dirs):
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                made = False
            else:
                made = True
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:  # a symlink (ELOOP), a file or a whiteout (ENOTDIR)
                where = "/" + "/".join(dirs[: depth + 1])
                raise ValueError(
                    f"{upper}: {where} in the system's layer is not a directory ({exc.strerror})"
                ) from None
            os.close(fd)
            fd = child
            if made:
                uid, gid, mode = _dir_owner_mode(lower, dirs[: depth + 1])
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_layer_file(
    upper: Path, path: str, data: bytes | str, *, mode: int = 0o644, lower: Path | None = None
) -> Path:
    """Write *data* as the system's file *path* (absolute inside the system) into its layer *upper*.

    Missing directories are made with the owner and mode they have in the image *lower* (root 0755 if it
    has none); the file is owned by root with *mode*, whatever the umask, and replaced atomically.
    """
    parts = _parts(path)
    content = data.encode() if isinstance(data, str) else data
    fd = _open_parent(upper, parts[:-1], lower)
    name = parts[-1]
    temporary = f".{name}.lab-{os.getpid()}"
    try:
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            os.write(out, content)
            os.fchown(out, 0, 0)
            os.fchmod(out, mode)
        finally:
            os.close(out)
        os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a symlink there, never follows it
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=fd)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(fd)
    return upper.joinpath(*parts)


def apt_proxy_config(address: str, port: int) -> str:
    """The apt configuration that sends every HTTP fetch through the lab's package proxy."""
    host = ipaddress.ip_address(address)
    if not 0 < port < 65536:
        raise ValueError(f"apt proxy port {port} is not a TCP port")
    shown = f"[{host}]" if host.version == 6 else str(host)
    return f'Acquire::http::Proxy "http://{shown}:{port}/";\n'


def write_apt_proxy(upper: Path, address: str, port: int, *, lower: Path | None = None) -> Path:
    """The system's apt uses the proxy at *address*:*port* (the lab bridge's address): not baked into the
    image, because every lab has its own bridge."""
    return write_layer_file(upper, APT_PROXY_FILE, apt_proxy_config(address, port), lower=lower)


def host0_network_config(address: str) -> str:
    """systemd-networkd settings for the container's veth ``host0``: *address* (``10.251.0.5/24``), static.

    No IPv6 link-local address and no router advertisements: with either, systemd-networkd-wait-online
    waits for IPv6 configuration that never comes on the lab bridge and holds the boot ~13 s.
    """
    interface = ipaddress.ip_interface(address)
    if interface.network.prefixlen == interface.max_prefixlen:
        raise ValueError(f"host0 address {address!r} needs the lab subnet's prefix length (e.g. 10.251.0.5/24)")
    return (
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={interface.with_prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def write_host0_network(upper: Path, address: str, *, lower: Path | None = None) -> Path:
    """The system's network: *address* on ``host0`` (what ``--network-bridge`` names its end of the veth)."""
    return write_layer_file(upper, HOST0_NETWORK_FILE, host0_network_config(address), lower=lower)
