"""The hook tools as commands: one small ``#!/bin/sh`` wrapper per tool name in the directory put first on a
hook's PATH (``runner.hook_environment``'s *tools_dir*).

A wrapper pins the interpreter and the agent's code (``PYTHONPATH``) so a charm's own PYTHONPATH or virtualenv
cannot change which tools run. ``-S`` skips ``site`` (no site-packages, no .pth files): the tools need only the
standard library and the package found through *pythonpath*, and a tool starts ~6 ms sooner (24 ms instead of
30 ms per call with Debian 12's python3, most of it the interpreter's own start). Writing is idempotent and atomic
(a temporary file renamed over the old one), so a hook running a tool while the agent rewrites them never sees
half a script.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

from .tools import TOOL_NAMES

__all__ = ["TOOL_NAMES", "install_tools", "wrapper_text"]

MODULE = "ensemble_orchestra.agents.hooks.tools"


def wrapper_text(tool: str, python: str, pythonpath: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# Ensemble hook tool {tool}: written by the unit agent, rewritten when it starts.\n"
        f'PYTHONPATH={shlex.quote(pythonpath)} exec {shlex.quote(python)} -S -m {MODULE} {tool} "$@"\n'
    )


def install_tools(directory: Path, python: str, pythonpath: str) -> None:
    """Write (or replace) the wrapper of every name in ``TOOL_NAMES`` into *directory* (created 0755)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    for tool in TOOL_NAMES:
        text = wrapper_text(tool, python, pythonpath)
        target = directory / tool
        try:
            if target.read_text() == text and os.access(target, os.X_OK):
                continue
        except OSError:
            pass
        handle, temporary = tempfile.mkstemp(prefix=f".{tool}.", dir=directory)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
            os.chmod(temporary, 0o755)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
