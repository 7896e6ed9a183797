"""The local charm repository: ``REPO/<series>/<directory>/``, charms found by the name in their metadata.

A charm is matched by its metadata name, not its directory's name (``mysql-new/`` may hold ``name:
mysql``), and without a revision in the URL the highest revision wins. A broken charm beside the one
asked for must not stop a deploy, so it is skipped (and logged); but a broken charm in a directory
named like the wanted charm gives its own error even when another copy would match, because that is
almost always the copy the user is editing, and deploying an older one instead would hide it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from twisted.logger import Logger

from .directory import CharmDirectory
from .errors import CharmError, CharmNotFoundError
from .url import CharmURL

__all__ = ["REPOSITORY_VARIABLES", "LocalRepository", "resolve_repository"]

REPOSITORY_VARIABLES = ("ENSEMBLE_REPOSITORY", "JUJU_REPOSITORY")
_log = Logger()


def resolve_repository(option: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The repository to use: ``--repository``, else $ENSEMBLE_REPOSITORY, else $JUJU_REPOSITORY (None: none)."""
    for candidate in (option, *(environ.get(name) for name in REPOSITORY_VARIABLES)):
        if candidate is not None and str(candidate) != "":
            return Path(candidate).expanduser()
    return None


class LocalRepository:
    """Charms in a directory tree, one subdirectory per series."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalRepository({str(self.path)!r})"

    def find(self, url: CharmURL) -> CharmDirectory:
        """The charm *url* names: its revision if it has one, else the highest; CharmNotFoundError if none."""
        series_dir = self._series_dir(url)
        matches: list[CharmDirectory] = []
        not_a_charm: CharmNotFoundError | None = None
        try:
            entries = sorted(series_dir.iterdir())
        except OSError as exc:
            raise CharmError(f"{url}: {series_dir} cannot be listed ({exc.strerror}): fix its permissions") from None
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                charm = CharmDirectory.load(entry)
            except CharmNotFoundError as error:  # a directory without metadata.yaml: not a charm
                if entry.name == url.name:
                    not_a_charm = error
                continue
            except CharmError as error:
                if entry.name == url.name:
                    raise
                _log.warn("charm repository: skipped the broken charm {path}: {error}", path=entry, error=error)
                continue
            if charm.metadata.name == url.name:
                matches.append(charm)
        if not matches:
            if not_a_charm is not None:
                raise not_a_charm
            raise CharmNotFoundError(
                f"{url}: not in charm repository {self.path}: no directory of {series_dir} has "
                f"'name: {url.name}' in its metadata.yaml"
            )
        if url.revision is not None:
            chosen = [charm for charm in matches if charm.revision == url.revision]
            if not chosen:
                revisions = ", ".join(str(r) for r in sorted({charm.revision for charm in matches}))
                raise CharmNotFoundError(
                    f"{url}: charm repository {self.path} has {url.name} at revision {revisions} only: "
                    f"deploy one of those, or {url.with_revision(None)} for the latest"
                )
        else:
            highest = max(charm.revision for charm in matches)
            chosen = [charm for charm in matches if charm.revision == highest]
        if len(chosen) > 1:
            paths = " and ".join(str(charm.path) for charm in chosen)
            raise CharmError(
                f"{url}: charm repository {self.path} has {url.name} revision {chosen[0].revision} twice ({paths}): "
                "bump one's revision file or move it out"
            )
        return chosen[0]

    def _series_dir(self, url: CharmURL) -> Path:
        if not self.path.is_dir():
            problem = "does not exist" if not self.path.exists() else "is not a directory"
            raise CharmNotFoundError(
                f"{url}: charm repository {self.path} {problem}: give --repository DIR "
                f"(or ${REPOSITORY_VARIABLES[0]}) naming a directory with <series>/<charm>/ in it"
            )
        series_dir = self.path / url.series
        if not series_dir.is_dir():
            raise CharmNotFoundError(
                f"{url}: charm repository {self.path} has no {url.series}/ directory: "
                f"put the charm in {series_dir}/<charm>/ or pick another series"
            )
        return series_dir
