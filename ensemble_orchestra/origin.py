"""Where machines get ensemble-orchestra: the same code as the CLI that bootstrapped them, without internet.

``ensemble-origin: upload`` (the default and, for now, the only way): at bootstrap the CLI packs the very
package it runs from (``ensemble_orchestra/``, without caches) into a reproducible tar.gz, uploads it once
to the environment's storage under ``ensemble-tools/`` and hands machines its URL and sha256 in their user
data. cloud-init fetches it (the server kit serves ``ensemble-tools/`` to anonymous GETs: it is code, no
secret), checks the sha256, unpacks it under ``/usr/lib/ensemble-orchestra`` and runs it with Debian's
python3 packages (twisted, kazoo, treq, yaml...) installed through the package proxy.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import ensemble_orchestra

from .interfaces import IFileStorage

__all__ = ["INSTALL_DIR", "TOOLS_DIR", "Tools", "pack_tools", "upload_tools"]

TOOLS_DIR = "ensemble-tools"
INSTALL_DIR = "/usr/lib/ensemble-orchestra"  # on the machines: the archive's ensemble_orchestra/ lands here
_SKIPPED = {"__pycache__"}


@dataclass(frozen=True)
class Tools:
    """One packed ensemble-orchestra: its bytes, their sha256, and the storage name they go under."""

    version: str
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        return f"{TOOLS_DIR}/ensemble-orchestra-{self.version}-{self.sha256[:16]}.tar.gz"


def pack_tools(package_dir: Path | None = None) -> Tools:
    """A reproducible tar.gz of the package (same files → same bytes → same name: uploaded once)."""
    root = package_dir or Path(ensemble_orchestra.__file__).resolve().parent
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for path in sorted(root.rglob("*")):
                relative = path.relative_to(root)
                if _SKIPPED & set(relative.parts) or path.suffix in (".pyc", ".pyo") or path.is_symlink():
                    continue
                if not (path.is_file() or path.is_dir()):
                    continue
                info = archive.gettarinfo(str(path), arcname=str(Path("ensemble_orchestra") / relative))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                info.mode = 0o755 if path.is_dir() or info.mode & 0o100 else 0o644
                if path.is_file():
                    with path.open("rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info)
    data = buffer.getvalue()
    return Tools(ensemble_orchestra.__version__, data, hashlib.sha256(data).hexdigest())


async def upload_tools(storage: IFileStorage, tools: Tools) -> str:
    """Put *tools* into the storage unless the same bytes are there already; their URL."""
    present = await storage.list(TOOLS_DIR + "/")
    if tools.name not in present:
        await storage.put(tools.name, tools.data)
    return await storage.get_url(tools.name)
