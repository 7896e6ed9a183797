"""Commissioning QEMU systems: wall time of ``ensemble-orchestra commission`` for 1 system, then 4 in parallel.

Usage: .venv/bin/python benchmarks/commission.py [--repeat 1]
Prints one JSON object as its last line. On a fresh QEMU lab of four systems (256-512 MiB, 1-2 CPUs), each run
times the command from its start to its exit (IPMI power on through fence_ipmilan, PXE boot of the
commissioning image, its report, the Cobbler record, power off confirmed), first for node001 alone, then for
all four at once (--concurrency 4). Target (issue #15): four within 1.5x the time of one.
``system_s`` are the per-system times the command reports; ``load_before`` is the 1-minute load average
when the run started (the machine is shared: a loaded machine stretches TCG boots).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ensemble_orchestra.lab.testing import start_lab

ENV = "commission-bench"
_SYSTEM_TIME = re.compile(r"^(node\d+)\s+commissioned\s+.*\((?P<s>[\d.]+) s\)$", re.MULTILINE)


def commission(*names: str) -> tuple[float, list[float], float]:
    """(wall seconds, per-system seconds, load average before) of one run of the command."""
    load = os.getloadavg()[0]
    argv = [sys.executable, "-m", "ensemble_orchestra.cli.orchestra", "commission", "-e", ENV, *names]
    argv += ["--concurrency", "4", "--timeout", "300"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"commission failed: {done.stdout.strip()} {done.stderr.strip()}")
    return wall, [float(m.group("s")) for m in _SYSTEM_TIME.finditer(done.stdout)], load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-commission-"))
    parent.chmod(0o711)  # Apache's www-data workers must traverse it when run as root
    os.environ["ENSEMBLE_HOME"] = str(parent / "home")
    running = start_lab(parent / "lab", systems=4, env_name=ENV, system_kind="qemu")
    ones, fours, one_systems, four_systems, loads = [], [], [], [], []
    try:
        names = [s.name for s in running.spec.all_systems()]
        for _ in range(args.repeat):
            wall, systems, load = commission(names[0])
            ones.append(wall)
            one_systems += systems
            loads.append(load)
            wall, systems, load = commission(*names)
            fours.append(wall)
            four_systems += systems
            loads.append(load)
    finally:
        running.lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    one, four = statistics.median(ones), statistics.median(fours)
    result = {
        "repeat": args.repeat,
        "one_system_s": round(one, 1),
        "four_systems_s": round(four, 1),
        "ratio": round(four / one, 2),
        "target_ratio": 1.5,
        "system_s": {"one": [round(v, 1) for v in one_systems], "four": [round(v, 1) for v in four_systems]},
        "runs": {"one": [round(v, 1) for v in ones], "four": [round(v, 1) for v in fours]},
        "load_before": [round(v, 2) for v in loads],
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
