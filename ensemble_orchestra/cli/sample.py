"""The sample environments.yaml that `ensemble init` writes: an orchestra environment, commented. Never overwrites."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import EnsembleError
from ..home import environments_file

__all__ = ["SAMPLE", "SampleNotWritten", "write_sample"]


class SampleNotWritten(EnsembleError):
    """The sample was not written: the file exists (never overwritten), or its directory cannot be written."""


SAMPLE = """\
# Ensemble environments: 'ensemble bootstrap -e NAME' picks one; without -e, $ENSEMBLE_ENV, then
# 'default:', then the only one. Every key is described in docs/environments.md.
default: orchestra

environments:
  orchestra:
    type: orchestra
    # The Orchestra (Cobbler) server, prepared with 'ensemble-orchestra setup-server'.
    orchestra-server: orchestra.example.com
    orchestra-user: cobbler
    orchestra-pass: CHANGE-ME
    # Systems Ensemble may claim are in the available class; claimed ones move to the acquired class.
    available-mgmt-class: orchestra-ensemble-available
    acquired-mgmt-class: orchestra-ensemble-acquired
    # Installed on machines unless --constraints says series=...; Cobbler needs a <series>-<arch> profile.
    default-series: bookworm
    # Protects the environment's admin access; generated for you, keep it secret.
    admin-secret: {admin_secret}
    # WebDAV storage for provider state; defaults: http://<orchestra-server>/webdav, the orchestra user.
    # storage-url: https://orchestra.example.com/webdav
    # storage-user: ensemble
    # storage-pass: CHANGE-ME
    # SSH keys put on every machine; default: ~/.ssh/id_*.pub
    # authorized-keys-path: ~/.ssh/id_ed25519.pub
    # cobbler-api-url: https://orchestra.example.com/cobbler_api
    # ca-bundle: /etc/ssl/certs/orchestra-ca.pem
    # power-timeout: 120
"""


def write_sample(path: Path | None = None) -> Path:
    """Write the sample (mode 0600: it holds a secret); SampleNotWritten if the file exists or cannot be written."""
    path = path or environments_file()
    exists = SampleNotWritten(
        f"{path} exists and was not overwritten: edit it, or move it away and run 'ensemble init' again"
    )
    if path.exists():
        raise exists
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SampleNotWritten(
            f"{path}: cannot be written: {path.parent} is not a directory (set ENSEMBLE_HOME to a directory)"
        ) from None
    except OSError as error:
        raise SampleNotWritten(f"{path}: cannot be written: cannot create {path.parent} ({error.strerror})") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created since the check above
        raise exists from None
    except OSError as error:
        raise SampleNotWritten(
            f"{path}: cannot be written ({error.strerror}): fix its directory or set ENSEMBLE_HOME to another"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(SAMPLE.format(admin_secret=secrets.token_hex(16)))
    return path
