"""QEMU lab systems: how long a PXE boot takes, and what the provider adds to it.

Usage: .venv/bin/python benchmarks/pxe_boot.py [--repeat 1]
Prints one JSON object as its last line. On a fresh QEMU lab of one system it measures, each from the moment
the VM (or the command) starts to the moment the lab's phone-home server records the call (its timestamp):

- raw_boot_s: the same VM (same QEMU command line, MAC, kernel and initramfs) PXE-booting from a TFTP root
  whose PXELINUX config boots the kernel straight into phoning home: one boot, no Cobbler, no provider.
- raw_install_s: the VM started directly (no IPMI, no provider) on a Cobbler system with netboot on: PXE
  install (the rendered preseed's late command), reboot, PXELINUX localboot, boot from disk, phone home.
- bootstrap_to_phonehome_s: ``ensemble bootstrap -e ENV --wait`` to the installed system's phone home
  (claim, user data, IPMI power on through fence_ipmilan, the same install and disk boot).
- overhead_s = bootstrap_to_phonehome_s - raw_boot_s (an install is two boots: this includes the second);
  provider_overhead_s = bootstrap_to_phonehome_s - raw_install_s (what the provider and IPMI add).
- vm_cpu_s: the QEMU process's CPU seconds at phone home, for the raw boot and the bootstrap.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ensemble_orchestra.lab import vm_image
from ensemble_orchestra.lab.processes import running_pid
from ensemble_orchestra.lab.programs import phone_home, power_hook, qemu_system, system_files
from ensemble_orchestra.lab.programs.system_files import load_settings, write_settings
from ensemble_orchestra.lab.testing import RunningLab, start_lab

ENV = "pxe-bench"
TIMEOUT = 300.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phone_home(system_dir: Path, after: int = 0) -> tuple[float, float]:
    """(epoch time of phone home number *after*+1, the VM's CPU seconds when it was seen)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        calls = phone_home.phone_homes(system_dir)
        if len(calls) > after:
            pid = running_pid(system_files.system_pid_file(system_dir))
            cpu = _cpu_s(pid) if pid else float("nan")
            return datetime.fromisoformat(calls[after]["time"]).timestamp(), cpu
        time.sleep(0.05)
    raise RuntimeError(
        f"{system_dir.name}: no phone home in {TIMEOUT:.0f} s; see {system_files.console_log(system_dir)}"
    )


def _power_on_to_phone_home(system_dir: Path) -> tuple[float, float]:
    """Start the system's VM directly (no BMC), wait for its phone home, stop it: (seconds, VM CPU seconds)."""
    started = time.time()
    power_hook.power_on(system_dir)
    try:
        at, cpu = _phone_home(system_dir)
    finally:
        power_hook.power_off(system_dir)
    return at - started, cpu


def raw_boot(running: RunningLab) -> tuple[float, float]:
    """One VM PXE-booting the lab kernel straight into phoning home, from its own TFTP root."""
    layout = running.layout
    real = load_settings(layout.system_dir(running.spec.system(0).name))
    system_dir = layout.system_dir("raw-boot")  # a system directory, so the phone-home server records it
    tftp = system_dir / "tftpboot"
    shutil.rmtree(system_dir, ignore_errors=True)
    (tftp / "pxelinux.cfg").mkdir(parents=True)
    for source in ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32"):
        shutil.copyfile(source, tftp / Path(source).name)
    shutil.copyfile(layout.distro_dir / "vmlinuz", tftp / "vmlinuz")
    shutil.copyfile(layout.distro_dir / "initrd.gz", tftp / "initrd.gz")
    url = f"http://{qemu_system.GUEST_HOST}:{running.spec.phone_home_port}/phone-home/raw-boot"
    config = "DEFAULT raw\nLABEL raw\n  KERNEL vmlinuz\n  INITRD initrd.gz\n"
    (tftp / "pxelinux.cfg" / "default").write_text(config + f"  APPEND console=ttyS0 quiet ensemble.phonehome={url}\n")
    write_settings(system_dir, name="raw-boot", mac=real["mac"], tftpboot=tftp, system_kind="qemu")
    vm_image.make_disk(qemu_system.disk_image(system_dir), vm_image.build_boot_files(), url)
    return _power_on_to_phone_home(system_dir)


def raw_install(running: RunningLab) -> float:
    """Netboot on in Cobbler, the VM started directly: install, reboot, disk boot, phone home."""
    name = running.spec.system(0).name
    user_data = base64.b64encode(b"#cloud-config\n# raw install\n").decode()
    fields = {"netboot_enabled": True, "autoinstall_meta": {"ensemble_user_data": user_data}}
    running.cobbler().xapi_object_edit("system", name, "edit", fields, running.token())
    return _power_on_to_phone_home(running.system_dir(name))[0]


def bootstrap(running: RunningLab) -> tuple[float, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble"]
    started = time.time()
    done = subprocess.run([*command, "bootstrap", "-e", ENV, "--wait"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bootstrap failed: {done.stderr.strip()}")
    system_dir = running.system_dir(running.spec.system(0).name)  # the lab's only system: machine 0
    at, cpu = _phone_home(system_dir)
    subprocess.run([*command, "destroy-environment", "-e", ENV, "-y"], capture_output=True, env=env, check=True)
    return at - started, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-pxe-"))
    parent.chmod(0o711)  # Apache's www-data workers must traverse it when run as root
    os.environ["ENSEMBLE_HOME"] = str(parent / "home")
    running = start_lab(parent / "lab", systems=1, env_name=ENV, system_kind="qemu")
    raws, raw_cpus, installs, boots, boot_cpus = [], [], [], [], []
    try:
        for _ in range(args.repeat):
            seconds, cpu = raw_boot(running)
            raws.append(seconds)
            raw_cpus.append(cpu)
            running.lab.reset()
            installs.append(raw_install(running))
            running.lab.reset()
            seconds, cpu = bootstrap(running)
            boots.append(seconds)
            boot_cpus.append(cpu)
            running.lab.reset()
    finally:
        running.lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    raw, install, boot = (statistics.median(v) for v in (raws, installs, boots))
    result = {
        "vms": 1,
        "repeat": args.repeat,
        "raw_boot_s": round(raw, 2),
        "raw_install_s": round(install, 2),
        "bootstrap_to_phonehome_s": round(boot, 2),
        "overhead_s": round(boot - raw, 2),
        "provider_overhead_s": round(boot - install, 2),
        "raw_boot_vm_cpu_s": round(statistics.median(raw_cpus), 2),
        "bootstrap_vm_cpu_s": round(statistics.median(boot_cpus), 2),
        "runs": {
            "raw_boot_s": [round(v, 2) for v in raws],
            "raw_install_s": [round(v, 2) for v in installs],
            "bootstrap_to_phonehome_s": [round(v, 2) for v in boots],
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
