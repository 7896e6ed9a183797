"""How config-get and unit-get print a result: ``--format smart|json|shell`` (pure functions, stdlib only).

- smart (the default, Ensemble's): a string as is, nothing for null, True/False for booleans (what Ensemble's
  Python printed, and charms compare against), numbers as Python writes them; a list of scalars one per line
  (``relation-list``: ``for unit in $(relation-list)``); a mapping or other list as YAML lines
  (``key: value``, sorted keys; scalars inside them YAML-typed: ``true``, ``null``, quoted when ambiguous), as
  Ensemble's successor prints them. Ensemble itself printed Python's repr of a dict, which no script can read.
- json: one JSON document.
- shell: ``NAME=value`` lines for ``eval``: names upper-cased with every other character than A-Z, 0-9 and _
  turned into _ (``private-address`` -> ``PRIVATE_ADDRESS``), values shell-quoted. A single value is named by the
  key asked for (``config-get title --format shell`` -> ``TITLE='...'``).

Every function returns the text to write, newline-terminated, or "" when there is nothing to print.
"""

from __future__ import annotations

import json
import re
import shlex

TYPE_CHECKING = False  # typing itself costs a tool's start ~5 ms; mypy reads this as typing's
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["FORMATS", "format_json", "format_shell", "format_smart", "render", "shell_name"]

_PLAIN = re.compile(r"^(?:[A-Za-z0-9_./+]|-(?=[^ ]))[A-Za-z0-9_ ./@%+=:,()-]*\Z")
_YAML_SPECIAL = re.compile(
    r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N"
    r"|[-+]?(?:\.?[0-9][0-9_.eE+-]*|0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.Inf|\.INF)|\.nan|\.NaN|\.NAN"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)\Z"
)
_NOT_NAME = re.compile(r"[^A-Z0-9_]")


def _scalar(value: Any) -> str:
    """A top-level scalar as Ensemble printed it (``str()`` in Python)."""
    return str(value)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and not _YAML_SPECIAL.match(text) and not text.endswith((" ", ":")) and ": " not in text:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value: Any, indent: str) -> list[str]:
    lines: list[str] = []
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            item = value[key]
            name = _yaml_scalar(str(key))
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{name}:")
                lines += _yaml_lines(item, indent + ("  " if isinstance(item, dict) else ""))
            else:
                lines.append(f"{indent}{name}: {_yaml_empty(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _yaml_lines(item, indent + "  ")
                lines.append(f"{indent}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{indent}- {_yaml_empty(item)}")
    return lines


def _yaml_empty(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _yaml_scalar(value)


def format_smart(value: Any, key: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and not any(isinstance(item, dict | list) for item in value):
        # relation-list, relation-ids: one per line, so ``for unit in $(relation-list)`` works
        return "".join(_scalar(item) + "\n" for item in value)
    if isinstance(value, dict | list):
        lines = _yaml_lines(value, "")
        return "".join(line + "\n" for line in lines)
    return _scalar(value) + "\n"


def format_json(value: Any, key: str | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n"


def shell_name(key: str) -> str:
    """``private-address`` -> ``PRIVATE_ADDRESS``; a name starting with a digit gets a leading _."""
    name = _NOT_NAME.sub("_", key.upper())
    return "_" + name if not name or name[0].isdigit() else name


def _shell_value(value: Any) -> str:
    if value is None:
        return "''"
    if isinstance(value, dict | list):
        return shlex.quote(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return shlex.quote(_scalar(value))


def format_shell(value: Any, key: str | None = None) -> str:
    if isinstance(value, dict) and key is None:
        pairs = sorted((shell_name(str(k)), v) for k, v in value.items())
    else:
        pairs = [(shell_name(key or "value"), value)]
    return "".join(f"{name}={_shell_value(item)}\n" for name, item in pairs)


FORMATS: dict[str, Callable[[Any, str | None], str]] = {
    "smart": format_smart,
    "json": format_json,
    "shell": format_shell,
}


def render(format_name: str, value: Any, key: str | None = None) -> str:
    """*value* as text in *format_name* (one of ``FORMATS``); *key*: the single key asked for, if any."""
    return FORMATS[format_name](value, key)
