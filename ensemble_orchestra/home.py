"""Where Ensemble keeps a user's files: ``~/.ensemble`` unless ENSEMBLE_HOME says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ensemble_home", "environments_file"]


def ensemble_home() -> Path:
    env = os.environ.get("ENSEMBLE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".ensemble"


def environments_file() -> Path:
    return ensemble_home() / "environments.yaml"
