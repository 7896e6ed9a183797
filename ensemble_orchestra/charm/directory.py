"""A charm as a directory: metadata.yaml, config.yaml, revision and hooks/, read and checked at once.

Loading never writes (Ensemble created a missing ``revision`` file on load, which made reading a
charm change it); a missing revision is 0, or the obsolete ``revision:`` of metadata.yaml. A hook that
is not executable or not named like a hook is not an error here, only a `warnings` line: the unit agent
reports such a hook when it would run it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigSchema
from .errors import CharmError, CharmNotFoundError
from .metadata import CharmMetadata
from .url import LOCAL, CharmURL

__all__ = [
    "BASE_HOOKS",
    "CONFIG_FILE",
    "HOOKS_DIR",
    "METADATA_FILE",
    "RELATION_HOOK_KINDS",
    "REVISION_FILE",
    "CharmDirectory",
]

METADATA_FILE = "metadata.yaml"
CONFIG_FILE = "config.yaml"
REVISION_FILE = "revision"
HOOKS_DIR = "hooks"
BASE_HOOKS = ("install", "config-changed", "start", "upgrade-charm", "stop")
RELATION_HOOK_KINDS = ("joined", "changed", "departed", "broken")
_REVISION = re.compile(r"^[0-9]+$")


def _read(path: Path, charm: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; other failures name the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CharmError(f"{path}: is a directory, not a file: charm {charm} needs a file there") from None
    except OSError as exc:
        raise CharmError(f"{path}: cannot be read ({exc.strerror}): fix its permissions") from None


@dataclass(frozen=True)
class CharmDirectory:
    """A loaded, valid charm directory."""

    path: Path
    metadata: CharmMetadata
    config: ConfigSchema
    revision: int

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharmDirectory:
        """Read and check the charm at *path*; CharmNotFoundError when it is not a charm at all."""
        path = Path(path).absolute()
        if not path.is_dir():
            problem = "does not exist" if not path.exists() else "is not a directory"
            raise CharmNotFoundError(f"{path}: {problem}: a charm is a directory holding metadata.yaml")
        metadata_path = path / METADATA_FILE
        raw = _read(metadata_path, path)
        if raw is None:
            raise CharmNotFoundError(f"{path}: not a charm: it has no {METADATA_FILE}")
        metadata = CharmMetadata.parse(raw, str(metadata_path))
        config_path = path / CONFIG_FILE
        config = ConfigSchema.parse(_read(config_path, path), str(config_path))
        revision = _revision(path, metadata)
        return cls(path, metadata, config, revision)

    def url(self, series: str) -> CharmURL:
        """This charm's id in *series*: ``local:<series>/<name>-<revision>``."""
        return CharmURL(LOCAL, series, self.metadata.name, self.revision)

    def set_revision(self, revision: int) -> CharmDirectory:
        """Write *revision* to the revision file (``deploy -u``) and return the charm at that revision.

        The file is replaced atomically, so a reader sees the old or the new revision, never an empty file.
        """
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise CharmError(f"{self.path / REVISION_FILE}: revision {revision!r} is not a whole number >= 0")
        target = self.path / REVISION_FILE
        try:
            fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".revision.")
            try:
                with os.fdopen(fd, "w") as stream:
                    stream.write(f"{revision}\n")
                os.chmod(temporary, 0o644)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CharmError(f"{target}: cannot be written ({exc.strerror}): make the charm writable") from None
        return dataclasses.replace(self, revision=revision)

    def hook_path(self, name: str) -> Path:
        return self.path / HOOKS_DIR / name

    def hook_names(self) -> list[str]:
        """The files in hooks/ (dotfiles and subdirectories left out), sorted."""
        hooks = self.path / HOOKS_DIR
        try:
            entries = list(hooks.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise CharmError(f"{hooks}: cannot be listed ({exc.strerror}): fix its permissions") from None
        return sorted(entry.name for entry in entries if not entry.name.startswith(".") and entry.is_file())

    def known_hook_names(self) -> frozenset[str]:
        """The hooks the unit agent may run for this charm: the lifecycle's and its relations'."""
        relation_hooks = (
            f"{relation}-relation-{kind}" for relation in self.metadata.relations() for kind in RELATION_HOOK_KINDS
        )
        return frozenset((*BASE_HOOKS, *relation_hooks))

    def warnings(self) -> list[str]:
        """One line per thing that is allowed but probably a mistake: hooks that cannot or will never run."""
        found: list[str] = []
        if self.metadata.obsolete_revision is not None:
            found.append(f"{self.path / METADATA_FILE}: 'revision' is obsolete: move it to the revision file")
        hooks = self.path / HOOKS_DIR
        if not hooks.is_dir():
            found.append(f"{hooks}: missing: the charm has no hooks, so deploying it does nothing")
            return found
        known = self.known_hook_names()
        names = self.hook_names()
        for name in names:
            path = hooks / name
            if name not in known:
                found.append(
                    f"{path}: not a hook name of this charm, so it never runs as a hook (fine for a helper): "
                    f"hooks are {', '.join(BASE_HOOKS)} and <relation>-relation-joined|changed|departed|broken"
                )
            elif not path.stat().st_mode & stat.S_IXUSR:
                found.append(f"{path}: not executable, so the unit agent will fail to run it: chmod +x it")
        for name in sorted(known - set(names)):
            path = hooks / name
            if path.is_symlink() or path.exists():  # a dangling symlink or a directory where a hook should be
                found.append(f"{path}: not a file, so the unit agent cannot run it: make it an executable file")
        return found


def _revision(path: Path, metadata: CharmMetadata) -> int:
    revision_path = path / REVISION_FILE
    raw = _read(revision_path, path)
    if raw is None:
        return metadata.obsolete_revision if metadata.obsolete_revision is not None else 0
    text = raw.decode("utf-8", errors="replace").strip()
    if not _REVISION.match(text):
        shown = text[:20] + ("..." if len(text) > 20 else "")
        raise CharmError(
            f"{revision_path}: {shown!r} is not a revision: write a whole number >= 0 in it (like 1), or delete it (0)"
        )
    return int(text)
