"""Locate a provider's server kit (``providers/orchestra``): preseed, snippets, WebDAV site config.

The kit is data, not code; the lab configures its own servers from the very files a real Orchestra
server is set up with. The repository holds it once, in ``providers/``. A built distribution (wheel,
or a wheel built from the sdist) ships that same directory as package data, ``_providers/`` inside
the package (see setup.py). So an installed package finds its kit beside its code, and a checkout or
an editable install, which has no such copy, finds ``providers/`` beside the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import EnsembleError, UsageError

__all__ = ["CHECKOUT_KITS", "INSTALLED_KITS", "KIT_ROOTS", "BadKitOverride", "KitNotFound", "kit_dir"]

_PACKAGE = Path(__file__).resolve().parent
INSTALLED_KITS = _PACKAGE / "_providers"
"""``providers/`` as a wheel installs it, inside the package."""
CHECKOUT_KITS = _PACKAGE.parent / "providers"
"""``providers/`` of the repository the package runs from (a checkout, an editable install)."""
KIT_ROOTS = (INSTALLED_KITS, CHECKOUT_KITS)
"""Where `kit_dir` looks, in order: an installed package's own copy wins over a directory beside it."""


class KitNotFound(EnsembleError):
    """The server kit directory is missing: the installation is incomplete."""


class BadKitOverride(KitNotFound, UsageError):
    """``ENSEMBLE_KIT_DIR`` is set but holds no kit for the provider (exit 2: the user must fix it)."""


def kit_dir(provider: str = "orchestra", roots: Sequence[Path] = KIT_ROOTS) -> Path:
    """The kit of *provider*: ``$ENSEMBLE_KIT_DIR/<provider>`` if that variable is set, else the first
    ``<root>/<provider>`` of *roots* that exists.

    A set variable is never passed over for the installed kit: silently uploading the stock kit in
    place of a customised one would undo the user's edits on the server.
    """
    override = os.environ.get("ENSEMBLE_KIT_DIR")
    if override:
        path = Path(override) / provider
        if path.is_dir():
            return path
        raise BadKitOverride(
            f"ENSEMBLE_KIT_DIR={override}: no {provider}/ kit directory in it; point it at a directory that"
            f" holds {provider}/ (as the repository's providers/ does), or unset it to use the installed kit"
        )
    for root in roots:
        path = root / provider
        if path.is_dir():
            return path
    raise KitNotFound(
        f"the {provider} server kit is not installed (looked in {', '.join(str(r / provider) for r in roots)});"
        " reinstall ensemble-orchestra, or set ENSEMBLE_KIT_DIR to a directory that holds"
        f" {provider}/ (the providers/ directory of an ensemble-orchestra checkout)"
    )
