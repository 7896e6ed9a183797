"""Charm failures: the user must fix the charm (or the URL, or the repository) before trying again.

Every message is one line naming the charm (its directory or URL), the file (metadata.yaml,
config.yaml, revision, hooks/x) and the key, and what to do. None is retryable: nothing changes by
itself between two reads of a directory.
"""

from __future__ import annotations

from ..errors import EXIT_USAGE, EnsembleError

__all__ = ["CharmError", "CharmNotFoundError", "CharmURLError"]


class CharmError(EnsembleError):
    """A charm (its files, bundle or settings) is wrong; exit code 2."""

    exit_code = EXIT_USAGE


class CharmNotFoundError(CharmError):
    """No charm where one was asked for: a path that is not a charm, a URL the repository lacks."""


class CharmURLError(CharmError):
    """A charm URL that cannot be parsed or is not supported (``cs:``)."""
