"""Administration calls of the Cobbler client: object names, generic add/edit, autoinstall templates and snippets.

What a tool that prepares a Cobbler server needs (``ensemble-orchestra setup-server``), kept out of
client.py, which holds the session and the provider's operations. `CobblerClient` inherits these
methods, so they share its token handling, error taxonomy and redaction. Every method costs the
XML-RPC requests its docstring states, plus the client's usual one-off login and version detection.
Template and snippet calls exist on Cobbler 3 only (2.x has ``read_or_write_kickstart_template``);
on 2.x they raise CobblerMethodMissing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import CobblerInvalidRequest, CobblerNotFound
from .transport import XmlRpcTransport

__all__ = ["OBJECT_KINDS", "AdminCalls"]

# Kinds the generic add/edit accepts. Systems have edit_system, which knows the 2.x/3.x field names.
OBJECT_KINDS = frozenset({"distro", "profile", "mgmtclass", "repo", "image", "package", "file", "menu"})
# Kinds whose names get_item_names lists (systems included: reading is harmless).
_NAMED_KINDS = OBJECT_KINDS | {"system"}


class AdminCalls:
    """Mixed into CobblerClient; relies on its `transport` and `_call_authed`."""

    transport: XmlRpcTransport

    async def _call_authed(self, method: str, *args: Any, **options: Any) -> Any:  # pragma: no cover - see client
        raise NotImplementedError

    # -- objects -----------------------------------------------------------------------------

    async def get_item_names(self, kind: str) -> list[str]:
        """Names of every object of *kind* (distro, profile, system, mgmtclass, ...). 1 call, no token."""
        if kind not in _NAMED_KINDS:
            raise CobblerInvalidRequest(f"unknown Cobbler object kind {kind!r}", method="get_item_names")
        return [str(n) for n in await self.transport.call("get_item_names", kind)]

    async def add_object(self, kind: str, name: str, fields: Mapping[str, Any]) -> None:
        """Create the *kind* object *name* with *fields*. 1 call (``xapi_object_edit`` "add").

        An existing object is a CobblerInvalidRequest ("unwise to overwrite"); so is a field value the
        server refuses, such as a profile's unknown distro or autoinstall template.
        """
        self._check_kind(kind, "add")
        await self._call_authed("xapi_object_edit", kind, name, "add", {**fields, "name": name}, idempotent=False)

    async def edit_object(self, kind: str, name: str, fields: Mapping[str, Any]) -> None:
        """Set *fields* of the *kind* object *name*, leaving its other fields. 1 call (``xapi_object_edit``).

        A missing object is CobblerNotFound. Unknown field names are ignored by Cobbler 3, silently.
        """
        self._check_kind(kind, "edit")
        if fields:
            await self._call_authed("xapi_object_edit", kind, name, "edit", dict(fields))

    @staticmethod
    def _check_kind(kind: str, operation: str) -> None:
        if kind not in OBJECT_KINDS:
            hint = " (systems: use edit_system)" if kind == "system" else ""
            raise CobblerInvalidRequest(f"cannot {operation} Cobbler objects of kind {kind!r}{hint}")

    # -- autoinstall templates and snippets ----------------------------------------------------

    async def list_autoinstall_templates(self) -> list[str]:
        """Paths of the autoinstall templates, relative to Cobbler's templates dir. 1 call, no token."""
        return [str(p) for p in await self.transport.call("get_autoinstall_templates")]

    async def list_autoinstall_snippets(self) -> list[str]:
        """Paths of the snippets, relative to Cobbler's snippets dir (``$SNIPPET('path')``). 1 call, no token."""
        return [str(p) for p in await self.transport.call("get_autoinstall_snippets")]

    async def read_autoinstall_template(self, path: str) -> str:
        """The text of template *path*, or CobblerNotFound. 1 call."""
        try:
            return str(await self._call_authed("read_autoinstall_template", path))
        except CobblerInvalidRequest as error:
            # Cobbler reports a missing template with the text it uses for an item's unknown template.
            if "file not found" in error.message:
                raise CobblerNotFound(f"no autoinstall template {path!r}", method=error.method) from None
            raise

    async def write_autoinstall_template(self, path: str, text: str) -> None:
        """Create or replace template *path* (subdirectories are created). 1 call."""
        await self._call_authed("write_autoinstall_template", path, text)

    async def read_autoinstall_snippet(self, path: str) -> str:
        """The text of snippet *path*, or CobblerNotFound. 1 call."""
        return str(await self._call_authed("read_autoinstall_snippet", path))

    async def write_autoinstall_snippet(self, path: str, text: str) -> None:
        """Create or replace snippet *path* (subdirectories are created). 1 call."""
        await self._call_authed("write_autoinstall_snippet", path, text)
