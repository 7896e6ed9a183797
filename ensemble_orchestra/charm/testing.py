"""Writing charm directories for tests: one small valid charm, changed file by file.

Public so that the agents' tests can build the charms they run (a hook that fails, hangs, or is not
executable) the same way the charm tests do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOOK_OK", "SAMPLE_CONFIG", "SAMPLE_METADATA", "write_charm"]

SAMPLE_METADATA = """\
name: sample
summary: a charm for tests
description: It does nothing, in every hook.
provides:
  website: http
requires:
  db:
    interface: mysql
peers:
  ring: sample-ring
"""

SAMPLE_CONFIG = """\
options:
  title:
    type: string
    default: Hello
    description: the page title
  port:
    type: int
    default: 8080
    description: where to listen
  ratio:
    type: float
    default: 0.5
  debug:
    type: boolean
    default: false
  secret:
    type: string
    description: no default
"""

HOOK_OK = "#!/bin/sh\nexit 0\n"


def write_charm(
    path: Path,
    files: Mapping[str, str | bytes | None] | None = None,
    *,
    hooks: Mapping[str, str | None] | None = None,
    executable: bool = True,
) -> Path:
    """A charm at *path*: the sample metadata, config, revision 1 and an install hook, then *files*.

    *files* maps a relative name to its content (None: leave the file out); *hooks* adds hooks
    (name -> script; None removes one), made executable unless *executable* is False.
    """
    contents: dict[str, str | bytes | None] = {
        "metadata.yaml": SAMPLE_METADATA,
        "config.yaml": SAMPLE_CONFIG,
        "revision": "1\n",
    }
    contents.update(files or {})
    scripts: dict[str, str | None] = {"install": HOOK_OK}
    scripts.update(hooks or {})
    path.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        if content is not None:
            _write(path / name, content)
    for name, script in scripts.items():
        if script is not None:
            hook = path / "hooks" / name
            _write(hook, script)
            hook.chmod(0o755 if executable else 0o644)
    return path


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
