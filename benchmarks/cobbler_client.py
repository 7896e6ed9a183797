"""What the Cobbler client costs against a real cobblerd seeded with many systems: calls and seconds.

Usage: .venv/bin/python benchmarks/cobbler_client.py [--systems 500] [--concurrency 8]
Starts its own lab (cobblerd, one ipmi_sim per system), measures, stops the lab, and prints one JSON
object as its last line. Call counts come from the client's per-method counter (HTTP requests).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from ensemble_orchestra.cobbler import CobblerClient
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS
from ensemble_orchestra.lab.testing import RunningLab, start_lab


class _Meter:
    """Seconds and client calls spent in one measured step."""

    def __init__(self, client: CobblerClient, results: dict[str, Any]) -> None:
        self.client, self.results = client, results

    def start(self) -> tuple[float, Counter[str]]:
        return time.perf_counter(), self.client.calls.copy()

    def stop(self, name: str, started: tuple[float, Counter[str]]) -> None:
        seconds, before = started
        self.results[f"{name}_s"] = round(time.perf_counter() - seconds, 4)
        self.results[f"{name}_calls"] = sum((self.client.calls - before).values())


def _concurrently(coroutines: list[Any]) -> Deferred[list[Any]]:
    return gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


async def measure(reactor: Any, running: RunningLab, concurrency: int, results: dict[str, Any]) -> None:
    spec = running.spec
    client = CobblerClient(
        running.cobbler_url, spec.cobbler_user, spec.cobbler_password, reactor, max_concurrency=concurrency
    )
    meter = _Meter(client, results)
    # Session set-up is paid once per client, not per operation: measured on its own.
    started = meter.start()
    await client.login()
    version = await client.server_version()
    meter.stop("session_setup", started)
    results["cobbler_version"] = str(version)

    started = meter.start()
    available = await client.find_systems({"mgmt_classes": AVAILABLE_CLASS})
    meter.stop("find_available", started)
    results["found_available"] = len(available)

    started = meter.start()
    records = await client.find_systems_expanded({"mgmt_classes": AVAILABLE_CLASS})
    meter.stop("find_available_expanded", started)
    assert len(records) == len(available)

    # A claim-like edit of 4 fields (metadata, netboot, mgmt class, comment) on 50 systems, concurrently.
    to_edit = sorted(available)[:50]

    def claim(name: str) -> dict[str, Any]:
        meta = {"ensemble_instance_id": f"i-{name}", "ensemble_user_data": "I2Nsb3VkLWNvbmZpZwo="}
        return {"autoinstall_meta": meta, "netboot_enabled": True, "mgmt_classes": [ACQUIRED_CLASS], "comment": "bench"}

    started = meter.start()
    await _concurrently([client.edit_system(n, claim(n)) for n in to_edit])
    meter.stop("edit_50", started)
    # The same edits one after another: the latency of a single edit.
    started = meter.start()
    for name in sorted(available)[50:100]:
        await client.edit_system(name, claim(name))
    meter.stop("edit_50_sequential", started)

    wanted = [f"node{n:03d}" for n in range(1, 201)]
    started = meter.start()
    read = await client.get_systems(wanted)
    meter.stop("read_200", started)
    assert sorted(read) == wanted, "read_200 missed systems"
    results["edits_verified"] = all(
        read[n].netboot_enabled and read[n].autoinstall_meta.get("ensemble_instance_id") == f"i-{n}" for n in to_edit
    )

    # For comparison only: what one get_system per system (the 2011 provider's way) costs.
    started = meter.start()
    await _concurrently([client.get_system(n) for n in wanted])
    meter.stop("read_200_one_by_one", started)

    started = meter.start()
    everything = await client.find_systems_expanded({})
    meter.stop("read_all", started)
    results["read_all_count"] = len(everything)

    started = meter.start()
    results["power_status_on"] = await client.power(wanted[0], "status")
    meter.stop("power_status", started)

    results["calls_by_method"] = dict(sorted(client.calls.items()))
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.systems < 200:
        parser.error("--systems must be at least 200 (the benchmark reads 200 systems)")
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-cobbler-"))
    parent.chmod(0o711)  # Apache's www-data workers must traverse it when run as root
    results: dict[str, Any] = {"systems": args.systems, "concurrency": args.concurrency}
    lab_started = time.perf_counter()
    running = start_lab(parent / "lab", systems=args.systems)
    results["lab_up_s"] = round(time.perf_counter() - lab_started, 2)
    try:
        task.react(lambda reactor: Deferred.fromCoroutine(measure(reactor, running, args.concurrency, results)))
    except SystemExit as exit_:
        if exit_.code:
            raise
    finally:
        running.lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
