"""The agents' logs of several machines as one stream: one OpenSSH process per machine runs ``tail -F`` there.

Each ssh is our child (``spawnProcess``: the reactor never blocks); its output goes through the machine's
``LogStream`` (filtering) and is printed as it arrives, each line prefixed with the machine. A machine whose ssh
ends on its own gets one warning line and the others keep streaming. The stream ends at ``--limit`` records,
after ``--timeout``, when stdout is closed, when every ssh has ended, or on a cancel (Ctrl-C); then each of our
ssh processes is stopped by its own transport (TERM, then KILL). On the machine, GNU tail ends when its output
pipe closes with the connection; ``--pid=$PPID`` (the session's sshd) is a second guard against a lingering tail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ..deferreds import gather
from .log_filter import LogFilter, LogStream, Shown
from .machine_reach import MachineTarget
from .tunnel import _ssh_environment, _SSHProcess  # one ssh child protocol (stop by pid, stderr kept), not a copy

__all__ = ["LOG_GLOB", "LogTail", "remote_tail_command", "tail_argv"]

LOG_GLOB = "/var/log/ensemble/*.log"
SSH_OPTIONS = (
    "BatchMode=yes",  # never prompt: a key or the agent, or fail (and warn)
    "ConnectTimeout=10",
    "ServerAliveInterval=5",  # a machine gone silent ends its stream (and warns) within ~15 s
    "ServerAliveCountMax=3",
    "ControlPath=none",  # our own connection: stopping our ssh ends it
)
INTERRUPTED = "Killed by signal"  # ssh's last words when a Ctrl-C at the terminal reached it too: not a failure


def remote_tail_command(lines: int | None) -> str:
    """What ssh runs on the machine: the last *lines* of each agent's log (None: all of it), then follow."""
    start = "+1" if lines is None else str(lines)
    return f"exec sudo -n tail --pid=$PPID -n {start} -F {LOG_GLOB}"


def tail_argv(options: Sequence[str], user: str, host: str, lines: int | None) -> list[str]:
    """ssh's argv for one machine's stream (no stdin, no terminal); *options* from ``ssh_options``."""
    argv = ["ssh", "-n", "-T"]
    for option in SSH_OPTIONS:
        argv += ["-o", option]
    return [*argv, *options, f"{user}@{host}", remote_tail_command(lines)]


class _MachineTail(_SSHProcess):
    """One machine's ssh: stdout into its LogStream, tail's complaints (a log it cannot open) shown as they come."""

    def __init__(self, target: MachineTarget, stream: LogStream, owner: LogTail) -> None:
        super().__init__(f"{target.label} ({target.reach})")
        self.machine = target
        self._stream = stream
        self._owner = owner

    def outReceived(self, data: bytes) -> None:
        self._owner.show(self._stream.feed(data))

    def errReceived(self, data: bytes) -> None:
        before = self.count
        super().errReceived(data)
        fresh = list(self.lines)[-(self.count - before) :] if self.count > before else []
        for line in fresh:
            if line.startswith("tail:"):  # tail keeps following; what ends the stream is said when it ends
                self._owner.warn(f"{self.machine.label}: {line}")

    def processEnded(self, reason: Failure) -> None:
        self._owner.show(self._stream.end())
        super().processEnded(reason)
        self._owner.ended(self)


class LogTail:
    """The machines' streams as one: ``run`` starts them and returns why streaming ended."""

    def __init__(self, reactor: Any, out: TextIO, err: TextIO, *, prog: str, limit: int | None = None) -> None:
        self._reactor = reactor
        self._out = out
        self._err = err
        self._prog = prog
        self._limit = limit
        self.records = 0  # records shown
        self._processes: list[_MachineTail] = []
        self._finished: Deferred[str] = Deferred()

    async def run(
        self,
        targets: Sequence[MachineTarget],
        argv: Callable[[MachineTarget], list[str]],
        log_filter: LogFilter,
        *,
        executable: str,
        timeout: float | None = None,
    ) -> str:
        """Stream until the end (``limit``, ``timeout``, ``output closed`` or ``ended``: every ssh exited);
        our ssh processes are stopped before this returns, also when it is cancelled."""
        timer = self._reactor.callLater(timeout, self._end, "timeout") if timeout is not None else None
        try:
            for target in targets:
                process = _MachineTail(target, LogStream(target.label, log_filter), self)
                self._processes.append(process)
                command = argv(target)
                self._reactor.spawnProcess(process, executable, [executable, *command[1:]], env=_ssh_environment())
            if not targets:
                self._end("ended")
            return await self._finished
        finally:
            if timer is not None and timer.active():
                timer.cancel()
            self._end("stopped")  # a cancel: nothing is shown or warned about from here on
            await gather([p.stop(self._reactor) for p in self._processes if not p.ended])

    def show(self, shown: list[Shown]) -> None:
        """Print *shown* (one machine's new lines), counting records up to the limit."""
        if self._finished.called or not shown:
            return
        lines = []
        for item in shown:
            if item.starts_record:
                if self._limit is not None and self.records >= self._limit:
                    break
                self.records += 1
            lines.append(item.text + "\n")
        try:
            self._out.write("".join(lines))
            self._out.flush()
        except BrokenPipeError:  # | head: the reader is gone
            self._end("output closed")
            return
        if self._limit is not None and self.records >= self._limit:
            self._end("limit")

    def warn(self, text: str) -> None:
        if not self._finished.called:
            self._err.write(f"{self._prog}: warning: {text}\n")
            self._err.flush()

    def ended(self, process: _MachineTail) -> None:
        """One ssh exited on its own: say so (one line), and end once none is left."""
        if self._finished.called:
            return
        last = process.last_line
        if INTERRUPTED not in last:
            target = process.machine
            self.warn(
                f"{target.label} ({target.system_name}, {target.reach}): its logs stopped streaming"
                f" (ssh {process.how()}: {last})"
            )
        if all(p.ended for p in self._processes):
            self._end("ended")

    def _end(self, reason: str) -> None:
        if not self._finished.called:
            self._finished.callback(reason)
