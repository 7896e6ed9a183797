"""The lab systems' Debian bookworm base image: built once with ``debootstrap``, cached, shared read-only.

Every container system boots this root file system as the lower layer of an overlay whose upper layer is the
system's own disk (``programs/system_layer.py`` writes what differs per system into it). The image is what a
Debian installer would leave on a server, made system-neutral so that every system booting it is a new one:

- no ``/etc/machine-id`` content: systemd makes a new one at first boot (``ConditionFirstBoot``);
- no SSH host keys: cloud-init's ``ssh`` module generates them at the first boot of an instance, before sshd
  starts (``cloud-init.service`` is ordered before ``sshd.service``; Debian's unit would not generate any);
- no ``/etc/hostname`` (debootstrap copies the host's), no copy of the host's ``/etc/resolv.conf``;
- systemd-networkd enabled (each system's address comes from its layer), the apt-daily timers and every getty
  masked (nobody logs in on the console; apt must not run behind cloud-init's back);
- cloud-init reads a NoCloud seed only (else the None datasource: no waiting for a metadata service), leaves
  the network to networkd, has no locale to set (minbase has none: cloud-init would end in error) and keeps
  the system's own name in ``/etc/hosts`` (else sudo cannot resolve it).

The cache key hashes the whole recipe (suite, variant, packages, files, units, removals and
:data:`RECIPE_VERSION`), so a changed recipe builds a new image beside the old one. A build runs under a lock
file, into a temporary directory beside its final place, renamed when complete: two builders never both
build, and a crashed one leaves nothing that looks like an image. Runs in ``scripts/install`` (needs root).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .debian_mirror import host_mirror
from .errors import LabError
from .flock import flock_within
from .programs.system_layer import write_layer_file
from .vm_image import cache_dir

__all__ = [
    "RECIPE",
    "RECIPE_VERSION",
    "Recipe",
    "SystemImageError",
    "build_rootfs",
    "ensure_image",
    "image_dir",
    "image_info",
    "main",
    "recipe_key",
]

# Bump when the code of build_rootfs/_prepare changes what an image holds in a way the Recipe does not show.
RECIPE_VERSION = 1

CLOUD_CFG = """\
# The lab's systems: NoCloud seed in the system's own layer, network by systemd-networkd.
datasource_list: [NoCloud, None]
network: {config: disabled}
locale: false
manage_etc_hosts: localhost
"""

RESOLV_CONF = "# The lab's systems have no DNS server: apt fetches through the lab's proxy by address.\n"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what the image holds; its hash (:func:`recipe_key`) names the cached image."""

    suite: str = "bookworm"
    variant: str = "minbase"
    # python3-cffi-backend: cloud-init's python3-cryptography depends on a virtual package debootstrap
    # cannot resolve by itself.
    packages: tuple[str, ...] = (
        "systemd", "systemd-sysv", "dbus", "cloud-init", "openssh-server", "python3", "python3-cffi-backend",
        "iproute2", "ca-certificates", "sudo",
    )  # fmt: skip
    # In-system path -> content, written after debootstrap (root-owned, 0644).
    files: tuple[tuple[str, str], ...] = (
        ("/etc/machine-id", ""),
        ("/etc/resolv.conf", RESOLV_CONF),
        ("/etc/cloud/cloud.cfg.d/99-lab.cfg", CLOUD_CFG),
    )
    # Globs below the root, removed after debootstrap; the package archives are only the build's download.
    removed: tuple[str, ...] = (
        "etc/hostname",
        "etc/ssh/ssh_host_*",
        "var/lib/dbus/machine-id",
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
    )
    # Symlinks made after the removals: D-Bus's id is systemd's (a copy would be the same on every system).
    links: tuple[tuple[str, str], ...] = (("/var/lib/dbus/machine-id", "/etc/machine-id"),)
    enabled_units: tuple[str, ...] = ("systemd-networkd.service",)
    # Nothing logs in on a container's console; apt and the block-device timers have no business here.
    masked_units: tuple[str, ...] = (
        "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
        "getty@.service", "getty-static.service", "console-getty.service", "container-getty@.service",
        "serial-getty@.service",
    )  # fmt: skip
    version: int = field(default=RECIPE_VERSION)


RECIPE = Recipe()


class SystemImageError(LabError):
    """The system image could not be built; the message says what to install or fix."""


def recipe_key(recipe: Recipe) -> str:
    """12 hex digits of the SHA-256 of the recipe; the package order does not matter."""
    data = asdict(recipe) | {"packages": sorted(recipe.packages)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def image_dir(cache: Path | None = None, recipe: Recipe = RECIPE) -> Path:
    """Where the image of *recipe* lives (complete once it exists): ``rootfs/``, ``image.json``, ``build.log``."""
    return (cache or cache_dir()) / "images" / f"{recipe.suite}-{recipe_key(recipe)}"


def image_info(rootfs: Path) -> dict[str, object]:
    """What the build recorded beside *rootfs*: mirror, build seconds, package count, size in bytes."""
    info: dict[str, object] = json.loads((rootfs.parent / "image.json").read_text())
    return info


def _run(argv: list[str], what: str, log: Path | None = None, timeout: float = 120) -> None:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        with open(log or os.devnull, "a") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SystemImageError(f"{argv[0]} is not installed: run scripts/install") from None
    except subprocess.TimeoutExpired:
        raise SystemImageError(f"{what} did not finish in {timeout:.0f} s (log: {log})") from None
    if done.returncode != 0:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] if log else []
        said = last[0] if last else f"exit {done.returncode}"
        raise SystemImageError(f"{what} failed: {said}" + (f" (log: {log})" if log else ""))


def _prepare(rootfs: Path, recipe: Recipe, log: Path | None = None) -> None:
    """Make a debootstrapped tree system-neutral (see the module docstring)."""
    for pattern in recipe.removed:
        for found in rootfs.glob(pattern):
            found.unlink()
    for path, content in recipe.files:
        write_layer_file(rootfs, path, content)
    for path, target in recipe.links:
        link = rootfs / path.lstrip("/")
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    systemctl = ["systemctl", f"--root={rootfs}", "--quiet"]
    if recipe.enabled_units:
        _run([*systemctl, "enable", *recipe.enabled_units], "systemctl enable", log)
    if recipe.masked_units:
        _run([*systemctl, "mask", *recipe.masked_units], "systemctl mask", log)


def build_rootfs(recipe: Recipe, mirror: str, rootfs: Path, log: Path) -> None:
    """debootstrap *recipe* from *mirror* into *rootfs* and prepare it (~60–90 s, ~190 packages)."""
    argv = ["debootstrap", f"--variant={recipe.variant}", f"--include={','.join(recipe.packages)}"]
    _run([*argv, recipe.suite, str(rootfs), mirror], f"debootstrap {recipe.suite} from {mirror}", log, timeout=1800)
    _prepare(rootfs, recipe, log)


# -- the cache: lock, temporary build, atomic rename -------------------------------------------------------


@contextmanager
def _build_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on *path*, waiting at most *timeout* seconds for another builder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not flock_within(fd, timeout, poll=0.2):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise SystemImageError(
                f"{path}: another build of the image (pid {holder}) still holds this lock after "
                f"{timeout:.0f} s; wait for it to finish or stop it"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _unescape_mountinfo(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash in paths as ``\040``-style octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mounts_under(path: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below *path*, deepest first (debootstrap killed mid-way leaves proc and sys)."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    top = os.path.realpath(path)
    points = {_unescape_mountinfo(line.split(" ")[4]) for line in text.splitlines() if line}
    found = [Path(p) for p in points if p == top or p.startswith(top.rstrip("/") + "/")]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_build(path: Path) -> None:
    """Remove a (failed or stale) build tree, unmounting what is mounted in it first, never deleting through a mount."""
    for point in mounts_under(path):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    left = mounts_under(path)
    if left:
        raise SystemImageError(f"{path}: {left[0]} is still mounted; unmount it and remove {path}")
    shutil.rmtree(path, ignore_errors=True)


def _tree_size(root: Path) -> int:
    """Bytes allocated on disk below *root*, hard links once (``du -s --one-file-system``)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    device = root.lstat().st_dev
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            found = os.lstat(os.path.join(top, name))
            if found.st_dev == device and (found.st_dev, found.st_ino) not in seen:
                seen.add((found.st_dev, found.st_ino))
                total += found.st_blocks * 512
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == device]
    return total


def _package_count(rootfs: Path) -> int:
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    return status.count("\nStatus: install ok installed") + status.startswith("Status: install ok installed")


Builder = Callable[[Recipe, str, Path, Path], None]


def ensure_image(
    cache: Path | None = None,
    *,
    recipe: Recipe = RECIPE,
    mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
    lock_timeout: float = 1800.0,
    build: Builder = build_rootfs,
) -> Path:
    """The image's root file system, built first if it is not cached (cold ~60–90 s; cached: at once).

    *mirror* defaults to the host's Debian mirror (:func:`host_mirror`), read only when building.
    """
    final = image_dir(cache, recipe)
    rootfs = final / "rootfs"
    if rootfs.is_dir():
        return rootfs
    if os.geteuid() != 0:
        raise SystemImageError("building the lab's system image needs root (debootstrap): run scripts/install as root")
    final.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(final.parent / f"{final.name}.lock", lock_timeout):
        if rootfs.is_dir():  # another builder finished while we waited
            return rootfs
        for stale in final.parent.glob(f".{final.name}.build-*"):
            _remove_build(stale)
        source = mirror or host_mirror(recipe.suite)
        log = final.parent / f"{final.name}.build.log"
        log.unlink(missing_ok=True)
        if progress:
            progress(f"building the lab's {recipe.suite} system image from {source} (once, ~60 s; log: {log})")
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=final.parent))
        try:
            started = time.monotonic()
            build(recipe, source, work / "rootfs", log)
            seconds = round(time.monotonic() - started, 1)
            info = {
                "suite": recipe.suite,
                "key": recipe_key(recipe),
                "recipe": asdict(recipe),
                "mirror": source,
                "build_seconds": seconds,
                "packages": _package_count(work / "rootfs"),
                "size_bytes": _tree_size(work / "rootfs"),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (work / "image.json").write_text(json.dumps(info, indent=2) + "\n")
            work.chmod(0o755)
            log.rename(work / "build.log")
            work.rename(final)
        except BaseException as failure:
            try:
                _remove_build(work)
            except SystemImageError as cleanup:
                failure.add_note(str(cleanup))
            raise
    return rootfs


def main(argv: list[str] | None = None) -> int:
    """``python -m ensemble_orchestra.lab.system_image [--cache DIR] [--mirror URL]``: print the rootfs path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ensemble_orchestra.lab.system_image", description=main.__doc__)
    parser.add_argument(
        "--cache", type=Path, help="cache directory (default: $ENSEMBLE_LAB_CACHE or /var/cache/ensemble-lab)"
    )
    parser.add_argument("--mirror", help="Debian mirror URL (default: the host's, from /etc/apt)")
    args = parser.parse_args(argv)
    try:
        rootfs = ensure_image(args.cache, mirror=args.mirror, progress=lambda line: print(line, file=sys.stderr))
    except LabError as exc:
        print(f"system image: {exc}", file=sys.stderr)
        return exc.exit_code
    print(rootfs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
