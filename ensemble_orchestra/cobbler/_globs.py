"""One fnmatch pattern that covers a set of system names, so N systems cost one ``find_system`` call.

fnmatch has no alternation ("a|b"), so the pattern is a superset, filtered by the caller: names of
equal length get one character class per differing position (node001..node200 -> ``node[012][0-9]
[0-9]``, which spares node300..node999), other sets their common prefix plus ``*``.
"""

from __future__ import annotations

import os
from collections.abc import Collection

__all__ = ["covering_glob"]

_SPECIAL = frozenset("*?[]!^\\")


def covering_glob(names: Collection[str]) -> str | None:
    """A pattern matching every name in *names*, or None when only "every system" would do."""
    if not names or any(ch in _SPECIAL for name in names for ch in name):
        return None
    if len({len(name) for name in names}) == 1:
        parts = []
        for column in zip(*names, strict=True):
            chars = sorted(set(column))
            if len(chars) == 1:
                parts.append(chars[0])
            elif all(c.isalnum() for c in chars):
                parts.append("[" + "".join(chars) + "]")
            else:  # "-" and friends mean ranges inside a class: keep it simple
                parts.append("*")
        pattern = "".join(parts)
        return None if set(pattern) == {"*"} else pattern
    prefix = os.path.commonprefix(list(names))
    return prefix + "*" if prefix else None
