"""The Debian mirror this host already uses, read from its apt sources.

The lab builds its system image from it (``debootstrap``) and its package proxy forwards to it: a mirror the
host reaches is the one that works here (apt-cacher-ng's built-in default backend may not resolve).
"""

from __future__ import annotations

from pathlib import Path

from .errors import LabError

__all__ = ["MirrorError", "host_mirror", "mirror_from_deb822", "mirror_from_sources_list"]

DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SOURCES_LIST = Path("/etc/apt/sources.list")
_SCHEMES = ("http://", "https://", "file:/")


class MirrorError(LabError):
    """No usable Debian mirror in the host's apt sources; the message names the files read."""


def _usable(uri: str) -> bool:
    return uri.startswith(_SCHEMES)


def mirror_from_deb822(text: str, suite: str) -> str | None:
    """The first ``URIs:`` of a deb822 ``.sources`` file, preferring a stanza whose Suites name *suite*.

    Stanzas with ``Enabled: no``, without ``deb`` in Types or with an unusable scheme (``cdrom:``,
    ``mirror+file:``) are skipped.
    """
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for line in text.splitlines():
        if not line.strip():
            key = ""
            if stanzas[-1]:
                stanzas.append({})
        elif line.lstrip().startswith("#"):
            continue
        elif line[0] in " \t":
            if key in stanzas[-1]:
                stanzas[-1][key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanzas[-1][key] = value.strip()
    candidates = []
    for stanza in stanzas:
        uris = [u for u in stanza.get("uris", "").split() if _usable(u)]
        if uris and "deb" in stanza.get("types", "").split() and stanza.get("enabled", "yes").lower() != "no":
            candidates.append((suite in stanza.get("suites", "").split(), uris[0]))
    preferred = [uri for wanted, uri in candidates if wanted] or [uri for _, uri in candidates]
    return preferred[0].rstrip("/") if preferred else None


def mirror_from_sources_list(text: str, suite: str) -> str | None:
    """The URI of the first ``deb`` line of a one-line-style ``sources.list``, preferring one for *suite*."""
    candidates = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2 and _usable(words[0]):
            candidates.append((words[1] == suite, words[0]))
    preferred = [uri for wanted, uri in candidates if wanted] or [uri for _, uri in candidates]
    return preferred[0].rstrip("/") if preferred else None


def host_mirror(suite: str = "bookworm", deb822: Path = DEB822_SOURCES, sources_list: Path = SOURCES_LIST) -> str:
    """The host's Debian mirror URL (no trailing slash): ``debian.sources``, else ``sources.list``."""
    for path, parse in ((deb822, mirror_from_deb822), (sources_list, mirror_from_sources_list)):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found = parse(text, suite)
        if found:
            return found
    raise MirrorError(
        f"no Debian mirror (an http, https or file URI) in {deb822} or {sources_list}: "
        "configure apt, or pass the mirror URL explicitly (--mirror)"
    )
