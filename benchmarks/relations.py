"""Relations and expose on the lab (issue #14): ``relation_settle_s`` and ``expose_applied_s``, target ≤ 2 s each.

Usage (root): .venv/bin/python benchmarks/relations.py [--rounds 3] [--expose-rounds 5]
Starts its own container lab and environment "bench" as benchmarks/deploy.py does (its ``run``), deploys
``local:bookworm/mysql`` and ``local:bookworm/wordpress`` at once (two ``deploy --wait`` commands), then:

relation_settle_s, --rounds times (``remove-relation`` and both sides' broken hooks between rounds): from the
moment ``ensemble add-relation -e bench wordpress mysql`` returned to the end of the last relation hook that
matters on each side, read from the unit agents' journals (microsecond timestamps; the container systems share
the host's clock):

- mysql/0: db-relation-joined done (it creates the database and user and publishes them), then its
  db-relation-changed step (the charm has no such hook: the agent logs "nothing to run"), the last one if the
  remote settings changed again;
- wordpress/0: db-relation-changed runs once per settings version it sees, so it may run first with nothing
  published yet (it exits 0, "waiting"). The one that counts is the run that configured WordPress: it logged
  "WordPress is served at" (it wrote the configuration, completed the install, opened 80/tcp) and ended
  "done". It must start after mysql's joined hook ended (checked: ``configured_after_mysql_joined``).

``relation_settle_s`` is the later of those two ends. A round counts as settled once both ends are seen and no
relation hook has run on either unit for ``QUIET_S``; every hook of the round is listed with its start and end.

expose_applied_s, --expose-rounds times: ``ensemble expose -e bench wordpress``'s return → a TCP connection
from this host to wordpress/0's port 80 succeeds; then ``unexpose`` → new connections fail (the firewall drops
them: they time out). Probing (port_probe.py: a connect every 10 ms, 0.2 s each) starts with the command, so a
change in force before the command returned shows as a negative time.

Each command runs with ``-v`` (cli_timeline.py): its SSH tunnel, ZooKeeper session and write are timed on the
host's clock, so each result is also given from the write (``*_after_write_s``); the machine agent's "firewall
applied" line on wordpress's machine gives the agent's part of expose.

Prints one JSON object as its last line (progress on stderr); ``{"error": ...}`` on failure. The lab and the
environment are torn down in ``finally`` (deploy.py's ``run``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from cli_timeline import finish_cli, start_cli
from deploy import (
    CLI_TIMEOUT,
    DEPLOY_TIMEOUT,
    ENV,
    HOOK_DONE,
    ROOT,
    RUNNING_HOOK,
    Bench,
    Journal,
    run_and_print,
    say,
)
from port_probe import first_closed, first_connected, probe

SERVICES = {"mysql": "local:bookworm/mysql", "wordpress": "local:bookworm/wordpress"}
MYSQL, WORDPRESS = "mysql/0", "wordpress/0"
TARGET_S = 2.0
SETTLE_TIMEOUT = 300.0  # the first round installs WordPress's tables
QUIET_S = 3.0  # no relation hook on either side for this long: the round has settled
POLL_S = 0.5  # journals read over SSH this often while waiting
CONFIGURED = "WordPress is served at"

NO_HOOK = re.compile(r"unit (?P<unit>\S+): the charm has no hooks/(?P<hook>\S+): nothing to run$")
HOOK_FAILED = re.compile(
    r"unit (?P<unit>\S+): hook (?P<hook>\S+) (exited -?\d+|timed out after|was killed by|did not run)"
)
ENTERED = re.compile(r"unit (?P<unit>\S+) entered relation (?P<key>\S+)$")
FIREWALL = re.compile(r"firewall applied: open to all (?P<world>[^;]*);")


@dataclass
class HookRun:
    """One hook the unit agent ran: when it started and ended (None: still running), how, what it logged."""

    hook: str
    start: float
    end: float | None = None
    outcome: str = "running"  # done | no-hook | failed | running
    lines: list[tuple[float, str]] = field(default_factory=list)  # what it logged meanwhile

    def logged(self, needle: str) -> bool:
        return any(needle in line for _, line in self.lines)


def hook_runs(journal: Journal, unit: str) -> list[HookRun]:
    """*unit*'s hooks in its agent's journal; a hook followed by another's start without an end failed."""
    runs: list[HookRun] = []
    current: HookRun | None = None
    for when, message in journal.lines:
        started = RUNNING_HOOK.search(message)
        ended = HOOK_DONE.search(message) or NO_HOOK.search(message) or HOOK_FAILED.search(message)
        if started and started["unit"] == unit:
            if current is not None:
                current.end, current.outcome = when, "failed"
            current = HookRun(started["hook"], when)
            runs.append(current)
        elif ended and ended["unit"] == unit and current is not None and ended["hook"] == current.hook:
            outcomes = {HOOK_DONE: "done", NO_HOOK: "no-hook", HOOK_FAILED: "failed"}
            current.end, current.outcome = when, outcomes[ended.re]
            current = None
        elif current is not None:
            current.lines.append((when, message))
    return runs


def relation_runs(runs: list[HookRun]) -> list[HookRun]:
    return [r for r in runs if "-relation-" in r.hook]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """*check()*'s first true result, polled every POLL_S; fails past *timeout*."""
    started = time.monotonic()
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL_S)


class Units:
    """mysql/0 and wordpress/0: their machines' addresses and their agents' journals."""

    def __init__(self, bench: Bench, status: dict[str, Any]) -> None:
        self.bench = bench
        self.address = {
            unit: status["services"][unit.split("/")[0]]["units"][unit]["public-address"] for unit in (MYSQL, WORDPRESS)
        }

    def runs(self, since: float) -> dict[str, list[HookRun]]:
        """Each unit's hook runs that started at *since* or later."""
        found = {}
        for unit, address in self.address.items():
            journal = self.bench.journal(address, f"ensemble-unit-{unit.replace('/', '-')}", since=since - 1)
            found[unit] = [r for r in hook_runs(journal, unit) if r.start >= since]
        return found

    def entered(self, since: float) -> dict[str, tuple[float, str]]:
        found = {}
        for unit, address in self.address.items():
            journal = self.bench.journal(address, f"ensemble-unit-{unit.replace('/', '-')}", since=since - 1)
            for when, match in journal.matches(ENTERED):
                if when >= since and match["unit"] == unit:
                    found[unit] = (when, match["key"])
        return found

    def firewall(self, since: float) -> list[tuple[float, str]]:
        """wordpress's machine: (when, world ports) of each firewall change since *since*."""
        journal = self.bench.journal(self.address[WORDPRESS], "ensemble-machine-agent", since=since - 1)
        return [(when, match["world"]) for when, match in journal.matches(FIREWALL) if when >= since]


def _failed(runs: dict[str, list[HookRun]]) -> None:
    for unit, each in runs.items():
        for run_ in relation_runs(each):
            if run_.outcome == "failed":
                tail = " / ".join(line for _, line in run_.lines[-3:])
                raise RuntimeError(f"{unit}: hook {run_.hook} failed: {tail}")


def _settled(units: Units, since: float) -> dict[str, list[HookRun]] | None:
    runs = units.runs(since)
    _failed(runs)
    mysql, wordpress = relation_runs(runs[MYSQL]), relation_runs(runs[WORDPRESS])
    joined = [r for r in mysql if r.hook == "db-relation-joined" and r.end is not None]
    configured = [r for r in wordpress if r.hook == "db-relation-changed" and r.outcome == "done"]
    configured = [r for r in configured if r.logged(CONFIGURED)]
    changed = [r for r in mysql if r.hook == "db-relation-changed" and r.end is not None]
    if not joined or not configured or not changed:
        return None
    everything = mysql + wordpress
    if any(r.end is None for r in everything):
        return None
    if time.time() - max(r.end for r in everything if r.end is not None) < QUIET_S:
        return None
    return runs


def _relative(value: float | None, zero: float) -> float | None:
    return None if value is None else value - zero


def relate(bench: Bench, units: Units) -> dict[str, Any]:
    """One ``add-relation`` round, until the relation has settled on both sides (the module's docstring)."""
    timeline = finish_cli(*start_cli(bench, "add-relation", "-e", ENV, "wordpress", "mysql"))
    started_at, returned = timeline.started, timeline.returned
    command = timeline.parts("added relation ")
    runs = wait_for(lambda: _settled(units, started_at), SETTLE_TIMEOUT, "the relation settling")
    entered = units.entered(started_at)
    mysql, wordpress = relation_runs(runs[MYSQL]), relation_runs(runs[WORDPRESS])
    joined = next(r for r in mysql if r.hook == "db-relation-joined")
    mysql_changed = [r for r in mysql if r.hook == "db-relation-changed"][-1]
    wp_changed = [r for r in wordpress if r.hook == "db-relation-changed"]
    configured = next(r for r in wp_changed if r.logged(CONFIGURED))
    wp_joined = next(r for r in wordpress if r.hook == "db-relation-joined")
    assert mysql_changed.end is not None and configured.end is not None and joined.end is not None
    settle = max(mysql_changed.end, configured.end) - returned
    hooks = sorted(
        (r.start, f"{unit} {r.hook} {r.start - returned:.3f}..{(r.end or r.start) - returned:.3f} {r.outcome}")
        for unit, each in ((MYSQL, mysql), (WORDPRESS, wordpress))
        for r in each
    )
    return {
        "relation_settle_s": settle,
        "settle_after_write_s": settle + command["command_s"] - command["written_s"],
        "command": command,
        "relation": entered.get(MYSQL, (0.0, None))[1],
        "entered_s": {unit: when - returned for unit, (when, _) in sorted(entered.items())},
        "mysql_joined_done_s": joined.end - returned,
        "mysql_changed_done_s": mysql_changed.end - returned,
        "mysql_changed_runs": sum(r.hook == "db-relation-changed" for r in mysql),
        "wordpress_joined_done_s": _relative(wp_joined.end, returned),
        "wordpress_changed_configured_start_s": configured.start - returned,
        "wordpress_changed_configured_done_s": configured.end - returned,
        "wordpress_configured_hook_s": configured.end - configured.start,
        "wordpress_configured_log": [
            f"{when - configured.start:+.3f} {line.partition(f'{WORDPRESS} db-relation-changed: ')[2]}"
            for when, line in configured.lines
            if f"{WORDPRESS} db-relation-changed: " in line
        ],
        "wordpress_changed_runs": len(wp_changed),
        "wordpress_changed_waiting_done_s": [
            _relative(r.end, returned) for r in wp_changed if r is not configured and r.start < configured.start
        ],
        "configured_after_mysql_joined": configured.start >= joined.end,
        "hooks": [text for _, text in hooks],
    }


def unrelate(bench: Bench, units: Units) -> dict[str, Any]:
    """``remove-relation``, until db-relation-broken is done on both sides."""
    timeline = finish_cli(*start_cli(bench, "remove-relation", "-e", ENV, "wordpress", "mysql"))
    started_at, returned = timeline.started, timeline.returned
    command = timeline.parts("removed relation ")

    def broken() -> dict[str, float] | None:
        runs = units.runs(started_at)
        _failed(runs)
        ends = {
            unit: next((r.end for r in each if r.hook == "db-relation-broken" and r.end is not None), None)
            for unit, each in runs.items()
        }
        return None if None in ends.values() else {unit: end for unit, end in ends.items() if end is not None}

    ends = wait_for(broken, SETTLE_TIMEOUT, "db-relation-broken on both sides")
    return {"command": command, "broken_done_s": {unit: end - returned for unit, end in sorted(ends.items())}}


def expose_round(bench: Bench, units: Units, exposed: bool) -> dict[str, Any]:
    """``expose`` (``unexpose``) wordpress while probing port 80 from the command's start until it opens
    (closes): the change is often in force before the command has returned."""
    timeline, thread = start_cli(bench, "expose" if exposed else "unexpose", "-e", ENV, "wordpress")
    attempt, attempts = probe(units.address[WORDPRESS], 80, first_connected if exposed else first_closed)
    finish_cli(timeline, thread)
    if attempt is attempts[0]:
        raise RuntimeError(f"port 80 was {'open' if exposed else 'closed'} already when {timeline.args[0]} started")
    command = timeline.parts("is exposed: " if exposed else "is not exposed: ")
    written = timeline.started + command["written_s"]
    seen = (attempt.ended if exposed else attempt.started) or 0.0
    changes = units.firewall(timeline.started)
    applied = next((when for when, world in changes if ("80/tcp" in world) == exposed), None)
    return {
        "applied_s": seen - timeline.returned,
        "applied_after_write_s": seen - written,
        "command": command,
        "outcome": attempt.outcome,
        "attempts": len(attempts),
        "firewall_applied_after_write_s": _relative(applied, written),
    }


def _deploy_both(bench: Bench) -> dict[str, float]:
    """Both services with ``deploy --wait`` at once; each command's wall time."""
    base = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", "deploy", "-e", ENV, "--wait", "--timeout"]
    base += [str(DEPLOY_TIMEOUT), "--repository", str(ROOT / "examples")]
    start = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[str], IO[str]]] = {}
    try:
        for service, charm in SERVICES.items():
            log: IO[str] = tempfile.TemporaryFile("w+")
            command = subprocess.Popen(
                [*base, charm, service], stdout=log, stderr=subprocess.STDOUT, text=True, env=bench.env, cwd=ROOT
            )
            running[service] = (command, log)
        say(f"deploying {', '.join(SERVICES)} at once")
        seconds: dict[str, float] = {}
        while len(seconds) < len(running):
            for service, (command, output) in running.items():
                if service not in seconds and command.poll() is not None:
                    seconds[service] = time.monotonic() - start
                    if command.returncode != 0:
                        output.seek(0)
                        last = (output.read().strip().splitlines() or ["no output"])[-1]
                        raise RuntimeError(f"deploy {service} failed ({command.returncode}): {last}")
                    say(f"{service} started in {seconds[service]:.1f} s")
            if time.monotonic() - start > DEPLOY_TIMEOUT + CLI_TIMEOUT:
                raise RuntimeError(f"deploy of {', '.join(SERVICES)}: not done in {DEPLOY_TIMEOUT + CLI_TIMEOUT:.0f} s")
            time.sleep(0.2)
        return seconds
    finally:
        for command, output in running.values():
            if command.poll() is None:
                command.kill()
                command.wait()
            output.close()


def _median(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _cli_start_s(bench: Bench) -> float:
    """The CLI's interpreter start and imports alone (``ensemble --help``): median of 3."""
    times = []
    for _ in range(3):
        start = time.monotonic()
        bench.cli("--help")
        times.append(time.monotonic() - start)
    return statistics.median(times)


def measure(bench: Bench, rounds: int, expose_rounds: int) -> dict[str, Any]:
    loads = {"deploy": os.getloadavg()[0]}
    deploy_s = _deploy_both(bench)
    status = bench.status()
    for unit in (MYSQL, WORDPRESS):
        state = status["services"][unit.split("/")[0]]["units"][unit].get("agent-state")
        if state != "started":
            raise RuntimeError(f"{unit} is {state} after deploy --wait")
    units = Units(bench, status)
    loads["relations"] = os.getloadavg()[0]
    related, removed = [], []
    for number in range(rounds):
        if number:
            removed.append(unrelate(bench, units))
            say(f"relation removed: broken done {removed[-1]['broken_done_s']}")
        related.append(relate(bench, units))
        say(f"round {number + 1}: relation_settle_s {related[-1]['relation_settle_s']:.3f}")
    loads["expose"] = os.getloadavg()[0]
    before, _ = probe(units.address[WORDPRESS], 80, lambda attempts: attempts[0] if attempts[0].ended else None)
    if before.outcome == "connected":
        raise RuntimeError("wordpress/0's port 80 accepts connections from this host before expose: nothing to time")
    exposes, unexposes = [], []
    for number in range(expose_rounds):
        exposes.append(expose_round(bench, units, True))
        time.sleep(1.0)
        unexposes.append(expose_round(bench, units, False))
        say(f"expose round {number + 1}: {exposes[-1]['applied_s']:.3f} s, closed {unexposes[-1]['applied_s']:.3f} s")
        time.sleep(1.0)
    loads["end"] = os.getloadavg()[0]
    settle = statistics.median(r["relation_settle_s"] for r in related)
    applied = statistics.median(r["applied_s"] for r in exposes)
    closed = statistics.median(r["applied_s"] for r in unexposes)
    return {
        "relation_settle_s": settle,
        "expose_applied_s": applied,
        "unexpose_applied_s": closed,
        "after_write_median_s": {
            "relation_settle": statistics.median(r["settle_after_write_s"] for r in related),
            "expose_reachable": statistics.median(r["applied_after_write_s"] for r in exposes),
            "expose_firewall_applied": _median(r["firewall_applied_after_write_s"] for r in exposes),
            "unexpose_refused": statistics.median(r["applied_after_write_s"] for r in unexposes),
            "unexpose_firewall_applied": _median(r["firewall_applied_after_write_s"] for r in unexposes),
        },
        "target": {
            "limit_s": TARGET_S,
            "relation_settle_met": settle <= TARGET_S,
            "expose_applied_met": applied <= TARGET_S,
            "unexpose_applied_met": closed <= TARGET_S,
        },
        "relation_rounds": related,
        "remove_rounds": removed,
        "expose_rounds": exposes,
        "unexpose_rounds": unexposes,
        "port_80_before_expose": before.outcome,
        "command_median_s": {
            name: {part: statistics.median(r["command"][part] for r in each) for part in related[0]["command"]}
            for name, each in (("add-relation", related), ("expose", exposes), ("unexpose", unexposes))
        },
        "cli_start_s": _cli_start_s(bench),
        "deploy_s": deploy_s,
        "load_average": loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", type=int, default=4, help="the lab's pool (machine 0, mysql, wordpress)")
    parser.add_argument("--rounds", type=int, default=3, help="add-relation rounds (default 3)")
    parser.add_argument("--expose-rounds", type=int, default=5, help="expose/unexpose rounds (default 5)")
    args = parser.parse_args()
    if args.systems < 3 or args.rounds < 1 or args.expose_rounds < 1:
        parser.error("--systems must be at least 3, --rounds and --expose-rounds at least 1")
    if os.geteuid() != 0:
        parser.error("container systems need root (bridges, systemd-nspawn)")
    run_and_print("relations", args.systems, lambda bench: measure(bench, args.rounds, args.expose_rounds))


if __name__ == "__main__":
    main()
