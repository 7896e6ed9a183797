"""Running one hook: ``HookRunner.run(HookInvocation) -> HookResult``, and the environment a hook gets.

What the unit agent can rely on:

- A missing hook is a result (``missing=True``), never silence: the caller logs it. A hook file that is not
  executable is a failed result that says how to fix it.
- The hook runs with the charm directory as its working directory, the environment it is given
  (``hook_environment`` builds it), stdin from /dev/null, and stdout and stderr merged in order into one stream
  that is split into lines: every line goes to ``on_line`` as it arrives and the last ``TAIL_LINES`` are kept
  for ``status``.
- The hook leads its own process group, so its timeout stops everything it started that stayed in the group
  (apt-get, dpkg, a ``sleep``): SIGTERM to the group, SIGKILL ``grace`` seconds later.
- The hook is done when its own process exits. A process it started in the background that still holds the
  output pipe (a daemon that did not redirect its output) does not keep the hook "running": after
  ``output_grace`` the result is returned and that process's further output is read and dropped (not closed:
  it would die of SIGPIPE on its next write).
- Cancelling ``run`` (the agent stopping) sends the group SIGTERM, then SIGKILL after ``grace``.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["TAIL_LINES", "HookInvocation", "HookResult", "HookRunner", "hook_environment"]

log = Logger()

TAIL_LINES = 20
GRACE = 5.0  # s between SIGTERM and SIGKILL
OUTPUT_GRACE = 2.0  # s the output may stay open after the hook's process exited
MAX_LINE = 64 * 1024  # a longer line (or a binary blob without newlines) is cut into pieces of this size
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# How the hook gets its own process group. Twisted 22.4 forks and execs with no hook between the two (only its
# PTY processes call setsid, and a PTY would change what the hook's programs print); newer Twisted may use
# posix_spawn, which it does not let us give a new session either. So the child execs util-linux's setsid(1)
# (Essential in Debian), which calls setsid() and execs the rest: the forked child is never a group leader, so
# setsid does not fork, and the pid Twisted reports is the hook's own pid and its group id. /bin/sh then sets up
# stdin and the 2>&1 merge (one pipe: the order of stdout and stderr lines is kept) and execs the hook itself.
SETSID = "/usr/bin/setsid"
SHELL = "/bin/sh"
_EXEC_HOOK = 'exec "$0" "$@" </dev/null 2>&1'


def _ignore(line: str) -> None:
    pass


@dataclass(frozen=True)
class HookInvocation:
    """One hook to run: *name* in ``charm_dir/hooks/``, its whole environment, its timeout in seconds."""

    name: str
    charm_dir: Path
    env: Mapping[str, str]
    timeout: float
    on_line: Callable[[str], None] = _ignore


@dataclass(frozen=True)
class HookResult:
    """How a hook run ended. ``exit_code`` is None when it was killed by a signal (``signal``) or never ran
    (``missing``, or ``error`` saying why it could not start, e.g. not executable)."""

    name: str
    exit_code: int | None = None
    missing: bool = False
    timed_out: bool = False
    output_tail: tuple[str, ...] = ()
    duration: float = 0.0
    signal: int | None = None
    error: str | None = None
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.missing or (self.exit_code == 0 and not self.timed_out)

    def summary(self) -> str:
        """One line for logs and ``status``: "hook install exited 1", "hook install timed out after 30 s"."""
        if self.missing:
            return f"hook {self.name} is not in the charm (nothing to run)"
        if self.error is not None:
            return f"hook {self.name} did not run: {self.error}"
        if self.timed_out:
            return f"hook {self.name} timed out after {self.timeout:g} s"
        if self.signal is not None:
            return f"hook {self.name} was killed by signal {self.signal} ({_signal_name(self.signal)})"
        return f"hook {self.name} exited {self.exit_code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


def hook_environment(
    unit_name: str,
    charm_dir: Path,
    socket_path: str | os.PathLike[str],
    client_id: str,
    tools_dir: Path,
    hook_name: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A hook's whole environment, under Ensemble's names and its successor's (``JUJU_*``), so charms written
    for either run unchanged. *extra* (a relation hook's ``JUJU_RELATION``...) is added last and wins."""
    socket_text = os.fspath(socket_path)
    env = {
        "ENSEMBLE_UNIT_NAME": unit_name,
        "JUJU_UNIT_NAME": unit_name,
        "CHARM_DIR": str(charm_dir),
        "JUJU_CHARM_DIR": str(charm_dir),
        "ENSEMBLE_AGENT_SOCKET": socket_text,
        "JUJU_AGENT_SOCKET": socket_text,
        "ENSEMBLE_CLIENT_ID": client_id,
        "JUJU_CLIENT_ID": client_id,
        "JUJU_CONTEXT_ID": client_id,
        "JUJU_HOOK_NAME": hook_name,
        "DEBIAN_FRONTEND": "noninteractive",
        "PATH": f"{tools_dir}:{SYSTEM_PATH}",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    env.update(extra or {})
    return env


class _HookProcess(ProcessProtocol):
    """One running hook: lines out, the group's signals, and the moment it is done."""

    def __init__(self, runner: HookRunner, hook: HookInvocation) -> None:
        self._runner = runner
        self._hook = hook
        self._clock = runner._clock
        self._buffers: dict[int, bytes] = {}
        self.tail: deque[str] = deque(maxlen=runner.tail_lines)
        self.pid: int | None = None
        self.reason: Failure | None = None  # how the hook's own process exited
        self.timed_out = False
        self._stopping = False  # SIGTERM sent (a timeout, or run cancelled)
        self.done: Deferred[None] = Deferred()
        self._timers: dict[str, IDelayedCall] = {}
        self._line_failed = False

    # -- output

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if self.done.called:
            return  # a background process of an ended hook: drained, not shown
        *lines, rest = (self._buffers.get(childFD, b"") + data).split(b"\n")
        for line in lines:
            self._line(line)
        while len(rest) > MAX_LINE:
            self._line(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._buffers[childFD] = rest

    def _flush(self) -> None:
        for fd in sorted(self._buffers):
            if self._buffers[fd]:
                self._line(self._buffers[fd])
        self._buffers.clear()

    def _line(self, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        self.tail.append(text)
        try:
            self._hook.on_line(text)
        except Exception:
            if not self._line_failed:  # once: a broken callback must not flood the log
                self._line_failed = True
                log.failure("the output callback of hook {hook} failed", hook=self._hook.name)

    # -- signals

    def start_timeout(self) -> None:
        self._timers["timeout"] = self._clock.callLater(self._hook.timeout, self._time_out)

    def _time_out(self) -> None:
        self.timed_out = True
        log.warn(
            "hook {hook} timed out after {timeout} s: stopping it", hook=self._hook.name, timeout=self._hook.timeout
        )
        self.terminate()

    def terminate(self) -> None:
        """SIGTERM to the hook's group, SIGKILL after the grace if the hook has not exited by then."""
        self._stopping = True
        self._signal_group(signal.SIGTERM)
        if "kill" not in self._timers:
            self._timers["kill"] = self._clock.callLater(self._runner.grace, self._signal_group, signal.SIGKILL)

    def _signal_group(self, number: int) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            # No such group: setsid has not run yet (or everything is gone). The hook's own pid, while it lives.
            if self.reason is None:
                try:
                    os.kill(self.pid, number)
                except ProcessLookupError:
                    pass
        except PermissionError:
            log.warn("cannot signal hook {hook}'s processes (pid {pid})", hook=self._hook.name, pid=self.pid)

    def _cancel(self, *names: str) -> None:
        for name in names:
            timer = self._timers.pop(name, None)
            if timer is not None and timer.active():
                timer.cancel()

    # -- end

    def processExited(self, reason: Failure) -> None:
        self.reason = reason
        self._cancel("timeout", "kill")
        if self._stopping:
            # The hook's own process is gone; what remains of its group already had its SIGTERM.
            self._signal_group(signal.SIGKILL)
        self.pid = None  # never signal this group id again: it is free for reuse once the group is empty
        self._timers["output"] = self._clock.callLater(self._runner.output_grace, self._output_held)

    def _output_held(self) -> None:
        log.warn(
            "hook {hook} exited but a process it started still holds its output: that output is dropped"
            " (redirect a daemon's output in the hook)",
            hook=self._hook.name,
        )
        self._finish()

    def processEnded(self, reason: Failure) -> None:
        if self.reason is None:
            self.reason = reason
        self._finish()

    def _finish(self) -> None:
        self._cancel("timeout", "kill", "output")
        if not self.done.called:
            self._flush()
            self.done.callback(None)


class HookRunner:
    """Runs hooks (one call of ``run`` per hook; the unit agent serialises them). *clock* (default: *reactor*)
    times the timeout, the kill grace and the output grace; *reactor* spawns the processes."""

    def __init__(
        self,
        reactor: Any,
        *,
        clock: Any = None,
        grace: float = GRACE,
        output_grace: float = OUTPUT_GRACE,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self.grace = grace
        self.output_grace = output_grace
        self.tail_lines = tail_lines

    async def run(self, hook: HookInvocation) -> HookResult:
        if not hook.name or "/" in hook.name or hook.name.startswith("."):
            raise ValueError(f"not a hook name: {hook.name!r}")
        if not hook.charm_dir.is_dir():
            return HookResult(hook.name, error=f"the charm directory {hook.charm_dir} does not exist")
        path = hook.charm_dir / "hooks" / hook.name
        if not path.exists():
            return HookResult(hook.name, missing=True)
        if not path.is_file() or not os.access(path, os.X_OK):
            message = f"hooks/{hook.name} is not executable: chmod +x it in the charm"
            hook.on_line(message)
            return HookResult(hook.name, error=message, output_tail=(message,))
        if not os.access(SETSID, os.X_OK):
            return HookResult(hook.name, error=f"{SETSID} is missing: install util-linux on this machine")
        started = self._clock.seconds()
        process = _HookProcess(self, hook)
        try:
            transport = self._reactor.spawnProcess(
                process,
                SETSID,
                [SETSID, SHELL, "-c", _EXEC_HOOK, str(path)],
                env=dict(hook.env),
                path=str(hook.charm_dir),
                childFDs={1: "r", 2: "r"},
            )
        except OSError as exc:
            return HookResult(hook.name, error=f"hooks/{hook.name} could not be started: {exc.strerror or exc}")
        process.pid = transport.pid
        process.start_timeout()
        try:
            await process.done
        except CancelledError:
            process.terminate()
            raise
        return self._result(hook, process, self._clock.seconds() - started)

    @staticmethod
    def _result(hook: HookInvocation, process: _HookProcess, duration: float) -> HookResult:
        exit_code: int | None = None
        number: int | None = None
        reason = process.reason.value if process.reason is not None else None
        if isinstance(reason, ProcessDone):
            exit_code = 0
        elif isinstance(reason, ProcessTerminated):
            exit_code, number = reason.exitCode, reason.signal
        return HookResult(
            hook.name,
            exit_code=exit_code,
            timed_out=process.timed_out,
            output_tail=tuple(process.tail),
            duration=duration,
            signal=number,
            timeout=hook.timeout if process.timed_out else None,
        )
