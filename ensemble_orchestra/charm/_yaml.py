"""Reading a charm's YAML files: one-line CharmErrors for every way a user's file can be wrong.

A duplicate key is an error here (PyYAML keeps the last one silently), because in metadata.yaml or
config.yaml it nearly always means an edit went to the wrong copy.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import CharmError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str | bytes, where: str) -> Any:
    """The document in *text*; *where* names the charm's file in every error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CharmError(f"{where}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or "invalid YAML"
        raise CharmError(f"{where}: malformed YAML{at}: {problem}: fix the file") from None
    except yaml.YAMLError as exc:
        raise CharmError(f"{where}: malformed YAML ({type(exc).__name__}): fix the file") from None
    except RecursionError:
        raise CharmError(f"{where}: malformed YAML: nested too deeply") from None


def describe(value: object) -> str:
    """A value's YAML kind for an error, never the value itself (it may be a password)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"
