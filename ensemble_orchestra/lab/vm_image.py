"""The QEMU lab's boot files: a Debian kernel, a busybox initramfs that is the installer and the installed
system, and each system's disk.

- **Kernel**: Debian's ``linux-image-<version>-amd64`` fetched with ``apt-get download`` (never installed on
  this host); ``vmlinuz`` and the few modules the VM needs (virtio net/block, vfat) are extracted from it.
- **Initramfs** (``initrd.gz``, ~1.5 MB): busybox-static, those modules and ``programs/vm_init.py``'s script as
  ``/init``. One image plays both parts of a PXE-installed server, chosen by the kernel command line: with
  ``url=`` (what Cobbler's PXE config hands the installer) it installs — fetches the rendered autoinstall, runs
  the preseed's late command against the disk mounted on ``/target``, reboots; with ``ensemble.boot=disk``
  (what the disk's boot loader passes) it is the installed system, which reads its NoCloud seed and phones home.
- **Disk** (``disk.img``, one per system): a FAT file system with SYSLINUX in its boot sector and the same
  kernel and initramfs, so "boot from disk" is the BIOS booting it after PXELINUX's ``localboot``. It stands for
  the operating system the installer would have laid down; the install itself is the preseed's late command.

Kernel and initramfs are built once and cached (:func:`cache_dir`); a new init script or kernel makes a new
entry. Runs in ``lab up`` and ``scripts/install`` (the lab side: not one of the VM's programs).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnsembleError
from .programs.vm_init import INIT

__all__ = [
    "BootFiles",
    "ImageError",
    "build_boot_files",
    "cache_dir",
    "disk_cmdline",
    "make_disk",
    "seed_from_disk",
]

KERNEL_PACKAGE = "linux-image-amd64"  # Debian's meta package; its dependency names the real kernel package
BUSYBOX = Path("/bin/busybox")  # busybox-static
# What the VM needs, in load order; each module's own "depends=" are loaded before it.
WANTED_MODULES = ("crc32c_generic", "virtio_pci", "virtio_net", "virtio_blk", "nls_cp437", "nls_ascii", "vfat")
DISK_SIZE_KB = 32 * 1024
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")


class ImageError(EnsembleError):
    """The boot files could not be built; the message says what to install or fix."""


@dataclass(frozen=True)
class BootFiles:
    """The cached kernel and initramfs of the lab's systems."""

    kernel: Path
    initrd: Path
    kernel_version: str


def cache_dir() -> Path:
    """$ENSEMBLE_LAB_CACHE, else /var/cache/ensemble-lab as root, else ~/.cache/ensemble-lab."""
    env = os.environ.get("ENSEMBLE_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/cache/ensemble-lab")
    return Path.home() / ".cache" / "ensemble-lab"


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} is not installed: run scripts/install") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise ImageError(f"{what} failed: {last[-1] if last else f'exit {done.returncode}'}")
    return done.stdout


def kernel_package() -> str:
    """The Debian package the ``linux-image-amd64`` meta package currently depends on."""
    shown = _run(["apt-cache", "show", KERNEL_PACKAGE], f"apt-cache show {KERNEL_PACKAGE}")
    found = re.search(r"^Depends:\s*(linux-image-\S+)", shown, re.MULTILINE)
    if not found:
        raise ImageError(f"apt-cache knows no {KERNEL_PACKAGE}: run apt-get update")
    return found.group(1)


def _module_info(path: Path) -> list[str]:
    """A module's ``depends=`` from its .modinfo section (no kmod needed)."""
    found = re.search(rb"\0depends=([^\0]*)\0", path.read_bytes())
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def _module_order(modules: dict[str, Path]) -> list[str]:
    """WANTED_MODULES and everything they depend on, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in modules:
            raise ImageError(f"kernel module {name} is not in the kernel package")
        for dep in _module_info(modules[name]):
            visit(dep)
        order.append(name)

    for name in WANTED_MODULES:
        visit(name)
    return order


def _fetch_kernel(package: str, target: Path) -> None:
    """vmlinuz and the wanted modules of *package* into *target* (atomically: a tmp dir renamed)."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", package], f"apt-get download {package}", cwd=work)
        [deb] = work.glob("*.deb")
        extracted = work / "root"
        _run(["dpkg-deb", "-x", str(deb), str(extracted)], f"dpkg-deb -x {deb.name}")
        [vmlinuz] = extracted.glob("boot/vmlinuz-*")
        found = extracted.glob("lib/modules/*/kernel/**/*.ko")
        modules = {p.name.removesuffix(".ko").replace("-", "_"): p for p in found}
        out = work / "kernel"
        (out / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz, out / "vmlinuz")
        order = _module_order(modules)
        for name in order:
            shutil.copy2(modules[name], out / "modules" / f"{name}.ko")
        (out / "modules.order").write_text("\n".join(order) + "\n")
        (out / "version").write_text(vmlinuz.name.removeprefix("vmlinuz-") + "\n")
        out.rename(target)


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, data) entries; symlinks carry their target as data."""
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(f"{f:08x}".encode() for f in fields))
        out.write(encoded)
        pad()
        out.write(data)
        pad()
    return out.getvalue()


def _initramfs(kernel_dir: Path, init: str = INIT) -> bytes:
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} is missing: apt-get install busybox-static (scripts/install)")
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "target", "disk")
    ]
    entries += [
        ("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
        ("bin/sh", 0o120777, b"busybox"),
        ("init", 0o100755, init.encode()),
        ("modules.order", 0o100644, (kernel_dir / "modules.order").read_bytes()),
    ]
    for module in sorted((kernel_dir / "modules").iterdir()):
        entries.append((f"lib/modules/{module.name}", 0o100644, module.read_bytes()))
    return gzip.compress(_cpio_newc(entries), compresslevel=6, mtime=0)


def build_boot_files(cache: Path | None = None, init: str = INIT) -> BootFiles:
    """The cached kernel and an initramfs whose ``/init`` is *init* (default: the lab system's), downloading
    and building what is missing (first time ~10 s). The commissioning image is built here too, with its own
    init (``commissioning/image.py``)."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    kernels = sorted(p for p in cache.glob("linux-image-*") if (p / "vmlinuz").exists())
    if kernels:
        kernel_dir = kernels[-1]
    else:
        package = kernel_package()
        kernel_dir = cache / package
        _fetch_kernel(package, kernel_dir)
    key = hashlib.sha256(init.encode() + BUSYBOX.read_bytes() + (kernel_dir / "modules.order").read_bytes())
    initrd = kernel_dir / f"initrd-{key.hexdigest()[:12]}.gz"
    if not initrd.exists():
        tmp = initrd.with_suffix(".tmp")
        tmp.write_bytes(_initramfs(kernel_dir, init))
        tmp.replace(initrd)
    return BootFiles(kernel_dir / "vmlinuz", initrd, (kernel_dir / "version").read_text().strip())


def disk_cmdline(phone_home_url: str) -> str:
    """The kernel command line the disk's boot loader passes: the installed system, phoning home."""
    return f"console=ttyS0 quiet ensemble.boot=disk ensemble.phonehome={phone_home_url}"


def make_disk(path: Path, boot: BootFiles, phone_home_url: str) -> None:
    """A fresh system disk: FAT with SYSLINUX, the kernel, the initramfs and nothing installed yet."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _run(["mkfs.vfat", "-C", "-n", "ENSEMBLE", str(tmp), str(DISK_SIZE_KB)], "mkfs.vfat")
    _run(["syslinux", "--install", str(tmp)], "syslinux --install")
    config = "DEFAULT disk\nPROMPT 0\nTIMEOUT 0\nLABEL disk\n  KERNEL vmlinuz\n  INITRD initrd.gz\n"
    config += f"  APPEND {disk_cmdline(phone_home_url)}\n"
    with tempfile.TemporaryDirectory() as work:
        cfg = Path(work) / "syslinux.cfg"
        cfg.write_text(config)
        _run(["mcopy", "-i", str(tmp), str(cfg), "::syslinux.cfg"], "mcopy syslinux.cfg")
        _run(["mcopy", "-i", str(tmp), str(boot.kernel), "::vmlinuz"], "mcopy vmlinuz")
        _run(["mcopy", "-i", str(tmp), str(boot.initrd), "::initrd.gz"], "mcopy initrd.gz")
    tmp.replace(path)


def seed_from_disk(path: Path) -> dict[str, bytes]:
    """The NoCloud seed files on a (powered-off or idle) system disk, read with mtools; {} if none."""
    seed: dict[str, bytes] = {}
    for name in ("user-data", "meta-data"):
        done = subprocess.run(
            ["mtype", "-i", str(path), f"::var/lib/cloud/seed/nocloud-net/{name}"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            seed[name] = done.stdout
    return seed
