"""`ensemble init`: a commented sample environments.yaml with an orchestra environment. Never overwrites."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..home import environments_file

__all__ = ["SAMPLE", "write_sample"]

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
    default-series: precise
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
    """Write the sample (mode 0600: it holds a secret); FileExistsError if the file exists."""
    path = path or environments_file()
    if path.exists():
        raise FileExistsError(
            f"{path} exists and was not overwritten: edit it, or move it away and run 'ensemble init' again"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(SAMPLE.format(admin_secret=secrets.token_hex(16)))
    return path
