"""PROPFIND (RFC 4918) request body and the parsing of its 207 Multi-Status answer, stdlib only.

Python's expat refuses entity-expansion bombs (expat >= 2.4), so ElementTree is
safe on a misbehaving server's XML without defusedxml.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["PROPFIND_BODY", "PROPFIND_TIMES_BODY", "Entry", "MultistatusError", "parse_children", "parse_properties"]

PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>\n'
)

PROPFIND_TIMES_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/></D:prop></D:propfind>\n'
)


class MultistatusError(ValueError):
    """The answer was not a Multi-Status document we understand."""


@dataclass(frozen=True, order=True)
class Entry:
    """One member of a collection: its (decoded) name and whether it is itself a collection."""

    name: str
    is_collection: bool


def _root(xml: bytes) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise MultistatusError(f"unparseable PROPFIND answer: {exc}") from None
    if root.tag != "{DAV:}multistatus":
        raise MultistatusError(f"PROPFIND answered with a {root.tag} element, not a DAV: multistatus")
    return root


def parse_properties(xml: bytes) -> dict[str, str]:
    """The DAV: properties the server found (status 200) in a Depth 0 answer, by local name."""
    found: dict[str, str] = {}
    for propstat in _root(xml).iter("{DAV:}propstat"):
        if " 200 " not in (propstat.findtext("{DAV:}status") or "") + " ":
            continue
        for prop in propstat.iterfind("{DAV:}prop/*"):
            if prop.tag.startswith("{DAV:}"):
                found[prop.tag[len("{DAV:}") :]] = (prop.text or "").strip()
    return found


def parse_children(xml: bytes, collection_path: str) -> list[Entry]:
    """The direct members of the collection at *collection_path* (a decoded URL path).

    A Depth 1 answer lists the collection itself too; it is left out. Hrefs may
    be paths or absolute URLs, percent-encoded in the server's own way, so both
    sides are compared decoded.
    """
    root = _root(xml)
    base = collection_path.rstrip("/") + "/"
    entries = set()
    for response in root.iter("{DAV:}response"):
        href = response.findtext("{DAV:}href")
        if not href:
            continue
        path = unquote(urlsplit(href.strip()).path)
        if not path.startswith(base):
            continue
        is_collection = response.find("./{DAV:}propstat/{DAV:}prop/{DAV:}resourcetype/{DAV:}collection") is not None
        name = path[len(base) :].rstrip("/")
        if name and "/" not in name:
            entries.add(Entry(name, is_collection or path.endswith("/")))
    return sorted(entries)
