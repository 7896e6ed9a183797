"""What a hook's tools may do while the hook runs: ``IHookContext``, implemented by the unit agent.

The unit agent opens one context per hook run (``HookToolServer.open_context``) and closes it when the hook
ends; every tool request of that hook is answered by calling the context. Contract for implementers:

- Each method may be an ``async def`` (preferred), return a Deferred, or return a plain value: the server
  awaits whatever is awaitable. Arguments arrive checked (types, port range, protocol, level, unit setting
  name): a method never re-parses a command line.
- A failure the hook's author must read (a port that cannot be opened, an address that is not known yet) is
  ``HookToolError(one line)``: the tool prints it and exits 1. Anything else is a bug of the agent: the
  server logs its traceback and the tool says "internal error in the unit agent: see its log".
- Writes (open_port, and relation writes later) may be buffered by the context and committed only if the hook
  exits 0; that is the context's choice, invisible to the tools.

Relation methods take a relation id such as ``db:3``, or None for the running hook's own relation (a
HookToolError saying "-r is needed" when the hook is not a relation hook).
"""

from __future__ import annotations

from collections.abc import Mapping

from zope.interface import Interface

from .protocol import HookToolError

__all__ = ["HookToolError", "IHookContext"]


class IHookContext(Interface):
    """A running hook's view of its unit (see the module docstring for the contract)."""

    def config_get(key: str | None) -> object:
        """The service setting *key* (its default when unset; None for a key the charm does not have), or all
        settings as a dict when *key* is None. An unknown key is not an error (Ensemble printed nothing)."""

    def unit_get(name: str) -> object:
        """The unit's ``private-address`` or ``public-address`` (a str)."""

    def open_port(port: int, protocol: str) -> object:
        """Record *port*/*protocol* (1..65535, tcp|udp) as open on this unit (what ``expose`` opens)."""

    def close_port(port: int, protocol: str) -> object:
        """Forget an opened port; closing a port that is not open is not an error."""

    def log(level: str, message: str) -> object:
        """Write *message* at *level* (DEBUG|INFO|WARNING|ERROR|CRITICAL) to the unit's log (debug-log shows it)."""

    def relation_get(relation_id: str | None, key: str | None, unit: str | None) -> object:
        """Unit *unit*'s setting *key* in the relation (None when unset), or all its settings (a dict) when *key*
        is None; *unit* None is the hook's remote unit. The unit may be this one or a member of the relation."""

    def relation_set(relation_id: str | None, settings: Mapping[str, str | None]) -> object:
        """Set this unit's *settings* (a dict of str -> str; None or "" deletes the key) in the relation; the
        other side sees them only if the hook exits 0."""

    def relation_list(relation_id: str | None) -> object:
        """The remote units in the relation, as this hook sees them (a sorted list of names)."""

    def relation_ids(name: str | None) -> object:
        """The ids (``db:3``) of the relations named *name* (None: the hook's own relation's name) this unit is in."""
