"""Hooks: running a charm's hooks and the tools they call back into the unit agent with.

- ``runner``: ``HookRunner`` runs one hook (own process group, timeout, output lines) -> ``HookResult``;
  ``hook_environment`` builds its environment (``ENSEMBLE_*`` and ``JUJU_*`` names).
- ``server``: ``HookToolServer``, the agent's end of the tools' UNIX socket; ``open_context`` per hook run.
- ``context``: ``IHookContext``, what the tools may do (the unit agent implements it);
  ``testing.FakeHookContext`` is the public fake.
- ``tools`` / ``formats`` / ``protocol``: the tools' command lines, output formats and wire protocol: standard
  library only, since every tool run starts a Python (see ``tools``). ``install``: their wrapper scripts.

The names below are imported on first use (PEP 562), so running a tool never imports Twisted.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing would cost every tool run ~5 ms
if TYPE_CHECKING:
    from typing import Any

    from .context import IHookContext
    from .install import TOOL_NAMES, install_tools
    from .protocol import HookToolError
    from .runner import HookInvocation, HookResult, HookRunner, hook_environment
    from .server import HookServerError, HookToolServer
    from .testing import FakeHookContext

__all__ = [
    "TOOL_NAMES",
    "FakeHookContext",
    "HookInvocation",
    "HookResult",
    "HookRunner",
    "HookServerError",
    "HookToolError",
    "HookToolServer",
    "IHookContext",
    "hook_environment",
    "install_tools",
]

_WHERE = {
    "IHookContext": "context",
    "TOOL_NAMES": "install",
    "install_tools": "install",
    "HookToolError": "protocol",
    "HookInvocation": "runner",
    "HookResult": "runner",
    "HookRunner": "runner",
    "hook_environment": "runner",
    "HookServerError": "server",
    "HookToolServer": "server",
    "FakeHookContext": "testing",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
