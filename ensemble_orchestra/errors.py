"""The project's one error base: every failure we raise on purpose is an ``EnsembleError``.

Each boundary (configuration, Cobbler, power, storage, HTTP, provider, lab) derives its own
taxonomy from it and maps its raw failures through one table. Two facts travel with every error, so
callers decide by attribute and never by parsing messages:

- ``retryable``: trying the same operation again later may succeed (a server restarting, a
  connection lost); False means someone must change something first (a password, a setting).
- ``exit_code``: what a command exits with when this error ends it (1 runtime, 2 usage/config,
  130 interrupted).

``str()`` of an error is one line that names the file, key, system or URL concerned and says what
to do; it never contains a secret. The commands print exactly that line (a traceback only with
``--verbose``).
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "EnsembleError",
    "Interrupted",
    "UsageError",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class EnsembleError(Exception):
    """Base of every error the project raises on purpose; see the module docstring."""

    retryable: bool = False
    exit_code: int = EXIT_FAILURE


class UsageError(EnsembleError):
    """Bad arguments or configuration: fatal until the user changes them (exit code 2)."""

    exit_code = EXIT_USAGE


class Interrupted(EnsembleError):
    """Ctrl-C, after the command cleaned up; the message says what state things were left in (exit 130)."""

    exit_code = EXIT_INTERRUPTED
