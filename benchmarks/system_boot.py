"""Container lab systems: how fast a real Debian boots, installs packages, and how many boot at once.

Usage (root): .venv/bin/python benchmarks/system_boot.py [--repeat 3] [--skip-image-build] [--skip-packages]
Prints one JSON object as its last line (progress goes to stderr). It starts its own container lab of six
systems; every boot is a BMC power on through Cobbler (``power_system`` → fence_ipmilan → ipmi_sim → the power
hook) and ends when the system's cloud-init has finished (``boot-finished`` in its disk, no errors). The
user data is the provider's shape without packages: SSH key, output log, one runcmd; no package_update.

- image_build_s: a fresh ``debootstrap`` of the base image into a temporary cache (deleted after); null
  with --skip-image-build.
- power_on_to_cloud_init_done_s: netboot on in Cobbler with that user data in ``ensemble_user_data`` (what
  the provider writes): power on → install (disk wiped, rendered preseed's late command, nopxe) → boot →
  cloud-init done. Median of --repeat.
- container_boot_s: the same system with netboot off (no install): its disk emptied and the same seed
  written into it, power on → cloud-init done (a first boot of the same instance). Median.
- parallel: N in 1, 3, 6 systems powered on together (one power_system each, concurrently), each with an
  install as above: wall time until all are done; a failed or late system is reported, not hidden.
- rss_mib_per_system: VmRSS summed over the nspawn process tree of an idle system (5 s after cloud-init
  done, no install), median; pss_mib_per_system_of_6: the same systems' PSS when six run (shared image pages
  split between them).
- package_install_s: ``apt-get install -y mariadb-server`` over SSH (lab key, user debian, sudo) in a freshly
  installed system, through the lab's proxy restarted on an empty cache (cold, a temporary cache root: the
  shared cache is not touched), then in another fresh system on the same cache (warm). apt_update_s beside it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ensemble_orchestra.lab import bmc, system_image
from ensemble_orchestra.lab.container_lab import package_proxy
from ensemble_orchestra.lab.programs import container_system
from ensemble_orchestra.lab.programs.system_files import console_log, disk_dir
from ensemble_orchestra.lab.seed import LabCobbler
from ensemble_orchestra.lab.testing import RunningLab, start_lab

SYSTEMS = 6
PARALLEL = (1, 3, 6)
BOOT_TIMEOUT = 180.0  # one system, power on → cloud-init done (measured ~3 s alone)
PARALLEL_TIMEOUT = 400.0  # six at once on two cores
IDLE_SETTLE = 5.0  # seconds after cloud-init done before memory is read
APT_TIMEOUT = 900.0
SEED = Path("var/lib/cloud/seed/nocloud-net")


def say(line: str) -> None:
    print(f"[system_boot] {line}", file=sys.stderr, flush=True)


def _user_data(public_key: str) -> str:
    return (
        "#cloud-config\n"
        f"ssh_authorized_keys: ['{public_key}']\n"
        "output: {all: '| tee -a /var/log/cloud-init-output.log'}\n"
        "runcmd:\n"
        "  - [sh, -c, 'echo benchmark > /root/runcmd-ran']\n"
    )


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            continue
    return found


def _memory_kib(pid: int, field: str, source: str) -> int:
    total = 0
    for member in _tree(pid):
        try:
            lines = Path(f"/proc/{member}/{source}").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith(field + ":"))
    return total


class Bench:
    """The benchmark's lab and what it needs to drive one system: Cobbler session, user data, lab key."""

    def __init__(self, running: RunningLab) -> None:
        self.running = running
        self.admin = LabCobbler(running.spec)
        self.token = self.admin.token
        public = running.layout.ssh_dir / "id_ed25519.pub"
        self.key = public.with_suffix("")
        self.user_data = _user_data(public.read_text().strip())
        self.installs = 0

    def names(self, count: int) -> list[str]:
        return [self.running.spec.system(i).name for i in range(count)]

    def address(self, name: str) -> str:
        record: Any = self.admin.proxy().get_system(name)
        return str(record["interfaces"]["eth0"]["ip_address"])

    def power(self, name: str, operation: str) -> None:
        result = self.admin.proxy().power_system(f"system::{name}", operation, self.token)
        if result is False:
            raise RuntimeError(f"Cobbler could not power {operation} {name}")

    def netboot(self, name: str) -> None:
        """Netboot on with the user data, as the provider's launch leaves the system: the next power on installs."""
        self.installs += 1
        meta = {
            "ensemble_user_data": base64.b64encode(self.user_data.encode()).decode(),
            "ensemble_instance_id": f"i-bench-{name}-{self.installs}",
        }
        fields = {"netboot_enabled": True, "autoinstall_meta": meta}
        self.admin.proxy().xapi_object_edit("system", name, "edit", fields, self.token)

    def reseed(self, name: str) -> None:
        """An empty disk holding the last install's seed (the system is off): a boot without the install."""
        disk = disk_dir(self.running.system_dir(name))
        keep = {p.name: p.read_bytes() for p in (disk / SEED).iterdir()}
        shutil.rmtree(disk)
        (disk / SEED).mkdir(parents=True)
        for file_name, data in keep.items():
            (disk / SEED / file_name).write_bytes(data)

    def state(self, name: str) -> dict[str, Any]:
        try:
            return dict(json.loads(container_system.state_file(self.running.system_dir(name)).read_text()))
        except (OSError, ValueError):
            return {}

    def wait_done(self, names: Iterable[str], since: float, timeout: float) -> dict[str, Any]:
        """Each system's seconds from *since* to cloud-init done, or the state it was left in (a string)."""
        pending = set(names)
        result: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                system_dir = self.running.system_dir(name)
                state = self.state(name)
                if state.get("since", 0) < since:  # still the previous power cycle's record
                    continue
                word = container_system.describe(system_dir, bmc.power_is_on(system_dir))
                if word == "cloud-init done":
                    result[name] = time.time() - since
                elif word in ("cloud-init failed", "failed", "crashed", "stopped", "off"):
                    result[name] = word
                else:
                    continue
                pending.discard(name)
            time.sleep(0.05)
        for name in pending:
            result[name] = f"not done in {timeout:.0f} s ({self.state(name).get('state', 'no state')})"
        return result

    def boot(self, names: list[str], timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
        """Power *names* on together through Cobbler (one call each, concurrently); wait until all are done."""
        started = time.time()
        errors: dict[str, str] = {}

        def power_on(name: str) -> None:
            try:
                self.power(name, "on")
            except Exception as error:  # reported with the system's result
                errors[name] = f"power on failed: {error}"

        threads = [threading.Thread(target=power_on, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = self.wait_done([n for n in names if n not in errors], started, timeout)
        return {**done, **errors}

    def power_off(self, names: list[str]) -> None:
        def off(name: str) -> None:
            try:
                self.power(name, "off")
            except Exception as error:  # the BMC-less power off below still stops it
                say(f"{name}: power off through Cobbler failed: {error}")

        threads = [threading.Thread(target=off, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name in names:  # a Cobbler power off that failed must not leave a system running
            bmc.power_off(self.running.system_dir(name))

    def seconds(self, result: dict[str, Any], name: str) -> float:
        """*name*'s boot time in *result*, or one line saying what happened and where its logs are."""
        value = result[name]
        if not isinstance(value, float):
            system_dir = self.running.system_dir(name)
            logs = f"{container_system.cloud_init_log(system_dir)}, {console_log(system_dir)}"
            raise RuntimeError(f"{name}: {value}; see {logs}")
        return value

    def rss_kib(self, name: str, field: str = "VmRSS", source: str = "status") -> int:
        nspawn = self.state(name).get("nspawn")
        if not nspawn:
            raise RuntimeError(f"{name}: no nspawn pid in its state")
        return _memory_kib(int(nspawn), field, source)

    def ssh(self, name: str, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
        options += ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", str(self.key)]
        argv = ["ssh", *options, f"debian@{self.address(name)}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def image_build() -> float:
    """A fresh debootstrap of the base image into a temporary cache, deleted afterwards."""
    cache = Path(tempfile.mkdtemp(prefix="ensemble-bench-image-"))
    try:
        started = time.monotonic()
        system_image.ensure_image(cache, progress=say)
        return time.monotonic() - started
    finally:
        left = system_image.mounts_under(cache)
        if left:  # never delete through a mount
            say(f"not removing {cache}: {left[0]} is mounted")
        else:
            shutil.rmtree(cache, ignore_errors=True)


def single_boots(bench: Bench, repeat: int) -> tuple[list[float], list[float], list[float]]:
    """(install boots, disk boots, idle RSS MiB) of the first system, *repeat* times each."""
    [name] = bench.names(1)
    installs, boots, rss = [], [], []
    for run in range(repeat):
        bench.netboot(name)
        installs.append(bench.seconds(bench.boot([name]), name))
        bench.power_off([name])
        bench.reseed(name)
        boots.append(bench.seconds(bench.boot([name]), name))
        time.sleep(IDLE_SETTLE)
        rss.append(bench.rss_kib(name) / 1024)
        bench.power_off([name])
        say(f"run {run + 1}: install boot {installs[-1]:.2f} s, disk boot {boots[-1]:.2f} s, RSS {rss[-1]:.1f} MiB")
    return installs, boots, rss


def parallel_boots(bench: Bench) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """Wall times (or what failed) for 1, 3 and 6 systems installing and booting together; PSS with six."""
    walls: dict[str, Any] = {}
    details: dict[str, Any] = {}
    pss = None
    for count in PARALLEL:
        names = bench.names(count)
        for name in names:
            bench.netboot(name)
        started = time.time()
        result = bench.boot(names, PARALLEL_TIMEOUT)
        wall = time.time() - started
        failed = {n: v for n, v in result.items() if not isinstance(v, float)}
        walls[str(count)] = None if failed else round(wall, 2)
        details[str(count)] = {n: round(v, 2) if isinstance(v, float) else v for n, v in sorted(result.items())}
        say(f"{count} together: {'FAILED ' + str(failed) if failed else f'{wall:.2f} s'}")
        if count == SYSTEMS and not failed:
            time.sleep(IDLE_SETTLE)
            pss = statistics.median(bench.rss_kib(n, "Pss", "smaps_rollup") / 1024 for n in names)
        bench.power_off(names)
    return walls, details, pss


def package_installs(bench: Bench, cache_root: Path) -> dict[str, Any]:
    """mariadb-server through the lab's proxy, on an empty cache (cold), then in another system (warm)."""
    lab = bench.running.lab
    lab.stop_server("package-proxy")
    previous = os.environ.get("ENSEMBLE_LAB_CACHE")
    os.environ["ENSEMBLE_LAB_CACHE"] = str(cache_root)  # the proxy's cache root is read when its plan is made
    try:
        lab.start_server("package-proxy")
    finally:
        if previous is None:
            os.environ.pop("ENSEMBLE_LAB_CACHE")
        else:
            os.environ["ENSEMBLE_LAB_CACHE"] = previous
    proxy = package_proxy(lab.layout, bench.running.spec)
    taken = proxy.cache_dir()
    if taken is None or not taken.is_relative_to(cache_root):
        raise RuntimeError(f"the package proxy did not take the empty cache under {cache_root}: {taken}")
    result: dict[str, Any] = {"install": {}, "update": {}, "debs_from_mirror": {}, "debs_from_cache": {}}
    for phase, name in zip(("cold", "warm"), bench.names(2), strict=True):
        bench.netboot(name)
        bench.seconds(bench.boot([name]), name)
        before = len(proxy.deliveries())
        timed = []
        for command in (
            "sudo apt-get update -q",
            "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 mariadb-server",
        ):
            started = time.monotonic()
            done = bench.ssh(name, command, APT_TIMEOUT)
            timed.append(time.monotonic() - started)
            if done.returncode != 0:
                raise RuntimeError(f"{name}: {command!r} failed: {done.stderr.strip().splitlines()[-1:]}")
        check = bench.ssh(name, "dpkg-query -W -f='${Status}' mariadb-server")
        if check.stdout != "install ok installed":
            raise RuntimeError(f"{name}: mariadb-server is not installed after apt-get: {check.stdout!r}")
        time.sleep(1.0)  # apt-cacher-ng logs a delivery once it has finished sending
        debs = [d for d in proxy.deliveries()[before:] if d.path.endswith(".deb")]
        result["update"][phase], result["install"][phase] = (round(t, 2) for t in timed)
        result["debs_from_mirror"][phase] = sum(d.source == "mirror" for d in debs)
        result["debs_from_cache"][phase] = sum(d.source == "cache" for d in debs)
        say(f"mariadb-server {phase}: update {timed[0]:.1f} s, install {timed[1]:.1f} s, {len(debs)} packages")
        bench.power_off([name])
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-image-build", action="store_true", help="do not time a fresh image build (~60 s)")
    parser.add_argument("--skip-packages", action="store_true", help="do not time the mariadb-server installs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "system_boot: container systems need root (bridges, systemd-nspawn)\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a SIGTERM still runs the cleanup below
    build = None if args.skip_image_build else image_build()
    if build is not None:
        say(f"fresh image build: {build:.1f} s")
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-boot-"))
    parent.chmod(0o711)  # the package proxy's and Apache's users traverse it
    os.environ["ENSEMBLE_HOME"] = str(parent / "home")
    started = time.monotonic()
    running = start_lab(parent / "lab", systems=SYSTEMS, env_name=None, system_kind="container")
    lab_up = time.monotonic() - started
    try:
        bench = Bench(running)
        installs, boots, rss = single_boots(bench, args.repeat)
        walls, details, pss = parallel_boots(bench)
        packages = None if args.skip_packages else package_installs(bench, parent / "empty-package-cache")
    finally:
        running.lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    debs = None
    if packages is not None:
        debs = {"from_mirror": packages["debs_from_mirror"], "from_cache": packages["debs_from_cache"]}
    result: dict[str, Any] = {
        "systems": SYSTEMS,
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "image_build_s": None if build is None else round(build, 1),
        "lab_up_s": round(lab_up, 2),
        "power_on_to_cloud_init_done_s": _median(installs),
        "container_boot_s": _median(boots),
        "parallel": walls,
        "rss_mib_per_system": round(statistics.median(rss), 1),
        "pss_mib_per_system_of_6": None if pss is None else round(pss, 1),
        "package_install_s": None if packages is None else packages["install"],
        "apt_update_s": None if packages is None else packages["update"],
        "runs": {
            "power_on_to_cloud_init_done_s": [round(v, 2) for v in installs],
            "container_boot_s": [round(v, 2) for v in boots],
            "parallel_per_system_s": details,
            "mariadb_debs": debs,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
