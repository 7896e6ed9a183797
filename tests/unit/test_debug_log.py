"""debug-log: reading agents' log lines (tables), its options, the remote tail command, and how the machines'
streams end (limit, timeout, a machine that cannot be reached, Ctrl-C, a closed stdout) on a fake reactor.

What real ssh and tail do on a machine is proven in tests/integration/test_agents_cli.py.
"""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ensemble_orchestra.cli import ensemble
from ensemble_orchestra.cli.debug_log import DEFAULT_LINES, log_filter_of
from ensemble_orchestra.cli.log_filter import LogFilter, LogStream, Record, parse_record
from ensemble_orchestra.cli.log_tail import LogTail, remote_tail_command, tail_argv
from ensemble_orchestra.cli.machine_reach import MachineTarget
from ensemble_orchestra.cli.tunnel import STOP_TIMEOUT
from ensemble_orchestra.testing import result_of

# -- one line ------------------------------------------------------------------------------------------------

T = "2026-11-30T05:51:42Z"

PARSE_CASES: list[tuple[str, Record | None]] = [
    (f"{T} INFO machine-agent: machine 0 agent running", Record(T, "info", "machine-agent", "machine 0 agent running")),
    (f"{T} WARN provisioning-agent: a: b: c", Record(T, "warn", "provisioning-agent", "a: b: c")),
    (f"{T} WARNING x: logging's name", Record(T, "warning", "x", "logging's name")),
    (f"{T} ERROR ensemble-admin: ", Record(T, "error", "ensemble-admin", "")),
    (f"{T} CRITICAL unit-mysql-0: disk", Record(T, "critical", "unit-mysql-0", "disk")),
    (f"{T[:-1]}.25Z DEBUG a: fractional seconds", Record(f"{T[:-1]}.25Z", "debug", "a", "fractional seconds")),
    ("    Traceback (most recent call last):", None),  # a continuation line
    (f"    {T} INFO a: indented: still a continuation", None),
    (f"{T} NOTICE a: not a level of ours", None),
    (f"{T} INFO no colon after the agent", None),
    ("05:51:42 INFO a: not our time format", None),
    ("", None),
]  # fmt: skip


@pytest.mark.parametrize(("line", "record"), PARSE_CASES)
def test_parse_record(line: str, record: Record | None) -> None:
    """A record's first line is time, a known level, the agent and ':'; anything else continues a record."""
    assert parse_record(line) == record


# -- which records are shown ---------------------------------------------------------------------------------

FILTER_CASES: list[tuple[LogFilter, str | None, str | None, bool]] = [
    (LogFilter(), "machine-agent", "debug", True),
    (LogFilter(include=("machine-agent",)), "machine-agent", "info", True),
    (LogFilter(include=("machine-agent",)), "provisioning-agent", "info", False),
    (LogFilter(include=("*-agent",)), "provisioning-agent", "info", True),
    (LogFilter(include=("*-agent",)), "ensemble-admin", "info", False),
    (LogFilter(include=("unit-*", "machine-?gent")), "machine-agent", "info", True),
    (LogFilter(include=("Machine-agent",)), "machine-agent", "info", False),  # case-sensitive, as agent names are
    (LogFilter(exclude=("provisioning-*",)), "provisioning-agent", "error", False),
    (LogFilter(exclude=("provisioning-*",)), "machine-agent", "info", True),
    (LogFilter(include=("*",), exclude=("machine-agent",)), "machine-agent", "info", False),  # exclude wins
    (LogFilter(level="info"), "a", "debug", False),
    (LogFilter(level="info"), "a", "info", True),
    (LogFilter(level="warn"), "a", "info", False),
    (LogFilter(level="warn"), "a", "warn", True),
    (LogFilter(level="warn"), "a", "warning", True),
    (LogFilter(level="warn"), "a", "error", True),
    (LogFilter(level="error"), "a", "warn", False),
    (LogFilter(level="error"), "a", "critical", True),
    (LogFilter(level="critical"), "a", "error", False),
    # Unknown level (a continuation whose first line was before tail's window) or unknown agent (one file, no header).
    (LogFilter(), "a", None, True),
    (LogFilter(level="info"), "a", None, False),
    (LogFilter(include=("a",)), "a", None, True),
    (LogFilter(), None, None, True),
    (LogFilter(include=("a",)), None, None, False),
    (LogFilter(exclude=("a",)), None, None, False),
]  # fmt: skip


@pytest.mark.parametrize(("log_filter", "agent", "level", "shown"), FILTER_CASES)
def test_filter(log_filter: LogFilter, agent: str | None, level: str | None, shown: bool) -> None:
    """Agent globs (include: any of them; exclude: none of them) and the level: shown when >= the one asked for."""
    assert log_filter.shows(agent, level) is shown


# -- one machine's tail output -------------------------------------------------------------------------------

ADMIN = "/var/log/ensemble/ensemble-admin.log"
MACHINE = "/var/log/ensemble/machine-agent.log"
PROVISIONING = "/var/log/ensemble/provisioning-agent.log"
A1 = f"{T} INFO ensemble-admin: environment initialized"
M1 = f"{T} INFO machine-agent: registered"
M2 = f"{T} ERROR machine-agent: could not register again"
P1 = f"{T} INFO provisioning-agent: reconcile"
P2 = f"{T} ERROR provisioning-agent: launch failed"
TB = ["    Traceback (most recent call last):", '      File "x.py", line 1', "    builtins.OSError: boom"]

# (filter, tail's output, lines shown without the machine prefix; "*" marks a record's first line)
STREAM_CASES: list[tuple[str, LogFilter, list[str], list[str]]] = [
    ("one file, no header", LogFilter(), [M1, M2, *TB], ["*" + M1, "*" + M2, *TB]),
    (
        "headers and tail's blank separator are not shown",
        LogFilter(),
        [f"==> {ADMIN} <==", A1, "", f"==> {MACHINE} <==", M1],
        ["*" + A1, "*" + M1],
    ),
    (
        "a traceback goes with its record: hidden with it",
        LogFilter(level="error"),
        [M1, *TB, M2, *TB],
        ["*" + M2, *TB],
    ),
    (
        "a continuation follows the record of its own file, across tail's switches",
        LogFilter(include=("machine-agent",)),
        [f"==> {MACHINE} <==", M2, TB[0], "", f"==> {PROVISIONING} <==", P2, "", f"==> {MACHINE} <==", *TB[1:]],
        ["*" + M2, TB[0], *TB[1:]],
    ),
    (
        "the other file's continuation stays hidden with its record",
        LogFilter(include=("machine-agent",)),
        [f"==> {PROVISIONING} <==", P2, "", f"==> {MACHINE} <==", M1, "", f"==> {PROVISIONING} <==", *TB],
        ["*" + M1],
    ),
    (
        "a blank line inside a record is the record's (only the one before a header is tail's)",
        LogFilter(),
        [M2, TB[0], "", TB[1]],
        ["*" + M2, TB[0], "", TB[1]],
    ),
    (
        "a continuation whose record began before tail's window: judged by its file's agent",
        LogFilter(include=("machine-agent",)),
        [f"==> {MACHINE} <==", *TB[1:], M1, "", f"==> {PROVISIONING} <==", *TB[1:], P1],
        [*TB[1:], "*" + M1],
    ),
    (
        "... and hidden when a level is asked for (its level is unknown)",
        LogFilter(level="info"),
        [f"==> {MACHINE} <==", *TB[1:], M1],
        ["*" + M1],
    ),
    ("exclude", LogFilter(exclude=("provisioning-agent",)), [P1, M1, P2, *TB], ["*" + M1]),
    (
        "a line that is not an agent's record continues the one before",
        LogFilter(),
        [M1, "a message with a newline, not indented"],
        ["*" + M1, "a message with a newline, not indented"],
    ),
]


@pytest.mark.parametrize(
    ("log_filter", "output", "shown"), [c[1:] for c in STREAM_CASES], ids=[c[0] for c in STREAM_CASES]
)
def test_stream(log_filter: LogFilter, output: list[str], shown: list[str]) -> None:
    """tail's output, fed whole and fed one byte at a time, shows the same lines (machine prefix, record starts)."""
    data = "".join(line + "\n" for line in output).encode()
    expected = [("*" in s[:1], f"machine-2 {s.lstrip('*')}" if s.lstrip("*") else "machine-2") for s in shown]
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        stream = LogStream("machine-2", log_filter)
        got = [shown for chunk in chunks for shown in stream.feed(chunk)] + stream.end()
        assert [(s.starts_record, s.text) for s in got] == expected


def test_stream_keeps_a_partial_line_until_its_newline_or_the_end() -> None:
    stream = LogStream("machine-0")
    assert stream.feed(M1[:10].encode()) == []
    assert [s.text for s in stream.feed(M1[10:].encode() + b"\n" + M2[:5].encode())] == [f"machine-0 {M1}"]
    assert [s.text for s in stream.feed(M2[5:].encode())] == []
    assert [s.text for s in stream.end()] == [f"machine-0 {M2}"]


def test_stream_survives_bytes_that_are_not_utf8() -> None:
    [shown] = LogStream("machine-0").feed(f"{T} INFO a: caf\xe9\n".encode("latin-1"))
    assert shown.text == f"machine-0 {T} INFO a: caf\ufffd" and shown.starts_record


# -- options -------------------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return ensemble._parser().parse_args(["debug-log", *argv])


def test_defaults() -> None:
    args = parse()
    assert (args.lines, args.replay, args.include, args.exclude, args.level) == (DEFAULT_LINES, False, [], [], "debug")
    assert (args.limit, args.machines, args.timeout, args.environment) == (None, None, None, None)
    assert log_filter_of(args) == LogFilter()


def test_every_option() -> None:
    args = parse("-e", "lab", "-n", "0", "-i", "machine-*", "--include", "unit-*", "-x", "x", "-l", "ERROR",
                 "--limit", "3", "--machine", "0", "--machine", "2", "--timeout", "1.5")  # fmt: skip
    assert args.environment == "lab" and args.lines == 0 and args.machines == [0, 2]
    assert (args.limit, args.timeout) == (3, 1.5)
    assert log_filter_of(args) == LogFilter(("machine-*", "unit-*"), ("x",), "error")
    assert parse("--replay").replay and parse("-r").replay


def test_dash_l_is_the_level_after_debug_log_and_the_log_file_before_it() -> None:
    """Ensemble's debug-log had -l LEVEL; the global -l FILE stays before the command and as --log-file after."""
    args = ensemble._parser().parse_args(["-l", "cli.log", "debug-log", "-l", "warn", "--log-file", "other.log"])
    assert args.level == "warn" and str(args.log_file) == "other.log"
    args = ensemble._parser().parse_args(["-l", "cli.log", "debug-log", "-l", "warn"])
    assert args.level == "warn" and str(args.log_file) == "cli.log"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["-n", "5", "--replay"], "not allowed with argument"),
        (["-n", "-1"], "not a count: '-1'"),
        (["-n", "x"], "not a count: 'x'"),
        (["-l", "verbose"], "invalid choice: 'verbose'"),
        (["--limit", "0"], "must be a positive number: '0'"),
        (["--timeout", "never"], "must be a positive number: 'never'"),
        (["--machine", "mysql/0"], "not a machine id: 'mysql/0'"),
    ],
)
def test_usage_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_remote_command_and_ssh_argv() -> None:
    """The last LINES lines of each log (or all: +1), followed by name; ssh without stdin or terminal, batch mode."""
    assert remote_tail_command(10) == "exec sudo -n tail --pid=$PPID -n 10 -F /var/log/ensemble/*.log"
    assert remote_tail_command(None) == "exec sudo -n tail --pid=$PPID -n +1 -F /var/log/ensemble/*.log"
    argv = tail_argv(["-o", "UserKnownHostsFile=/k"], "debian", "10.0.0.3", 0)
    assert argv[:3] == ["ssh", "-n", "-T"] and argv[-2:] == ["debian@10.0.0.3", remote_tail_command(0)]
    options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    assert options[0] == "BatchMode=yes" and "ControlPath=none" in options and options[-1] == "UserKnownHostsFile=/k"


# -- the machines' streams on a fake reactor -----------------------------------------------------------------


class FakeProcess:
    """Our ssh child as the fake reactor runs it: TERM ends it (unless told to ignore it), KILL always does."""

    def __init__(self, protocol: ProcessProtocol, argv: list[str], clock: Clock, pid: int) -> None:
        self.protocol, self.argv, self.clock, self.pid = protocol, argv, clock, pid
        self.signals: list[str] = []
        self.ended = False
        self.ignores_term = False

    def signalProcess(self, signal: str) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        if signal == "KILL" or not self.ignores_term:
            self.clock.callLater(0.01, self.exit, None, 9 if signal == "KILL" else 15)

    def write(self, data: bytes) -> None:
        self.protocol.outReceived(data)

    def say(self, line: str) -> None:
        self.protocol.errReceived(line.encode() + b"\n")

    def exit(self, code: int | None, signal: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code, signal=signal)
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []

    def spawnProcess(self, protocol: ProcessProtocol, executable: str, args: list[str], env: Any = None) -> FakeProcess:
        process = FakeProcess(protocol, args, self, 4000 + len(self.processes))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        self.processes.append(process)
        return process


TARGETS = [
    MachineTarget(0, "10.0.0.2", "node001", "provisioned"),
    MachineTarget(1, "10.0.0.3", "node002", "provisioned"),
]


def start(
    *, limit: int | None = None, timeout: float | None = None, log_filter: LogFilter | None = None, out: Any = None
) -> tuple[FakeReactor, Deferred[str], io.StringIO, io.StringIO]:
    reactor, stdout, stderr = FakeReactor(), out or io.StringIO(), io.StringIO()
    tail = LogTail(reactor, stdout, stderr, prog="ensemble", limit=limit)
    run = Deferred.fromCoroutine(
        tail.run(
            TARGETS,
            lambda t: tail_argv([], "debian", t.reach, 10),
            log_filter or LogFilter(),
            executable="/usr/bin/ssh",
            timeout=timeout,
        )
    )
    return reactor, run, stdout, stderr


def stop(reactor: FakeReactor, run: Deferred[str]) -> None:
    """End a test's stream that is still running (as Ctrl-C does), so no coroutine is left suspended."""
    run.cancel()
    reactor.advance(0.01)
    with pytest.raises(CancelledError):
        result_of(run)


def lines(*records: str) -> bytes:
    return "".join(r + "\n" for r in records).encode()


def test_one_ssh_per_machine_and_lines_prefixed_with_their_machine() -> None:
    reactor, run, out, err = start()
    zero, one = reactor.processes
    assert zero.argv[0] == "/usr/bin/ssh" and zero.argv[-2] == "debian@10.0.0.2" and one.argv[-2] == "debian@10.0.0.3"
    zero.write(lines(M1))
    one.write(lines(P1))
    assert out.getvalue() == f"machine-0 {M1}\nmachine-1 {P1}\n"
    assert not run.called and err.getvalue() == ""
    stop(reactor, run)


def test_limit_counts_records_keeps_the_last_ones_traceback_then_stops_every_ssh() -> None:
    """--limit 2: the second record's traceback (same chunk) is shown, the third record is not; both sshs TERMed."""
    reactor, run, out, err = start(limit=2, log_filter=LogFilter(level="error"))
    zero, one = reactor.processes
    zero.write(lines(M1, M2, *TB[:1]))  # M1 is below the level: not counted
    assert out.getvalue() == f"machine-0 {M2}\nmachine-0 {TB[0]}\n" and not run.called
    one.write(lines(P2, *TB, M2))
    assert out.getvalue().splitlines()[2:] == [f"machine-1 {P2}", *(f"machine-1 {line}" for line in TB)]
    zero.write(lines(M2))  # after the end: not shown
    reactor.advance(0.01)
    assert result_of(run) == "limit"
    assert zero.signals == ["TERM"] and one.signals == ["TERM"] and err.getvalue() == ""


def test_a_machine_that_cannot_be_reached_is_one_warning_and_the_others_keep_streaming() -> None:
    reactor, run, out, err = start()
    zero, one = reactor.processes
    one.say("ssh: connect to host 10.0.0.3 port 22: Connection refused")
    one.exit(255)
    assert err.getvalue() == (
        "ensemble: warning: machine-1 (node002, 10.0.0.3): its logs stopped streaming"
        " (ssh exit 255: ssh: connect to host 10.0.0.3 port 22: Connection refused)\n"
    )
    zero.write(lines(M1))
    assert out.getvalue() == f"machine-0 {M1}\n" and not run.called
    zero.exit(255)  # the last one: nothing is left to stream
    assert result_of(run) == "ended" and err.getvalue().count("\n") == 2


def test_remote_complaints_are_shown_as_they_come_and_ssh_chatter_is_not() -> None:
    reactor, run, out, err = start()
    zero, _ = reactor.processes
    zero.say("Warning: Permanently added '10.0.0.2' (ED25519) to the list of known hosts.")
    zero.say("tail: cannot open '/var/log/ensemble/*.log' for reading: No such file or directory")
    assert err.getvalue() == (
        "ensemble: warning: machine-0: tail: cannot open '/var/log/ensemble/*.log' for reading:"
        " No such file or directory\n"
    )
    stop(reactor, run)


def test_timeout_ends_streaming_and_stops_every_ssh_even_one_ignoring_term() -> None:
    reactor, run, out, err = start(timeout=5.0)
    zero, one = reactor.processes
    one.ignores_term = True
    reactor.advance(4.9)
    assert not run.called
    reactor.advance(0.1)
    reactor.advance(0.01)
    assert zero.ended and not one.ended and not run.called  # one is waited for: STOP_TIMEOUT, then KILL
    reactor.advance(STOP_TIMEOUT)
    reactor.advance(0.01)
    assert one.signals == ["TERM", "KILL"] and result_of(run) == "timeout"
    assert err.getvalue() == ""  # our own stop is not a machine that failed


def test_ctrl_c_stops_every_ssh_and_no_warning_follows() -> None:
    """Cancelling (the CLI's Ctrl-C) stops our sshs; an ssh that got the terminal's SIGINT too says nothing."""
    reactor, run, out, err = start()
    zero, one = reactor.processes
    one.say("Killed by signal 2.")
    one.exit(255)  # before our cancel: the terminal's SIGINT reached ssh first
    run.cancel()
    zero.write(lines(M1))
    reactor.advance(0.01)
    with pytest.raises(CancelledError):
        result_of(run)
    assert zero.signals == ["TERM"] and one.signals == [] and out.getvalue() == "" and err.getvalue() == ""


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_ends_streaming() -> None:
    reactor, run, out, err = start(out=ClosedPipe())
    reactor.processes[0].write(lines(M1))
    reactor.advance(0.01)
    assert result_of(run) == "output closed" and all(p.signals == ["TERM"] for p in reactor.processes)
