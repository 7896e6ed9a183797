"""Lab start-up, reset and memory, measured on a fresh lab directory.

Usage: .venv/bin/python benchmarks/lab.py [--systems 8] [--repeat 5]
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ensemble_orchestra.lab.lab import Lab
from ensemble_orchestra.lab.layout import LabSpec
from ensemble_orchestra.lab.testing import free_base_port


def _rss_kib(pid: int) -> int:
    """RSS of *pid* and all its descendants (Apache's workers, a booted system)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-lab-"))
    parent.chmod(0o711)  # Apache's www-data workers must traverse it when run as root
    lab = Lab(parent / "lab")
    base = free_base_port(args.systems)
    try:
        t0 = time.monotonic()
        lab.up(LabSpec(base_port=base, systems=args.systems), env_name=None)
        first_up = time.monotonic() - t0
        rss = {s.name: _rss_kib(s.pid) for s in lab.status().servers if s.pid}
        ups, resets = [], []
        for _ in range(args.repeat):
            t0 = time.monotonic()
            lab.reset()
            resets.append(time.monotonic() - t0)
            lab.down()
            t0 = time.monotonic()
            lab.up(LabSpec(base_port=base, systems=args.systems), env_name=None)
            ups.append(time.monotonic() - t0)
    finally:
        lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    bmc_rss = [v for k, v in rss.items() if k.startswith("bmc-")]
    result = {
        "systems": args.systems,
        "cpus": os.cpu_count(),
        "first_up_s": round(first_up, 3),
        "up_s_median": round(statistics.median(ups), 3),
        "up_s_max": round(max(ups), 3),
        "reset_s_median": round(statistics.median(resets), 3),
        "reset_s_max": round(max(resets), 3),
        "rss_mib_total": round(sum(rss.values()) / 1024, 1),
        "rss_mib_cobblerd": round(rss.get("cobblerd", 0) / 1024, 1),
        "rss_mib_cobbler_svc": round(rss.get("cobbler-svc", 0) / 1024, 1),
        "rss_mib_webdav": round(rss.get("webdav", 0) / 1024, 1),
        "rss_mib_per_bmc": round(statistics.mean(bmc_rss) / 1024, 1) if bmc_rss else 0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
