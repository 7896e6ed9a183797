"""How every command ends: one clear line on failure, a traceback only with --verbose.

Exit codes follow Ensemble's habit: 0 success, 1 a runtime failure, 2 a usage or
configuration error.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, Interrupted, UsageError

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "Interrupted", "UsageError", "run_command"]


def run_command(
    prog: str,
    body: Callable[[], int | None],
    *,
    verbose: bool,
    expected: tuple[type, ...],
    usage: tuple[type, ...] = (),
) -> int:
    """Run *body*; errors of the *expected* types (and usage errors) become one line on stderr.

    *usage* names further exception types that mean bad input (exit code 2), e.g. configuration errors.
    """
    try:
        return body() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        print(f"{prog}: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, *usage) as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except expected as exc:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
