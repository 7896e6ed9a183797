"""Charms: Ensemble's charm format, read and checked offline.

A charm is a directory (metadata.yaml, config.yaml, revision, hooks/) found in a local repository by
its URL, shipped to the machines as a deterministic zip named by its id and sha256. Nothing here
talks to a server: the CLI and the agents use it to read, bundle, check and unpack charms.
"""

from .bundle import Bundle, bundle_name, make_bundle, unpack_bundle
from .config import UNSET, ConfigOption, ConfigSchema, ConfigValue, Unset
from .directory import BASE_HOOKS, RELATION_HOOK_KINDS, CharmDirectory
from .errors import CharmError, CharmNotFoundError, CharmURLError
from .metadata import SCOPE_CONTAINER, SCOPE_GLOBAL, CharmMetadata, RelationSpec
from .repository import LocalRepository, resolve_repository
from .url import CharmURL

__all__ = [
    "BASE_HOOKS",
    "RELATION_HOOK_KINDS",
    "SCOPE_CONTAINER",
    "SCOPE_GLOBAL",
    "UNSET",
    "Bundle",
    "CharmDirectory",
    "CharmError",
    "CharmMetadata",
    "CharmNotFoundError",
    "CharmURL",
    "CharmURLError",
    "ConfigOption",
    "ConfigSchema",
    "ConfigValue",
    "LocalRepository",
    "RelationSpec",
    "Unset",
    "bundle_name",
    "make_bundle",
    "resolve_repository",
    "unpack_bundle",
]
