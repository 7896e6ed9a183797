"""Launching machines on a 500-system pool: our call pattern vs the 2011 provider's, and status cost.

Usage: .venv/bin/python benchmarks/launch.py [--pool 500] [--launch 50] [--status 200]
Starts its own lab (real cobblerd, fence_ipmilan + ipmi_sim, Apache mod_dav), prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import xmlrpc.client
from pathlib import Path

from twisted.internet import defer, task

from ensemble_orchestra.lab.envfile import lab_environment
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS
from ensemble_orchestra.lab.testing import start_lab
from ensemble_orchestra.provider import create_orchestra_provider
from ensemble_orchestra.schedule import Schedule


def _data(i: int) -> dict:
    return {"machine-id": str(i), "zookeeper-hosts": ["zk:2181"]}


def anchor_launches(running, count: int) -> tuple[float, int]:
    """The 2011 provider's pattern, sequential: find, get_system per candidate, handle, a modify per field,
    save, power (result ignored), and a full get_systems for every lookup."""
    server = xmlrpc.client.ServerProxy(running.cobbler_url, allow_none=True)
    calls = 0

    def call(method, *args):
        nonlocal calls
        calls += 1
        return getattr(server, method)(*args)

    token = call("login", running.spec.cobbler_user, running.spec.cobbler_password)
    start = time.monotonic()
    for i in range(count):
        chosen = None
        for name in call("find_system", {"mgmt_classes": AVAILABLE_CLASS}):
            record = call("get_system", name)
            if AVAILABLE_CLASS in record["mgmt_classes"]:
                chosen = record
                break
        assert chosen is not None, f"no system left in {AVAILABLE_CLASS}"
        handle = call("get_system_handle", chosen["name"], token)
        for field, value in (
            ("mgmt_classes", [ACQUIRED_CLASS]),
            ("autoinstall_meta", {"ensemble_environment": "anchor", "ensemble_machine_id": str(i)}),
            ("profile", "bookworm-x86_64"),
            ("netboot_enabled", True),
        ):
            call("modify_system", handle, field, value, token)
        call("save_system", handle, token)
        call("power_system", handle, "on", token)
        call("get_systems")  # the old get_machines: every system of the server, for every lookup
    return time.monotonic() - start, calls


async def measure(reactor, running, args) -> dict:
    raw = {**lab_environment(running.spec, running.layout), "launch-concurrency": 8}
    result: dict = {"pool": args.pool, "launched": args.launch}

    async def launch(env: str, count: int, concurrent: bool) -> tuple[float, float]:
        provider = create_orchestra_provider(env, raw, reactor)
        provider.power.schedule = Schedule((0.1, 0.2, 0.5), timeout=60)
        await provider.client.login()
        await provider.client.server_version()
        before = sum(provider.client.calls.values())
        start = time.monotonic()
        if concurrent:
            await provider.start_machines([_data(i) for i in range(count)])
        else:
            for i in range(count):
                await provider.start_machines([_data(i)])
        elapsed = time.monotonic() - start
        calls = sum(provider.client.calls.values()) - before - provider.power.polls
        await provider.client.close()
        await provider.storage.close()
        return elapsed, calls / count

    result["concurrent_s"], result["calls_per_machine"] = await launch("bench-concurrent", args.launch, True)
    result["sequential_s"], result["calls_per_machine_sequential"] = await launch("bench-seq", args.launch, False)
    result["anchor_pattern_s"], anchor_calls = anchor_launches(running, args.launch)
    result["anchor_calls_per_machine"] = anchor_calls / args.launch

    await launch("bench-status", args.status, True)
    provider = create_orchestra_provider("bench-status", raw, reactor)
    await provider.client.login()
    await provider.client.server_version()
    before = sum(provider.client.calls.values())
    start = time.monotonic()
    machines = await provider.get_machines()
    result["status_s"] = time.monotonic() - start
    result["status_calls"] = sum(provider.client.calls.values()) - before
    result["status_machines"] = len(machines)
    await provider.client.close()
    await provider.storage.close()
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=500)
    parser.add_argument("--launch", type=int, default=50)
    parser.add_argument("--status", type=int, default=200)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="ensemble-bench-launch-"))
    parent.chmod(0o711)  # Apache's www-data workers must traverse it when run as root
    running = start_lab(parent / "lab", systems=args.pool)
    out: list[dict] = []
    try:
        task.react(
            lambda reactor: defer.Deferred.fromCoroutine(measure(reactor, running, args)).addCallback(out.append)
        )
    except SystemExit:
        pass
    finally:
        running.lab.down()
        shutil.rmtree(parent, ignore_errors=True)
    print(json.dumps(out[0] if out else {"error": "benchmark failed, see above"}))


if __name__ == "__main__":
    main()
