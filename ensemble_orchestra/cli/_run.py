"""How every command ends: one clear line on failure, a traceback only with --verbose.

Exit codes follow Ensemble's habit: 0 success, 1 a runtime failure, 2 a usage or configuration error,
130 interrupted. Every error the project raises on purpose is an ``EnsembleError`` that carries its own
exit code, so this is the one place that decides how a command ends; an ``OSError`` that still gets here
(a file that cannot be written, say) is one line too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, EnsembleError, Interrupted, UsageError
from .logs import start_logging

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Interrupted",
    "UsageError",
    "describe_os_error",
    "run_command",
]


def describe_os_error(error: OSError) -> str:
    """'FILE: reason' without Python's '[Errno 13]' decoration."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename is not None else reason


def run_command(prog: str, body: Callable[[], int | None], *, verbose: bool, log_file: Path | None = None) -> int:
    """Start logging (to stderr, and to *log_file*), run *body*, and turn how it ended into an exit code."""
    try:
        stop_logging = start_logging(prog, verbose=verbose, log_file=log_file)
    except OSError as error:
        print(f"{prog}: error: --log-file {log_file}: cannot be opened ({error.strerror or error})", file=sys.stderr)
        return EXIT_USAGE
    try:
        return body() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as error:
        print(f"{prog}: interrupted: {error}", file=sys.stderr)
        return error.exit_code
    except EnsembleError as error:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        stop_logging()
