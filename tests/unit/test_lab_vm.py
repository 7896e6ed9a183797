"""The QEMU lab's pieces that need no VM: initramfs archive, module order, phone-home records, VM state."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from ensemble_orchestra.lab import vm_image
from ensemble_orchestra.lab.programs import phone_home, qemu_system, system_files


def test_cpio_newc_is_read_by_cpio(tmp_path: Path) -> None:
    """The initramfs archive is a newc cpio the kernel (and GNU cpio) can unpack: files, modes, symlinks."""
    archive = vm_image._cpio_newc(
        [("bin", 0o040755, b""), ("bin/busybox", 0o100755, b"#!x\n" * 3), ("bin/sh", 0o120777, b"busybox")]
    )
    assert len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True).stdout
    assert listing.decode().split() == ["bin", "bin/busybox", "bin/sh"]
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "bin/busybox").read_bytes() == b"#!x\n" * 3
    assert (tmp_path / "bin/sh").readlink() == Path("busybox")


def _module(path: Path, depends: str) -> Path:
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=6.1\0")
    return path


def test_module_order_puts_dependencies_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules are insmod'ed in dependency order, read from each .ko's modinfo (no kmod on the host)."""
    monkeypatch.setattr(vm_image, "WANTED_MODULES", ("virtio_net", "virtio_blk"))
    deps = {
        "virtio_net": "virtio_ring,virtio,net_failover",
        "virtio_blk": "virtio,virtio_ring",
        "virtio": "virtio_ring",
    }
    deps |= {"virtio_ring": "", "net_failover": "failover", "failover": ""}
    modules = {name: _module(tmp_path / f"{name}.ko", d) for name, d in deps.items()}
    order = vm_image._module_order(modules)
    assert sorted(order) == sorted(deps)
    for name, d in deps.items():
        for dep in filter(None, d.split(",")):
            assert order.index(dep) < order.index(name)


def test_module_order_names_a_missing_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm_image, "WANTED_MODULES", ("virtio_net",))
    with pytest.raises(vm_image.ImageError, match="virtio_ring"):
        vm_image._module_order({"virtio_net": _module(tmp_path / "virtio_net.ko", "virtio_ring")})


def test_initramfs_holds_init_busybox_and_modules(tmp_path: Path) -> None:
    if not vm_image.BUSYBOX.exists():
        pytest.skip("busybox-static is not installed")
    (tmp_path / "modules").mkdir()
    _module(tmp_path / "modules" / "virtio.ko", "")
    (tmp_path / "modules.order").write_text("virtio\n")
    archive = gzip.decompress(vm_image._initramfs(tmp_path))
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True).stdout.split()
    assert {b"init", b"bin/busybox", b"bin/sh", b"lib/modules/virtio.ko", b"modules.order"} <= set(listing)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/phone-home/node001?from=disk&instance-id=abc&hostname=node001.lab&user-data-sha256=" + "a" * 64, 200),
        ("/phone-home/node001?from=network", 200),
        ("/phone-home/node009?from=disk", 404),  # no such system directory
        ("/phone-home/../etc?from=disk", 404),
        ("/other/node001?from=disk", 404),
        ("/phone-home/node001", 400),  # nothing to record
        ("/phone-home/node001?from=disk%20x", 400),  # a value that would split the log line
        ("/phone-home/node001?from=disk%0Aphoned-home", 400),
    ],
)
def test_phone_home_records(tmp_path: Path, path: str, status: int) -> None:
    """The phone-home server records known systems' well-formed calls, one line each, and nothing else."""
    (tmp_path / "node001").mkdir()
    assert phone_home.record_phone_home(tmp_path, path) == status
    calls = phone_home.phone_homes(tmp_path / "node001")
    assert len(calls) == (1 if status == 200 else 0)
    if status == 200:
        assert calls[0]["from"] in ("disk", "network") and calls[0]["time"]


@pytest.mark.parametrize(
    ("console", "state"),
    [
        (None, "booting"),
        ("SeaBIOS\niPXE\n", "booting"),
        ("ensemble-lab: installing from http://x\n", "installing"),
        ("ensemble-lab: installed late_command rc=0\nensemble-lab: rebooting\n", "rebooting"),
        ("ensemble-lab: booted: from=disk&instance-id=x\n", "booted from disk"),
        ("ensemble-lab: booted: from=disk&x\r\nensemble-lab: phoned home\r\n", "phoned home"),
        # Only the current power on counts.
        (f"ensemble-lab: phoned home\n{qemu_system.POWER_ON_MARK} t\nPXELINUX\n", "booting"),
    ],
)
def test_vm_state_from_console(tmp_path: Path, console: str | None, state: str) -> None:
    if console is not None:
        system_files.console_log(tmp_path).write_text(console)
    assert qemu_system.vm_state(tmp_path, power_on=True) == state
    assert qemu_system.vm_state(tmp_path, power_on=False) == "off"


def test_qemu_argv_boots_the_network_first_then_the_disk(tmp_path: Path) -> None:
    settings = {"name": "node001", "mac": "52:54:00:00:00:01", "tftpboot": "/lab/tftpboot", "system_kind": "qemu"}
    argv = qemu_system.qemu_argv(tmp_path, settings, qemu="qemu")
    joined = " ".join(argv)
    assert "-accel tcg" in joined
    assert "user,id=net0,tftp=/lab/tftpboot,bootfile=pxelinux.0" in argv
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,bootindex=1" in argv
    assert "virtio-blk-pci,drive=disk0,bootindex=2" in argv
    assert f"file,id=console0,path={system_files.console_log(tmp_path)},append=on" in argv
    with pytest.raises(ValueError, match="MAC"):
        qemu_system.qemu_argv(tmp_path, {**settings, "mac": "52:54:00:00:00:01,x=y"})
    with pytest.raises(ValueError, match="comma"):
        qemu_system.qemu_argv(tmp_path, {**settings, "tftpboot": "/a,b"})
