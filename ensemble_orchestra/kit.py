"""Locate the Orchestra server kit (``providers/orchestra``): preseed, snippets, WebDAV site config.

The kit is data, not code; the lab configures its own servers from the very
files a real Orchestra server is set up with.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EnsembleError

__all__ = ["KitNotFound", "kit_dir"]


class KitNotFound(EnsembleError):
    """The server kit directory is missing."""


def kit_dir(provider: str = "orchestra") -> Path:
    """The kit of *provider*: $ENSEMBLE_KIT_DIR/<provider>, else providers/<provider> beside the package."""
    base = os.environ.get("ENSEMBLE_KIT_DIR")
    candidates = [Path(base)] if base else []
    candidates.append(Path(__file__).resolve().parent.parent / "providers")
    for root in candidates:
        path = root / provider
        if path.is_dir():
            return path
    raise KitNotFound(
        f"the {provider} server kit was not found (looked in {', '.join(str(c) for c in candidates)});"
        " set ENSEMBLE_KIT_DIR to the providers/ directory of an ensemble-orchestra checkout"
    )
