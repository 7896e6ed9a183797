"""What ``ensemble debug-log`` shows of one machine's ``tail -F`` output: the agents' records, filtered.

Pure (bytes in, lines out) so the rules are table-tested without a machine. An agent's record is one line
``<UTC time> <LEVEL> <agent>: <message>`` (``agents/logfile.py``) plus its continuation lines (a traceback,
indented; any line that is not a record's first line belongs to the record before it). A record is shown or
hidden whole: the decision is taken on its first line and holds for the lines that follow it.

tail interleaves several files, announcing each switch with ``==> FILE <==`` (after a blank line), so
continuation lines are attached to the latest record *of the same file*. A continuation whose first line is
before tail's window (``-n``) is judged by its file's agent alone and shown only when no level is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

__all__ = ["LEVELS", "LogFilter", "LogStream", "Record", "Shown", "parse_record"]

# twisted.logger's level names (the files say WARN); logging's WARNING is read as warn.
LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}

_RECORD = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (?P<level>[A-Za-z]+) (?P<agent>[^\s:]+): (?P<message>.*)"
)
_HEADER = re.compile(r"==> (?P<path>.+) <==")


@dataclass(frozen=True)
class Record:
    """A record's first line, taken apart."""

    time: str
    level: str  # lower case, a key of LEVELS
    agent: str
    message: str


def parse_record(line: str) -> Record | None:
    """*line* as a record's first line, or None (a continuation line, or not an agent's line at all)."""
    match = _RECORD.fullmatch(line)
    if match is None or match["level"].lower() not in LEVELS:
        return None
    return Record(match["time"], match["level"].lower(), match["agent"], match["message"])


@dataclass(frozen=True)
class LogFilter:
    """Agent name globs (fnmatch, case-sensitive) to include (none = all) and exclude; the lowest level shown."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    level: str = "debug"

    def shows(self, agent: str | None, level: str | None) -> bool:
        """Whether a record of *agent* at *level* is shown; None is unknown (an unknown level passes only when
        no level is asked for; an unknown agent only when no glob is given)."""
        if agent is None:
            if self.include or self.exclude:
                return False
        else:
            if self.include and not any(fnmatchcase(agent, glob) for glob in self.include):
                return False
            if any(fnmatchcase(agent, glob) for glob in self.exclude):
                return False
        if level is None:
            return LEVELS[self.level] <= LEVELS["debug"]
        return LEVELS[level] >= LEVELS[self.level]


@dataclass(frozen=True)
class Shown:
    """A line to print (machine prefix included); ``starts_record`` is what ``--limit`` counts."""

    text: str
    starts_record: bool


@dataclass
class LogStream:
    """One machine's tail output, fed in chunks as it arrives; ``feed`` returns the lines to show, in order."""

    prefix: str  # "machine-3"
    log_filter: LogFilter = field(default_factory=LogFilter)
    _partial: bytes = b""
    _file: str | None = None  # tail's current file (None until a header: a single file has none)
    _showing: dict[str | None, bool] = field(default_factory=dict)  # per file: is its current record shown
    _blanks: int = 0  # blank lines held back: tail writes one before each header

    def feed(self, data: bytes) -> list[Shown]:
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [shown for raw in complete for shown in self._line(raw.decode(errors="replace").rstrip("\r"))]

    def end(self) -> list[Shown]:
        """The last line if it had no newline (the stream ended)."""
        partial, self._partial = self._partial, b""
        shown = self._line(partial.decode(errors="replace")) if partial else []
        return shown + self._release_blanks()

    def _line(self, line: str) -> list[Shown]:
        if not line:
            self._blanks += 1
            return []
        header = _HEADER.fullmatch(line)
        if header is not None:
            self._blanks = max(0, self._blanks - 1)  # tail's separator is not the record's
            held = self._release_blanks()
            self._file = header["path"]
            return held
        held = self._release_blanks()
        record = parse_record(line)
        if record is not None:
            show = self._showing[self._file] = self.log_filter.shows(record.agent, record.level)
            return [*held, Shown(f"{self.prefix} {line}", True)] if show else held
        return [*held, *self._continuation(line)]

    def _continuation(self, line: str) -> list[Shown]:
        show = self._showing.get(self._file)
        if show is None:  # its record began before tail's window
            show = self.log_filter.shows(self._agent_of_file(), None)
        return [Shown(f"{self.prefix} {line}" if line else self.prefix, False)] if show else []

    def _release_blanks(self) -> list[Shown]:
        count, self._blanks = self._blanks, 0
        return [shown for _ in range(count) for shown in self._continuation("")]

    def _agent_of_file(self) -> str | None:
        return PurePosixPath(self._file).stem if self._file else None
