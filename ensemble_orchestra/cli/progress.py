"""Progress a person can follow: on a terminal one line redrawn in place (phase, system, elapsed time);
elsewhere (a log, CI) plain lines, one per phase."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, stream: TextIO, *, tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._clock = clock
        self._start = clock()
        self._width = 0

    def elapsed(self) -> float:
        return self._clock() - self._start

    def __call__(self, phase: str, detail: str = "") -> None:
        text = f"{phase}: {detail}" if detail else phase
        if self._tty:
            line = f"[{self.elapsed():6.1f}s] {text}"
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self._stream.write(f"{text} ({self.elapsed():.1f} s)\n")
        self._stream.flush()

    def done(self) -> None:
        """End the redrawn line, so what is printed next starts on its own line."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0
