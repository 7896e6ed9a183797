"""The lab's own SSH key pair, so a lab environment works on a machine where the user has no ~/.ssh key.

The public key goes into every lab machine's cloud-init user data (`authorized-keys-path`); the private
key (mode 0600) is what a user would ssh in with once lab systems run a real operating system.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["ensure_lab_key"]


def ensure_lab_key(directory: Path, comment: str = "ensemble-lab") -> Path:
    """Create ``id_ed25519``/``id_ed25519.pub`` in *directory* unless present; returns the public key's path."""
    private, public = directory / "id_ed25519", directory / "id_ed25519.pub"
    if private.exists() and public.exists():
        return public
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_text(f"{openssh.decode()} {comment}\n")
    return public
