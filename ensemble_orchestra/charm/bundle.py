"""Charm bundles: a charm directory as a deterministic zip, stored by its id and sha256, and unpacked safely.

Same content gives the same bytes, whoever builds it: entries sorted, every timestamp 1980-01-01,
modes reduced to 0755 (directories, executables) or 0644 (the rest), and symlinks 0777 as symlinks. The
entries are stored, not deflated: compressed bytes differ between zlib builds (zlib-ng is the default
on some distributions), and a sha256 that changed with the workstation would make publishing the same
charm revision twice an error. Dotfiles and dot-directories at any depth and a top-level ``build/`` are
left out; a symlink is kept only when it resolves inside the charm.

Unpacking checks the sha256 before reading anything, refuses names that are absolute or hold ``..``
and symlinks that resolve outside the target, and leaves nothing behind when it fails.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .directory import CharmDirectory
from .errors import CharmError, CharmURLError
from .url import CharmURL

__all__ = ["BUNDLE_PREFIX", "FIXED_DATE_TIME", "Bundle", "bundle_name", "make_bundle", "unpack_bundle"]

BUNDLE_PREFIX = "ensemble-charms"
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_UNIX = 3  # ZipInfo.create_system: the external_attr high half is a Unix st_mode
_MSDOS_DIRECTORY = 0x10
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, repr=False)
class Bundle:
    """A bundle's bytes and their sha256 (lowercase hex)."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Bundle:
        return cls(data, hashlib.sha256(data).hexdigest())

    def __repr__(self) -> str:
        return f"Bundle({len(self.data)} bytes, sha256={self.sha256})"


def bundle_name(url: CharmURL, sha256: str) -> str:
    """The storage name of a bundle: ``ensemble-charms/local_bookworm_mysql-3-<sha256>.zip``."""
    if url.revision is None:
        raise CharmURLError(f"{url}: a charm bundle is named by a URL with a revision, like {url.with_revision(0)}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise CharmError(f"{url}: {sha256!r} is not a sha256 (64 lowercase hex digits)")
    quoted = str(url).replace(":", "_").replace("/", "_")
    return f"{BUNDLE_PREFIX}/{quoted}-{sha256}.zip"


# --- making ---------------------------------------------------------------------------------------------------------


def _excluded(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in parts) or parts[0] == "build"


def _entries(root: Path, real_root: Path, relative: tuple[str, ...] = ()) -> Iterator[tuple[str, int, bytes]]:
    """(name, st_mode, content) of everything bundled under root/relative, sorted, directories first."""
    folder = root.joinpath(*relative)
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise CharmError(f"{folder}: cannot be listed ({exc.strerror}): fix its permissions") from None
    for name in names:
        parts = (*relative, name)
        if _excluded(parts):
            continue
        path = folder / name
        arcname = "/".join(parts)
        try:
            arcname.encode("utf-8")
        except UnicodeEncodeError:
            raise CharmError(f"{path}: the file name is not UTF-8: rename it") from None
        try:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                yield arcname, stat.S_IFLNK | 0o777, os.fsencode(_internal_link(root, real_root, path, parts))
            elif stat.S_ISDIR(mode):
                yield arcname + "/", stat.S_IFDIR | 0o755, b""
                yield from _entries(root, real_root, parts)
            elif stat.S_ISREG(mode):
                permissions = 0o755 if mode & 0o111 else 0o644
                yield arcname, stat.S_IFREG | permissions, path.read_bytes()
            else:
                raise CharmError(f"{path}: not a file, directory or symlink (a fifo, socket or device): remove it")
        except OSError as exc:
            raise CharmError(f"{path}: cannot be read ({exc.strerror}): fix its permissions") from None


def _internal_link(root: Path, real_root: Path, path: Path, parts: tuple[str, ...]) -> str:
    """The link's target text, if it resolves inside the charm to something bundled; else CharmError."""
    target = os.readlink(path)
    fix = "copy the file into the charm instead"
    if os.path.isabs(target):
        raise CharmError(f"{path}: symlink to the absolute path {target}: only relative links inside the charm: {fix}")
    resolved = Path(os.path.realpath(path))
    if resolved != real_root and real_root not in resolved.parents:
        raise CharmError(f"{path}: symlink to {target} leads outside the charm {root}: {fix}")
    inside = resolved.relative_to(real_root).parts
    if inside and _excluded(inside):
        raise CharmError(f"{path}: symlink to {target}, which is not bundled (dotfiles and build/ are left out)")
    return target


def make_bundle(directory: CharmDirectory) -> Bundle:
    """The charm directory as a deterministic zip (see the module docstring)."""
    root = directory.path
    real_root = Path(os.path.realpath(root))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, mode, content in _entries(root, real_root):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.create_system = _UNIX
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = mode << 16 | (_MSDOS_DIRECTORY if stat.S_ISDIR(mode) else 0)
            archive.writestr(info, content)
    return Bundle.of(buffer.getvalue())


# --- unpacking ------------------------------------------------------------------------------------------------------


def _member_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode) or info.filename.endswith("/"):
        return "directory"
    return "file"


def _safe_parts(name: str, label: str) -> tuple[str, ...]:
    """The path components of a member name; CharmError for anything that could leave the target."""
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise CharmError(f"{label}: entry {name!r} has an absolute path: the bundle is not one Ensemble made")
    parts = tuple(name.rstrip("/").split("/"))
    if any(part in ("", ".", "..") or "\x00" in part or "\\" in part for part in parts):
        raise CharmError(f"{label}: entry {name!r} has an empty, '.', '..' or odd component: the bundle is not safe")
    return parts


def unpack_bundle(data: bytes, target: Path, expected_sha256: str, label: str | None = None) -> None:
    """Check *data* against *expected_sha256*, then unpack it into *target* (absent or empty).

    *label* names the bundle in errors (its URL or storage name; default: the target). On any failure
    nothing unpacked is left behind.
    """
    target = Path(target)
    label = label or f"charm bundle for {target}"
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise CharmError(
            f"{label}: sha256 {actual} is not the expected {expected_sha256}: the bundle is damaged or was "
            "replaced in the storage; deploy the charm again"
        )
    created = not target.exists()
    if not created and (not target.is_dir() or any(target.iterdir())):
        raise CharmError(f"{label}: {target} exists and is not an empty directory: remove it first")
    try:
        target.mkdir(parents=True, exist_ok=True)
        _unpack(data, target, label)
    except BaseException as exc:
        _clean(target, created)
        if isinstance(exc, OSError):
            raise CharmError(f"{label}: cannot unpack into {target} ({exc.strerror})") from None
        raise


def _unpack(data: bytes, target: Path, label: str) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise CharmError(f"{label}: not a zip file") from None
    with archive:
        members: dict[tuple[str, ...], tuple[str, zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            parts = _safe_parts(info.filename, label)
            if parts in members:
                raise CharmError(f"{label}: entry {info.filename!r} appears twice: the bundle is not safe")
            members[parts] = (_member_kind(info), info)
        ordered = sorted(members.items())
        for parts, (kind, _) in ordered:  # first every directory and file: no symlink exists yet to write through
            path = target.joinpath(*parts)
            if kind == "directory":
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o755)
        for parts, (kind, info) in ordered:
            if kind == "file":
                path = target.joinpath(*parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                content = _read_member(archive, info, label)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as stream:
                    stream.write(content)
                path.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
        links: list[Path] = []
        for parts, (kind, info) in ordered:
            if kind == "symlink":
                path = target.joinpath(*parts)
                link = _read_member(archive, info, label).decode("utf-8", errors="surrogateescape")
                if os.path.isabs(link):
                    raise CharmError(f"{label}: symlink {info.filename!r} points to an absolute path: not safe")
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists() or path.is_symlink():
                    raise CharmError(f"{label}: symlink {info.filename!r} clashes with another entry: not safe")
                os.symlink(link, path)
                links.append(path)
        real_target = Path(os.path.realpath(target))
        for path in links:  # checked once all exist: a later link can change where an earlier one leads
            resolved = Path(os.path.realpath(path))
            if resolved != real_target and real_target not in resolved.parents:
                name = path.relative_to(target)
                raise CharmError(f"{label}: symlink {str(name)!r} leads outside {target}: the bundle is not safe")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, NotImplementedError, ValueError) as exc:
        raise CharmError(f"{label}: entry {info.filename!r} cannot be read ({exc})") from None


def _clean(target: Path, created: bool) -> None:
    """Remove what a failed unpack left: the target itself if we created it, else its content."""
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in list(target.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
