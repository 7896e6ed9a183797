"""A CLI command's timeline: when each of its output lines arrived, for benchmarks/relations.py.

With ``-v`` the ``ensemble`` commands log the SSH tunnel and the ZooKeeper session; a command that changes the
state prints its result line right after the write. Read as they arrive (the child's PYTHONUNBUFFERED), those
lines split the command's wall time into its parts on the host's clock, which the lab's systems share.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from deploy import CLI_TIMEOUT, ROOT, Bench


@dataclass
class Timeline:
    """One CLI command run with ``-v``: when it started and returned, and when each output line arrived."""

    args: tuple[str, ...]
    started: float = 0.0
    returned: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    code: int | None = None

    def at(self, needle: str) -> float:
        when = next((when for when, line in self.lines if needle in line), None)
        if when is None:
            raise RuntimeError(f"ensemble {' '.join(self.args)}: no line {needle!r} in its output")
        return when

    def parts(self, written: str) -> dict[str, float]:
        """Seconds from the command's start: SSH tunnel open, ZooKeeper session, the change written (its
        result line, printed right after the write), the command's return."""
        return {
            "tunnel_open_s": self.at("SSH tunnel to ") - self.started,
            "zookeeper_connected_s": self.at("connected to ZooKeeper") - self.started,
            "written_s": self.at(written) - self.started,
            "command_s": self.returned - self.started,
        }


def start_cli(bench: Bench, *args: str) -> tuple[Timeline, threading.Thread]:
    """``ensemble ARGS -v`` in a thread that timestamps its output lines as they arrive (PYTHONUNBUFFERED)."""
    timeline = Timeline(args)

    def follow() -> None:
        command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", *args, "-v"]
        timeline.started = time.time()
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=bench.env, cwd=ROOT
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                timeline.lines.append((time.time(), line.rstrip("\n")))
            timeline.code = process.wait()
        timeline.returned = time.time()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return timeline, thread


def finish_cli(timeline: Timeline, thread: threading.Thread) -> Timeline:
    thread.join(CLI_TIMEOUT)
    if thread.is_alive() or timeline.code != 0:
        last = timeline.lines[-1][1] if timeline.lines else "no output"
        raise RuntimeError(f"ensemble {' '.join(timeline.args)} failed ({timeline.code}): {last}")
    return timeline
